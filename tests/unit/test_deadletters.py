"""Dead letters as replay input (pure parts of ``dead-letters``)."""

from __future__ import annotations

import datetime
import json

import pytest

from fedora_container_sync.bus.deadletters import death, queue_name, serialized
from fedora_container_sync.compose.message import read_message_file
from fedora_container_sync.errors import MessageError, UsageError

TOPIC = "org.fedoraproject.prod.pungi.compose.status.change"
BODY = {"compose_id": "Fedora-41-20241026.0", "status": "FINISHED", "location": "https://x/"}
X_DEATH = [
    {
        "count": 1,
        "reason": "delivery_limit",
        "queue": "fedora-container-sync",
        "time": datetime.datetime(2024, 10, 26, tzinfo=datetime.UTC),
        "exchange": "amq.topic",
        "routing-keys": [TOPIC],
    }
]
HEADERS = {
    "fedora_messaging_schema": "base.message",
    "fedora_messaging_severity": 20,
    "sent-at": "2024-10-26T00:00:00+00:00",
    "x-death": X_DEATH,
    "x-delivery-count": 0,
    "x-first-death-reason": "delivery_limit",
}


def test_a_dead_letter_becomes_a_line_replay_reads():
    letter = serialized(TOPIC, HEADERS, "d5ad", json.dumps(BODY).encode())
    assert (letter.label, letter.reason) == (
        "Fedora-41-20241026.0",
        "delivery_limit in fedora-container-sync (1 time)",
    )
    line = json.loads(letter.line)
    assert line["headers"] == {
        "fedora_messaging_schema": "base.message",
        "fedora_messaging_severity": 20,
    }
    (envelope,) = read_message_file(letter.line + "\n", source="dead.jsonl")
    assert (envelope.topic, envelope.body, envelope.id) == (TOPIC, BODY, "d5ad")


@pytest.mark.parametrize(
    ("body", "error"),
    [
        (b"\xff\xfe", "not UTF-8 JSON"),
        (b"[1, 2]", "not a JSON object"),
        (b"{" + b" " * (1024 * 1024) + b"}", "larger than"),
    ],
)
def test_a_dead_letter_that_is_not_a_message_is_refused(body, error):
    with pytest.raises(MessageError, match=error):
        serialized(TOPIC, {}, "d5ad", body)


@pytest.mark.parametrize(
    ("headers", "reason"),
    [
        ({"x-death": X_DEATH}, "delivery_limit in fedora-container-sync (1 time)"),
        ({"x-death": [{"reason": "rejected", "count": 2}]}, "rejected (2 times)"),
        ({}, "no x-death record"),
        ({"x-death": "garbage"}, "no x-death record"),
    ],
)
def test_death_says_why(headers, reason):
    assert death(headers) == reason


def test_the_queue_is_named_like_the_dead_letter_exchange():
    document = {
        "queues": {
            "fedora-container-sync": {
                "arguments": {"x-dead-letter-exchange": "fedora-container-sync.dead-letter"}
            }
        }
    }
    assert queue_name(document) == "fedora-container-sync.dead-letter"
    with pytest.raises(UsageError, match="pass --queue"):
        queue_name({"queues": {"q": {"arguments": {}}}})


def test_a_dead_letter_that_is_not_a_message_is_kept_byte_for_byte():
    import base64

    from fedora_container_sync.bus.deadletters import undecodable

    body = b"\xff\xfe not json"
    letter = undecodable(TOPIC, HEADERS, "d5ad", body, "dead letter d5ad: body is not UTF-8 JSON")
    line = json.loads(letter.line)
    assert base64.b64decode(line["body_base64"]) == body
    assert line["undecodable"] == "dead letter d5ad: body is not UTF-8 JSON"
    assert line["headers"] == {
        "fedora_messaging_schema": "base.message",
        "fedora_messaging_severity": 20,
    }
    assert (letter.label, letter.undecodable) == ("d5ad", line["undecodable"])
