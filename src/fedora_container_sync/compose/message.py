"""Pungi ``pungi.compose.status.change`` messages: what they say, and whether to act on them.

Pure: parses a message body (a dict) into a :class:`ComposeMessage`, checks its location
against the allowlist, and reads fedora-messaging's serialized message files (one JSON object
per line, what ``fedora-messaging record`` writes).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ..config.settings import describe_validation_error
from ..errors import MessageError, UsageError
from ..shown import shown
from . import urls

TOPIC_SUFFIX = "pungi.compose.status.change"
#: How deep JSON from a message may nest (objects and arrays). A Pungi body nests 1 level, a
#: serialized message 3; Python's own parser gives up near 1000 with a RecursionError.
MAX_JSON_DEPTH = 64
#: Statuses after which a compose's metadata is complete and its images may be published.
ACTIONABLE_STATUSES = frozenset({"FINISHED", "FINISHED_INCOMPLETE"})


class ComposeMessage(BaseModel):
    """The fields of a Pungi status-change body this project relies on."""

    model_config = ConfigDict(extra="ignore", frozen=True, strict=True)

    status: str
    compose_id: str
    location: str
    compose_type: str | None = None
    compose_label: str | None = None
    compose_date: str | None = None
    compose_respin: int | None = Field(default=None, ge=0, le=9999)
    release_short: str | None = None
    release_version: str | None = None


@dataclass(frozen=True)
class Envelope:
    """One serialized bus message: where it came from and its raw body."""

    topic: str
    body: Mapping[str, Any]
    id: str | None = None
    #: Where a message file holds it (``file:line``), for errors about it.
    where: str | None = None

    @property
    def is_compose_status(self) -> bool:
        return self.topic == TOPIC_SUFFIX or self.topic.endswith("." + TOPIC_SUFFIX)

    @property
    def status(self) -> str | None:
        status = self.body.get("status")
        return status if isinstance(status, str) else None

    @property
    def label(self) -> str:
        """How to name this message in a log line."""
        compose_id = self.body.get("compose_id")
        return str(compose_id) if isinstance(compose_id, str) else (self.id or self.topic)


def looks_like_pungi(body: Mapping[str, Any]) -> bool:
    """Does ``body`` have the fields of a Pungi status change (whatever its topic says)?"""
    return _PUNGI_FIELDS <= body.keys()


def needs_work(envelope: Envelope) -> bool:
    """True when the message is a compose status change to a status we publish on."""
    return envelope.is_compose_status and envelope.status in ACTIONABLE_STATUSES


#: A compose id as Pungi writes it (productmd's ``Compose.id``): release short name, version and
#: type parts, the date, an optional type suffix (``.n`` nightly, ``.t`` test, ``.ci``) and the
#: respin: ``Fedora-41-20241025.0``, ``Fedora-Rawhide-20241025.n.0``, ``Fedora-41-updates-
#: testing-20241025.0``. Nothing else: it names work dirs and goes into logs and annotations.
COMPOSE_ID = re.compile(
    r"[A-Za-z][A-Za-z0-9_]*(?:-[A-Za-z0-9_.+~]+)*?-[0-9]{8}(?:\.(?:n|t|ci|nightly|test))?"
    r"\.[0-9]{1,6}"
)
MAX_COMPOSE_ID = 128


def compose_id_problem(value: object) -> str | None:
    """Why ``value`` is not a compose id (:data:`COMPOSE_ID`, at most :data:`MAX_COMPOSE_ID`
    characters), or None when it is one."""
    if not isinstance(value, str):
        return "compose_id is not a string"
    if len(value) > MAX_COMPOSE_ID:
        return f"compose_id is {len(value)} characters long (at most {MAX_COMPOSE_ID})"
    if not value.isascii() or not COMPOSE_ID.fullmatch(value):
        return f"compose_id {shown(value)!r} is not a Pungi compose id"
    return None


def _where(body: Mapping[str, Any]) -> str:
    """How to name a message in its error: its compose id if it is one, else ``message``."""
    compose_id = body.get("compose_id")
    return str(compose_id) if compose_id_problem(compose_id) is None else "message"


def parse_compose_message(body: Mapping[str, Any], allowlist: Iterable[str]) -> ComposeMessage:
    """Validate an actionable body and its location; raise :class:`MessageError` if unusable."""
    if not isinstance(body, Mapping):
        raise MessageError("message body is not a JSON object")
    if nesting_exceeds(body, MAX_JSON_DEPTH):
        where = _where(body)
        raise MessageError(f"{where}: message body nests deeper than {MAX_JSON_DEPTH} levels")
    try:
        message = ComposeMessage.model_validate(dict(body))
    except ValidationError as error:
        raise MessageError(f"{_where(body)}: {describe_validation_error(error, 'body')}") from None
    problem = compose_id_problem(message.compose_id)
    if problem is not None:
        raise MessageError(f"message: {problem}")
    check_location(message.location, allowlist, compose_id=message.compose_id)
    return message


def nesting_exceeds(document: object, limit: int) -> bool:
    """True when parsed JSON nests objects and arrays more than ``limit`` levels deep.

    Iterative: a document too deep for Python's recursion is answered, not crashed on.
    """
    pending: list[tuple[object, int]] = [(document, 1)]
    while pending:
        value, depth = pending.pop()
        if isinstance(value, Mapping):
            children: Iterable[object] = value.values()
        elif isinstance(value, list):
            children = value
        else:
            continue
        if depth > limit:
            return True
        pending.extend((child, depth + 1) for child in children)
    return False


def check_location(location: str, allowlist: Iterable[str], *, compose_id: str) -> None:
    """Refuse a compose location that does not land under one of the allowlisted URL prefixes.

    Judged as the server will read it (:mod:`.urls`): scheme, host and port must match
    exactly, and the path's segments, percent-decoded once, must continue the prefix's on a
    segment boundary (a plain ``startswith`` would let ``https://host.evil`` pass
    ``https://host``). Encoded dots and separators, backslashes, ``;`` parameters and dot
    segments are refused outright.
    """
    parts = urlsplit(location)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise MessageError(f"{compose_id}: location {location!r} is not an http(s) URL")
    if "@" in parts.netloc or parts.query or parts.fragment:
        raise MessageError(
            f"{compose_id}: location {_redact(location)!r} must not carry credentials, "
            "a query or a fragment"
        )
    try:
        place = urls.parse_url(location)
    except urls.URLRefused as error:
        raise MessageError(f"{compose_id}: location {location!r} {error}") from None
    for prefix in allowlist:
        try:
            allowed = urls.parse_url(prefix)
        except urls.URLRefused:
            continue  # settings refuse such an entry; never let it widen the allowlist
        if allowed.contains(place):
            return
    raise MessageError(f"{compose_id}: location {location!r} is outside compose_url_allowlist")


def _redact(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}{parts.path}"


class _Headers(BaseModel):
    """The message headers fedora-messaging defines (others pass through unchecked)."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)

    fedora_messaging_severity: Literal[10, 20, 30, 40] | None = None
    fedora_messaging_schema: str | None = None
    fedora_messaging_schema_package: str | None = None
    sent_at: str | None = Field(default=None, alias="sent-at")


class SerializedMessage(BaseModel):
    """fedora-messaging's ``SERIALIZED_MESSAGE_SCHEMA``: one line of a message file.

    Validated here with pydantic rather than through ``fedora_messaging.message``, which
    costs more start-up time than a whole replay of an already-published compose.
    """

    model_config = ConfigDict(extra="allow", strict=True)

    topic: str
    body: dict[str, Any]
    headers: _Headers | None = None
    id: str | None = None
    queue: str | None = None
    priority: int | None = None


#: What a message file may hold, for the error that says a file holds something else.
EXPECTED = (
    "expected fedora-messaging's serialized messages, one JSON object with topic and body per "
    "line (as 'fedora-messaging record' writes); also read: one such message pretty-printed, a "
    "JSON array of them, a bare Pungi message body, or datagrepper's JSON"
)
#: The fields that make a JSON object a Pungi status-change body (with no envelope).
_PUNGI_FIELDS = frozenset({"compose_id", "status", "location"})


def read_message_file(text: str, *, source: str) -> list[Envelope]:
    """Parse a message file: fedora-messaging's serialized format, one JSON message object per
    line; or, when the whole file is one JSON document, a message pretty-printed, an array of
    messages, a bare Pungi body (its topic is implied) or datagrepper's JSON (one message, or
    a page of ``raw_messages``, replayed oldest first).

    Every message is checked before anything is done, so a bad file does no partial work.
    """
    whole = _whole_document(text, source)
    if whole is not None:
        document, where = whole
        envelopes = _envelopes(document, where)
    else:
        envelopes = []
        for number, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            where = f"{source}:{number}"
            envelopes.extend(_envelopes(_parse(line, where), where, nested=False))
    if not envelopes:
        raise UsageError(f"{source}: no messages; {EXPECTED}")
    return envelopes


def _whole_document(text: str, source: str) -> tuple[object, str] | None:
    """The file as one JSON document when it spans several lines (pretty-printed) or is an
    array; None when it is one message per line (or not JSON: the lines then say where)."""
    stripped = text.strip()
    if not stripped.startswith(("{", "[")):
        return None
    lines = [line for line in text.splitlines() if line.strip()]
    if len(lines) == 1 and stripped.startswith("{"):
        return None  # one serialized message per line, of one line
    try:
        document = json.loads(text)
    except RecursionError:
        raise UsageError(f"{source}: JSON nested deeper than {MAX_JSON_DEPTH} levels") from None
    except json.JSONDecodeError as error:
        if _parses(lines[0]):
            return None  # the first line is a message on its own: a file of lines
        raise UsageError(
            f"{source}:{error.lineno}: not JSON: {error.msg} (column {error.colno}); {EXPECTED}"
        ) from None
    except ValueError:
        raise UsageError(f"{source}: not JSON: a number with thousands of digits") from None
    if nesting_exceeds(document, MAX_JSON_DEPTH):
        raise UsageError(f"{source}: JSON nested deeper than {MAX_JSON_DEPTH} levels")
    return document, f"{source}:1"


def _parses(line: str) -> bool:
    try:
        json.loads(line)
    except (ValueError, RecursionError):
        return False
    return True


def _parse(line: str, where: str) -> object:
    try:
        document = json.loads(line)
    except json.JSONDecodeError as error:
        raise UsageError(f"{where}: not JSON: {error.msg}; {EXPECTED}") from None
    except ValueError:  # json.loads turns a number of over 4300 digits into an int first
        raise UsageError(f"{where}: not JSON: a number with thousands of digits") from None
    except RecursionError:  # far too deep for Python's parser
        raise UsageError(f"{where}: JSON nested deeper than {MAX_JSON_DEPTH} levels") from None
    if nesting_exceeds(document, MAX_JSON_DEPTH):
        raise UsageError(f"{where}: JSON nested deeper than {MAX_JSON_DEPTH} levels")
    return document


def _envelopes(document: object, where: str, *, nested: bool = True) -> list[Envelope]:
    """The messages one JSON value holds, told apart by their shape; anything else, or an
    object that could be more than one of them, is refused saying what is expected."""
    if isinstance(document, list) and nested and all(isinstance(i, dict) for i in document):
        found = []
        for position, item in enumerate(document, start=1):
            found.extend(_envelopes(item, f"{where}: item {position}", nested=False))
        return found
    if not isinstance(document, dict):
        raise UsageError(f"{where}: not a serialized message (a JSON object); {EXPECTED}")
    if "raw_messages" in document and nested and "topic" not in document:
        raw = document["raw_messages"]
        if not isinstance(raw, list):
            raise UsageError(f"{where}: datagrepper's raw_messages is not a JSON array")
        messages = [_datagrepper(item, f"{where}: raw_messages[{n}]") for n, item in enumerate(raw)]
        return [envelope for _, envelope in sorted(messages, key=lambda pair: pair[0])]
    if "msg" in document and "topic" in document and "body" not in document:
        return [_datagrepper(document, where)[1]]
    if "topic" not in document and "body" not in document and looks_like_pungi(document):
        return [Envelope(topic=TOPIC_SUFFIX, body=document, where=where)]
    try:
        message = SerializedMessage.model_validate(document)
    except ValidationError as error:
        reason = describe_validation_error(error, "message")
        raise UsageError(f"{where}: not a valid serialized message: {reason}; {EXPECTED}") from None
    return [Envelope(topic=message.topic, body=message.body, id=message.id, where=where)]


def _datagrepper(item: object, where: str) -> tuple[float, Envelope]:
    """One datagrepper message (``topic``, ``msg``, ``msg_id``, ``timestamp``) and its time."""
    if not isinstance(item, dict):
        raise UsageError(f"{where}: not a datagrepper message (a JSON object)")
    topic, body, ident = item.get("topic"), item.get("msg"), item.get("msg_id")
    timestamp = item.get("timestamp", 0)
    if not isinstance(topic, str) or not isinstance(body, dict):
        raise UsageError(f"{where}: not a datagrepper message: needs topic (text) and msg (object)")
    if not isinstance(ident, str | None):
        raise UsageError(f"{where}: not a datagrepper message: msg_id is not text")
    if isinstance(timestamp, bool) or not isinstance(timestamp, int | float):
        raise UsageError(f"{where}: not a datagrepper message: timestamp is not a number")
    return float(timestamp), Envelope(topic=topic, body=body, id=ident, where=where)
