"""Result messages on the bus, derived from a finished run's :class:`ComposeReport`.

* For every repository whose index tags now serve the compose (moved by this run, or already
  there from an earlier delivery of the same message): ``ContainerPublishedV1`` from
  ``fedora-image-uploader-messages``, the schema Fedora's downstream consumers listen to.
  Registries where the same tags and arches were published share one message.
* For every index tag a guard held: :class:`~fedora_container_sync.schemas.TagHeldV1`.

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
from .platforms import sorted_arches
from .report import ComposeReport, TagAction, TagOutcome

if TYPE_CHECKING:
    from fedora_messaging.message import Message

_log = logging.getLogger(__name__)

#: the index tag now serves this compose's index
_SERVES_COMPOSE = frozenset({TagAction.PUBLISHED, TagAction.UNCHANGED})


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


def published_repositories(report: ComposeReport) -> list[PublishedRepository]:
    """One entry per repository and distinct (tags, arches) set, in the order of the run."""
    if report.dry_run or report.release is None:
        return []
    served: dict[tuple[str, str], tuple[list[str], set[str]]] = {}
    for outcome in report.tags:
        if outcome.action not in _SERVES_COMPOSE or outcome.decision is None:
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
    """Index tags a guard held in this (real) run."""
    return [outcome for outcome in report.tags if outcome.action is TagAction.HELD]


def held_body(report: ComposeReport, outcome: TagOutcome) -> dict[str, Any]:
    """The body of one ``TagHeldV1``."""
    decision = outcome.decision
    return {
        "compose_id": report.compose_id,
        "release": report.release,
        "registry": outcome.registry,
        "repository": outcome.repository,
        "tag": outcome.tag,
        "verdict": outcome.action.value,
        "reason": outcome.reason,
        "missing_arches": sorted_arches(decision.missing) if decision else [],
        "current_arches": sorted_arches(decision.current_arches or ()) if decision else [],
        "compose_arches": sorted_arches(decision.compose_arches) if decision else [],
    }


def result_messages(report: ComposeReport) -> list[Message]:
    """The messages a finished run announces: published repositories, then held tags."""
    published = published_repositories(report)
    held = [] if report.dry_run or report.release is None else held_tags(report)
    if not published and not held:
        return []
    from fedora_image_uploader_messages import ContainerPublishedV1

    from .schemas import TagHeldV1

    messages: list[Message] = [ContainerPublishedV1(body=entry.body()) for entry in published]
    messages += [TagHeldV1(body=held_body(report, outcome)) for outcome in held]
    return messages


def announce(report: ComposeReport, publisher: BusPublisher) -> int:
    """Send the result messages of ``report``; return how many were sent.

    Raises :class:`TransientError` (broker unreachable, timeout) or :class:`PermanentError`
    (the broker forbids the topic, or a message does not match its schema).
    """
    messages = result_messages(report)
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
