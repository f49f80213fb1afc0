import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fedora_container_sync.compose.message import (
    MAX_JSON_DEPTH,
    Envelope,
    check_location,
    needs_work,
    parse_compose_message,
    read_message_file,
)
from fedora_container_sync.errors import MessageError, UsageError

ALLOW = ["https://kojipkgs.fedoraproject.org/compose/"]
TOPIC = "org.fedoraproject.prod.pungi.compose.status.change"
BODY = {
    "status": "FINISHED",
    "compose_id": "Fedora-41-20241025.0",
    "location": "https://kojipkgs.fedoraproject.org/compose/41/Fedora-41-20241025.0/compose",
    "compose_type": "production",
    "compose_label": "RC-1.4",
    "compose_respin": 0,
    "compose_date": "20241025",
    "release_short": "Fedora",
    "release_version": "41",
}


@pytest.mark.parametrize(
    ("topic", "status", "work"),
    [
        (TOPIC, "FINISHED", True),
        (TOPIC, "FINISHED_INCOMPLETE", True),
        ("org.fedoraproject.stg.pungi.compose.status.change", "FINISHED", True),
        (TOPIC, "STARTED", False),
        (TOPIC, "DOOMED", False),
        (TOPIC, "TERMINATED", False),
        (TOPIC, "finished", False),
        ("org.fedoraproject.prod.pungi.compose.ostree", "FINISHED", False),
        ("org.fedoraproject.prod.hotness.update.drop", "FINISHED", False),
    ],
)
def test_only_finished_compose_status_does_work(topic, status, work):
    assert needs_work(Envelope(topic, {**BODY, "status": status})) is work


def test_parses_a_real_shaped_body():
    message = parse_compose_message(BODY, ALLOW)
    assert message.compose_id == "Fedora-41-20241025.0"
    assert message.compose_label == "RC-1.4"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"location": None}, r"body\.location"),
        ({"compose_id": 41}, r"body\.compose_id"),
        ({"compose_respin": "0"}, r"body\.compose_respin"),
    ],
)
def test_bad_bodies(change, message):
    body = {**BODY, **change}
    with pytest.raises(MessageError, match=message):
        parse_compose_message(body, ALLOW)


def test_missing_location():
    body = dict(BODY)
    del body["location"]
    with pytest.raises(MessageError, match=r"body\.location: required key is missing"):
        parse_compose_message(body, ALLOW)


@pytest.mark.parametrize(
    "location",
    [
        "https://kojipkgs.fedoraproject.org/compose/41/x/compose",
        "https://kojipkgs.fedoraproject.org/compose",
        "https://KOJIPKGS.fedoraproject.org/compose/x",
        "HTTPS://kojipkgs.fedoraproject.org:443/compose/x",
        "https://kojipkgs.fedoraproject.org/compose/41/%46edora-41/compose/",
    ],
)
def test_allowed_locations(location):
    check_location(location, ALLOW, compose_id="c")


@pytest.mark.parametrize(
    "location",
    [
        "https://kojipkgs.fedoraproject.org.evil.example/compose/x",
        "https://evil.example/compose/x",
        "http://kojipkgs.fedoraproject.org/compose/x",
        "https://kojipkgs.fedoraproject.org:8443/compose/x",
        "https://kojipkgs.fedoraproject.org/composed/x",
        "https://kojipkgs.fedoraproject.org/compose/../secret",
        "https://user:pw@kojipkgs.fedoraproject.org/compose/x",
        "https://kojipkgs.fedoraproject.org/compose/x?y=1",
        "file:///compose/x",
        "kojipkgs.fedoraproject.org/compose/x",
        # what a server decodes or normalizes into somewhere else
        "https://kojipkgs.fedoraproject.org/compose/%2e%2e/secret",
        "https://kojipkgs.fedoraproject.org/compose/%2E./secret",
        "https://kojipkgs.fedoraproject.org/compose/%252e%252e/secret",
        "https://kojipkgs.fedoraproject.org/compose/..%2fsecret",
        "https://kojipkgs.fedoraproject.org/compose/x%5c..%5c..%5csecret",
        "https://kojipkgs.fedoraproject.org/compose/..;/secret",
        "https://kojipkgs.fedoraproject.org/compose/x\\..\\..\\secret",
        "https://kojipkgs.fedoraproject.org/compose//secret",
        "https://kojipkgs.fedoraproject.org/compose/x%00",
        "https://kojipkgs.fedoraproject.org/compose/\uff0e\uff0e/secret",
        "https://kojipkgs.fedoraproject.org./compose/x",
        "https://kojipkgs.fedoraproject.org:0443/compose/x",
        "https://\uff4bojipkgs.fedoraproject.org/compose/x",
        "https://evil.example\\@kojipkgs.fedoraproject.org/compose/x",
        "https://u:pw@kojipkgs.fedoraproject.org:99999/compose/x",
    ],
)
def test_refused_locations(location):
    with pytest.raises(MessageError) as caught:
        check_location(location, ALLOW, compose_id="c")
    assert "pw" not in str(caught.value)
    assert "\n" not in str(caught.value)


