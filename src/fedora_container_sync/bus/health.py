"""The consumer's own health endpoints: ``/live`` and ``/ready``, for the OpenShift probes.

fedora-messaging's ``[monitoring]`` server answers 200 on ``/ready`` whatever the state (its
body says ``"consuming"``, and that stays true while the broker is gone), so a probe on it
never takes a broken pod out. These endpoints answer 503 when the answer is no:

* ``/ready``: this process has a consumer registered with the broker on an open channel -
  consuming, or standing by on a single-active-consumer queue (RabbitMQ tells a standby
  nothing over AMQP 0-9-1; it is registered and gets no deliveries, and that is healthy).
  Without a connection to the broker it says so (``"broker": "unreachable"``, its address and
  for how long).
* ``/live``: the process is not stuck - no compose in progress, or the one in progress made
  progress less than ``stuck_after`` seconds ago (default: twice ``skopeo_timeout``):
  finished a step (a line on the :data:`~fedora_container_sync.publish.progress.STEPS`
  logger), received bytes of a download, or a skopeo run read or wrote bytes
  (:mod:`..activity`). A download or push that moves bytes is alive however long it takes.

While the broker is unreachable the consumer also logs it, one line every
:data:`BROKER_LOG_INTERVAL` seconds (fedora-messaging's reconnection attempts log nothing), and
one line when it is back (:class:`BrokerWatch`, polled by :func:`watch_broker`).

The decisions (:func:`readiness`, :func:`liveness`, :class:`BrokerWatch`) are pure. The facts
come from fedora-messaging's running service (:func:`consumer_channels`, which reads its
internals and fails closed when they are not what it expects) and from
:class:`ProgressWatch`, a filter on the step logger. The server is Twisted's, in the reactor
``fedora-messaging consume`` runs: a reactor too blocked to answer fails the probe as well.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from .. import activity
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


def readiness(channels: list[Channel] | None, unreachable: str | None = None) -> Answer:
    """Ready when every consumer is registered on an open channel. Pure.

    ``channels`` is None when fedora-messaging's state could not be read (not started yet,
    or internals this module does not understand): not ready. ``unreachable`` says how the
    broker cannot be reached (:meth:`BrokerWatch.unreachable`), None when it can.
    """
    if unreachable is not None:
        body: dict[str, Any] = {"ready": False, "broker": "unreachable"}
        if channels:
            body["queues"] = [channel.queue for channel in channels]
        body["reason"] = unreachable
        return False, body
    if channels is None:
        return False, {"ready": False, "reason": "not connected to the broker yet"}
    if not channels:
        return False, {"ready": False, "reason": "no consumer registered"}
    down = [channel.queue for channel in channels if not channel.registered]
    body = {"ready": not down, "queues": [channel.queue for channel in channels]}
    if down:
        body["reason"] = f"not consuming from {', '.join(down)}: no open channel to the broker"
    return not down, body


#: Seconds between two "broker unreachable" lines (the first after this long without one).
BROKER_LOG_INTERVAL = 30.0


def broker_address(amqp_url: str) -> str:
    """``host:port`` of an AMQP URL, never its user or password. Pure."""
    if not amqp_url:
        return "the broker"
    try:
        parts = urlsplit(amqp_url)
        port = parts.port or (5671 if parts.scheme == "amqps" else 5672)
        host = parts.hostname or "localhost"
    except ValueError:
        return "the broker"
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class BrokerWatch:
    """Whether the connection to the broker is up, since when it is not, and which line to
    log about it. Its clock is injected; :meth:`poll` is fed what :func:`broker_connected`
    reads."""

    def __init__(
        self,
        address: str,
        clock: Callable[[], float] = time.monotonic,
        interval: float = BROKER_LOG_INTERVAL,
    ) -> None:
        self.address = address
        self._clock = clock
        self._interval = interval
        self._lock = threading.Lock()
        self._down_since: float | None = None
        self._connected = False
        self._told: float | None = None

    def poll(self, connected: bool | None) -> str | None:
        """Record the connection's state (None: unknown, e.g. not started yet); return the
        line to log now, if any: while down, one each time the connection has been down for
        ``interval`` since the last one; once back, one if the outage was told."""
        now = self._clock()
        with self._lock:
            if connected:
                was_down, told = self._down_since, self._told
                self._connected, self._down_since, self._told = True, None, None
                if told is not None and was_down is not None:
                    return f"broker {self.address} reachable again after {now - was_down:.0f}s"
                return None
            self._connected = False
            if self._down_since is None:
                self._down_since = now
            down = now - self._down_since
            since = now - (self._told if self._told is not None else self._down_since)
            if since + 1e-9 < self._interval:
                return None
            self._told = now
            return (
                f"broker {self.address} unreachable: no connection for {down:.0f}s; "
                "consuming resumes when it is back"
            )

    def unreachable(self) -> str | None:
        """Why /ready says no because of the broker, or None (connected, or not known to be
        down yet)."""
        now = self._clock()
        with self._lock:
            if self._connected or self._down_since is None:
                return None
            return f"broker {self.address} unreachable for {now - self._down_since:.0f}s"


def liveness(
    now: float, busy: str | None, since: float, last_step: float | None, stuck_after: float
) -> Answer:
    """Live unless the compose in progress made no progress for longer than ``stuck_after``
    seconds. ``since`` is when it started, ``last_step`` when it last made progress (finished
    a step, or moved bytes; times from one monotonic clock). Pure."""
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


def io_moved(before: Mapping[int, int], after: Mapping[int, int]) -> bool:
    """Whether any counter moved, or a new one appeared, between two readings (keys: a
    skopeo's pid, its bytes read and written; :data:`DOWNLOADS`, the chunks downloads
    received). Pure."""
    return any(before.get(key) != count for key, count in after.items())


#: The key of the downloads' chunk count among the counters :func:`signs_of_life` reads.
DOWNLOADS = -1


def signs_of_life() -> dict[int, int]:
    """The counters of bytes on the move: each running skopeo's I/O, and downloads' chunks."""
    from ..registry.skopeo import running_pids

    return {**activity.io_of(running_pids()), DOWNLOADS: activity.moves()}


class ProgressWatch(logging.Filter):
    """Which compose is in progress, since when, and when it last made progress: finished a
    step, or moved bytes (``counters``, read at each check: :func:`signs_of_life`).

    A filter on the step logger sees every step line, also when the log config shows only
    warnings: :meth:`install` then lets INFO records reach the filter, which drops those
    below the level that was configured, so the log shows exactly what it showed before.
    """

    def __init__(
        self,
        clock: Callable[[], float] = time.monotonic,
        *,
        counters: Callable[[], dict[int, int]] = signs_of_life,
    ) -> None:
        super().__init__()
        self._clock = clock
        self._counters = counters
        self._lock = threading.Lock()
        self._busy: str | None = None
        self._since = 0.0
        self._last_step: float | None = None
        self._io_seen: dict[int, int] | None = None  # None: no reading yet, no baseline
        self._last_io: float | None = None
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
        counters = self._counters()
        now = self._clock()
        with self._lock:
            if self._io_seen is not None and io_moved(self._io_seen, counters):
                self._last_io = now
            self._io_seen = counters
            busy, since = self._busy, self._since
            signs = [sign for sign in (self._last_step, self._last_io) if sign is not None]
        return liveness(now, busy, since, max(signs) if signs else None, stuck_after)


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


def broker_connected() -> bool | None:
    """Whether the running ``fedora-messaging consume`` has a connection to the broker (its
    factory keeps the protocol of the connection it finished the AMQP handshake on); None when
    that cannot be read (not started yet, another fedora-messaging)."""
    try:
        from fedora_messaging import api

        service = getattr(api, "_twisted_service", None)
        if service is None:
            return None
        client = service.factory._client
        return client is not None and not bool(client.is_closed)
    except Exception:
        return None


def watch_broker(watch: BrokerWatch) -> None:
    """Poll :func:`broker_connected` into ``watch`` every few seconds in the Twisted reactor
    (from when ``fedora-messaging consume`` runs it), logging what :meth:`BrokerWatch.poll`
    says."""
    from twisted.internet import reactor, task

    def poll() -> None:
        line = watch.poll(broker_connected())
        if line is not None:
            (_log.warning if "unreachable" in line else _log.info)("%s", line)

    loop = task.LoopingCall(poll)
    loop.clock = reactor
    core: Any = reactor
    core.callWhenRunning(loop.start, 1.0, now=True)


def serve(
    settings: HealthSettings,
    watch: ProgressWatch,
    stuck_after: float,
    broker: BrokerWatch | None = None,
) -> None:
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
    root.putChild(
        b"ready",
        Endpoint(
            lambda: readiness(
                consumer_channels(), broker.unreachable() if broker is not None else None
            )
        ),
    )
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
