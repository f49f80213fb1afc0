"""The one retry policy for compose HTTP, registry HTTP and skopeo runs (tenacity).

What is transient is decided by the adapters, each translating its failures into
:class:`~fedora_container_sync.errors.TransientError` (retried) or a permanent error (never
retried); :func:`transient_status` is the shared rule for HTTP answers. Retries back off
exponentially with jitter, bounded by attempts and by total time; a server's ``Retry-After`` is
honoured (a wait that would overrun the time budget ends the retries instead). Each retry is one
log line.
"""

from __future__ import annotations

import email.utils
import logging
import random
import time
from collections.abc import Callable
from typing import TypeVar

import tenacity

from .. import shutdown
from ..config.settings import RetrySettings
from ..errors import TransientError, about_compose

_log = logging.getLogger(__name__)
T = TypeVar("T")

#: HTTP answers worth retrying: request timeout, rate limit, internal error, bad gateway,
#: unavailable, gateway timeout. distribution answers 500 UNKNOWN for storage hiccups, among
#: them two writers updating one tag at the same moment (seen in the concurrency tests), so it
#: is retried a bounded number of times too. Everything else (400, 401, 403, 404, ...) is final.
TRANSIENT_STATUSES = frozenset({408, 429, 500, 502, 503, 504})


def transient_status(status: int) -> bool:
    """True when an HTTP status means "try again later"."""
    return status in TRANSIENT_STATUSES


def retry_after_seconds(value: str | None, *, now: float | None = None) -> float | None:
    """A ``Retry-After`` header (delta-seconds or an HTTP date) as seconds from ``now``.

    Delta-seconds are ASCII digits only (``str.isdigit`` also takes "²" and other scripts'
    digits); anything unreadable is None, as if the header were not there.
    """
    if not value:
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():  # isdigit() alone takes "²", which float() refuses
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def backoff(policy: RetrySettings, attempt: int, retry_after: float | None, jitter: float) -> float:
    """Seconds to wait after failed attempt number ``attempt`` (1-based).

    ``initial * 2^(attempt-1)`` capped at ``max_delay``, plus ``jitter`` (0..1) of one
    ``initial``; never less than the server's ``Retry-After``.
    """
    delay = min(policy.max_delay, policy.initial_delay * 2.0 ** max(0, attempt - 1))
    delay += jitter * policy.initial_delay
    if retry_after is not None:
        delay = max(delay, retry_after)
    return delay


class _Wait(tenacity.wait.wait_base):
    def __init__(self, policy: RetrySettings) -> None:
        self._policy = policy

    def __call__(self, retry_state: tenacity.RetryCallState) -> float:
        outcome = retry_state.outcome
        error = outcome.exception() if outcome is not None else None
        retry_after = getattr(error, "retry_after", None)
        jitter = random.random()  # noqa: S311 - jitter, not cryptography
        return backoff(self._policy, retry_state.attempt_number, retry_after, jitter)


def call_with_retry(fn: Callable[[], T], *, what: str, policy: RetrySettings) -> T:
    """Run ``fn``; retry it on :class:`TransientError` as ``policy`` allows, then re-raise.

    ``what`` names the operation in the retry log line; start it with ``compose <ID>: `` when
    the compose is known.
    """

    def log_retry(retry_state: tenacity.RetryCallState) -> None:
        outcome = retry_state.outcome
        error = outcome.exception() if outcome is not None else None
        delay = retry_state.next_action.sleep if retry_state.next_action else 0.0
        _log.warning(
            "retrying %s in %.1fs (attempt %d of %d): %s",
            what,
            delay,
            retry_state.attempt_number + 1,
            policy.attempts,
            _error_text(what, error),
        )

    retrying = tenacity.Retrying(
        stop=tenacity.stop_after_attempt(policy.attempts)
        | tenacity.stop_before_delay(policy.max_total),
        wait=_Wait(policy),
        # Not once the process is stopping: that does not heal by waiting.
        retry=tenacity.retry_if_exception(
            lambda error: isinstance(error, TransientError) and not shutdown.requested()
        ),
        before_sleep=log_retry,
        reraise=True,
    )
    return retrying(fn)


def _error_text(what: str, error: BaseException | None) -> str:
    """The error of a retry line, without the compose ID that ``what`` already names."""
    if error is None:
        return ""
    name, _, _ = what.partition(": ")
    if name.startswith("compose "):
        return about_compose(name.removeprefix("compose "), error)
    return str(error)
