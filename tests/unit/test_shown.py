"""One redaction for URLs and one escaping for text from outside (issue 20, classes 4 and 5)."""

from __future__ import annotations

import logging
import re

from hypothesis import given
from hypothesis import strategies as st

from fedora_container_sync import shown_logs
from fedora_container_sync.shown import escape, redact, redact_url, shown

CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


@given(st.text())
def test_escaped_text_holds_no_control_character_and_keeps_the_rest(text):
    escaped = escape(text)
    assert not CONTROL.search(escaped)
    if not CONTROL.search(text):
        assert escaped == text


@given(
    user=st.text(alphabet="abcdefgh", min_size=1, max_size=8),
    password=st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789", min_size=12, max_size=30),
    name=st.sampled_from(
        ["token", "access_token", "X-Amz-Signature", "sig", "api_key", "password"]
    ),
)
def test_a_url_s_secrets_are_redacted_wherever_it_appears(user, password, name):
    text = (
        f"fetch of http://{user}:{password}@host.example:8080/p?a=1 failed; "
        f"see https://bodhi.example/r/?{name}={password}&page=2"
    )
    out = shown(text)
    assert password not in out
    assert f"http://{user}:***@host.example:8080/p?a=1" in out
    assert "page=2" in out


def test_plain_urls_and_text_are_left_alone():
    text = "Bodhi https://bodhi.fedoraproject.org/releases/?page=2: HTTP 503"
    assert redact(text) == text
    assert redact_url("http://token@host/") == "http://***@host/"


def test_every_log_record_is_shown():
    shown_logs.install()
    record = logging.LogRecord("x", logging.ERROR, __file__, 1, "id %s at %s", None, None)
    record.args = ("a\x1b[2J\nERROR: forged", "http://u:secret1234@h/")
    message = logging.getLogRecordFactory()(
        "x", logging.ERROR, __file__, 1, "id %s at %s", record.args, None
    ).getMessage()
    assert "\n" not in message and "\x1b" not in message and "secret1234" not in message
