"""The fedora-messaging consumer: ``callback = "fedora_container_sync.consumer:Consumer"``.

``fedora-messaging consume`` builds one :class:`Consumer` (which reads and checks
``[consumer_config.container]`` once) and calls it for each message, serially, in a worker
thread. A message runs through the same code as ``replay``
(:func:`~.publish.pipeline.handle_envelope`, then :func:`~.bus.notify.announce`), and its
outcome becomes the broker's answer, as :mod:`.bus.answers` decides it: ack (return normally),
requeue (``Nack`` after a growing delay), drop (``Drop``, with one log line naming the compose
and the reason) or halt (``HaltConsumer``: the configuration is unusable, the message stays
queued).

The message is acknowledged only when this returns, i.e. after the registries were written and
the result messages were sent; a consumer killed on the way leaves it on the queue, and the
redelivered message completes idempotently (pushes of unchanged digests and writes of an
identical index are skipped).

``ContainerPublishedV1`` goes out for the index tags a run moved (see :mod:`.bus.results`),
by the run that moved them: also when the run then failed and its message is requeued, and
when a stop or a lost channel cut it short (the moves are announced before the ``Nack``; what
it held, the delivery that ends the message announces). Each move is one message whose id is
a function of the move, so a move announced again is a duplicate by id. A redelivery
(``x-delivery-count`` above 0) announces every tag that already serves the compose too -
unless the delivery just before it was this process's and owed nothing (:mod:`.bus.ledger`):
an earlier delivery may have been killed (``kill -9``, OOM) between an index write and its
announcement, and the broker cannot tell such a kill from a lost channel. A tag that delivery
had announced goes out again under the same id; one it had not, for the first time. The same
holds for a send that failed here (the next delivery here announces what serves the compose).
See docs/messages.md.

With ``[consumer_config.container.health]``, ``__init__`` also starts the ``/live`` and
``/ready`` endpoints of :mod:`.bus.health`.

A stop (SIGTERM: fedora-messaging's shutdown, which waits for the message in progress) cuts
that message's run short: its skopeo children are ended, no more work starts (an index write in
flight completes, and counts as a move), its auth files and run directory are removed, the
moves it made are announced, and the message goes back to the queue (``Nack``) for the next
consumer to redo - after a ``basic.cancel``, so that the stop costs one delivery of the quorum
queue's limit, not two (:func:`_cancel_deliveries`).

A lost broker channel cuts the run short the same way (the process goes on): once the channel
the message came on is closed (a dropped connection, the broker closing it), its answer can no
longer reach the broker, which hands the message out again - to another replica, or to this
one after it reconnects. So the run stops at once (:class:`~.bus.delivery.DeliveryWatch`),
announces the moves it made (the result messages go through fedora-messaging's publisher,
which waits for the connection to come back, up to its timeout; a send that fails leaves them
owed here), and acknowledges nothing; one process never runs two messages at once: a delivery
that arrives while a run is in progress (fedora-messaging only starts a second one after the
first one's channel was lost) stops that run and waits for it to end. fedora-messaging is kept
to one subscription (:func:`~.bus.delivery.single_subscription`).
"""

from __future__ import annotations

import logging
import os
import shutil
import sys
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, cast

from fedora_messaging.exceptions import Drop, HaltConsumer, Nack

from . import shown_logs, shutdown
from .bus.answers import Decision, Outcome, decide_error, decide_report, requeue_delay
from .bus.delivery import DeliveryWatch, single_subscription
from .bus.health import (
    BROKER_LOG_INTERVAL,
    BrokerWatch,
    ProgressWatch,
    broker_address,
    serve,
    watch_broker,
)
from .bus.ledger import AnnounceLedger, previous_deliveries
from .bus.notify import BusPublisher, announce
from .compose.message import Envelope
from .config.bus import check_bus_document
from .config.load import check_credentials
from .config.settings import Settings, settings_from_document
from .errors import ConfigError, SyncError, about_compose
from .publish.pipeline import StoppedRun, handle_envelope, prepare_work_dir
from .publish.report import EXIT_USAGE, ComposeReport
from .signing.setup import check_signing

