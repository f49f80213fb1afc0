"""Wording an operator reads (issue 23, item 10): each line says what it means, once, and what
to do, with what the operator needs to act on it (a file, a line, a URL, a command)."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from pathlib import Path

import pytest
from fedora_messaging.exceptions import Nack
from rich.progress import Progress as Display

from fedora_container_sync.audit.findings import audit
from fedora_container_sync.audit.report import render_table
from fedora_container_sync.audit.state import ReadFailure
from fedora_container_sync.bus.answers import Decision, Outcome
from fedora_container_sync.cli import DESCRIPTION, build_parser, replay_command
from fedora_container_sync.compose.message import Envelope
from fedora_container_sync.config.settings import Releases, Settings
from fedora_container_sync.consumer import Consumer, config_file
from fedora_container_sync.gate.verdicts import GateDecision, Verdict
from fedora_container_sync.publish.progress import STEPS, Progress
from fedora_container_sync.publish.report import TagAction, TagOutcome
from fedora_container_sync.publish.terminal import _Rate

CID = "Fedora-41-20241026.0"


def test_top_level_help_is_plain_text():
    text = build_parser().format_help()
    assert "``" not in text and ":mod:" not in text
    assert " ".join(DESCRIPTION.split()[:4]) in " ".join(text.split())


def test_replay_help_lists_its_exit_codes_as_audit_help_does():
    parser = build_parser()
    commands = parser._subparsers._group_actions[0].choices  # type: ignore[union-attr]
    replay = " ".join(commands["replay"].format_help().split())
    audit_help = " ".join(commands["audit"].format_help().split())
    assert "Exit codes: 0 clean, 3 findings" in audit_help
    assert "Exit codes: 0 everything published (or nothing to do), 3 finished but a tag" in replay
    assert "1 something could not be published, 2 bad usage" in replay


def test_dead_letters_suggests_the_replay_with_its_config():
    assert replay_command("/etc/my conf.toml", Path("dead.jsonl")) == (
        "fedora-container-sync replay --config '/etc/my conf.toml' dead.jsonl"
    )
    assert replay_command(None, Path("dead.jsonl")) == "fedora-container-sync replay dead.jsonl"


@pytest.mark.parametrize(
    ("failures", "line"),
    [
        ([ReadFailure("a.example", None, "down")], "UNREADABLE (1 registry); 0 findings"),
        (
            [ReadFailure("a.example", "fedora", "500"), ReadFailure("a.example", "f2", "500")],
            "UNREADABLE (2 repositories); 0 findings",
        ),
        (
            [ReadFailure("a.example", None, "down"), ReadFailure("b.example", "fedora", "500")],
            "UNREADABLE (1 registry, 1 repository); 0 findings",
        ),
    ],
)
def test_unreadable_counts_registries_and_repositories_apart(failures, line):
    result = audit(
        [],
        Releases(),
        now=datetime(2024, 10, 28, tzinfo=UTC),
        registries=["a.example", "b.example"],
        repositories=["fedora", "f2"],
        failures=failures,
    )
    assert render_table(result).splitlines()[-1] == f"result: {line}"


@pytest.mark.parametrize(
    ("completed", "elapsed", "shown"),
    [(0, 1.0, "-"), (512, 1.0, "512 bytes/s"), (3 * 1024 * 1024, 2.0, "1.5 MiB/s")],
)
def test_a_download_rate_is_never_zero_point_zero_bytes(completed, elapsed, shown):
    display = Display()
    task_id = display.add_task("x", total=10**9, receiving=True)
    task = display._tasks[task_id]
    task.completed = completed
    task.start_time = 0.0
    task.stop_time = elapsed  # elapsed: stop - start
    assert _Rate().render(task).plain == shown


def test_a_dry_runs_gate_line_names_its_verdict_once(caplog):
    decision = GateDecision(Verdict.PUBLISH, frozenset({"x86_64"}), frozenset({"x86_64"}), "ok")
    outcome = TagOutcome("r.example", "fedora", "41", TagAction.WOULD_PUBLISH, decision)
    with caplog.at_level(logging.INFO, logger=STEPS):
        Progress(CID, None).step(outcome, 1, 1)
    (line,) = [r.getMessage() for r in caplog.records if r.name == STEPS]
    assert line == (
        f"compose {CID}: [1/1] gate: would publish r.example/fedora:41: current [x86_64], "
        "compose [x86_64]: ok"
    )


@pytest.mark.parametrize(
    ("argv", "environ", "path"),
    [
        (["fedora-messaging", "--conf", "/srv/c.toml", "consume"], {}, "/srv/c.toml"),
        (["fedora-messaging", "--conf=/srv/c.toml", "consume"], {}, "/srv/c.toml"),
        (["fedora-messaging", "consume"], {"FEDORA_MESSAGING_CONF": "/e.toml"}, "/e.toml"),
        (["fedora-messaging", "consume"], {}, "/etc/fedora-messaging/config.toml"),
    ],
)
def test_the_consumers_config_errors_name_its_file(argv, environ, path):
    assert config_file(argv, environ) == path


def test_the_stopping_line_says_it_once(tmp_path, caplog):
    settings = Settings.model_validate(
        {
            "repos": {"Container_Base": "fedora"},
            "registries": [{"url": "127.0.0.1:5000"}],
            "compose_url_allowlist": ["https://kojipkgs.fedoraproject.org/compose/"],
            "work_dir": str(tmp_path / "work"),
        }
    )
    consumer = Consumer(settings)
    consumer._stopping.set()
    reason = f"{CID}: Container/x86_64/images/a.tar.xz: skopeo stopped, the process is stopping"
    envelope = Envelope("org.fedoraproject.prod.pungi.compose.status.change", {"compose_id": CID})
    with caplog.at_level(logging.INFO), pytest.raises(Nack):
        consumer._answer(Decision(Outcome.REQUEUE, reason), envelope)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == [
        f"compose {CID}: the consumer is stopping, the message goes back to the queue"
    ]
