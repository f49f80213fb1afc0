"""When fedora-messaging's consumer may subscribe again after a closed channel, and that the
patch keeps its other reactions (bus/delivery.py; the broker side is in
tests/integration/test_connection_loss.py)."""

from __future__ import annotations

from types import SimpleNamespace

import pika.exceptions
import pytest
from fedora_messaging.twisted.consumer import Consumer as FMConsumer
from twisted.python.failure import Failure

from fedora_container_sync.bus.delivery import _resubscribe, single_subscription


def consumer(*, channel_closed: bool, connection_closed: bool, registered: bool):
    queue = "q"
    fm = SimpleNamespace(queue=queue, _channel=SimpleNamespace(is_closed=channel_closed))
    fm._protocol = SimpleNamespace(
        is_closed=connection_closed, _consumers={queue: fm} if registered else {}
    )
    return fm


@pytest.mark.parametrize(
    ("channel_closed", "connection_closed", "registered", "again"),
    [
        (True, False, True, True),  # the broker closed its channel (ack timeout): subscribe
        (False, False, True, False),  # already subscribed on a live channel (reconnected)
        (True, True, True, False),  # connection gone: the reconnection re-registers it
        (True, False, False, False),  # being registered on the new connection right now
    ],
)
def test_subscribe_again_only_for_its_own_closed_channel(
    channel_closed, connection_closed, registered, again
):
    fm = consumer(
        channel_closed=channel_closed, connection_closed=connection_closed, registered=registered
    )
    assert _resubscribe(fm) is again


def test_the_patch_swallows_only_a_closed_channel_beside_a_live_subscription(monkeypatch):
    calls = []
    monkeypatch.setattr(FMConsumer, "_read_loop_errback", lambda self, f: calls.append(f))
    single_subscription()
    single_subscription()  # idempotent
    live = consumer(channel_closed=False, connection_closed=False, registered=True)
    FMConsumer._read_loop_errback(live, Failure(pika.exceptions.ChannelWrongStateError("x")))
    assert calls == []
    other = Failure(pika.exceptions.ConsumerCancelled())
    FMConsumer._read_loop_errback(live, other)
    assert calls == [other]
    own = consumer(channel_closed=True, connection_closed=False, registered=True)
    closed = Failure(pika.exceptions.ChannelWrongStateError("x"))
    FMConsumer._read_loop_errback(own, closed)
    assert calls == [other, closed]
