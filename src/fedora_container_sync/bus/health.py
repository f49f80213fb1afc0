"""The consumer's own health endpoints: ``/live`` and ``/ready``, for the OpenShift probes.

fedora-messaging's ``[monitoring]`` server answers 200 on ``/ready`` whatever the state (its
body says ``"consuming"``, and that stays true while the broker is gone), so a probe on it
never takes a broken pod out. These endpoints answer 503 when the answer is no:

* ``/ready``: this process has a consumer registered with the broker on an open channel -
  consuming, or standing by on a single-active-consumer queue (RabbitMQ tells a standby
  nothing over AMQP 0-9-1; it is registered and gets no deliveries, and that is healthy).
* ``/live``: the process is not stuck - no compose in progress, or the one in progress
  finished a step (a line on the :data:`~fedora_container_sync.publish.progress.STEPS` logger) less
  than ``stuck_after`` seconds ago (default: twice ``skopeo_timeout``).

The decisions (:func:`readiness`, :func:`liveness`) are pure. The facts come from
fedora-messaging's running service (:func:`consumer_channels`, which reads its internals and
fails closed when they are not what it expects) and from :class:`ProgressWatch`, a filter
on the step logger. The server is Twisted's, in the reactor ``fedora-messaging consume``
runs: a reactor too blocked to answer fails the probe as well.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..errors import ConfigError
from ..publish.progress import STEPS

if TYPE_CHECKING:
    from ..config.settings import HealthSettings

_log = logging.getLogger(__name__)

#: (ok, JSON body) of one endpoint
Answer = tuple[bool, dict[str, Any]]


@dataclass(frozen=True)
class Channel:
    """One consumer fedora-messaging runs: its queue, and whether the broker has it."""

    queue: str
    registered: bool


def readiness(channels: list[Channel] | None) -> Answer:
    """Ready when every consumer is registered on an open channel. Pure.

    ``channels`` is None when fedora-messaging's state could not be read (not started yet,
    or internals this module does not understand): not ready.
    """
    if channels is None:
        return False, {"ready": False, "reason": "not connected to the broker yet"}
    if not channels:
        return False, {"ready": False, "reason": "no consumer registered"}
    down = [channel.queue for channel in channels if not channel.registered]
    body: dict[str, Any] = {"ready": not down, "queues": [channel.queue for channel in channels]}
    if down:
        body["reason"] = f"not consuming from {', '.join(down)}: no open channel to the broker"
    return not down, body


def liveness(
    now: float, busy: str | None, since: float, last_step: float | None, stuck_after: float
) -> Answer:
    """Live unless the compose in progress made no progress for longer than ``stuck_after``
    seconds. ``since`` is when it started, ``last_step`` when it last finished a step (times
    from one monotonic clock). Pure."""
    if busy is None:
        return True, {"live": True, "busy": None}
    progress = max(since, last_step) if last_step is not None else since
    quiet = max(0.0, now - progress)
    body: dict[str, Any] = {"live": True, "busy": busy, "seconds_since_progress": round(quiet)}
    if quiet > stuck_after:
        body["live"] = False
        body["reason"] = (
            f"compose {busy}: no progress for {quiet:.0f}s (stuck after {stuck_after:.0f}s)"
        )
    return bool(body["live"]), body


class ProgressWatch(logging.Filter):
    """Which compose is in progress, since when, and when it last finished a step.

    A filter on the step logger sees every step line, also when the log config shows only
    warnings: :meth:`install` then lets INFO records reach the filter, which drops those
    below the level that was configured, so the log shows exactly what it showed before.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self._clock = clock
        self._lock = threading.Lock()
        self._busy: str | None = None
        self._since = 0.0
        self._last_step: float | None = None
        self._shown = logging.NOTSET

    def install(self) -> None:
        logger = logging.getLogger(STEPS)
        self._shown = logger.getEffectiveLevel()
        if self._shown > logging.INFO:
            logger.setLevel(logging.INFO)
        logger.addFilter(self)

    def filter(self, record: logging.LogRecord) -> bool:
        with self._lock:
            self._last_step = self._clock()
        return record.levelno >= self._shown

    def begin(self, label: str) -> None:
        with self._lock:
            self._busy, self._since, self._last_step = label, self._clock(), None

    def end(self) -> None:
        with self._lock:
            self._busy = None

    def check(self, stuck_after: float) -> Answer:
        with self._lock:
            busy, since, last_step = self._busy, self._since, self._last_step
        return liveness(self._clock(), busy, since, last_step, stuck_after)


def consumer_channels() -> list[Channel] | None:
    """The consumers of the running ``fedora-messaging consume``, or None if unknown.

    fedora-messaging has no public API for this: its service is ``api._twisted_service``,
    whose factory keeps one record per consumer; a consumer is registered while it runs on an
    open channel (``consuming`` alone stays true while the broker is gone). Anything shaped
    otherwise (another fedora-messaging version) reads as unknown: not ready.
    """
    try:
        from fedora_messaging import api

        service = getattr(api, "_twisted_service", None)
        if service is None:
            return None
        channels = []
        for record in service.factory._consumers:
            consumer = record.consumer
            channel = consumer._channel
            registered = bool(consumer.running) and channel is not None and bool(channel.is_open)
            channels.append(Channel(str(consumer.queue), registered))
    except Exception:
        _log.warning("health: cannot read fedora-messaging's consumer state", exc_info=True)
        return None
    return channels


def serve(settings: HealthSettings, watch: ProgressWatch, stuck_after: float) -> None:
    """Listen on ``settings.address``:``settings.port`` in the Twisted reactor (it serves once
    ``fedora-messaging consume`` runs it). Raises :class:`ConfigError` if it cannot listen."""
    from twisted.internet import error, reactor
    from twisted.web import resource, server

    class Endpoint(resource.Resource):
        isLeaf = True

        def __init__(self, check: Callable[[], Answer]) -> None:
            super().__init__()  # type: ignore[no-untyped-call]
            self._check = check

        def render_GET(self, request: Any) -> bytes:
            try:
                ok, body = self._check()
            except Exception as failure:  # a bug must read as unhealthy, not as healthy
                ok, body = False, {"reason": f"health check failed: {type(failure).__name__}"}
            request.setResponseCode(200 if ok else 503)
            request.setHeader(b"Content-Type", b"application/json")
            return json.dumps(body).encode() + b"\n"

    class Site(server.Site):
        def log(self, request: Any) -> None:
            """No access log: the probes ask every few seconds."""

    # Twisted's zope interfaces defeat mypy here: the reactor and resources go untyped.
    root: Any = resource.Resource()  # type: ignore[no-untyped-call]
    root.putChild(b"live", Endpoint(lambda: watch.check(stuck_after)))
    root.putChild(b"ready", Endpoint(lambda: readiness(consumer_channels())))
    site: Any = Site(root)  # type: ignore[no-untyped-call]
    tcp: Any = reactor
    try:
        tcp.listenTCP(settings.port, site, interface=settings.address)
    except error.CannotListenError as failure:
        reason = getattr(failure.socketError, "strerror", None) or str(failure.socketError)
        raise ConfigError(
            f"health: cannot listen on {settings.address}:{settings.port}: {reason}"
        ) from None
    _log.info(
        "health endpoints on http://%s:%d/live and /ready (stuck after %.0fs without progress)",
        settings.address,
        settings.port,
        stuck_after,
    )
