"""Result messages on the bus, derived from a finished run's :class:`ComposeReport`.

* For every repository of which this run moved an index tag: ``ContainerPublishedV1`` from
  ``fedora-image-uploader-messages``, the schema Fedora's downstream consumers listen to. It
  lists every registry and tag that now serves the compose (moved now, or by an earlier
  delivery); registries where the same tags and arches serve it share one message. A run
  that moved nothing (a redelivery after the work was done, a no-op replay) announces
  nothing, so downstream acts once per move - unless ``unchanged`` asks for the repositories
  whose tags already served the compose too (``replay --announce``, or a redelivery whose
  earlier delivery died between moving the tags and announcing them; see the consumer).
* For every index tag a guard did not move: :class:`~fedora_container_sync.schemas.TagHeldV1`,
  ``verdict`` "held" (the gate: an arch would have been lost, or failed in this run) or
  "stale" (the rollback guard: the tag serves a newer compose).

What to send is decided purely (:func:`published_repositories`, :func:`held_tags`);
:class:`BusPublisher` sends with ``fedora_messaging.api.publish`` (topic prefix, exchange and
broker from the fedora-messaging config) and translates its errors into ours. fedora_messaging
is imported only when something is sent: ``replay`` without result messages never pays for it.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import ConfigError, PermanentError, TransientError, one_line
from .oci.platforms import sorted_arches
from .report import ComposeReport, TagAction, TagOutcome

if TYPE_CHECKING:
    from fedora_messaging.message import Message

_log = logging.getLogger(__name__)

#: the index tag now serves this compose's index
_SERVES_COMPOSE = frozenset({TagAction.PUBLISHED, TagAction.UNCHANGED})
#: ``TagHeldV1`` verdicts: the gate held the tag, or the rollback guard kept a newer compose
HELD = "held"
STALE = "stale"


@dataclass(frozen=True)
class PublishedRepository:
    """The body of one ``ContainerPublishedV1``: every registry x every tag holds the index."""

    compose_id: str
    release: int
    repository: str
    tags: tuple[str, ...]
    registries: tuple[str, ...]
    architectures: tuple[str, ...]

    def body(self) -> dict[str, Any]:
        return {
            "architectures": list(self.architectures),
            "compose_id": self.compose_id,
            "registries": list(self.registries),
            "release": self.release,
            "repository": self.repository,
            "tags": list(self.tags),
        }


def published_repositories(
    report: ComposeReport, *, unchanged: bool = False
) -> list[PublishedRepository]:
    """One entry per repository and distinct (tags, arches) set, in the order of the run:
    the repositories of which this run moved an index tag (``unchanged``: also those whose
    index tags already served the compose)."""
    if report.dry_run or report.release is None:
        return []
    moved = {o.repository for o in report.tags if o.action is TagAction.PUBLISHED}
    served: dict[tuple[str, str], tuple[list[str], set[str]]] = {}
    for outcome in report.tags:
        if outcome.action not in _SERVES_COMPOSE or outcome.decision is None:
            continue
        if outcome.repository not in moved and not unchanged:
            continue
        tags, arches = served.setdefault((outcome.repository, outcome.registry), ([], set()))
        tags.append(outcome.tag)
        arches.update(outcome.decision.compose_arches)
    grouped: dict[tuple[str, tuple[str, ...], tuple[str, ...]], list[str]] = {}
    for (repository, registry), (tags, arches) in served.items():
        key = (repository, tuple(tags), tuple(sorted_arches(arches)))
        grouped.setdefault(key, []).append(registry)
    return [
        PublishedRepository(
            report.compose_id, report.release, repository, tags, tuple(registries), arches
        )
        for (repository, tags, arches), registries in grouped.items()
    ]


def held_tags(report: ComposeReport) -> list[TagOutcome]:
    """Index tags a guard did not move in this (real) run: held or stale."""
    return [outcome for outcome in report.tags if outcome.action is TagAction.HELD]


def held_body(report: ComposeReport, outcome: TagOutcome) -> dict[str, Any]:
    """The body of one ``TagHeldV1``."""
    decision = outcome.decision
    body: dict[str, Any] = {
        "compose_id": report.compose_id,
        "release": report.release,
        "registry": outcome.registry,
        "repository": outcome.repository,
        "tag": outcome.tag,
        "verdict": STALE if outcome.stale else HELD,
        "reason": outcome.reason,
        "missing_arches": sorted_arches(decision.missing) if decision else [],
        "current_arches": sorted_arches(decision.current_arches or ()) if decision else [],
        "compose_arches": sorted_arches(decision.compose_arches) if decision else [],
    }
    if outcome.stale and decision is not None and decision.holder:
        body["newer_compose"] = decision.holder
    return body


def result_messages(report: ComposeReport, *, unchanged: bool = False) -> list[Message]:
    """The messages a finished run announces: published repositories, then held and stale
    tags (see the module docstring for ``unchanged``)."""
    published = published_repositories(report, unchanged=unchanged)
    held = [] if report.dry_run or report.release is None else held_tags(report)
    if not published and not held:
        return []
    from fedora_image_uploader_messages import ContainerPublishedV1
    from fedora_messaging.message import INFO

    from .schemas import TagHeldV1

    messages: list[Message] = [ContainerPublishedV1(body=entry.body()) for entry in published]
    for outcome in held:
        # A stale tag is the normal end of a late older compose: news, not a warning.
        severity = INFO if outcome.stale else None
        messages.append(TagHeldV1(body=held_body(report, outcome), severity=severity))
    return messages


def announce(report: ComposeReport, publisher: BusPublisher, *, unchanged: bool = False) -> int:
    """Send the result messages of ``report``; return how many were sent.

    Raises :class:`TransientError` (broker unreachable, timeout) or :class:`PermanentError`
    (the broker forbids the topic, or a message does not match its schema).
    """
    messages = result_messages(report, unchanged=unchanged)
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
