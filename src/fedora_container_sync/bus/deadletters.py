"""``fedora-container-sync dead-letters``: move messages from the dead-letter queue to a file
that ``replay`` reads.

In the production shape (docs/running.md) the consumer's quorum queue hands a
message that was delivered more than ``x-delivery-limit`` times (it crashed or stalled its
consumer each time) or that the consumer dropped to its dead-letter exchange; the
dead-letter queue bound to it keeps the message, with the broker's ``x-death`` record of
why. ``fedora-messaging record`` cannot take them (it fails on the ``x-death`` timestamps),
hence this command: it reads each message off the queue, writes it in fedora-messaging's
serialized format (its original topic, body, id and ``fedora_messaging_*`` headers) to a new
file, and acknowledges the messages only once the file is on disk - a failure on the way
leaves them all in the queue.

A dead letter whose body is not a message (not UTF-8, not JSON, not a JSON object, larger than
:data:`MAX_BODY_BYTES`) is exactly the kind of message that ends there, so it is drained too:
it goes, bytes preserved, to a second new file ``OUTPUT.undecodable``, one JSON line each with
the marker ``"undecodable"`` (why), its topic, id, ``fedora_messaging_*`` headers and
``"body_base64"`` (the body exactly as the broker delivered it). ``OUTPUT`` keeps only what
``replay`` can read, so a bad letter never makes the good ones unreplayable.

:func:`serialized` and :func:`death` are pure; :func:`take` talks to the broker with pika,
using the same fedora-messaging config file (``amqp_url``, ``[tls]``) as the consumer.
"""

from __future__ import annotations

import base64
import json
import os
import ssl
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import ConfigError, MessageError, TransientError, UsageError, one_line

#: A dead letter larger than this is refused (Pungi's messages are a few hundred bytes).
MAX_BODY_BYTES = 1024 * 1024
_FM_HEADER = "fedora_messaging_"


@dataclass(frozen=True)
class DeadLetter:
    """One message taken from the queue: its serialized line and what the broker recorded."""

    line: str
    label: str
    reason: str
    #: why the body is not a message (the line then goes to ``OUTPUT.undecodable``), or None
    undecodable: str | None = None


def death(headers: Mapping[str, Any]) -> str:
    """Why and from where the broker dead-lettered a message, from its ``x-death``. Pure."""
    deaths = headers.get("x-death")
    if not isinstance(deaths, list) or not deaths or not isinstance(deaths[0], Mapping):
        return "no x-death record"
    first = deaths[0]
    reason = first.get("reason")
    queue = first.get("queue")
    count = first.get("count")
    what = f"{reason if isinstance(reason, str) else 'unknown reason'}"
    if isinstance(queue, str):
        what += f" in {queue}"
    if isinstance(count, int) and not isinstance(count, bool):
        what += f" ({count} time{'s' if count != 1 else ''})"
    return what


def serialized(
    routing_key: str, headers: Mapping[str, Any], message_id: str | None, body: bytes
) -> DeadLetter:
    """One line of fedora-messaging's serialized format for a dead letter. Pure.

    The dead-letter exchange keeps the original routing key, which is the message's topic.
    Only fedora-messaging's own headers are kept (not the broker's ``x-*`` bookkeeping).
    Raises :class:`MessageError` for a body that is not a JSON object of bounded size.
    """
    where = f"dead letter {message_id or routing_key}"
    if len(body) > MAX_BODY_BYTES:
        raise MessageError(f"{where}: body larger than {MAX_BODY_BYTES} bytes")
    try:
        document = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise MessageError(f"{where}: body is not UTF-8 JSON: {one_line(error)}") from None
    if not isinstance(document, dict):
        raise MessageError(f"{where}: body is not a JSON object")
    line = {
        "topic": routing_key,
        "body": document,
        "headers": _fm_headers(headers),
        "id": message_id,
    }
    compose_id = document.get("compose_id")
    label = compose_id if isinstance(compose_id, str) else (message_id or routing_key)
    return DeadLetter(json.dumps(line, ensure_ascii=False, sort_keys=True), label, death(headers))


def undecodable(
    routing_key: str, headers: Mapping[str, Any], message_id: str | None, body: bytes, why: str
) -> DeadLetter:
    """One line of ``OUTPUT.undecodable`` for a dead letter :func:`serialized` refused (``why``
    names what was wrong): the body in base64, exactly as delivered. Pure."""
    line = {
        "undecodable": why,
        "topic": routing_key,
        "headers": _fm_headers(headers),
        "id": message_id,
        "body_base64": base64.b64encode(body).decode("ascii"),
    }
    return DeadLetter(
        json.dumps(line, ensure_ascii=False, sort_keys=True),
        message_id or routing_key,
        death(headers),
        undecodable=why,
    )


