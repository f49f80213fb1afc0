"""The production shape on the real RabbitMQ: two consumers on one quorum queue with a single
active consumer, a delivery limit and a dead-letter queue (deploy/openshift/configmap.yaml).

* A kill -9 of the active consumer in the middle of a publish: the standby takes over, the
  interrupted compose is redelivered and completes, no compose is worked on by two consumers
  at once, no index tag ever lacks an arch, every compose is announced once, the queues end
  empty.
* A message that kills its consumer every time ends in the dead-letter queue after the
  delivery limit; ``dead-letters`` moves it to a file and ``replay`` publishes it.
"""

from __future__ import annotations

import json
import re
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fedora_image_uploader_messages import ContainerPublishedV1

from fedora_container_sync.oci.manifest import ARCH, COMPOSE_ID
from support.broker import BIN, Bus, ConsumerProcess, rabbitmq_listening, wait_until
from support.harness import ARCHES
from support.proxy import Fault, FaultProxy, ProxyRequest
from support.servers import free_port

pytestmark = pytest.mark.integration

TOOLBOX = "fedora-toolbox"
COMPOSES = ("Fedora-41-20241025.0", "Fedora-41-20241026.0", "Fedora-41-20241027.0")
TIMED = "%(created).6f %(levelname)s %(name)s: %(message)s"
TESTS = Path(__file__).resolve().parents[1]


@pytest.fixture
def production_bus(harness, tmp_path, request) -> Iterator[Bus]:
    """This test's quorum queue (single active consumer, ``delivery_limit``) and its
    dead-letter exchange and queue, declared as the operator does."""
    if not rabbitmq_listening():
        pytest.fail("RabbitMQ is not listening on 127.0.0.1:5672", pytrace=False)
    limit = getattr(request, "param", 3)
    bus = Bus(harness, tmp_path, env=f"ha{time.time_ns() % 10**12}", delivery_limit=limit)
    try:
        yield bus
    finally:
        bus.close()


def health(port: int) -> str:
    return f"\n[consumer_config.container.health]\nport = {port}\n"


def status(port: int, path: str) -> int:
    try:
        return httpx.get(f"http://127.0.0.1:{port}{path}", timeout=5).status_code
    except httpx.HTTPError:
        return 0


class TagWatcher(threading.Thread):
    """Reads the index tags over and over while the consumers work: every read is recorded
    as (tag, compose the index names, arches it lists)."""

    def __init__(self, harness, tags=("41", "latest")) -> None:
        super().__init__(daemon=True)
        self.harness = harness
        self.tags = tags
        self.reads: list[tuple[str, str, frozenset[str]]] = []
        self.errors: list[str] = []
        #: reads answered 500 while a tag was being written (see run)
        self.mid_write = 0
        self._halt = threading.Event()

    def run(self) -> None:
        registry = self.harness.registries[0]
        while not self._halt.is_set():
            for tag in self.tags:
                try:
                    found = registry.get_manifest(self.harness.repo(TOOLBOX), tag)
                except httpx.HTTPStatusError as error:
                    # distribution's filesystem storage rewrites a tag's link file in place: a
                    # read that meets the write half done answers 500. The tag is being
                    # written, not lost: counted, not an error (the soak's watcher does alike).
                    if error.response.status_code == 500:
                        self.mid_write += 1
                    else:
                        self.errors.append(f"{tag}: {error}")
                    continue
                except Exception as error:  # recorded, asserted on below
                    self.errors.append(f"{tag}: {error}")
                    continue
                if found is None:
                    continue
                index = json.loads(found[2])
                arches = frozenset(entry["annotations"][ARCH] for entry in index["manifests"])
                compose = index["annotations"][COMPOSE_ID]
                self.reads.append((tag, compose, arches))
            time.sleep(0.02)

    def stop(self) -> None:
        self._halt.set()
        self.join(timeout=30)


