"""The soak: three real ``fedora-messaging consume`` replicas on the production queue shape of
a RabbitMQ node of its own, a stream of composes, and faults; then the invariants.

``make soak`` runs it (``pytest tests/soak/soak.py``); the default ``pytest`` run does not
collect it (its file name is not ``test_*.py``). 3.5 to 4.5 minutes on 2 shared cores.

* The bus: a private RabbitMQ node (:class:`support.broker.PrivateBroker`), a quorum queue with
  a single active consumer, a delivery limit and at-least-once dead letters
  (:func:`support.broker.production_queue`), a queue bound to the result topics.
* The registry: a real ``docker-registry`` behind :class:`support.proxy.FaultProxy`; the
  replicas publish through the proxy, the watcher reads the registry directly.
* The stream (fixed by ``SEED``): composes of two releases, some with an arch that failed,
  duplicates (the same message again, and a new message for the same compose), older composes
  arriving late, and bad messages (a body that is not JSON, one without ``compose_id``, one
  whose location is outside the allowlist).
* The faults, in order: kill -9 of the active replica (restarted, as systemd would), 503/429
  bursts, the registry process stopped for a while, the broker connections dropped mid-publish,
  the broker stopped and started, connections to the registry dropped.
* The invariants (assertions on what happened, never on how long it took): no index tag ever
  lost an arch or moved back; the final state is the newest complete compose; every move
  announced exactly once, copies with one message id counted once (one by a process killed -9
  before it sent its message included: the redelivery announces it; only one whose message
  never ran again may go unannounced, never twice); no message lost (acknowledged after its
  work, or dead-lettered with a reason); no two runs at once (of one compose, or at all; a run
  whose replica lost its channel counts until its last tag write), and no message acknowledged
  by such a run after the loss (it announces the moves it made); the replicas' RSS flat; no
  work files or processes left.

Every wait is bounded; everything started is stopped, also when it fails.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import random
import shutil
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pika
import pika.exceptions
import pytest
from fedora_messaging import message as fm_message

from fedora_container_sync.oci.manifest import ARCH, COMPOSE_ID
from support.broker import (
    ConsumerProcess,
    PrivateBroker,
    consumer_config,
    production_queue,
    wait_until,
)
from support.compose import ComposeImage, build_compose, finished_message
from support.proxy import Fault, FaultProxy, ProxyRequest
from support.servers import MANIFEST_ACCEPT, FileServer, Registry, free_port
from support.soak_checks import (
    Read,
    Run,
    compose_order,
    concurrent_runs,
    killed_before_announcing,
    logged_moves,
    lost_messages,
    move_problems,
    parse_runs,
    rss_growth,
    tag_regressions,
    work_after_channel_loss,
)

pytestmark = pytest.mark.integration

#: fixes the stream (which arches fail, which composes come late) and the faults' choices
SEED = int(os.environ.get("SOAK_SEED", "19"))
ARCHES = ("x86_64", "aarch64", "ppc64le", "s390x")
SUBVARIANTS = {"Container_Base": "fedora", "Container_Toolbox": "fedora-toolbox"}
#: release -> its index tags ([releases] latest = 41)
RELEASES = {41: ("41", "latest"), 42: ("42",)}
COMPOSES_PER_RELEASE = 8
REPLICAS = ("r1", "r2", "r3")
NAMESPACE = "soak"
PREFIX = "org.fedoraproject.soak"
PUNGI_TOPIC = f"{PREFIX}.pungi.compose.status.change"
QUEUE = "fedora-container-sync-soak"
DEAD_LETTERS = f"{QUEUE}.dead-letter"
RESULTS = f"{QUEUE}.results"
DELIVERY_LIMIT = 20
TIMED = "%(created).6f %(levelname)s %(name)s: %(message)s"
#: how long the whole stream may take to be worked off after the last fault
SETTLE_TIMEOUT = 300.0


# -- the stream ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class PlannedCompose:
    compose_id: str
    release: int
    #: subvariant -> the arches whose build succeeded
    arches: dict[str, tuple[str, ...]]

    def complete(self, subvariant: str) -> bool:
        return set(self.arches[subvariant]) == set(ARCHES)


def plan_composes(rng: random.Random) -> dict[int, list[PlannedCompose]]:
    """Per release, its composes oldest first; the first of each is complete (it creates the
    tags), and the one before the last; the others lose one arch of one image now and then."""
    planned: dict[int, list[PlannedCompose]] = {}
    for release in RELEASES:
        planned[release] = []
        for number in range(COMPOSES_PER_RELEASE):
            arches = {subvariant: ARCHES for subvariant in SUBVARIANTS}
            if number not in (0, COMPOSES_PER_RELEASE - 2) and rng.random() < 0.4:
                failed = rng.choice(ARCHES)
                subvariant = rng.choice(sorted(SUBVARIANTS))
                arches[subvariant] = tuple(a for a in ARCHES if a != failed)
            compose_id = f"Fedora-{release}-202411{number + 1:02d}.0"
            planned[release].append(PlannedCompose(compose_id, release, arches))
    return planned


def expected_final(planned: dict[int, list[PlannedCompose]]) -> dict[tuple[str, str], str]:
    """(repository, index tag) -> the newest compose in which that image built every arch."""
    final = {}
    for release, composes in planned.items():
        for subvariant, repository in SUBVARIANTS.items():
            newest = max(
                (c for c in composes if c.complete(subvariant)),
                key=lambda c: compose_order(c.compose_id),
            )
            for tag in RELEASES[release]:
                final[(repository, tag)] = newest.compose_id
    return final


@dataclass(frozen=True)
class Outgoing:
    """One publication: a message id, and what goes on the wire."""

    message_id: str
    routing_key: str
    body: bytes
    properties: pika.BasicProperties
    bad: bool = False


def outgoing(message: fm_message.Message, *, bad: bool = False) -> Outgoing:
    return Outgoing(
        message.id,
        message._encoded_routing_key,
        message._encoded_body,
        message._properties,
        bad,
    )


def not_json(message_id: str) -> Outgoing:
    """A body that is not JSON: fedora-messaging rejects it before the callback sees it."""
    properties = pika.BasicProperties(
        content_type="application/json",
        content_encoding="utf-8",
        delivery_mode=2,
        message_id=message_id,
        headers={"fedora_messaging_schema": "base.message", "fedora_messaging_severity": 20},
    )
    return Outgoing(message_id, PUNGI_TOPIC, b"{not json", properties, bad=True)


# -- the parts ----------------------------------------------------------------------------------


class OutageRegistry(Registry):
    """A registry whose process can be stopped and started again on its port and storage."""

    def stop_serving(self) -> None:
        assert self._proc is not None
        self._proc.terminate()
        self._proc.wait(timeout=30)

    def serve_again(self) -> None:
        import subprocess

        assert self._tmp is not None and self._log_path is not None
        exe = shutil.which(self.binary)
        assert exe is not None
        env = {k: v for k, v in os.environ.items() if not k.startswith("REGISTRY_")}
        with self._log_path.open("ab") as log:
            self._proc = subprocess.Popen(
                [exe, "serve", str(Path(self._tmp.name) / "config.yml")],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
            )
        assert self._wait_ready(), "the registry did not come back:\n" + self.log_text()[-2000:]


class Amqp:
    """A blocking pika connection to the private node that reconnects (the soak drops and
    stops the broker); every operation is retried for at most ``timeout`` seconds."""

    def __init__(self, url: str, timeout: float = 120) -> None:
        self.url = url
        self.timeout = timeout
        self._connection: pika.BlockingConnection | None = None
        self._channel: Any = None

    def _open(self) -> Any:
        if self._connection is None or self._connection.is_closed:
            self._connection = pika.BlockingConnection(pika.URLParameters(self.url))
            self._channel = self._connection.channel()
            self._channel.confirm_delivery()
        return self._channel

    def run(self, what: str, operation: Callable[[Any], Any]) -> Any:
        deadline = time.monotonic() + self.timeout
        while True:
            try:
                return operation(self._open())
            except (pika.exceptions.AMQPError, OSError) as error:
                self.close()
                if time.monotonic() > deadline:
                    raise AssertionError(
                        f"{what}: the broker failed for {self.timeout}s"
                    ) from error
                time.sleep(0.5)

    def publish(self, item: Outgoing) -> None:
        self.run(
            f"publishing {item.message_id}",
            lambda channel: channel.basic_publish(
                "amq.topic", item.routing_key, item.body, item.properties, mandatory=True
            ),
        )

    def ready(self, queue: str) -> int:
        return int(
            self.run(
                f"counting {queue}",
                lambda channel: channel.queue_declare(queue, passive=True).method.message_count,
            )
        )

    def drain(self, queue: str) -> list[tuple[str, Any, bytes]]:
        """Every message ready in ``queue``: (routing key, properties, body)."""

        def take(channel: Any) -> list[tuple[str, Any, bytes]]:
            taken = []
            while True:
                method, properties, body = channel.basic_get(queue, auto_ack=True)
                if method is None:
                    return taken
                taken.append((method.routing_key, properties, body))

        result: list[tuple[str, Any, bytes]] = self.run(f"reading {queue}", take)
        return result

    def close(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None and connection.is_open:
            with contextlib.suppress(Exception):
                connection.close()


class FaultSwitch:
    """The proxy's rule: nothing, a burst of 503/429 answers, or dropped connections, for
    about one request in ``share`` while switched on."""

    def __init__(self, seed: int, share: float = 0.4) -> None:
        self.mode: str | None = None
        self.share = share
        self._rng = random.Random(seed)  # noqa: S311 (a fixed seed: the soak repeats)
        self._lock = threading.Lock()
        self.injected: Counter[str] = Counter()

    def rule(self, request: ProxyRequest) -> Fault | None:
        with self._lock:
            mode, draw, pick = self.mode, self._rng.random(), self._rng.random()
            if mode is None or draw >= self.share:
                return None
            if mode == "burst":
                fault = Fault.answer(503) if pick < 0.5 else Fault.answer(429, retry_after="1")
            else:
                fault = Fault.drop() if pick < 0.5 else Fault.drop_after()
            self.injected[fault.label] += 1
            return fault

    @contextlib.contextmanager
    def on(self, mode: str) -> Iterator[None]:
        self.mode = mode
        try:
            yield
        finally:
            self.mode = None


class Watcher(threading.Thread):
    """Reads every index tag, directly from the registry, several times a second."""

    def __init__(self, registry: Registry, tags: list[tuple[str, str]]) -> None:
        super().__init__(daemon=True, name="soak-watcher")
        self.registry = registry
        self.tags = tags
        self.reads: list[Read] = []
        self.failures = 0
        self.problems: list[str] = []
        self._halt = threading.Event()

    def run(self) -> None:
        seen: set[tuple[str, str]] = set()
        with httpx.Client(base_url=self.registry.url, timeout=5) as client:
            while not self._halt.is_set():
                for repository, tag in self.tags:
                    try:
                        self._read(client, repository, tag, seen)
                    except Exception as error:  # the registry is down now and then
                        self.failures += 1
                        if isinstance(error, (KeyError, ValueError, TypeError)):
                            self.problems.append(f"{repository}:{tag}: unreadable: {error!r}")
                self._halt.wait(0.1)

    def _read(self, client: httpx.Client, repository: str, tag: str, seen: set[Any]) -> None:
        response = client.get(
            f"/v2/{NAMESPACE}/{repository}/manifests/{tag}", headers={"Accept": MANIFEST_ACCEPT}
        )
        if response.status_code == 404:
            if (repository, tag) in seen:
                self.problems.append(f"{repository}:{tag} disappeared at {time.time():.3f}")
            return
        response.raise_for_status()
        index = response.json()
        arches = frozenset(entry["annotations"][ARCH] for entry in index["manifests"])
        compose = index["annotations"][COMPOSE_ID]
        seen.add((repository, tag))
        self.reads.append(Read(time.time(), repository, tag, compose, arches))

    def stop(self) -> None:
        self._halt.set()
        self.join(timeout=30)


class RssSampler(threading.Thread):
    """The RSS of every live replica process, twice a second."""

    def __init__(self, replicas: Callable[[], dict[str, int]]) -> None:
        super().__init__(daemon=True, name="soak-rss")
        self.replicas = replicas
        self.samples: dict[str, list[int]] = {}
        self._halt = threading.Event()

    def run(self) -> None:
        while not self._halt.is_set():
            for name, pid in self.replicas().items():
                with contextlib.suppress(OSError, ValueError):
                    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                        if line.startswith("VmRSS:"):  # a zombie has none
                            self.samples.setdefault(name, []).append(int(line.split()[1]) * 1024)
            self._halt.wait(0.5)

    def stop(self) -> None:
        self._halt.set()
        self.join(timeout=30)


@dataclass
class Replica:
    """One replica: its config, and its processes one after the other (a kill -9, then the
    supervisor's restart)."""

    name: str
    config: Path
    logs: Path
    processes: list[tuple[str, ConsumerProcess]]
    killed_at: dict[str, float]
    ended_at: dict[str, float]

    def start(self) -> ConsumerProcess:
        instance = f"{self.name}.{len(self.processes) + 1}"
        process = ConsumerProcess(self.config, self.logs / f"{instance}.log").start()
        self.processes.append((instance, process))
        return process

    @property
    def current(self) -> ConsumerProcess:
        return self.processes[-1][1]

    def runs(self) -> list[Run]:
        found = []
        for instance, process in self.processes:
            end = self.killed_at.get(instance, self.ended_at.get(instance, math.inf))
            found += parse_runs(instance, process.output(), ended_at=end)
        return found


def busy_replica(replicas: list[Replica]) -> Replica | None:
    """The replica with a publish in progress, if any."""
    for replica in replicas:
        if replica.current.proc.poll() is not None:
            continue
        instance = replica.processes[-1][0]
        runs = parse_runs(instance, replica.current.output(), ended_at=math.inf)
        if any(run.end == math.inf and run.compose is not None for run in runs):
            return replica
    return None


def wait_busy(replicas: list[Replica], timeout: float = 90) -> Replica | None:
    """Wait (bounded) until a replica is publishing; None if none did in time."""
    with contextlib.suppress(AssertionError):
        found: Replica = wait_until(
            lambda: busy_replica(replicas), timeout=timeout, what="a publish", interval=0.2
        )
        return found
    return None


def mid_publish(replicas: list[Replica], *, into: float = 1.5) -> Replica | None:
    """The replica that is still publishing ``into`` seconds after a publish began (a few
    tries, each bounded); None if no publish lasted that long."""
    for _ in range(5):
        busy = wait_busy(replicas, timeout=60)
        if busy is None:
            return None
        time.sleep(into)
        if busy_replica(replicas) is busy:
            return busy
    return None


def container_table(server: FileServer, proxy: FaultProxy, work: Path) -> str:
    repos = "".join(f'{k} = "{v}"\n' for k, v in SUBVARIANTS.items())
    return f"""
[consumer_config.container]
compose_url_allowlist = ["{server.url}/composes/"]
work_dir = "{work}"
publish_amqp_messages = true
max_parallel = 2

[consumer_config.container.retry]
attempts = 3
initial_delay = 0.2
max_delay = 1.0

[consumer_config.container.requeue]
initial_delay = 0.5
max_delay = 3.0

[consumer_config.container.repos]
{repos}
[consumer_config.container.releases]
latest = 41
rawhide = 43

[[consumer_config.container.registries]]
url = "{proxy.host}/{NAMESPACE}"
tls_verify = false
"""


def tag_history(registry: Registry, repository: str, tag: str) -> set[str]:
    """Every compose ``repository:tag`` ever served: distribution keeps each digest a tag
    pointed to under the tag's ``index`` in its storage."""
    index = (
        registry.storage_dir
        / "docker/registry/v2/repositories"
        / NAMESPACE
        / repository
        / "_manifests/tags"
        / tag
        / "index/sha256"
    )
    composes = set()
    for entry in sorted(index.iterdir()) if index.is_dir() else []:
        found = registry.get_manifest(f"{NAMESPACE}/{repository}", f"sha256:{entry.name}")
        assert found is not None, f"{repository}:{tag} history names a missing {entry.name}"
        composes.add(json.loads(found[2])["annotations"][COMPOSE_ID])
    return composes


def sessions_alive(sessions: set[int]) -> list[str]:
    """Processes still running in any of ``sessions`` (the replicas' own sessions)."""
    alive = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            if os.getsid(int(entry.name)) in sessions:
                cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
                alive.append(f"{entry.name}: {cmdline.strip()}")
    return alive


# -- the soak -----------------------------------------------------------------------------------


def test_soak() -> None:
    """Removes its files when it passes; after a failure the replicas' logs stay (the path
    is printed)."""
    path = Path(tempfile.mkdtemp(prefix="fcs-soak-"))
    try:
        soak(path)
    except BaseException:
        for child in path.iterdir():
            if child.name != "logs":
                shutil.rmtree(child, ignore_errors=True)
        print(f"soak: the replicas' logs are in {path / 'logs'}")
        raise
    shutil.rmtree(path, ignore_errors=True)


def soak(tmp_path: Path) -> None:
    started = time.monotonic()
    rng = random.Random(SEED)  # noqa: S311 (a fixed seed: the soak repeats)
    print(f"soak seed {SEED}")
    planned = plan_composes(rng)
    served = tmp_path / "served"
    for composes in planned.values():
        for compose in composes:
            images = [
                ComposeImage(subvariant, arch)
                for subvariant, arches in compose.arches.items()
                for arch in arches
            ]
            build_compose(
                served / "composes",
                compose_id=compose.compose_id,
                release_version=str(compose.release),
                images=images,
            )

    with contextlib.ExitStack() as stack:
        server = stack.enter_context(FileServer(served))
        registry = stack.enter_context(OutageRegistry())
        switch = FaultSwitch(SEED)
        proxy = stack.enter_context(FaultProxy(upstream=registry.url, rule=switch.rule))
        rabbit = stack.enter_context(PrivateBroker())
        amqp = Amqp(rabbit.url)
        stack.callback(amqp.close)

        def declare(channel: Any) -> None:
            channel.exchange_declare(DEAD_LETTERS, "fanout", durable=True)
            channel.queue_declare(DEAD_LETTERS, durable=True, arguments={"x-queue-type": "quorum"})
            channel.queue_bind(DEAD_LETTERS, DEAD_LETTERS, routing_key="")
            channel.queue_declare(RESULTS, durable=True, arguments={"x-queue-type": "quorum"})
            for key in (f"{PREFIX}.fedora_image_uploader.#", f"{PREFIX}.fedora_container_sync.#"):
                channel.queue_bind(RESULTS, "amq.topic", routing_key=key)
            channel.queue_declare(QUEUE, durable=True, arguments=arguments)
            channel.queue_bind(QUEUE, "amq.topic", routing_key=PUNGI_TOPIC)

        arguments = production_queue(delivery_limit=DELIVERY_LIMIT, dead_letters=DEAD_LETTERS)
        amqp.run("declaring the queues", declare)

        work = tmp_path / "work"  # shared: one host, as under systemd; run locks keep them apart
        table = container_table(server, proxy, work)
        logs = tmp_path / "logs"
        logs.mkdir()
        replicas = []
        for name in REPLICAS:
            config = tmp_path / f"{name}.toml"
            config.write_text(
                consumer_config(
                    queue=QUEUE,
                    routing_keys=[PUNGI_TOPIC],
                    topic_prefix=PREFIX,
                    monitoring_port=free_port(),
                    container_table=table,
                    arguments=arguments,
                    amqp_url=rabbit.url,
                    log_format=TIMED,
                )
            )
            replicas.append(Replica(name, config, logs, [], {}, {}))

        def kill_all() -> None:
            for replica in replicas:
                for _, process in replica.processes:
                    process.cleanup()

        stack.callback(kill_all)
        for replica in replicas:  # the first to register is the active one
            replica.start().wait_log("Successfully registered AMQP consumer", timeout=120)

        def live() -> dict[str, int]:
            return {
                instance: process.proc.pid
                for replica in replicas
                for instance, process in replica.processes
                if process.proc.poll() is None
            }

        watched = [
            (repo, tag)
            for tags in RELEASES.values()
            for tag in tags
            for repo in SUBVARIANTS.values()
        ]
        watcher = Watcher(registry, watched)
        watcher.start()
        stack.callback(watcher.stop)
        sampler = RssSampler(live)
        sampler.start()
        stack.callback(sampler.stop)

        # -- the stream and the faults ------------------------------------------------------
        published: Counter[str] = Counter()
        bad: set[str] = set()
        messages = {
            c.compose_id: fm_message.Message(
                topic=PUNGI_TOPIC,
                body=finished_message(
                    served / "composes" / c.compose_id / "compose",
                    served_root=served,
                    base_url=server.url,
                ),
            )
            for composes in planned.values()
            for c in composes
        }

        def send(*items: Outgoing) -> None:
            for item in items:
                amqp.publish(item)
                published[item.message_id] += 1
                if item.bad:
                    bad.add(item.message_id)

        def compose(release: int, number: int) -> Outgoing:
            return outgoing(messages[planned[release][number].compose_id])

        def again(release: int, number: int) -> Outgoing:
            """Pungi sending a compose's message again: a new message id, the same body."""
            original = messages[planned[release][number].compose_id]
            return outgoing(fm_message.Message(topic=PUNGI_TOPIC, body=dict(original.body)))

        def broken(body: dict[str, Any]) -> Outgoing:
            return outgoing(fm_message.Message(topic=PUNGI_TOPIC, body=body), bad=True)

        def acknowledged() -> Counter[str]:
            count: Counter[str] = Counter()
            for replica in replicas:
                for _, process in replica.processes:
                    for line in process.lines(r"Successfully consumed message"):
                        count[line.rsplit("message id ", 1)[1].rstrip(")")] += 1
            return count

        faults: list[str] = []
        body = dict(messages[planned[41][0].compose_id].body)
        send(compose(41, 0), compose(42, 0), compose(41, 1), not_json(f"soak-{uuid.uuid4()}"))
        send(compose(42, 1))
        # kill -9 of the active replica mid-publish; the supervisor restarts it
        victim = mid_publish(replicas)
        if victim is not None:
            victim.killed_at[victim.processes[-1][0]] = time.time()
            victim.current.kill9()
            faults.append(f"kill -9 {victim.processes[-1][0]}")
            time.sleep(2)
            victim.start()
        send(compose(41, 3), compose(41, 1), compose(42, 2))  # 41's third comes late
        send(broken({k: v for k, v in body.items() if k != "compose_id"}))
        with switch.on("burst"):
            wait_busy(replicas, timeout=60)
            time.sleep(8)
        faults.append(f"503/429 burst ({dict(switch.injected)})")
        send(compose(41, 4), compose(42, 3), compose(41, 2), again(42, 2))
        wait_busy(replicas, timeout=60)
        registry.stop_serving()
        time.sleep(12)
        registry.serve_again()
        faults.append("registry stopped for 12s")
        send(compose(42, 4), broken({**body, "location": "http://127.0.0.1:9/composes/x"}))
        send(compose(41, 5))
        for _ in range(2):
            if mid_publish(replicas) is not None:
                rabbit.close_connections("soak: a dropped connection")
                faults.append("broker connections dropped mid-publish")
        wait_busy(replicas, timeout=60)
        rabbit.stop_app()
        time.sleep(10)
        rabbit.start_app()
        faults.append("broker stopped for 10s")
        send(compose(42, 5), compose(41, 5), again(42, 1))
        injected = sum(switch.injected.values())
        with switch.on("drops"):
            wait_busy(replicas, timeout=60)
            time.sleep(6)
        faults.append(f"registry connections dropped ({sum(switch.injected.values()) - injected})")
        print("faults:", *faults, sep="\n  ")
        # The newest composes come after the faults, and each release's last one only once the
        # one before it (complete) is acknowledged: a requeued message may come back behind
        # later ones, and the rollback guard then keeps a tag on what came first. So the tags
        # end on the newest complete compose whatever the faults did.
        before_last = [compose(41, COMPOSES_PER_RELEASE - 2), compose(42, COMPOSES_PER_RELEASE - 2)]
        send(*before_last, again(41, COMPOSES_PER_RELEASE - 2))
        wait_until(
            lambda: all(acknowledged()[item.message_id] for item in before_last),
            timeout=SETTLE_TIMEOUT,
            what="the composes before the last to be acknowledged",
            interval=1,
        )
        last = COMPOSES_PER_RELEASE - 1
        send(compose(41, last), compose(42, last), compose(42, 3))  # and an old one, late

        # -- worked off ---------------------------------------------------------------------
        good = {message_id for message_id in published if message_id not in bad}

        def settled() -> bool:
            for replica in replicas:  # the supervisor: a replica that died is restarted
                if replica.current.proc.poll() is not None:
                    replica.ended_at[replica.processes[-1][0]] = time.time()
                    replica.start()
            done = acknowledged()
            return (
                all(done[m] >= published[m] for m in good)
                and amqp.ready(QUEUE) == 0
                and amqp.ready(DEAD_LETTERS) >= sum(published[m] for m in bad)
            )

        wait_until(settled, timeout=SETTLE_TIMEOUT, what="the stream to be worked off", interval=1)
        watcher.stop()
        sampler.stop()
        for replica in replicas:
            instance, process = replica.processes[-1]
            if process.proc.poll() is None:
                assert process.stop() == 0, process.output()[-3000:]
            replica.ended_at[instance] = time.time()
        print(
            f"soak: {len(published)} messages, {sum(published.values())} publications, "
            f"{len(watcher.reads)} reads, {time.monotonic() - started:.0f}s"
        )

        # -- the invariants -----------------------------------------------------------------
        problems: dict[str, list[str]] = {}
        # No index tag ever lost an arch or moved back.
        problems["index tags"] = watcher.problems + tag_regressions(watcher.reads)
        # The final state is the newest complete compose, with every arch.
        final = []
        for (repository, tag), compose_id in sorted(expected_final(planned).items()):
            found = registry.get_manifest(f"{NAMESPACE}/{repository}", tag)
            index = json.loads(found[2]) if found else {"annotations": {}, "manifests": []}
            serves = index["annotations"].get(COMPOSE_ID)
            arches = {entry["annotations"][ARCH] for entry in index["manifests"]}
            if serves != compose_id or arches != set(ARCHES):
                final.append(
                    f"{repository}:{tag} serves {serves} {sorted(arches)}, not {compose_id}"
                )
        problems["final state"] = final
        # Every move announced exactly once.
        results = amqp.drain(RESULTS)
        # One announcement per message id: the publisher sends a message again when the
        # broker's confirm was lost with the connection (fedora-messaging: at least once);
        # those copies carry the same id, and downstream sees one announcement.
        bodies = {
            properties.message_id: json.loads(raw)
            for key, properties, raw in results
            if key.endswith(".published.v1.container")
        }
        announced = [
            (body["repository"], tag, body["compose_id"])
            for body in bodies.values()
            for tag in body["tags"]
        ]
        moves = [
            (repository, tag, compose_id)
            for repository, tag in watched
            for compose_id in tag_history(registry, repository, tag)
        ]
        # ... a move made by a process killed -9 before it could announce it included: the
        # redelivery of its message announces it (docs/messages.md). Only when the kill was
        # the message's last delivery does nothing announce it (never twice either).
        every_run = [run for replica in replicas for run in replica.runs()]
        killed_runs = [
            run
            for replica in replicas
            for run in replica.runs()
            if run.compose is not None and replica.killed_at.get(run.consumer) == run.end
        ]
        survivors = {
            move
            for replica in replicas
            for instance, process in replica.processes
            if instance not in replica.killed_at
            for move in logged_moves(process.output())
        }
        killed = killed_before_announcing(moves, killed_runs, every_run, survivors)
        problems["announcements"] = move_problems(announced, moves, killed=killed)
        # No message lost: acknowledged after its work, or dead-lettered with a reason.
        dead: dict[str, list[str]] = {}
        for _, properties, _ in amqp.drain(DEAD_LETTERS):
            deaths = (properties.headers or {}).get("x-death") or [{}]
            dead.setdefault(properties.message_id, []).append(str(deaths[0].get("reason", "")))
        problems["messages"] = lost_messages(published, acknowledged(), dead, expected_dead=bad) + (
            [f"{QUEUE} still holds {amqp.ready(QUEUE)}"] if amqp.ready(QUEUE) else []
        )
        # No two runs at once: of one compose, nor (one active consumer) of any two messages.
        runs = [run for replica in replicas for run in replica.runs()]
        problems["runs of one compose"] = concurrent_runs(runs, same_compose=True)
        problems["runs at once"] = concurrent_runs(runs, same_compose=False)
        # ... and a run whose channel is lost stops (its message goes to another replica).
        problems["work after the channel was lost"] = [
            problem
            for replica in replicas
            for instance, process in replica.processes
            for problem in work_after_channel_loss(instance, process.output())
        ]
        # RSS flat.
        problems["rss"] = rss_growth(sampler.samples, factor=1.5, slack=32 * 2**20)
        print(
            "soak: RSS (MiB, first and last sample)",
            {k: (v[0] >> 20, v[-1] >> 20) for k, v in sorted(sampler.samples.items())},
        )
        # Nothing left behind.
        problems["leftovers"] = [f"work dir: {p.name}" for p in sorted(work.iterdir())] + [
            f"process: {line}"
            for line in sessions_alive(
                {p.proc.pid for replica in replicas for _, p in replica.processes}
            )
        ]
        # ... and the soak did what it says.
        problems["faults"] = [
            f"not injected: {fault}"
            for fault in (
                "kill -9",
                "burst",
                "registry stopped",
                "dropped mid-publish",
                "broker stopped",
                "registry connections dropped",
            )
            if not any(fault in done for done in faults)
        ] + [
            f"nothing injected by the proxy in a {mode}"
            for mode in ("status", "drop")
            if not any(label.startswith(mode) for label in switch.injected)
        ]
        broken_invariants = {k: v for k, v in problems.items() if v}
        assert not broken_invariants, "\n".join(
            f"{name}:\n  " + "\n  ".join(found[:20]) for name, found in broken_invariants.items()
        )
        assert len(watcher.reads) > 100
        assert len(runs) >= len(good)
