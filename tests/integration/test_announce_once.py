"""Every index tag move announced exactly once, however the work is split across deliveries:
the real RabbitMQ, a real registry behind a fault proxy, ``fedora-messaging consume``.

* A requeue: two registries; the second one, behind a proxy, answers 503 to one repository's
  index PUTs until the message is requeued. The first delivery moves the other repository's
  index tags on both registries and this repository's on the first, then is requeued; the
  redelivery finds those tags already at the compose. The first delivery announced its moves
  before the requeue, the second announces only its own.
* A kill -9 between an index PUT and the announcement, on the production queue shape: the
  redelivery, on the restarted consumer, announces the tag the killed one moved (under the id
  of that move) along with its own moves.
"""

from __future__ import annotations

import threading
import uuid
from collections import Counter

import pytest
from fedora_image_uploader_messages import ContainerPublishedV1

from support.broker import Bus
from support.proxy import Fault, FaultProxy, ProxyRequest

pytestmark = pytest.mark.integration

NEW = "Fedora-41-20241026.0"
PUBLISH = "publish_amqp_messages = true\n"
ARCHES = ("x86_64", "aarch64")


def test_moves_of_a_requeued_delivery_are_announced_once(bus, second_registry):
    harness = bus.harness
    harness.registries.append(second_registry)
    first = f"{harness.registries[0].host}/{harness.namespace}"
    registry = second_registry
    failing = threading.Event()
    failing.set()
    minimal_index = f"/v2/{harness.namespace}/fedora-minimal/manifests/"

    def rule(request: ProxyRequest) -> Fault | None:
        # fedora-minimal's index tags (not its per-arch tags) answer 503 while ``failing``.
        path = request.path.split("?", 1)[0]
        index_tag = path.startswith(minimal_index) and path.rsplit("/", 1)[1] in ("41", "latest")
        if request.method == "PUT" and index_tag and failing.is_set():
            return Fault.answer(503)
        return None

    with FaultProxy(upstream=registry.url, rule=rule) as proxy:
        where = f"{proxy.host}/{harness.namespace}"
        harness.registry_entries[registry.host] = f'url = "{where}"\ntls_verify = false\n'
        body = harness.compose(
            NEW, arches=ARCHES, subvariants=("Container_Toolbox", "Container_Minimal_Base")
        )
        bus.publish(bus.pungi(body))
        consumer = bus.consumer(bus.config(settings=PUBLISH))
        consumer.wait_log(rf"compose {NEW}: requeueing the message")
        failing.clear()
        stats = consumer.wait_stats(processed=1)
        assert consumer.stop() == 0
    assert stats["rejected"] >= 1
    assert not consumer.lines("Traceback")

    published = [
        m for m in bus.broker.take(bus.results_queue) if isinstance(m, ContainerPublishedV1)
    ]
    assert moves_of(published) == {
        (registry_url, repository, tag): 1
        for registry_url in (first, where)
        for repository in ("fedora-toolbox", "fedora-minimal")
        for tag in ("41", "latest")
    }
    assert len({m.id for m in published}) == len(published)  # nothing went out twice
    # What the first delivery moved went out before its requeue; the second, only its own.
    sent = [(m.body["registries"], m.body["repository"], m.body["tags"]) for m in published]
    assert sorted(sent[:6]) == sorted(
        [([first], "fedora-minimal", [tag]) for tag in ("41", "latest")]
        + [([one], "fedora-toolbox", [tag]) for one in (first, where) for tag in ("41", "latest")]
    )
    assert sent[6:] == [([where], "fedora-minimal", [tag]) for tag in ("41", "latest")]
    for one in harness.registries:
        for repository in ("fedora-toolbox", "fedora-minimal"):
            assert harness.arches(repository, "41", one) == set(ARCHES)


def moves_of(published: list[ContainerPublishedV1]) -> Counter[tuple[str, str, str]]:
    """(registry, repository, tag) -> how many of the messages (one per id) named it."""
    return Counter(
        (registry_url, m.body["repository"], tag)
        for m in {m.id: m for m in published}.values()
        for registry_url in m.body["registries"]
        for tag in m.body["tags"]
    )


def test_a_move_whose_consumer_was_killed_before_announcing_it_is_announced_once(harness, tmp_path):
    bus = Bus(harness, tmp_path, env=f"ao{uuid.uuid4().hex[:10]}", delivery_limit=3)
    try:
        index_tags = tuple(
            f"/v2/{harness.namespace}/{repository}/manifests/{tag}"
            for repository in ("fedora-toolbox", "fedora-minimal")
            for tag in ("41", "latest")
        )
        lock = threading.Lock()
        first_put: list[str] = []
        moved, killed = threading.Event(), threading.Event()

        def rule(request: ProxyRequest) -> Fault | None:
            # The first index PUT goes through; every other one waits for the kill (so the
            # killed consumer cannot get to its announcement), and is then cut off.
            if request.method != "PUT" or request.path.split("?", 1)[0] not in index_tags:
                return None
            with lock:
                if not first_put and not killed.is_set():
                    first_put.append(request.path)
                    return None
            if killed.is_set():
                return None
            killed.wait(timeout=60)
            return Fault.drop()

        def on_response(request: ProxyRequest, status: int) -> None:
            if first_put and request.method == "PUT" and request.path == first_put[0]:
                if status == 201:
                    moved.set()

        registry = harness.registries[0]
        with FaultProxy(
            upstream=f"http://{registry.host}", rule=rule, on_response=on_response
        ) as proxy:
            where = f"{proxy.host}/{harness.namespace}"
            harness.registry_entries[registry.host] = f'url = "{where}"\ntls_verify = false\n'
            body = harness.compose(
                NEW, arches=ARCHES, subvariants=("Container_Toolbox", "Container_Minimal_Base")
            )
            config = bus.config(settings=PUBLISH)
            first = bus.consumer(config)
            bus.publish(bus.pungi(body))
            assert moved.wait(timeout=90), first.output()[-3000:]
            first.kill9()  # the index tag moved, nothing announced yet
            killed.set()
            assert not first.lines(r": sent ")
            again = bus.consumer(config)  # restarted, as systemd or OpenShift does
            again.wait_log(rf"compose {NEW}: acknowledged")
            assert again.stop() == 0
        published = [
            m for m in bus.broker.take(bus.results_queue) if isinstance(m, ContainerPublishedV1)
        ]
        assert moves_of(published) == {
            (where, repository, tag): 1
            for repository in ("fedora-toolbox", "fedora-minimal")
            for tag in ("41", "latest")
        }
        assert again.lines(rf"compose {NEW}: delivered before \(1\)")
        for repository in ("fedora-toolbox", "fedora-minimal"):
            assert harness.arches(repository, "41") == set(ARCHES)
    finally:
        bus.close()
