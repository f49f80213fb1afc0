"""Every index tag move announced exactly once, however the work is split across deliveries:
the real RabbitMQ, a real registry behind a fault proxy, ``fedora-messaging consume``.

Two registries; the second one, behind a proxy, answers 503 to one repository's index PUTs
until the message is requeued. The first delivery moves the other repository's index tags on
both registries and this repository's on the first, then is requeued; the redelivery finds
those tags already at the compose. The first delivery announced its moves before the requeue,
the second announces only its own.
"""

from __future__ import annotations

import threading
from collections import Counter

import pytest
from fedora_image_uploader_messages import ContainerPublishedV1

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
    moves = Counter(
        (registry_url, m.body["repository"], tag)
        for m in published
        for registry_url in m.body["registries"]
        for tag in m.body["tags"]
    )
    assert moves == {
        (registry_url, repository, tag): 1
        for registry_url in (first, where)
        for repository in ("fedora-toolbox", "fedora-minimal")
        for tag in ("41", "latest")
    }
    # What the first delivery moved went out before its requeue; the second, only its own.
    sent = [(m.body["repository"], sorted(m.body["registries"])) for m in published]
    assert sorted(sent[:2]) == [
        ("fedora-minimal", [first]),
        ("fedora-toolbox", sorted([first, where])),
    ]
    assert sent[2:] == [("fedora-minimal", [where])]
    for one in harness.registries:
        for repository in ("fedora-toolbox", "fedora-minimal"):
            assert harness.arches(repository, "41", one) == set(ARCHES)