if TYPE_CHECKING:
    from fedora_messaging.message import Message

_log = logging.getLogger(__name__)

#: how many messages' failure counts are remembered (the oldest is forgotten first)
_REMEMBERED_FAILURES = 1024


class ConsumerHalt(HaltConsumer, SystemExit):
    """Stops ``fedora-messaging consume`` before it starts consuming.

    Raised from ``__init__``, where fedora-messaging does not catch HaltConsumer yet: being a
    SystemExit too, it ends the process with ``exit_code`` and no traceback (the reason was
    logged as one line just before).
    """

    def __init__(self, exit_code: int, reason: str) -> None:
        HaltConsumer.__init__(self, exit_code=exit_code, reason=reason, requeue=True)
        self.code = exit_code

    def __str__(self) -> str:
        return str(self.reason)


class Consumer:
    """The callback: ``__init__`` reads the config once, ``__call__`` handles one message."""

    def __init__(self, settings: Settings | None = None) -> None:
        shown_logs.install()  # every log line redacted and escaped
        try:
            self.settings = settings if settings is not None else _configured_settings()
            check_credentials(self.settings)
            check_signing(self.settings)
            prepare_work_dir(self.settings)
            if shutil.which(self.settings.skopeo) is None:
                raise ConfigError(f"skopeo not found ({self.settings.skopeo}); install skopeo")
            self._progress: ProgressWatch | None = None
            health = self.settings.health
            interval = health.broker_log_interval if health else BROKER_LOG_INTERVAL
            broker = BrokerWatch(broker_address(_amqp_url()), interval=interval)
            if self.settings.health is not None:
                self._progress = ProgressWatch()
                serve(self.settings.health, self._progress, self.settings.stuck_after, broker)
                self._progress.install()
            watch_broker(broker)
        except SyncError as error:
            reason = f"fedora-container-sync cannot start: {error}"
            _log.error("%s", reason)
            raise ConsumerHalt(EXIT_USAGE, reason) from None
        self._publisher = BusPublisher()
        self._failures: OrderedDict[str, int] = OrderedDict()
        #: which deliveries announce the tags that already serve their compose
        self._ledger = AnnounceLedger(_REMEMBERED_FAILURES)
        self._stopping = threading.Event()
        #: held while a message runs: one at a time in this process
        self._running = threading.Lock()
        #: the run in progress was cut short: its channel is gone, or a newer delivery came
        self._cut = threading.Event()
        self._cut_lock = threading.Lock()
        #: set by a stop or a cut: a requeue delay ends at once
        self._wake = threading.Event()
        self._delivery = DeliveryWatch(self, self._channel_lost)
        self._label = ""
        single_subscription()
        _on_shutdown(self._stop)
        _log.info(
            "consumer ready: %d repositories, registries %s",
            len(set(self.settings.repos.values())),
            ", ".join(registry.url for registry in self.settings.registries),
        )

    def __call__(self, message: Message) -> None:
        envelope = Envelope(topic=message.topic, body=message.body, id=message.id)
        if not self._running.acquire(blocking=False):
            # Only a lost channel makes fedora-messaging deliver beside a run in progress.
            _log.warning(
                "compose %s: delivered while compose %s runs, whose channel to the broker "
                "was lost: stopping that run first",
                envelope.label,
                self._label,
            )
            self._cut_short()
            self._running.acquire()
        try:
            self._clear_cut()
            self._label = envelope.label
            if not self._delivery.begin():
                self._cut_short()
            try:
                # fedora-messaging keeps the AMQP headers in Message._headers (internal).
                self._handle(envelope, previous_deliveries(getattr(message, "_headers", None)))
            finally:
                self._delivery.end()
        finally:
            self._clear_cut()
            self._running.release()

    def _handle(self, envelope: Envelope, previous: int | None) -> None:
        key = envelope.id or envelope.label
        owed = self._ledger.owed(key)
        repeat = self._ledger.repeat(key, previous)
        announcing = False
        if self._progress is not None:
            self._progress.begin(envelope.label)
        try:
            report: ComposeReport | None
            try:
                report = handle_envelope(envelope, self.settings)
                decision = decide_report(report)
            except StoppedRun as stopped:
                # Stopped, or cut off from the broker: what the run moved before is announced
                # all the same (the publisher does not need the channel the message came on).
                report, decision = stopped.report, decide_error(stopped)
            if report is not None and self.settings.publish_amqp_messages:
                requeued = decision.outcome is Outcome.REQUEUE
                if repeat:
                    _log.info(
                        "compose %s: %s: announcing the tags that already serve it too, "
                        "under the ids of their moves",
                        envelope.label,
                        "an earlier delivery here could not announce its moves"
                        if owed
                        else f"delivered before ({previous if previous is not None else '?'}), "
                        "not announced here",
                    )
                # A requeued or cut run announces its moves now: the redelivery finds those
                # tags already serving the compose and would never announce them. What it
                # held, the delivery that ends the message announces.
                ends = not requeued and not self._cut.is_set()
                announcing = True
                announce(report, self._publisher, unchanged=repeat, held=ends)
                self._ledger.sent(key, previous, repeated=repeat, ended=ends)
            else:
                self._ledger.not_sent(key, previous, repeat=repeat)
        except Exception as error:
            decision = decide_error(error)
            # a failed send, or a run cut short whose moves are unknown
            owe = announcing or self._cut.is_set() or self._stopping.is_set()
            self._ledger.unsure(key, owe=owe)
            if not isinstance(error, SyncError):
                _log.debug("traceback of the unexpected error", exc_info=True)
        finally:
            if self._progress is not None:
                self._progress.end()
        if self._cut.is_set() and not self._stopping.is_set():
            _log.warning(
                "compose %s: run stopped, its channel to the broker was lost; the broker "
                "delivers the message again: %s",
                envelope.label,
                about_compose(envelope.label, decision.reason),
            )
            raise Nack()  # the answer goes nowhere; fedora-messaging needs one
        self._answer(decision, envelope)

    def _stop(self) -> None:
        """fedora-messaging is shutting down: end the run in progress now (see the module)."""
        with self._cut_lock:
            self._stopping.set()
            self._wake.set()
        _cancel_deliveries()
        shutdown.request()

    def _channel_lost(self) -> None:
        """The channel of the message in progress closed (reactor thread): stop its run."""
        _log.warning(
            "compose %s: the channel to the broker was lost; stopping the run", self._label
        )
        self._cut_short()

    def _cut_short(self) -> None:
        """End the run in progress now, as a stop does, without stopping the process."""
        with self._cut_lock:
            self._cut.set()
            self._wake.set()
        shutdown.request()

    def _clear_cut(self) -> None:
        """Between runs: a cut is over (a stop of the process is not)."""
        with self._cut_lock:
            if self._cut.is_set() and not self._stopping.is_set():
                shutdown.reset()
            self._cut.clear()
            if not self._stopping.is_set():
                self._wake.clear()

    def _answer(self, decision: Decision, envelope: Envelope) -> None:
        key = envelope.id or envelope.label
        reason = about_compose(envelope.label, decision.reason)
        if decision.outcome is not Outcome.REQUEUE:
            self._ledger.ended(key)
        if decision.outcome is Outcome.ACK:
            self._failures.pop(key, None)
            if decision.reason != "nothing to do":
                _log.info("compose %s: acknowledged: %s", envelope.label, reason)
            return
        if decision.outcome is Outcome.DROP:
            self._failures.pop(key, None)
            _log.error("compose %s: dropping the message: %s", envelope.label, reason)
            raise Drop()
        if decision.outcome is Outcome.HALT:
            _log.error(
                "compose %s: stopping the consumer, the message stays queued: %s",
                envelope.label,
                reason,
            )
            raise HaltConsumer(exit_code=EXIT_USAGE, reason=decision.reason, requeue=True)
        if self._stopping.is_set():
            # The run's error only says again that the process is stopping.
            _log.warning(
                "compose %s: the consumer is stopping, the message goes back to the queue",
                envelope.label,
            )
            _log.debug("compose %s: the run ended with: %s", envelope.label, reason)
            raise Nack()
        failures = self._failures.pop(key, 0) + 1
        self._failures[key] = failures
        while len(self._failures) > _REMEMBERED_FAILURES:
            self._failures.popitem(last=False)
        delay = requeue_delay(failures, self.settings.requeue)
        _log.warning(
            "compose %s: requeueing the message in %.1fs (failure %d): %s",
            envelope.label,
            delay,
            failures,
            reason,
        )
        self._wake.wait(delay)
        raise Nack()


