"""The retry policy: what is transient, how long to wait, when to stop, what gets logged."""

from __future__ import annotations

import logging

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fedora_container_sync.config.settings import RetrySettings
from fedora_container_sync.errors import PermanentError, RegistryError, TransientError
from fedora_container_sync.net.retry import (
    backoff,
    call_with_retry,
    retry_after_seconds,
    transient_status,
)

POLICY = RetrySettings(attempts=5, initial_delay=1.0, max_delay=8.0, max_total=600)
FAST = RetrySettings(attempts=3, initial_delay=0.0, max_delay=0.0, max_total=60)


@pytest.mark.parametrize(
    ("status", "transient"),
    [
        (408, True),
        (429, True),
        (502, True),
        (503, True),
        (504, True),
        (200, False),
        (400, False),
        (401, False),
        (403, False),
        (404, False),
        (405, False),
        (500, True),
        (501, False),
    ],
)
def test_transient_statuses(status, transient):
    assert transient_status(status) is transient


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("0", 0.0),
        ("7", 7.0),
        (" 120 ", 120.0),
        ("Wed, 21 Oct 2015 07:28:10 GMT", 10.0),  # 10 s after NOW
        ("Wed, 21 Oct 2015 07:27:00 GMT", 0.0),  # in the past: retry now
        ("", None),
        (None, None),
        ("soon", None),
        ("-5", None),
        ("1.5", None),
        ("\u00b2", None),  # a superscript two: str.isdigit() says yes, float() says no
        ("\u0661\u0662", None),  # Arabic-Indic "12": digits, but not ASCII ones
        ("\uff17", None),  # a fullwidth 7
    ],
)
def test_retry_after_seconds(value, seconds):
    now = 1445412480.0  # Wed, 21 Oct 2015 07:28:00 GMT
    assert retry_after_seconds(value, now=now) == seconds


@given(st.text() | st.text(alphabet=st.characters(categories=["Nd", "No"])))
def test_retry_after_of_any_header_value_is_seconds_or_none(value):
    """Never an exception; digits count only as ASCII digits."""
    seconds = retry_after_seconds(value, now=1445412480.0)
    assert seconds is None or seconds >= 0
    if value.strip().isdigit():
        assert (seconds is not None) is value.strip().isascii()


@pytest.mark.parametrize(
    ("attempt", "retry_after", "jitter", "delay"),
    [
        (1, None, 0.0, 1.0),
        (2, None, 0.0, 2.0),
        (3, None, 0.0, 4.0),
        (4, None, 0.0, 8.0),
        (5, None, 0.0, 8.0),  # capped at max_delay
        (1, None, 0.5, 1.5),  # jitter: up to one initial_delay more
        (3, None, 1.0, 5.0),
        (1, 30.0, 0.0, 30.0),  # Retry-After wins over a shorter backoff
        (4, 3.0, 0.0, 8.0),  # ... but never shortens it
    ],
)
def test_backoff(attempt, retry_after, jitter, delay):
    assert backoff(POLICY, attempt, retry_after, jitter) == delay


class Flaky:
    """Fails with the given errors in turn, then returns "done"."""

    def __init__(self, *errors: Exception) -> None:
        self.errors = list(errors)
        self.calls = 0

    def __call__(self) -> str:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return "done"


def test_transient_errors_are_retried_and_each_retry_is_one_log_line(caplog):
    caplog.set_level(logging.WARNING, logger="fedora_container_sync.retry")
    flaky = Flaky(TransientError("HTTP 503"), TransientError("connection reset"))
    assert call_with_retry(flaky, what="compose X: read of r:41", policy=FAST) == "done"
    assert flaky.calls == 3
    lines = [record.getMessage() for record in caplog.records]
    assert lines == [
        "retrying compose X: read of r:41 in 0.0s (attempt 2 of 3): HTTP 503",
        "retrying compose X: read of r:41 in 0.0s (attempt 3 of 3): connection reset",
    ]


def test_attempts_bound_the_retries():
    flaky = Flaky(*(TransientError(f"fail {n}") for n in range(5)))
    with pytest.raises(TransientError, match="fail 2"):
        call_with_retry(flaky, what="x", policy=FAST)
    assert flaky.calls == 3


@pytest.mark.parametrize(
    "error", [RegistryError("HTTP 401: not authorized"), PermanentError("bad"), ValueError("bug")]
)
def test_permanent_errors_are_never_retried(error, caplog):
    flaky = Flaky(error)
    with pytest.raises(type(error)):
        call_with_retry(flaky, what="x", policy=FAST)
    assert flaky.calls == 1
    assert caplog.records == []


def test_a_retry_after_beyond_the_time_budget_ends_the_retries(caplog):
    policy = RetrySettings(attempts=10, initial_delay=0.0, max_delay=0.0, max_total=5)
    flaky = Flaky(TransientError("HTTP 429", retry_after=3600))
    with pytest.raises(TransientError, match="HTTP 429"):
        call_with_retry(flaky, what="x", policy=policy)
    assert flaky.calls == 1  # it did not sleep an hour, nor retry early
    assert caplog.records == []


def test_retry_after_is_honoured(caplog):
    caplog.set_level(logging.WARNING, logger="fedora_container_sync.retry")
    flaky = Flaky(TransientError("HTTP 429", retry_after=0.2))
    assert call_with_retry(flaky, what="x", policy=FAST) == "done"
    assert "in 0.2s" in caplog.records[0].getMessage()
