"""The audit's systemd timer and service: a daily, read-only run with --max-age 48."""

from __future__ import annotations

import configparser
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from fedora_container_sync.cli import build_parser

pytestmark = pytest.mark.integration

UNITS = Path(__file__).parents[2] / "systemd"
SERVICE = UNITS / "fedora-container-sync-audit.service"
TIMER = UNITS / "fedora-container-sync-audit.timer"


def unit(path: Path) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string(path.read_text())
    return parser


def test_service_runs_the_audit_once_with_max_age_48():
    service = unit(SERVICE)["Service"]
    assert service["Type"] == "oneshot"
    argv = shlex.split(service["ExecStart"])
    # A bare command: systemd finds it in /usr/local/bin (venv route, pip) or /usr/bin (RPM).
    assert argv[0] == "fedora-container-sync"
    args = build_parser().parse_args(argv[1:])
    assert (args.command, args.max_age, args.json) == ("audit", 48.0, False)
    # The consumer's config file and credentials (test_running_the_daemon checks they agree).
    assert service["Environment"] == (
        "FEDORA_MESSAGING_CONF=/etc/fedora-messaging/fedora-container-sync.toml"
    )
    assert "EnvironmentFile" not in service
    assert service["BindReadOnlyPaths"] == "%d:/run/secrets/fedora-container-sync"


def test_service_writes_the_status_page_where_a_web_server_can_read_it():
    service = unit(SERVICE)["Service"]
    page = build_parser().parse_args(shlex.split(service["ExecStart"])[1:]).html
    # Its only writable place: the state directory, world-readable, not under
    # /var/lib/private/ (where DynamicUser= would put it, out of a web server's reach).
    assert page == Path("/var/lib") / service["StateDirectory"] / "index.html"
    assert service["StateDirectoryMode"] == "0755"
    assert "DynamicUser" not in service and "ReadWritePaths" not in service
    assert service["ProtectSystem"] == "strict"
    # A static system user, created by the sysusers.d file shipped beside the unit.
    sysusers = (UNITS / "fedora-container-sync-audit.sysusers").read_text().splitlines()
    entries = [line.split() for line in sysusers if line and not line.startswith("#")]
    assert [(e[0], e[1]) for e in entries] == [("u", service["User"])]
    assert service["Group"] == service["User"]
    assert service["RemoveIPC"] == "yes"
    # The service comment and the audit's documentation show the same path to the web server.
    assert f"alias {page.parent}/;" in SERVICE.read_text()
    documentation = (UNITS.parent / "docs" / "audit.md").read_text()
    assert f"alias {page.parent}/;" in documentation


def test_timer_starts_it_daily():
    timer = unit(TIMER)
    assert timer["Timer"]["OnCalendar"] == "daily"
    assert timer["Timer"]["Persistent"] == "true"
    assert "Unit" not in timer["Timer"]  # the service of the same name
    assert timer["Install"]["WantedBy"] == "timers.target"


def test_units_pass_systemd_analyze_verify(tmp_path):
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed")
    # verify insists that ExecStart exists: point it at this environment's console script.
    script = Path(sys.executable).parent / "fedora-container-sync"
    assert script.exists()
    for path in (SERVICE, TIMER):
        text = path.read_text().replace("ExecStart=fedora-container-sync", f"ExecStart={script}")
        (tmp_path / path.name).write_text(text)
    result = subprocess.run(
        [analyze, "verify", str(tmp_path / TIMER.name), str(tmp_path / SERVICE.name)],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    # verify exits 0 on unknown keys and bad values it ignores; it must print nothing either.
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")