def _configured_settings() -> Settings:
    """``[consumer_config.container]`` of the config ``fedora-messaging`` has loaded, after the
    rest of it (the keys fedora-messaging reads, as :func:`settings.load_settings` checks them)."""
    from fedora_messaging import config

    from .config.cgroups import allowed_cpus

    source = f"config file {config_file(sys.argv, os.environ)}"
    settings = settings_from_document(config.conf, source=source, cpus=allowed_cpus())
    check_bus_document(dict(config.conf), source=source)
    return settings


def _cancel_deliveries() -> None:
    """Tell the broker to deliver nothing more to this process's consumers (``basic.cancel``),
    in the reactor, before the message in progress is handed back.

    fedora-messaging cancels only after the callback returned: its ``Nack`` reaches a consumer
    still registered, the broker delivers the message to it again at once, and closing the
    channel returns it once more - two deliveries of the quorum queue's limit per clean stop
    (tests/integration/test_delivery_count.py). Cancelled first, the ``Nack`` costs one. The
    cancel is sent without waiting for its answer and behind pika's back (``nowait``), so
    fedora-messaging's own cancel later runs as usual (RabbitMQ answers a cancel of an unknown
    tag with cancel-ok). Internals: anything shaped otherwise leaves the stop as it was.
    """
    try:
        from fedora_messaging import api
        from pika import spec

        service = getattr(api, "_twisted_service", None)
        records = service.factory._consumers if service is not None else []
        for record in records:
            consumer = record.consumer
            channel = getattr(consumer._channel, "_channel", None)  # pika's, under Twisted's
            if channel is None or not channel.is_open or not consumer._tag:
                continue
            channel._send_method(spec.Basic.Cancel(consumer_tag=consumer._tag, nowait=True))
    except Exception:
        _log.debug("could not cancel the consumers before the stop", exc_info=True)


def _amqp_url() -> str:
    """The broker URL ``fedora-messaging consume`` connects to (for naming it in logs)."""
    from fedora_messaging import config

    try:
        return str(config.conf["amqp_url"])
    except Exception:  # naming the broker must not stop the consumer from starting
        return ""


def config_file(argv: Sequence[str], environ: Mapping[str, str]) -> str:
    """The file ``fedora-messaging`` loaded its config from, as it chooses it: ``--conf FILE``
    on its command line, else $FEDORA_MESSAGING_CONF, else its default."""
    for position, argument in enumerate(argv):
        if argument == "--conf" and position + 1 < len(argv):
            return argv[position + 1]
        if argument.startswith("--conf="):
            return argument.removeprefix("--conf=")
    return environ.get("FEDORA_MESSAGING_CONF") or "/etc/fedora-messaging/config.toml"


def _on_shutdown(callback: Callable[[], object]) -> None:
    """Call ``callback`` when the reactor shuts down, so a requeue delay ends at once."""
    from twisted.internet import interfaces, reactor

    core = cast(interfaces.IReactorCore, reactor)
    core.addSystemEventTrigger(phase="before", eventType="shutdown", callable=callback)