def work_intervals(consumer: ConsumerProcess, killed_at: float | None) -> list[tuple]:
    """(compose, start, end) of each publish this consumer worked on, from its timed log: from
    'publishing' to its answer (acknowledged / dropping / requeueing), or to the kill."""
    intervals = []
    open_since: dict[str, float] = {}
    for line in consumer.output().splitlines():
        found = re.match(
            r"([0-9.]+) \w+ \S+: compose (\S+): (publishing|acknowledged|dropp|requeu)", line
        )
        if not found:
            continue
        at, compose, what = float(found[1]), found[2], found[3]
        if what == "publishing":
            open_since[compose] = at
        elif compose in open_since:
            intervals.append((compose, open_since.pop(compose), at))
    for compose, since in open_since.items():
        assert killed_at is not None, f"{compose} never answered: {consumer.output()[-2000:]}"
        intervals.append((compose, since, killed_at))
    return intervals


def test_a_kill_9_of_the_active_consumer_hands_the_queue_to_the_standby(
    production_bus, harness, registry, tmp_path
):
    bus = production_bus
    started = time.monotonic()
    # The registry behind a proxy that holds the first upload of the second compose's
    # images (skopeo's manifest PUT, after its blobs): the active consumer is caught there.
    caught, release = threading.Event(), threading.Event()

    def hold_second_compose(request: ProxyRequest) -> Fault | None:
        if (
            request.method == "PUT"
            and "/manifests/sha256:" in request.path
            and COMPOSES[1].encode() in request.body
            and not caught.is_set()
        ):
            caught.set()
            release.wait(timeout=120)
            return Fault.drop()
        return None

    with FaultProxy(upstream=f"http://{registry.host}", rule=hold_second_compose) as proxy:
        harness.registry_entries[registry.host] = (
            f'url = "{proxy.host}/{harness.namespace}"\ntls_verify = false\n'
        )
        bodies = [harness.compose(compose_id) for compose_id in COMPOSES]
        settings = "publish_amqp_messages = true\n"
        ports = {name: free_port() for name in ("first", "second")}
        consumers = {}
        for name in ("first", "second"):  # the first to register is the active one
            config = bus.config(
                settings=settings + health(ports[name]), name=name, log_format=TIMED
            )
            consumers[name] = bus.consumer(config)
            consumers[name].wait_log("Successfully registered AMQP consumer")
        first, second = consumers["first"], consumers["second"]
        # Both are ready: one consuming, one standing by.
        for name, port in ports.items():
            wait_until(lambda p=port: status(p, "/ready") == 200, timeout=30, what=f"{name} ready")

        watcher = TagWatcher(harness)
        watcher.start()
        try:
            bus.publish(*(bus.pungi(body) for body in bodies))
            wait_until(caught.is_set, timeout=90, what="the active consumer to push compose 2")
            assert first.lines(rf"compose {COMPOSES[0]}: acknowledged")
            assert not second.lines("publishing")  # the standby got nothing
            assert status(ports["second"], "/ready") == 200  # ... and is healthy
            killed_at = time.time()
            first.kill9()
            release.set()
            # The standby takes over: the interrupted compose again, then the last one.
            second.wait_log(rf"compose {COMPOSES[2]}: acknowledged", timeout=90)
        finally:
            release.set()
            watcher.stop()
        assert second.stop() == 0

    # Every compose handled, none by two consumers at once.
    intervals = [
        (name, *interval)
        for name, consumer, killed in (("first", first, killed_at), ("second", second, None))
        for interval in work_intervals(consumer, killed)
    ]
    assert sorted((name, compose) for name, compose, _, _ in intervals) == [
        ("first", COMPOSES[0]),
        ("first", COMPOSES[1]),  # killed
        ("second", COMPOSES[1]),  # redelivered
        ("second", COMPOSES[2]),
    ]
    for one in intervals:
        for other in intervals:
            if one[0] != other[0]:
                assert one[3] <= other[2] or other[3] <= one[2], (one, other)
    acknowledged = first.lines("acknowledged") + second.lines("acknowledged")
    assert sorted(re.search(r"compose (\S+):", line)[1] for line in acknowledged) == list(COMPOSES)
    # No read of an index tag ever lacked an arch, and tags only moved forward.
    assert not watcher.errors, watcher.errors[:5]
    assert len(watcher.reads) > 20
    assert {arches for _, _, arches in watcher.reads} == {frozenset(ARCHES)}
    for tag in ("41", "latest"):
        seen = [compose for read_tag, compose, _ in watcher.reads if read_tag == tag]
        assert seen == sorted(seen) and seen[-1] == COMPOSES[2], tag
    assert harness.arches(TOOLBOX, "41") == set(ARCHES)
    # Each compose announced once: the redelivered one by the consumer that finished it.
    published = bus.results(6)  # 41 and latest of each
    assert all(isinstance(message, ContainerPublishedV1) for message in published)
    assert sorted((m.body["compose_id"], *m.body["tags"]) for m in published) == [
        (compose_id, tag) for compose_id in COMPOSES for tag in ("41", "latest")
    ]
    assert bus.broker.take(bus.results_queue) == []
    # The queues end empty, nothing dead-lettered.
    assert bus.broker.count(bus.queue) == 0
    assert bus.broker.count(bus.dead_letters) == 0
    assert time.monotonic() - started < 120


