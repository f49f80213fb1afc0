"""The broker channel a message came on, inside ``fedora-messaging consume`` (fedora-messaging
3.x, Twisted).

fedora-messaging runs the callback in a worker thread and answers the broker (ack, nack) on
the channel the message came on, once the callback returns. When that channel closes while
the callback runs (the connection dropped, the broker closed it), the answer can no longer be
given: the broker hands the message to another consumer (or to this one, once it has
reconnected) while the callback goes on. Two things follow, and this module is about both:

* :class:`DeliveryWatch` tells the consumer when the channel of the message in progress
  closes, so that it stops that run at once (its message comes back) instead of running the
  compose a second time beside its redelivery.
* fedora-messaging 3.9 re-subscribes twice after such a loss: its factory re-registers the
  consumer on the new connection, and the old read loop, whose ack then fails on the closed
  channel (``ChannelWrongStateError``), subscribes once more on a new channel of the same
  connection: one process, two subscriptions, two messages at once.
  :func:`single_subscription` makes that read loop re-subscribe only when it is the
  consumer's own, registered channel that closed on a connection that is still open (the
  broker closing a channel, e.g. for an ack timeout) - never beside a subscription that is
  already live or about to be made by the reconnection.

Both reach into fedora-messaging's Twisted consumer (``_channel``, ``_protocol``,
``_read_loop_errback``) and the API's service (``api._twisted_service``): internals, checked
defensively; without them (another fedora-messaging, no reactor, a test calling the consumer
directly) there is no watch and no patch, and the consumer still never runs two messages at
once (see the consumer).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

_log = logging.getLogger(__name__)

_PATCHED = "_fedora_container_sync_single_subscription"


class DeliveryWatch:
    """Calls ``on_lost`` (in the reactor thread) when the channel that delivers ``owner``'s
    messages closes while :meth:`current` says a message is in progress on it."""

    def __init__(self, owner: object, on_lost: Callable[[], None]) -> None:
        self._owner = owner
        self._on_lost = on_lost
        self._lock = threading.Lock()
        self._watched: set[int] = set()
        self._current: object | None = None

    def begin(self) -> bool:
        """A message is in progress: watch its channel. False when its channel is already
        closed (its answer cannot reach the broker). Called from the worker thread."""
        channel = _call_in_reactor(self._delivering_channel)
        with self._lock:
            self._current = channel
        if channel is None:
            return True
        return not bool(getattr(channel, "is_closed", False))

    def end(self) -> None:
        with self._lock:
            self._current = None

    def _delivering_channel(self) -> object | None:
        """The owner's fedora-messaging consumer's channel, watched once (reactor thread)."""
        channel = _consumer_channel(self._owner)
        if channel is None:
            return None
        closed = getattr(channel, "on_closed", None)
        if id(channel) not in self._watched and closed is not None:
            self._watched.add(id(channel))
            closed.addBoth(self._closed, channel)
        return channel

    def _closed(self, result: Any, channel: object) -> Any:
        self._watched.discard(id(channel))
        with self._lock:
            lost = self._current is channel
        if lost:
            self._on_lost()
        return result


def _consumer_channel(owner: object) -> object | None:
    """The channel of the fedora-messaging consumer whose callback is ``owner``."""
    try:
        from fedora_messaging import api
    except ImportError:  # pragma: no cover - a dependency
        return None
    service = getattr(api, "_twisted_service", None)
    factory = getattr(service, "factory", None)
    for record in getattr(factory, "_consumers", None) or []:
        consumer = getattr(record, "consumer", None)
        if getattr(consumer, "callback", None) is owner:
            return getattr(consumer, "_channel", None)
    return None


def _call_in_reactor(function: Callable[[], object | None]) -> object | None:
    """``function()`` run in the running reactor's thread, or None without one."""
    try:
        from twisted.internet import reactor, threads
    except ImportError:  # pragma: no cover - a dependency
        return None
    if not getattr(reactor, "running", False):
        return None
    try:
        return threads.blockingCallFromThread(reactor, function)
    except Exception:  # no watch rather than no run
        _log.debug("cannot watch the delivering channel", exc_info=True)
        return None


def single_subscription() -> None:
    """Patch fedora-messaging's Twisted consumer so that a lost channel never leaves it
    subscribed twice (see the module). Idempotent."""
    try:
        import pika.exceptions
        from fedora_messaging.twisted import consumer as fm_consumer
    except ImportError:  # pragma: no cover - a dependency
        return
    cls: Any = fm_consumer.Consumer
    original = getattr(cls, "_read_loop_errback", None)
    if original is None or getattr(original, _PATCHED, False):
        return

    def _read_loop_errback(self: Any, failure: Any) -> None:
        if failure.check(pika.exceptions.ChannelWrongStateError) and not _resubscribe(self):
            _log.warning(
                "an answer to the broker could not be sent: the channel of its message is "
                "closed (the broker delivers that message again); this consumer subscribes "
                "only once, on the current connection"
            )
            return
        original(self, failure)

    setattr(_read_loop_errback, _PATCHED, True)
    cls._read_loop_errback = _read_loop_errback


def _resubscribe(consumer: Any) -> bool:
    """Whether fedora-messaging should subscribe ``consumer`` again on a new channel: only
    when its own registered channel is closed on a connection that is still open."""
    channel = getattr(consumer, "_channel", None)
    protocol = getattr(consumer, "_protocol", None)
    if channel is None or protocol is None or not getattr(channel, "is_closed", False):
        return False
    if getattr(protocol, "is_closed", True):
        return False  # the reconnection re-registers it
    registered = getattr(protocol, "_consumers", {}).get(getattr(consumer, "queue", None))
    return registered is consumer
