"""What counts against the quorum queue's delivery limit (``x-delivery-limit``), measured on
the real RabbitMQ with the production queue shape (deploy/openshift/configmap.yaml). The
arithmetic in docs/operating.md ("Deadlines, liveness and redelivery") rests on these."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import Any

import pika
import pytest

from support.broker import AMQP_URL, production_queue, wait_until

pytestmark = pytest.mark.integration


class Queue:
    """A production-shape queue of its own with one message in it."""

    def __init__(self) -> None:
        self.name = f"fcs-test-delivery-{uuid.uuid4().hex[:8]}"
        self.dead = f"{self.name}.dead-letter"
        connection = pika.BlockingConnection(pika.URLParameters(AMQP_URL))
        channel = connection.channel()
        channel.exchange_declare(self.dead, "fanout", durable=True)
        channel.queue_declare(self.dead, durable=True, arguments={"x-queue-type": "quorum"})
        channel.queue_bind(self.dead, self.dead)
        arguments = production_queue(delivery_limit=20, dead_letters=self.dead)
        channel.queue_declare(self.name, durable=True, arguments=arguments)
        channel.confirm_delivery()
        channel.basic_publish("", self.name, b"{}", pika.BasicProperties(delivery_mode=2))
        connection.close()

    def deliver(self, answer: Callable[[Any, Any, Any], None]) -> int:
        """Take the message on a new connection, hand it to ``answer(connection, channel,
        delivery_tag)``; return the x-delivery-count it came with (0 for none)."""
        connection = pika.BlockingConnection(pika.URLParameters(AMQP_URL))
        channel = connection.channel()
        channel.basic_qos(prefetch_count=1)  # as the consumer's [qos]
        got: list[tuple[Any, Any]] = []
        tag = channel.basic_consume(self.name, lambda _c, m, p, _b: got.append((m, p)))
        deadline = time.monotonic() + 30
        while not got and time.monotonic() < deadline:
            connection.process_data_events(0.1)
        assert got, "no delivery"
        method, properties = got[0]
        count = int((properties.headers or {}).get("x-delivery-count", 0))
        answer(connection, channel, (method.delivery_tag, tag))
        if connection.is_open:
            connection.close()
        return count

    def delete(self) -> None:
        connection = pika.BlockingConnection(pika.URLParameters(AMQP_URL))
        channel = connection.channel()
        channel.queue_delete(self.name)
        channel.queue_delete(self.dead)
        channel.exchange_delete(self.dead)
        connection.close()


def nack_then_cancel(connection, channel, ids):  # a Nack, then basic.cancel
    channel.basic_nack(ids[0], requeue=True)
    channel.basic_cancel(ids[1])  # too late: the broker delivered it here again already


def close(connection, channel, ids):  # a kill, a crash, a lost connection
    connection.close()


def nack_then_close(connection, channel, ids):  # a stop through Nack, as fedora-messaging does
    channel.basic_nack(ids[0], requeue=True)
    connection.process_data_events(0.5)  # delivered again to this still-registered consumer
    connection.close()


def cancel_then_nack(connection, channel, ids):  # basic.cancel first, then hand it back
    channel.basic_cancel(ids[1])
    channel.basic_nack(ids[0], requeue=True)


@pytest.mark.parametrize(
    ("answer", "costs"),
    [(close, 1), (nack_then_close, 2), (nack_then_cancel, 2), (cancel_then_nack, 1)],
    ids=["close", "nack-then-close", "nack-then-cancel", "cancel-then-nack"],
)
def test_what_handing_a_message_back_costs(answer, costs):
    """Every way back to the queue counts; a Nack by a consumer still registered counts twice
    when that consumer then goes away (the broker delivered it to it again at once)."""
    queue = Queue()
    try:
        counts = [queue.deliver(answer) for _ in range(3)]
        assert counts == [0, costs, 2 * costs]
    finally:
        queue.delete()


def test_a_consumer_that_nacks_and_goes_on_pays_one_per_nack():
    """A transient failure: the consumer requeues (Nack) and takes the message again."""
    queue = Queue()
    try:
        counts = []

        def nack_three_times(connection, channel, ids):
            def again(_c, method, properties, _b):
                counts.append(int((properties.headers or {}).get("x-delivery-count", 0)))
                if len(counts) < 3:
                    channel.basic_nack(method.delivery_tag, requeue=True)
                else:
                    channel.basic_ack(method.delivery_tag)

            channel.basic_cancel(ids[1])
            channel.basic_nack(ids[0], requeue=True)
            channel.basic_consume(queue.name, again)
            deadline = time.monotonic() + 30
            while len(counts) < 3 and time.monotonic() < deadline:
                connection.process_data_events(0.1)

        assert queue.deliver(nack_three_times) == 0
        assert counts == [1, 2, 3]
    finally:
        queue.delete()


def test_the_limit_dead_letters_after_twenty_returns():
    queue = Queue()
    try:
        counts = [queue.deliver(close) for _ in range(21)]
        assert counts == list(range(21))
        connection = pika.BlockingConnection(pika.URLParameters(AMQP_URL))
        channel = connection.channel()
        wait_until(
            lambda: channel.queue_declare(queue.dead, passive=True).method.message_count == 1,
            timeout=30,
            what="the dead letter",
        )
        assert channel.queue_declare(queue.name, passive=True).method.message_count == 0
        connection.close()
    finally:
        queue.delete()


PAUSED_PUSH = """#!/bin/sh
# The real skopeo, except that a push (the copy with --digestfile) waits.
for arg in "$@"; do
    if [ "$arg" = "--digestfile" ]; then : > "{marker}"; exec sleep 600; fi
done
exec "{skopeo}" "$@"
"""


def test_a_clean_stop_mid_publish_costs_one_delivery(harness, tmp_path):
    """SIGTERM (systemd's stop, a rolling update) while a compose is published: the message's
    delivery count when the next consumer gets it. fedora-messaging answers the callback's
    Nack before it cancels its consumer: the broker would hand the message straight back to
    it and closing the channel would return it once more (2, see
    test_what_handing_a_message_back_costs); the consumer cancels first, so it costs 1 - the
    least any return costs on RabbitMQ 3.10."""
    import shutil

    from support.broker import Bus

    bus = Bus(harness, tmp_path, env=f"dc{uuid.uuid4().hex[:10]}", delivery_limit=20)
    try:
        marker = tmp_path / "pushing"
        skopeo = tmp_path / "skopeo-paused"
        skopeo.write_text(PAUSED_PUSH.format(marker=marker, skopeo=shutil.which("skopeo")))
        skopeo.chmod(0o755)
        bus.publish(bus.pungi(harness.compose("Fedora-41-20241025.0", arches=("x86_64",))))
        first = bus.consumer(bus.config(settings=f'skopeo = "{skopeo}"\n', name="first"))
        wait_until(marker.exists, timeout=120, what="the push to start")
        assert first.stop() == 0
        wait_until(lambda: bus.broker.count(bus.queue) == 1, timeout=30, what="the requeue")

        connection = pika.BlockingConnection(pika.URLParameters(AMQP_URL))
        channel = connection.channel()
        got: list[Any] = []
        channel.basic_consume(bus.queue, lambda _c, m, p, _b: got.append(p))
        deadline = time.monotonic() + 30
        while not got and time.monotonic() < deadline:
            connection.process_data_events(0.1)
        connection.close()  # hands it back once more: not counted below
        assert got
        assert int(got[0].headers["x-delivery-count"]) == COST_OF_A_CLEAN_STOP
    finally:
        bus.close()


COST_OF_A_CLEAN_STOP = 1
