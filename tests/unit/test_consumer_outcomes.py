"""How a run's result or error becomes the broker's answer, and the requeue delay."""

from __future__ import annotations

import pytest
from fedora_messaging.exceptions import HaltConsumer

from fedora_container_sync.bus.answers import (
    Outcome,
    announce_served,
    decide_error,
    decide_report,
    previous_deliveries,
    requeue_delay,
)
from fedora_container_sync.config.settings import RequeueSettings, Settings
from fedora_container_sync.consumer import Consumer, ConsumerHalt
from fedora_container_sync.errors import (
    ComposeError,
    ConfigError,
    MessageError,
    RegistryError,
    RegistryUnavailable,
    SkopeoTransientError,
    TransientError,
    WorkDirFull,
)
from fedora_container_sync.gate import verdicts as gate
from fedora_container_sync.publish.report import ComposeReport, TagAction, TagOutcome

CID = "Fedora-41-20241026.0"


NEWER = "Fedora-41-20241027.0"


def report(*errors, held: int = 0, stale: int = 0) -> ComposeReport:
    result = ComposeReport(CID, release=41)
    result.errors.extend(errors)
    decision = gate.GateDecision(
        gate.Verdict.HOLD,
        frozenset({"x86_64", "aarch64"}),
        frozenset({"x86_64"}),
        "compose lacks aarch64, which the tag serves now",
        missing=frozenset({"aarch64"}),
    )
    kept = gate.GateDecision(
        gate.Verdict.STALE,
        frozenset({"x86_64"}),
        frozenset({"x86_64"}),
        f"holds {NEWER}, newer than this compose",
        holder=NEWER,
    )
    for tag in ("41", "latest")[:held]:
        result.tags.append(TagOutcome("quay.io/fedora", "fedora", tag, TagAction.HELD, decision))
    for tag in ("40", "rawhide")[:stale]:
        result.tags.append(TagOutcome("quay.io/fedora", "fedora", tag, TagAction.HELD, kept))
    return result


@pytest.mark.parametrize(
    ("run", "outcome", "reason"),
    [
        (None, Outcome.ACK, "nothing to do"),
        (report(), Outcome.ACK, "done"),
        (report(held=2), Outcome.ACK, "done; 2 tags not moved: 2 held"),
        (report(held=1), Outcome.ACK, "done; 1 tag not moved: 1 held"),
        # The rollback guard's tags are stale, not held.
        (report(stale=2), Outcome.ACK, "done; 2 tags not moved: 2 stale"),
        (report(held=1, stale=1), Outcome.ACK, "done; 2 tags not moved: 1 held, 1 stale"),
        (report(RegistryUnavailable("registry down")), Outcome.REQUEUE, "registry down"),
        (
            report(TransientError("a"), SkopeoTransientError("b")),
            Outcome.REQUEUE,
            "a (and 1 more errors)",
        ),
        (report(ComposeError("sha256 mismatch")), Outcome.DROP, "sha256 mismatch"),
        # the compose is fine, this machine's disk is not: try again later
        (report(WorkDirFull("x: work_dir /w is full")), Outcome.REQUEUE, "x: work_dir /w is full"),
        (
            report(WorkDirFull("full"), ComposeError("decompresses to more than")),
            Outcome.DROP,
            "full (and 1 more errors)",
        ),
        # Retrying cannot fix the permanent part, and the run is idempotent: drop.
        (
            report(RegistryUnavailable("down"), RegistryError("unauthorized")),
            Outcome.DROP,
            "down (and 1 more errors)",
        ),
        (report(ComposeError("bad"), held=2), Outcome.DROP, "bad"),
    ],
)
def test_decide_report(run, outcome, reason):
    decision = decide_report(run)
    assert (decision.outcome, decision.reason) == (outcome, reason)


@pytest.mark.parametrize(
    ("error", "outcome"),
    [
        (MessageError("Fedora-41-1: location is outside compose_url_allowlist"), Outcome.DROP),
        (ComposeError("no images.json"), Outcome.DROP),
        (RegistryError("denied"), Outcome.DROP),
        (TransientError("broker unreachable"), Outcome.REQUEUE),
        (ConfigError("credentials missing"), Outcome.HALT),
        (OSError(28, "No space left on device"), Outcome.REQUEUE),
        (KeyError("bug"), Outcome.REQUEUE),
    ],
)
def test_decide_error(error, outcome):
    assert decide_error(error).outcome is outcome


def test_decide_error_names_an_unexpected_error():
    reason = decide_error(OSError(28, "No space left\non device")).reason
    assert reason == "unexpected OSError: [Errno 28] No space left on device"


@pytest.mark.parametrize(
    ("failures", "delay"),
    [(0, 30.0), (1, 30.0), (2, 60.0), (3, 120.0), (5, 480.0), (6, 600.0), (50, 600.0)],
)
def test_requeue_delay_doubles_up_to_the_bound(failures, delay):
    assert requeue_delay(failures, RequeueSettings()) == delay


def test_requeue_delay_never_overflows():
    assert requeue_delay(10**6, RequeueSettings(initial_delay=1, max_delay=5)) == 5.0


def test_unusable_config_halts_before_consuming(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    settings = Settings.model_validate(
        {
            "repos": {"Container_Base": "fedora"},
            "registries": [{"url": "127.0.0.1:5000"}],
            "compose_url_allowlist": ["https://kojipkgs.fedoraproject.org/compose/"],
            "work_dir": str(blocker / "work"),
        }
    )
    with pytest.raises(ConsumerHalt) as caught:
        Consumer(settings)
    halt = caught.value
    # fedora-messaging sees a HaltConsumer; the interpreter exits quietly with its code.
    assert isinstance(halt, HaltConsumer) and isinstance(halt, SystemExit)
    assert halt.exit_code == halt.code == 2
    assert str(halt).startswith(f"fedora-container-sync cannot start: work_dir {blocker}/work")


@pytest.mark.parametrize(
    ("headers", "count"),
    [
        (None, 0),  # no headers at all
        ({}, 0),  # a classic queue, or a first delivery
        ({"x-delivery-count": 0}, 0),
        ({"x-delivery-count": 3}, 3),
        ({"x-delivery-count": "3"}, None),  # not a count: unknown
        ({"x-delivery-count": -1}, None),
        ({"x-delivery-count": True}, None),
    ],
)
def test_previous_deliveries_reads_the_quorum_queue_count(headers, count):
    assert previous_deliveries(headers) == count


@pytest.mark.parametrize(
    ("previous", "announced_here", "again"),
    [
        (0, None, False),  # a first delivery: nothing before it to announce
        (1, 0, False),  # requeued by this process, which announced its moves
        (3, 2, False),
        (1, None, True),  # the delivery before was elsewhere (killed, cut off, stopped)
        (2, 0, True),  # this process announced, then another delivery came between
        (5, 5, True),  # a stale record, not the delivery just before
        (None, 3, True),  # an unreadable count
    ],
)
def test_a_redelivery_announces_what_serves_the_compose_unless_the_last_one_here_did(
    previous, announced_here, again
):
    assert announce_served(previous, announced_here) is again
