"""The one retry policy for compose HTTP, registry HTTP and skopeo runs (tenacity).

Only :class:`~fedora_container_sync.errors.TransientError` is retried, with exponential
backoff and jitter, bounded by attempts and total time; a server's ``Retry-After`` is honoured.
Each retry is one log line.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable
from typing import TypeVar

import tenacity

from .errors import TransientError
from .settings import RetrySettings

_log = logging.getLogger(__name__)
T = TypeVar("T")


class _Wait(tenacity.wait.wait_base):
    """Exponential backoff (initial x 2^n, capped) plus up to one ``initial`` of jitter."""

    def __init__(self, policy: RetrySettings) -> None:
        self._initial = policy.initial_delay
        self._max = policy.max_delay

    def __call__(self, retry_state: tenacity.RetryCallState) -> float:
        exponent = max(0, retry_state.attempt_number - 1)
        delay = min(self._max, self._initial * 2.0**exponent)
        delay += random.uniform(0, self._initial)  # noqa: S311 - jitter, not cryptography
        outcome = retry_state.outcome
        error = outcome.exception() if outcome is not None else None
        retry_after = getattr(error, "retry_after", None)
        if retry_after is not None:
            delay = max(delay, min(float(retry_after), max(self._max, 1.0)))
        return delay


def call_with_retry(fn: Callable[[], T], *, what: str, policy: RetrySettings) -> T:
    """Run ``fn``; retry it on :class:`TransientError` as ``policy`` allows, then re-raise."""

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
            error,
        )

    retrying = tenacity.Retrying(
        stop=tenacity.stop_after_attempt(policy.attempts)
        | tenacity.stop_after_delay(policy.max_total),
        wait=_Wait(policy),
        retry=tenacity.retry_if_exception_type(TransientError),
        before_sleep=log_retry,
        reraise=True,
    )
    return retrying(fn)
