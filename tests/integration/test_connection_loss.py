"""A dropped broker connection in the middle of a publish, on the real RabbitMQ: the broker
closes the consumer's own connection (``rabbitmqctl close_connection``, found by this test's
``client_properties.app``) while a push is held at the registry.

The run in progress stops (its message comes back), the reconnected consumer redoes it: the
compose never runs twice at once, the consumer holds one subscription, the message is acked
once, its moves are announced once, nothing is lost.
"""

from __future__ import annotations

import re
import subprocess
import threading
import time
from collections import Counter

import pytest
from fedora_image_uploader_messages import ContainerPublishedV1

from support.broker import wait_until
from support.proxy import Fault, FaultProxy, ProxyRequest

pytestmark = pytest.mark.integration

TOOLBOX = "fedora-toolbox"
OLD = "Fedora-41-20241025.0"
TIMED = "%(created).6f %(levelname)s %(name)s: %(message)s"
RUN = re.compile(r"([0-9.]+) \w+ \S+: compose (\S+): (publishing|acknowledged|run stopped|requeu)")


def rabbitmqctl(*args: str) -> str:
    result = subprocess.run(
        ["rabbitmqctl", "-q", *args], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def close_connections_of(app: str) -> int:
    """Close, from the broker's side, the connections whose client says it is ``app``."""
    closed = 0
    for line in rabbitmqctl("list_connections", "pid", "client_properties").splitlines():
        if f'"{app}"' in line or f'<<"{app}">>' in line:
            pid = line.split("\t", 1)[0]
            rabbitmqctl("close_connection", pid, "closed by test_connection_loss")
            closed += 1
    return closed


def consumer_behind(bus, registry, proxy: FaultProxy):
    """A consumer (announcing, timed log) that reaches ``registry`` through ``proxy`` and names
    itself to the broker by an app name of its own, which :func:`close_connections_of` finds:
    the consumer and that name."""
    harness = bus.harness
    harness.registry_entries[registry.host] = (
        f'url = "{proxy.host}/{harness.namespace}"\ntls_verify = false\n'
    )
    config = bus.config(settings="publish_amqp_messages = true\n", log_format=TIMED)
    app = f"fcs-test-{bus.env}"
    config.write_text(
        config.read_text().replace('app = "fedora-container-sync tests"', f'app = "{app}"')
    )
    return bus.consumer(config), app


def runs(output: str) -> list[tuple[str, float, float]]:
    """(compose, start, end) of every run in a timed consumer log."""
    intervals, open_since = [], {}
    for line in output.splitlines():
        found = RUN.match(line)
        if not found:
            continue
        at, compose, what = float(found[1]), found[2], found[3]
        if what == "publishing":
            assert compose not in open_since, f"{compose} started twice at once:\n{output}"
            open_since[compose] = at
        elif compose in open_since:
            intervals.append((compose, open_since.pop(compose), at))
    assert not open_since, output[-3000:]
    return intervals


def test_a_dropped_connection_stops_the_run_and_it_runs_once_at_a_time(bus, registry):
    harness = bus.harness
    caught, release = threading.Event(), threading.Event()

    def hold_first_push(request: ProxyRequest) -> Fault | None:
        if request.method == "PUT" and "/manifests/sha256:" in request.path and not caught.is_set():
            caught.set()
            release.wait(timeout=120)
            return Fault.drop()
        return None

    with FaultProxy(upstream=f"http://{registry.host}", rule=hold_first_push) as proxy:
        consumer, app = consumer_behind(bus, registry, proxy)
        try:
            consumer.wait_log("Successfully registered AMQP consumer")
            bus.publish(bus.pungi(harness.compose(OLD)))
            wait_until(caught.is_set, timeout=90, what="the consumer to push")
            assert close_connections_of(app) == 1
            consumer.wait_log("Successfully registered AMQP consumer", count=2, timeout=60)
            # The broker delivers the message again at once; give a second run time to start
            # beside the held one, if the consumer lets it.
            redelivered = rf"compose {OLD}: publishing"
            wait_until(lambda: len(consumer.lines(redelivered)) >= 2, timeout=30, what="redelivery")
            time.sleep(2)
        finally:
            release.set()
        consumer.wait_log(rf"compose {OLD}: acknowledged", timeout=120)
        time.sleep(1)  # a second subscription, if any, is registered by now
        consumers = bus.broker._channel.queue_declare(bus.queue, passive=True).method
        assert consumers.consumer_count == 1
        assert consumer.stop() == 0

    output = consumer.output()
    intervals = runs(output)
    assert [compose for compose, _, _ in intervals] == [OLD, OLD]
    (_, _, first_end), (_, second_start, _) = intervals
    assert first_end <= second_start, intervals
    assert len(consumer.lines(rf"compose {OLD}: acknowledged")) == 1
    assert consumer.lines(rf"compose {OLD}: run stopped, its channel to the broker was lost")
    assert not consumer.lines("Traceback")
    assert harness.arches(TOOLBOX, "41") == {"x86_64", "aarch64", "ppc64le", "s390x"}
    assert bus.broker.count(bus.queue) == 0
    # The cut run moved no index tag; the redelivery moved them and announced them, once.
    published = bus.results(2)
    assert [(m.body["compose_id"], m.body["tags"]) for m in published] == [
        (OLD, ["41"]),
        (OLD, ["latest"]),
    ]


def test_the_moves_of_a_run_cut_short_by_a_lost_connection_are_announced_once(bus, registry):
    """The cut run moved fedora-minimal's index tags and is stopped while fedora-toolbox's
    index PUT hangs. The redelivery cannot read fedora-minimal's tags (the gate holds them, the
    message is requeued); the delivery after that finds them already at the compose. The cut
    run announced its own moves: each of them is announced once."""
    harness = bus.harness
    minimal = f"/v2/{harness.namespace}/fedora-minimal/manifests/"
    toolbox = f"/v2/{harness.namespace}/fedora-toolbox/manifests/"
    caught, release, unreadable = threading.Event(), threading.Event(), threading.Event()

    def rule(request: ProxyRequest) -> Fault | None:
        path = request.path.split("?", 1)[0]
        index_tag = path.rsplit("/", 1)[1] in ("41", "latest")
        if (
            request.method == "PUT"
            and path.startswith(toolbox)
            and index_tag
            and not caught.is_set()
        ):
            caught.set()
            release.wait(timeout=120)
            return Fault.drop()
        if unreadable.is_set() and path.startswith(minimal) and index_tag:
            return Fault.drop()
        return None

    with FaultProxy(upstream=f"http://{registry.host}", rule=rule) as proxy:
        consumer, app = consumer_behind(bus, registry, proxy)
        try:
            consumer.wait_log("Successfully registered AMQP consumer")
            body = harness.compose(
                OLD,
                arches=("x86_64", "aarch64"),
                subvariants=("Container_Toolbox", "Container_Minimal_Base"),
            )
            bus.publish(bus.pungi(body))
            wait_until(caught.is_set, timeout=90, what="fedora-toolbox's index PUT")
            wait_until(
                lambda: harness.arches("fedora-minimal", "latest") == {"x86_64", "aarch64"},
                timeout=90,
                what="fedora-minimal's index tags to move",
            )
            unreadable.set()  # the redelivery cannot read fedora-minimal's tags
            assert close_connections_of(app) == 1
            consumer.wait_log(rf"compose {OLD}: the channel to the broker was lost", timeout=60)
        finally:
            release.set()
        consumer.wait_log(rf"compose {OLD}: requeueing the message", timeout=120)
        unreadable.clear()
        consumer.wait_log(rf"compose {OLD}: acknowledged", timeout=120)
        assert consumer.stop() == 0

    assert not consumer.lines("Traceback")
    published = [
        m for m in bus.broker.take(bus.results_queue) if isinstance(m, ContainerPublishedV1)
    ]
    announced = Counter((m.body["repository"], tag) for m in published for tag in m.body["tags"])
    assert announced == {
        (repository, tag): 1
        for repository in ("fedora-toolbox", "fedora-minimal")
        for tag in ("41", "latest")
    }, consumer.output()[-4000:]
