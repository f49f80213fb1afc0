"""What the broker hears about a message: ack, requeue, drop or halt, from how its run ended.
Pure.

=====================================================  ==========================================
finished work, including tags the gate held            ack
nothing to do: other topic, status or schema           ack
every failure may heal (network, 5xx/429, timeouts)    requeue, after a delay that doubles per
                                                       failure of the message, up to a bound
a permanent failure (malformed body, location          drop, with one log line naming the
outside the allowlist, missing metadata, checksum)     compose and the reason
the configuration is unusable                          halt: the message stays queued
=====================================================  ==========================================

The consumer (:mod:`fedora_container_sync.consumer`) turns each decision into fedora-messaging's
answer (returning, ``Nack``, ``Drop``, ``HaltConsumer``).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from ..config.settings import RequeueSettings
from ..errors import MessageError, PermanentError, SyncError, TransientError, UsageError, one_line
from ..publish.report import ComposeReport, kept_line


class Outcome(StrEnum):
    ACK = "ack"
    REQUEUE = "requeue"
    DROP = "drop"
    HALT = "halt"


@dataclass(frozen=True)
class Decision:
    outcome: Outcome
    reason: str


def decide_report(report: ComposeReport | None) -> Decision:
    """What the broker should hear about a message whose run produced ``report``. Pure."""
    if report is None:
        return Decision(Outcome.ACK, "nothing to do")
    if report.errors:
        reason = _errors_line(report.errors)
        return Decision(Outcome.REQUEUE if report.transient else Outcome.DROP, reason)
    if report.held or report.stale_tags or report.stale_pushes:
        return Decision(Outcome.ACK, f"done; {kept_line(report)}")
    return Decision(Outcome.ACK, "done")


def decide_error(error: Exception) -> Decision:
    """What the broker should hear about a message whose run raised ``error``. Pure."""
    if isinstance(error, UsageError):
        return Decision(Outcome.HALT, str(error))
    if isinstance(error, (MessageError, PermanentError)):
        return Decision(Outcome.DROP, str(error))
    if isinstance(error, TransientError):
        return Decision(Outcome.REQUEUE, str(error))
    # A bug or an environment failure (disk full, ...): keep the message, retry slowly.
    return Decision(Outcome.REQUEUE, f"unexpected {type(error).__name__}: {one_line(error)}")


def requeue_delay(failures: int, policy: RequeueSettings) -> float:
    """Seconds to wait before handing a message back after its ``failures``-th failure. Pure."""
    exponent = min(max(failures, 1) - 1, 62)
    return float(min(policy.max_delay, policy.initial_delay * 2.0**exponent))


def _errors_line(errors: list[SyncError]) -> str:
    first = str(errors[0])
    return first if len(errors) == 1 else f"{first} (and {len(errors) - 1} more errors)"
