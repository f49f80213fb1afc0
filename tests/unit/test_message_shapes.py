"""Message files of other shapes than one serialized message per line: what can be read
unambiguously is read (a message pretty-printed, an array of them, a bare Pungi body,
datagrepper's JSON); anything else is one error that says what is expected."""

from __future__ import annotations

import json

import pytest

from fedora_container_sync.compose.message import (
    EXPECTED,
    TOPIC_SUFFIX,
    needs_work,
    read_message_file,
)
from fedora_container_sync.errors import UsageError

TOPIC = f"org.fedoraproject.prod.{TOPIC_SUFFIX}"
OLD = {"status": "FINISHED", "compose_id": "Fedora-41-20241025.0", "location": "https://k/c/"}
NEW = {**OLD, "compose_id": "Fedora-41-20241026.0"}


def serialized(body: dict, ident: str = "a1") -> dict:
    return {"topic": TOPIC, "body": body, "id": ident, "headers": {}}


def datagrepper(body: dict, ident: str, timestamp: float) -> dict:
    return {
        "topic": TOPIC,
        "msg": body,
        "msg_id": ident,
        "timestamp": timestamp,
        "headers": {"fedora_messaging_schema": "base.message"},
        "i": 0,
        "username": None,
    }


def read(document: object, *, indent: int | None = 2) -> list[tuple[str, str, str | None]]:
    text = json.dumps(document, indent=indent)
    return [(e.topic, e.body["compose_id"], e.id) for e in read_message_file(text, source="m")]


def test_a_pretty_printed_serialized_message():
    assert read(serialized(OLD)) == [(TOPIC, OLD["compose_id"], "a1")]


def test_an_array_of_serialized_messages_in_order():
    assert read([serialized(OLD, "a1"), serialized(NEW, "a2")], indent=None) == [
        (TOPIC, OLD["compose_id"], "a1"),
        (TOPIC, NEW["compose_id"], "a2"),
    ]


@pytest.mark.parametrize("indent", [None, 4])
def test_a_bare_pungi_body_is_a_compose_status_change(indent):
    (envelope,) = read_message_file(json.dumps(OLD, indent=indent), source="m")
    assert envelope.topic == TOPIC_SUFFIX and envelope.body == OLD
    assert needs_work(envelope)


def test_bare_pungi_bodies_one_per_line():
    text = json.dumps(OLD) + "\n" + json.dumps(NEW) + "\n"
    assert [e.body["compose_id"] for e in read_message_file(text, source="m")] == [
        OLD["compose_id"],
        NEW["compose_id"],
    ]


def test_one_datagrepper_message():
    assert read(datagrepper(OLD, "d1", 1729900000.0)) == [(TOPIC, OLD["compose_id"], "d1")]


def test_a_datagrepper_page_is_replayed_oldest_first():
    page = {
        "arguments": {"topic": [TOPIC]},
        "count": 2,
        "pages": 1,
        "total": 2,
        "raw_messages": [datagrepper(NEW, "d2", 1729990000.0), datagrepper(OLD, "d1", 1729900000)],
    }
    assert read(page) == [(TOPIC, OLD["compose_id"], "d1"), (TOPIC, NEW["compose_id"], "d2")]


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ({"compose_id": "x"}, "m:1: not a valid serialized message: "),
        ({"raw_messages": {"no": "list"}}, "m:1: datagrepper's raw_messages is not a JSON array"),
        ({"raw_messages": [{"topic": "t", "msg": "text"}]}, "needs topic (text) and msg (object)"),
        ([serialized(OLD), "FINISHED"], "m:1: not a serialized message (a JSON object)"),
    ],
)
def test_other_shapes_say_what_is_expected(document, message):
    with pytest.raises(UsageError) as caught:
        read_message_file(json.dumps(document, indent=2), source="m")
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)


def test_broken_pretty_printed_json_names_its_line_and_what_is_expected():
    text = json.dumps(serialized(OLD), indent=2).replace('"body"', "body", 1)
    with pytest.raises(UsageError) as caught:
        read_message_file(text, source="m.json")
    line = next(n for n, row in enumerate(text.splitlines(), 1) if row.strip().startswith("body"))
    assert str(caught.value).startswith(f"m.json:{line}: not JSON: ")
    assert str(caught.value).endswith(EXPECTED)
