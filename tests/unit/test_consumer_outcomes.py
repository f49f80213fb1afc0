"""How a run's result or error becomes the broker's answer, the requeue delay, and which
deliveries announce the tags that already serve their compose."""

from __future__ import annotations

import pytest
from fedora_messaging.exceptions import HaltConsumer

from fedora_container_sync.bus.answers import (
    Outcome,
    decide_error,
    decide_report,
    requeue_delay,
)
from fedora_container_sync.bus.ledger import (
    AnnounceLedger,
    announce_served,
    previous_deliveries,
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


# -- which deliveries announce what already serves the compose (bus.ledger) ------------------


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


def test_a_requeue_here_repeats_nothing():
    ledger = AnnounceLedger()
    assert not ledger.repeat("m", 0)
    ledger.sent("m", 0, repeated=False, ended=False)  # requeued, its moves announced
    assert not ledger.repeat("m", 1)
    ledger.sent("m", 1, repeated=False, ended=True)
    ledger.ended("m")
    assert not ledger.repeat("other", 0)


def test_after_a_kill_elsewhere_the_debt_carries_until_a_delivery_ends_the_message():
    ledger = AnnounceLedger()
    # Delivery 0 ran on a replica killed after an index PUT: this one gets delivery 1.
    assert ledger.repeat("m", 1)
    # It announced what served the compose, but an arch failed and held the killed one's
    # tag: requeued, so the next delivery here announces what serves the compose again.
    ledger.sent("m", 1, repeated=True, ended=False)
    assert ledger.repeat("m", 2)
    ledger.sent("m", 2, repeated=True, ended=True)
    ledger.ended("m")
    assert not ledger.repeat("m", 0)


def test_a_delivery_that_announced_nothing_keeps_what_it_owed():
    ledger = AnnounceLedger()
    assert ledger.repeat("m", 1)
    ledger.not_sent("m", 1, repeat=True)  # stopped before it read a registry
    assert ledger.repeat("m", 2)
    ledger.not_sent("m", 2, repeat=False)
    assert not ledger.repeat("m", 3)


def test_a_failed_send_is_owed_also_on_a_queue_that_counts_nothing():
    ledger = AnnounceLedger()
    ledger.unsure("m", owe=True)
    assert ledger.owed("m") and ledger.repeat("m", 0)
    ledger.sent("m", 0, repeated=True, ended=False)  # requeued again: still owed
    assert ledger.repeat("m", 0)
    ledger.unsure("m", owe=False)  # a failure before any work leaves the debt as it was
    assert ledger.repeat("m", 0)
    ledger.sent("m", 0, repeated=True, ended=True)
    assert not ledger.repeat("m", 0)


def test_the_ledger_is_bounded():
    ledger = AnnounceLedger(bound=2)
    for key in ("a", "b", "c"):
        ledger.unsure(key, owe=True)
    assert [ledger.owed(key) for key in ("a", "b", "c")] == [False, True, True]