def serialized(body, topic=TOPIC):
    return json.dumps({"topic": topic, "body": body, "id": "0b4c"})


def test_reads_serialized_messages_in_order():
    text = "\n".join([serialized(BODY), "", serialized({**BODY, "status": "STARTED"})])
    envelopes = read_message_file(text, source="f")
    assert [e.status for e in envelopes] == ["FINISHED", "STARTED"]
    assert envelopes[0].label == "Fedora-41-20241025.0"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{not json", r"f:1: not JSON"),
        ("[1, 2]", r"f:1: not a serialized message"),
        (json.dumps({"body": {}}), r"f:1: not a valid serialized message"),
        (serialized(BODY) + "\n" + json.dumps({"topic": "t", "body": []}), r"f:2: not a valid"),
        ("", r"f: no messages"),
    ],
)
def test_malformed_message_files(text, message):
    with pytest.raises(UsageError, match=message):
        read_message_file(text, source="f")


def test_reads_what_fedora_messaging_dumps_writes():
    from fedora_messaging import message as fm_message

    original = fm_message.Message(topic=TOPIC, body=BODY)
    envelopes = read_message_file(fm_message.dumps(original), source="f")
    assert len(envelopes) == 1
    assert envelopes[0].topic == TOPIC
    assert envelopes[0].body == BODY
    assert envelopes[0].id == original.id


def test_bad_headers_are_refused():
    line = json.dumps({"topic": TOPIC, "body": BODY, "headers": {"fedora_messaging_severity": 5}})
    with pytest.raises(UsageError, match=r"f:1: .*headers\.fedora_messaging_severity"):
        read_message_file(line, source="f")


# -- depth and size of the JSON in a message -----------------------------------------------------


def nest(depth: int, shape: list[bool], leaf: object) -> object:
    """``depth`` levels of objects (True) and arrays (False), in the order ``shape`` cycles."""
    value = leaf
    for level in range(depth):
        value = {"k": value} if shape[level % len(shape)] else [value]
    return value


def depth_of(value: object) -> int:
    """Levels of objects and arrays, computed differently from the code under test."""
    text = json.dumps(value)
    depth = deepest = 0
    for character in text:  # the test values hold no strings with brackets
        if character in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif character in "]}":
            depth -= 1
    return deepest


@given(
    depth=st.integers(min_value=0, max_value=MAX_JSON_DEPTH + 40),
    shape=st.lists(st.booleans(), min_size=1, max_size=5),
    leaf=st.one_of(st.integers(), st.text(alphabet="abc", max_size=3), st.none()),
    where=st.sampled_from(["body", "headers"]),
)
@settings(max_examples=200)
def test_a_message_file_line_nested_too_deep_is_refused_naming_the_line(depth, shape, leaf, where):
    deep = nest(depth, shape, leaf)
    line = {"topic": TOPIC, "body": {**BODY}, "headers": {}}
    line[where]["x"] = deep  # one level for the message, one for body or headers
    text = json.dumps({"topic": TOPIC, "body": BODY}) + "\n" + json.dumps(line) + "\n"
    if depth_of(line) <= MAX_JSON_DEPTH:
        assert len(read_message_file(text, source="m.jsonl")) == 2
    else:
        with pytest.raises(
            UsageError, match=rf"^m\.jsonl:2: JSON nested deeper than {MAX_JSON_DEPTH} levels$"
        ):
            read_message_file(text, source="m.jsonl")


@pytest.mark.parametrize("depth", [1_000, 100_000])
def test_nesting_beyond_pythons_recursion_limit_is_one_usage_error(depth):
    text = '{"topic": "t", "body": {"x": ' + "[" * depth + "]" * depth + "}}\n"
    with pytest.raises(UsageError, match=r"^m:1: JSON nested deeper than"):
        read_message_file(text, source="m")


def test_a_number_of_thousands_of_digits_is_not_json_we_read():
    text = '{"topic": "t", "body": {"compose_respin": ' + "7" * 5000 + "}}\n"
    with pytest.raises(UsageError, match=r"^m:1: not JSON: a number with thousands of digits$"):
        read_message_file(text, source="m")


@given(depth=st.integers(min_value=MAX_JSON_DEPTH, max_value=MAX_JSON_DEPTH + 3000))
@settings(max_examples=25)
def test_a_bus_body_nested_too_deep_is_dropped_naming_the_compose(depth):
    body = {**BODY, "extra": nest(depth, [True, False], 1)}
    with pytest.raises(MessageError, match=r"^Fedora-41-20241025\.0: message body nests deeper"):
        parse_compose_message(body, ALLOW)


@pytest.mark.parametrize("respin", [-1, 10_000, 10**4000])
def test_respin_out_of_range_is_refused(respin):
    with pytest.raises(MessageError, match="compose_respin"):
        parse_compose_message({**BODY, "compose_respin": respin}, ALLOW)