def undecodable_path(output: Path) -> Path:
    """Where ``take`` saves the dead letters that are not messages."""
    return output.with_name(output.name + ".undecodable")


def _fm_headers(headers: Mapping[str, Any]) -> dict[str, Any]:
    return {
        key: value
        for key, value in headers.items()
        if key.startswith(_FM_HEADER) and isinstance(value, (str, int, bool))
    }


def queue_name(document: Mapping[str, Any]) -> str:
    """The dead-letter queue of the consumer's config: named like the dead-letter exchange
    (``x-dead-letter-exchange``) of its queue."""
    queues = document.get("queues")
    exchanges = set()
    if isinstance(queues, dict):
        for settings in queues.values():
            arguments = settings.get("arguments") if isinstance(settings, dict) else None
            if isinstance(arguments, dict) and arguments.get("x-dead-letter-exchange"):
                exchanges.add(str(arguments["x-dead-letter-exchange"]))
    if len(exchanges) != 1:
        raise UsageError(
            "the config's [queues] name no single x-dead-letter-exchange; pass --queue NAME"
        )
    return exchanges.pop()


def read_bus_config(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except FileNotFoundError:
        raise ConfigError(f"config file {path}: not found") from None
    except OSError as error:
        raise ConfigError(f"config file {path}: {error.strerror or error}") from None
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"config file {path}: invalid TOML: {error}") from None


def take(document: Mapping[str, Any], queue: str, output: Path, *, limit: int) -> list[DeadLetter]:
    """Move up to ``limit`` messages from ``queue`` into the new file ``output`` (and the ones
    that are not messages into the new file :func:`undecodable_path`)."""
    import pika
    import pika.exceptions

    rejects = undecodable_path(output)
    for path in (output, rejects):
        if path.exists():
            raise UsageError(f"{path}: exists; name a new file")
    try:
        connection = pika.BlockingConnection(_parameters(document))
    except pika.exceptions.AMQPError as error:
        raise TransientError(f"cannot connect to the broker: {one_line(error)}") from None
    try:
        channel = connection.channel()
        taken: list[DeadLetter] = []
        last_tag = None
        while len(taken) < limit:
            method, properties, body = channel.basic_get(queue, auto_ack=False)
            if method is None:
                break
            headers = properties.headers or {}
            try:
                letter = serialized(method.routing_key, headers, properties.message_id, body)
            except MessageError as error:
                letter = undecodable(
                    method.routing_key, headers, properties.message_id, body, str(error)
                )
            taken.append(letter)
            last_tag = method.delivery_tag
        good = "".join(letter.line + "\n" for letter in taken if letter.undecodable is None)
        bad = "".join(letter.line + "\n" for letter in taken if letter.undecodable is not None)
        if good:
            _write_new(output, good)
        if bad:
            _write_new(rejects, bad)
        if taken:
            channel.basic_ack(last_tag, multiple=True)
        return taken
    except pika.exceptions.ChannelClosedByBroker as error:
        raise UsageError(f"queue {queue}: {error.reply_text}") from None
    except pika.exceptions.AMQPError as error:
        raise TransientError(f"queue {queue}: {one_line(error)}") from None
    finally:
        if connection.is_open:
            connection.close()  # unacknowledged messages go back to the queue


def _write_new(path: Path, text: str) -> None:
    try:
        with path.open("x", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
    except OSError as error:
        raise UsageError(f"{path}: cannot write: {error.strerror or error}") from None


def _parameters(document: Mapping[str, Any]) -> Any:
    """pika connection parameters from fedora-messaging's ``amqp_url`` and ``[tls]``."""
    import pika

    url = document.get("amqp_url", "amqp://")
    if not isinstance(url, str):
        raise ConfigError("amqp_url: not a string")
    parameters = pika.URLParameters(url)
    parameters.client_properties = {"app": "fedora-container-sync dead-letters"}
    if url.startswith("amqps"):
        found = document.get("tls")
        tls: Mapping[str, Any] = found if isinstance(found, dict) else {}
        context = ssl.create_default_context(cafile=tls.get("ca_cert") or None)
        if tls.get("certfile") and tls.get("keyfile"):
            try:
                context.load_cert_chain(tls["certfile"], tls["keyfile"])
            except (OSError, ssl.SSLError) as error:
                raise ConfigError(f"[tls] certfile/keyfile: {one_line(error)}") from None
            parameters.credentials = pika.credentials.ExternalCredentials()
        parameters.ssl_options = pika.SSLOptions(context, parameters.host)
    return parameters