@pytest.mark.parametrize("production_bus", [2], indirect=True)
def test_a_message_that_kills_its_consumer_ends_in_the_dead_letter_queue(
    production_bus, harness, tmp_path
):
    bus = production_bus
    poison_id, good_id = "Fedora-41-20241027.0", "Fedora-41-20241026.0"
    poison, good = harness.compose(poison_id), harness.compose(good_id)
    bus.publish(bus.pungi(poison), bus.pungi(good))
    env = {"PYTHONPATH": str(TESTS), "FCS_TEST_CRASH_ON": poison_id}
    settings = "publish_amqp_messages = true\n"
    consumers = [
        bus.consumer(
            bus.config(settings=settings, name=name, callback="support.crashing:CrashingConsumer"),
            env=env,
        )
        for name in ("first", "second")
    ]
    crashes = 0

    def supervise() -> bool:
        """Restart a dead consumer, as systemd (Restart=) or OpenShift would."""
        nonlocal crashes
        for consumer in consumers:
            code = consumer.proc.poll()
            if code is not None:
                assert code == -9, consumer.output()[-3000:]
                crashes += 1
                consumer.start()
        done = any(c.lines(rf"compose {good_id}: acknowledged") for c in consumers)
        return done and bus.broker.count(bus.dead_letters) == 1

    wait_until(supervise, timeout=100, what="the poison message in the dead-letter queue")
    # Delivered once, then redelivered up to the limit (2), killing a consumer each time.
    assert crashes == 3
    for consumer in consumers:
        consumer.stop()
    assert bus.broker.count(bus.queue) == 0
    assert harness.index(TOOLBOX, "41")["annotations"][COMPOSE_ID] == good_id

    # The operator takes it out and replays it.
    config = bus.config(settings=settings, name="operator")
    taken = tmp_path / "dead.jsonl"
    result = subprocess.run(
        [str(BIN / "fedora-container-sync"), "dead-letters", "--config", str(config), str(taken)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[0] == (
        f"took {poison_id}: delivery_limit in {bus.queue} (1 time)"
    )
    assert bus.broker.count(bus.dead_letters) == 0
    (line,) = taken.read_text().splitlines()
    assert json.loads(line)["topic"] == bus.pungi_topic
    assert json.loads(line)["body"] == poison
    bus.broker.take(bus.results_queue)  # the good compose's announcement
    replay = subprocess.run(
        [str(BIN / "fedora-container-sync"), "replay", "--config", str(config), str(taken)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert replay.returncode == 0, replay.stderr
    assert harness.index(TOOLBOX, "41")["annotations"][COMPOSE_ID] == poison_id
    published = bus.results(2)
    assert [m.body["compose_id"] for m in published] == [poison_id, poison_id]
