"""Sending this project's messages on the bus (fedora-messaging).

A run's result messages (:func:`announce`: ``ContainerPublishedV1`` from
``fedora-image-uploader-messages``, and :class:`~.schemas.TagHeldV1`; what goes out is decided
by :mod:`.results`) and the audit's findings (:func:`publish_findings`,
:class:`~.schemas.AuditFindingV1`). Every send goes through ``fedora_messaging.api.publish``
(topic prefix, exchange and broker from the fedora-messaging config), and its errors are
translated into ours. fedora_messaging is imported only when something is sent: ``replay``
without result messages never pays for it.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import ConfigError, PermanentError, TransientError, one_line
from ..publish.report import ComposeReport
from .results import held_body, held_tags, published_moves

if TYPE_CHECKING:
    from fedora_messaging.message import Message

    from ..audit.findings import Finding
    from .schemas import AuditFindingV1

_log = logging.getLogger(__name__)


def result_messages(
    report: ComposeReport, *, unchanged: bool = False, held: bool = True
) -> list[Message]:
    """The messages a finished run announces: its moves (one message each, its id a function
    of the move), then held and stale tags (see :mod:`.results` for ``unchanged``).
    ``held=False``: the moves only (a run that is requeued announces its moves now; what it
    held, the delivery that ends it does)."""
    published = published_moves(report, unchanged=unchanged)
    kept = report.dry_run or report.release is None or not held
    held_outcomes = [] if kept else held_tags(report)
    if not published and not held_outcomes:
        return []
    from fedora_image_uploader_messages import ContainerPublishedV1
    from fedora_messaging.message import INFO

    from .schemas import TagHeldV1

    messages: list[Message] = []
    for entry in published:
        moved = ContainerPublishedV1(body=entry.body())
        moved.id = entry.message_id  # the same move announced again: the same id
        messages.append(moved)
    for outcome in held_outcomes:
        # A stale tag is the normal end of a late older compose: news, not a warning.
        severity = INFO if outcome.stale else None
        messages.append(TagHeldV1(body=held_body(report, outcome), severity=severity))
    return messages


def announce(
    report: ComposeReport, publisher: BusPublisher, *, unchanged: bool = False, held: bool = True
) -> int:
    """Send the result messages of ``report`` (see :func:`result_messages`); return how many
    were sent.

    Raises :class:`TransientError` (broker unreachable, timeout) or :class:`PermanentError`
    (the broker forbids the topic, or a message does not match its schema).
    """
    messages = result_messages(report, unchanged=unchanged, held=held)
    for message in messages:
        publisher.send(message, compose_id=report.compose_id)
    return len(messages)


class BusPublisher:
    """Sends messages with ``fedora_messaging.api.publish``.

    ``config_path`` is loaded into fedora-messaging's config before the first send (``replay
    --config``); the consumer leaves it None, since ``fedora-messaging consume`` has loaded it.
    """

    def __init__(self, config_path: Path | None = None, *, timeout: int = 30) -> None:
        self._config_path = config_path
        self._timeout = timeout
        self._ready = False

    def send(self, message: Message, *, compose_id: str) -> None:
        import jsonschema
        from fedora_messaging import api
        from fedora_messaging import exceptions as fm

        self._prepare()
        what = f"compose {compose_id}: sending {message.topic}"
        try:
            api.publish(message, timeout=self._timeout)
        except fm.PublishForbidden as error:
            raise PermanentError(f"{what}: the broker forbids it: {_clean(error)}") from None
        except (jsonschema.ValidationError, fm.ValidationError) as error:
            reason = getattr(error, "message", None) or one_line(error)
            raise PermanentError(f"{what}: does not match its schema: {reason}") from None
        except (fm.PublishException, fm.ConnectionException) as error:
            raise TransientError(f"{what}: {_clean(error)}") from None
        _log.info("compose %s: sent %s: %s", compose_id, message.topic, message.summary)

    def _prepare(self) -> None:
        if self._ready:
            return
        if self._config_path is not None:
            from fedora_messaging import config
            from fedora_messaging import exceptions as fm

            try:
                config.conf.load_config(config_path=str(self._config_path))
            except fm.ConfigurationException as error:
                raise ConfigError(f"config file {self._config_path}: {_clean(error)}") from None
            _no_monitoring(config.conf)
        _use_running_reactor()
        self._ready = True


def _use_running_reactor() -> None:
    """Inside ``fedora-messaging consume`` the Twisted reactor already runs: tell crochet, or
    ``api.publish`` tries to start a second one (and logs a ReactorAlreadyRunning traceback).
    Elsewhere (``replay``) crochet starts the reactor in a thread, as usual."""
    from twisted.internet import reactor

    if getattr(reactor, "running", False):
        import crochet

        try:
            crochet.no_setup()
        except RuntimeError:
            pass  # crochet is already set up; nothing to do


_USERINFO = re.compile(r"(?<=://)[^/@\s]*@")


def _clean(error: BaseException) -> str:
    """One line, with any ``user:password@`` of a URL removed."""
    return _USERINFO.sub("", one_line(error))


# -- the audit's findings --------------------------------------------------------------------


def finding_message(finding: Finding) -> AuditFindingV1:
    """The bus message of one audit finding: topic ``<schema>.<kind>``, severity as its own."""
    from fedora_messaging import message

    from ..audit.findings import Severity
    from .schemas import AUDIT_FINDING, AuditFindingV1

    severity = {
        Severity.ERROR: message.ERROR,
        Severity.WARNING: message.WARNING,
        Severity.INFO: message.INFO,
    }[finding.severity]
    return AuditFindingV1(
        body=finding.as_json(), topic=f"{AUDIT_FINDING}.{finding.kind.value}", severity=severity
    )


def load_bus_config(path: Path) -> None:
    """Load fedora-messaging's own settings (broker URL, topic prefix, TLS) from ``path``."""
    from fedora_messaging import config, exceptions

    try:
        config.conf.load_config(str(path))
    except exceptions.ConfigurationException as error:
        raise ConfigError(f"config file {path}: {one_line(error)}") from None
    _no_monitoring(config.conf)


def _no_monitoring(conf: Any) -> None:
    """The command line sends with the consumer's own config: leave its ``[monitoring]``
    server to the consumer. ``api.publish`` would start one on the same port (fedora-messaging
    serves it from every process that starts its Twisted service), and beside a running
    consumer that ends the run with "Address already in use" before anything is sent."""
    conf["monitoring"] = {}


def publish_findings(findings: Sequence[Finding], *, timeout: int = 30) -> int:
    """Send one message per finding (after :func:`load_bus_config`); return how many went.

    Stops at the first failure: a broker that does not answer would otherwise cost the timeout
    once per finding.
    """
    from fedora_messaging import api, exceptions
    from jsonschema import ValidationError as SchemaError

    sent = 0
    for finding in findings:
        outgoing = finding_message(finding)
        try:
            outgoing.validate()
            api.publish(outgoing, timeout=timeout)
        except (exceptions.PublishTimeout, exceptions.ConnectionException) as error:
            raise TransientError(
                f"audit messages: {sent} of {len(findings)} sent, then the broker failed: "
                f"{one_line(error)}"
            ) from None
        except (exceptions.BaseException, SchemaError) as error:  # returned, forbidden, invalid
            raise PermanentError(
                f"audit messages: {sent} of {len(findings)} sent, then: {one_line(error)}"
            ) from None
        _log.info("audit: sent %s (%s)", outgoing.summary, outgoing.id)
        sent += 1
    return sent
