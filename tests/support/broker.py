"""The real RabbitMQ on 127.0.0.1:5672 (guest/guest) for consumer tests.

* :class:`Broker`: a pika connection to declare, bind, count, read and delete test queues.
* :class:`ConsumerProcess`: ``fedora-messaging --conf FILE consume`` as a subprocess, in its
  own process group (so ``kill9`` also kills the skopeo it is running), its output in a file,
  its ``[monitoring]`` statistics over HTTP.
* :func:`publish_file`: ``fedora-messaging publish`` of saved messages, as an operator would.
* :func:`production_queue`: the arguments of the production shape (a quorum queue with a
  single active consumer, a delivery limit and a dead-letter exchange); :class:`Bus` declares
  it, its dead-letter exchange and queue as an operator (or Fedora Infrastructure) would.
* :class:`PrivateBroker`: a RabbitMQ node of a test's own, to stop and start without
  disturbing the shared one.

Every test works under its own routing-key namespace ``org.fedoraproject.<env>.``, so parallel
runs on the same broker never see each other's messages.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, Final, Self

import httpx
import pika
from fedora_messaging import message as fm_message

AMQP_HOST: Final = "127.0.0.1"
AMQP_PORT: Final = 5672
AMQP_URL: Final = f"amqp://guest:guest@{AMQP_HOST}:{AMQP_PORT}/%2F"
BIN: Final = Path(sys.executable).parent


def rabbitmq_listening() -> bool:
    try:
        with socket.create_connection((AMQP_HOST, AMQP_PORT), timeout=2):
            return True
    except OSError:
        return False


def wait_until(
    condition: Callable[[], Any], *, timeout: float, what: str, interval: float = 0.1
) -> Any:
    """Poll ``condition`` until it returns something truthy; fail naming ``what``."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


class Broker:
    """A blocking pika connection for test set-up and inspection."""

    def __init__(self) -> None:
        self._connection = pika.BlockingConnection(pika.URLParameters(AMQP_URL))
        self._channel = self._connection.channel()
        self._queues: list[str] = []
        self._exchanges: list[str] = []

    def close(self) -> None:
        for queue in self._queues:
            self._channel.queue_delete(queue)
        for exchange in self._exchanges:
            self._channel.exchange_delete(exchange)
        self._connection.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def declare(
        self,
        queue: str,
        routing_keys: Iterable[str],
        exchange: str = "amq.topic",
        *,
        arguments: dict[str, Any] | None = None,
    ) -> str:
        """A durable queue bound to ``routing_keys``; deleted by :meth:`close`."""
        self._channel.queue_declare(
            queue, durable=True, auto_delete=False, exclusive=False, arguments=arguments
        )
        for key in routing_keys:
            self._channel.queue_bind(queue, exchange, routing_key=key)
        self._queues.append(queue)
        return queue

    def declare_dead_letters(self, name: str) -> str:
        """A fanout exchange and a quorum queue of the same ``name``, bound: where a queue
        with ``x-dead-letter-exchange = name`` hands its dead letters, topics intact."""
        self._channel.exchange_declare(name, "fanout", durable=True)
        self._exchanges.append(name)
        return self.declare(name, [""], exchange=name, arguments={"x-queue-type": "quorum"})

    def count(self, queue: str) -> int:
        """Messages ready in ``queue`` (not counting delivered, unacknowledged ones)."""
        frame = self._channel.queue_declare(queue, passive=True)
        return int(frame.method.message_count)

    def take(self, queue: str) -> list[fm_message.Message]:
        """Every message ready in ``queue``, decoded with its fedora-messaging schema."""
        taken = []
        while True:
            method, properties, body = self._channel.basic_get(queue, auto_ack=True)
            if method is None:
                return taken
            taken.append(fm_message.get_message(method.routing_key, properties, body))

    def wait_take(self, queue: str, count: int, *, timeout: float = 60) -> list[Any]:
        """Wait until ``count`` messages arrived in ``queue``; return all of them."""
        got: list[fm_message.Message] = []

        def enough() -> bool:
            got.extend(self.take(queue))
            return len(got) >= count

        wait_until(enough, timeout=timeout, what=f"{count} messages on {queue} (got {len(got)})")
        time.sleep(0.3)
        got.extend(self.take(queue))
        return got


def write_messages(path: Path, messages: Sequence[fm_message.Message]) -> Path:
    """Messages in fedora-messaging's serialized format (what ``fedora-messaging record``
    writes and ``fedora-messaging publish`` reads)."""
    path.write_text("".join(fm_message.dumps(message) for message in messages))
    return path


def publish_file(path: Path, tmp: Path) -> None:
    """``fedora-messaging publish --exchange amq.topic FILE`` with a config without
    ``topic_prefix``, so each message goes out with exactly the topic it carries."""
    config = tmp / "publisher.toml"
    config.write_text(f'amqp_url = "{AMQP_URL}"\n')
    argv = [str(BIN / "fedora-messaging"), "--conf", str(config), "publish"]
    result = subprocess.run(
        [*argv, "--exchange", "amq.topic", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, f"publish failed: {result.stdout}{result.stderr}"


def production_queue(*, delivery_limit: int, dead_letters: str) -> dict[str, Any]:
    """The queue arguments of the production shape (deploy/openshift/configmap.yaml)."""
    return {
        "x-queue-type": "quorum",
        "x-single-active-consumer": True,
        "x-delivery-limit": delivery_limit,
        "x-dead-letter-exchange": dead_letters,
        "x-dead-letter-strategy": "at-least-once",
        "x-overflow": "reject-publish",
    }


#: The log line format of test consumers; HA tests add the time (``%(created).6f``).
LOG_FORMAT: Final = "%(levelname)s %(name)s: %(message)s"


def consumer_config(
    *,
    queue: str,
    routing_keys: Sequence[str],
    topic_prefix: str,
    monitoring_port: int,
    container_table: str,
    arguments: dict[str, Any] | None = None,
    amqp_url: str = AMQP_URL,
    callback: str = "fedora_container_sync.consumer:Consumer",
    log_format: str = LOG_FORMAT,
) -> str:
    """A fedora-messaging config for the consumer: a durable named queue (with ``arguments``),
    prefetch 1, monitoring, logs on stdout, then ``container_table``
    ([consumer_config.container]...)."""
    keys = ", ".join(f'"{key}"' for key in routing_keys)
    table = "".join(f'"{key}" = {json.dumps(value)}\n' for key, value in (arguments or {}).items())
    return f"""
amqp_url = "{amqp_url}"
callback = "{callback}"
topic_prefix = "{topic_prefix}"

[client_properties]
app = "fedora-container-sync tests"

[qos]
prefetch_size = 0
prefetch_count = 1

[queues."{queue}"]
durable = true
auto_delete = false
exclusive = false

[queues."{queue}".arguments]
{table}

[[bindings]]
queue = "{queue}"
exchange = "amq.topic"
routing_keys = [{keys}]

[monitoring]
address = "127.0.0.1"
port = {monitoring_port}

[log_config]
version = 1
disable_existing_loggers = false

[log_config.formatters.simple]
format = "{log_format}"

[log_config.handlers.console]
class = "logging.StreamHandler"
formatter = "simple"
stream = "ext://sys.stdout"

[log_config.loggers.fedora_container_sync]
level = "INFO"

[log_config.loggers.fedora_messaging]
level = "INFO"

[log_config.root]
level = "WARNING"
handlers = ["console"]
{container_table}
"""


class ConsumerProcess:
    """``fedora-messaging --conf CONFIG consume`` in its own process group."""

    def __init__(
        self,
        config: Path,
        log: Path,
        *,
        monitoring_port: int | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        self.config = config
        self.log = log
        self.monitoring_port = monitoring_port
        self.extra_env = env or {}
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Self:
        env = {k: v for k, v in os.environ.items() if not k.startswith("FEDORA_MESSAGING")}
        env.update(self.extra_env)
        with self.log.open("ab") as out:
            self._proc = subprocess.Popen(
                [str(BIN / "fedora-messaging"), "--conf", str(self.config), "consume"],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
            )
        return self

    @property
    def proc(self) -> subprocess.Popen[bytes]:
        assert self._proc is not None, "consumer not started"
        return self._proc

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def lines(self, pattern: str) -> list[str]:
        return [line for line in self.output().splitlines() if re.search(pattern, line)]

    def wait_log(self, pattern: str, *, count: int = 1, timeout: float = 90) -> list[str]:
        """Wait until ``count`` output lines match ``pattern``; fail early if it exits."""

        def seen() -> list[str] | None:
            found = self.lines(pattern)
            if len(found) >= count:
                return found
            if self.proc.poll() is not None:
                raise AssertionError(
                    f"consumer exited ({self.proc.returncode}) before logging {pattern!r}:\n"
                    + self.output()[-3000:]
                )
            return None

        found: list[str] = wait_until(seen, timeout=timeout, what=f"log line {pattern!r}")
        return found

    def stats(self) -> dict[str, Any]:
        """fedora-messaging's ``/ready`` statistics: consuming, published, received, processed,
        dropped, rejected (Nack), failed."""
        assert self.monitoring_port is not None
        response = httpx.get(f"http://127.0.0.1:{self.monitoring_port}/ready", timeout=5)
        response.raise_for_status()
        ready: dict[str, Any] = response.json()
        # {"consuming": .., "published": .., "consumed": {"received": .., ...}}: flatten
        return {**ready, **ready.pop("consumed", {})}

    def wait_stats(self, *, timeout: float = 90, **expected: int) -> dict[str, Any]:
        """Wait until every named statistic reached (at least) its expected value."""

        def reached() -> dict[str, Any] | None:
            if self.proc.poll() is not None:
                raise AssertionError(
                    f"consumer exited ({self.proc.returncode}):\n" + self.output()[-3000:]
                )
            try:
                stats = self.stats()
            except httpx.HTTPError:
                return None
            return stats if all(stats.get(k, 0) >= v for k, v in expected.items()) else None

        found: dict[str, Any] = wait_until(reached, timeout=timeout, what=f"stats {expected}")
        return found

    def kill9(self) -> None:
        """SIGKILL the consumer and everything it started (skopeo included)."""
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=30)

    def stop(self, *, timeout: float = 60) -> int:
        """SIGTERM, as systemd or OpenShift stop it; return the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.kill9()
                raise AssertionError(f"consumer ignored SIGTERM for {timeout}s") from None
        return int(self.proc.returncode)

    def cleanup(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self.kill9()


class Bus:
    """One test's slice of the broker: a consumer queue bound to
    ``org.fedoraproject.<env>.pungi.compose.status.change`` and ``...<env>.hotness.#``, and a
    results queue bound to the result topics the consumer sends under ``topic_prefix``
    ``org.fedoraproject.<env>``. ``consumer()`` starts ``fedora-messaging consume`` on a config
    built from the test's harness (its registries, allowlist and work dir)."""

    def __init__(
        self, harness: Any, tmp: Path, env: str, *, delivery_limit: int | None = None
    ) -> None:
        self.harness = harness
        self.tmp = tmp
        self.env = env
        self.topic_prefix = f"org.fedoraproject.{env}"
        self.pungi_topic = f"{self.topic_prefix}.pungi.compose.status.change"
        self.queue = f"fedora-container-sync-test-{env}"
        self.results_queue = f"{self.queue}-results"
        self.dead_letters = f"{self.queue}.dead-letter"
        #: the consumer queue's arguments: the production shape when ``delivery_limit`` is set
        self.arguments: dict[str, Any] = {}
        self.broker = Broker()
        self.broker.declare(
            self.results_queue,
            [
                f"{self.topic_prefix}.fedora_image_uploader.#",
                f"{self.topic_prefix}.fedora_container_sync.#",
            ],
        )
        self.routing_keys = [self.pungi_topic, f"{self.topic_prefix}.hotness.#"]
        if delivery_limit is not None:
            # What the operator declares first (docs/running.md): the dead letters' exchange
            # and queue.
            self.broker.declare_dead_letters(self.dead_letters)
            self.arguments = production_queue(
                delivery_limit=delivery_limit, dead_letters=self.dead_letters
            )
        self.broker.declare(self.queue, self.routing_keys, arguments=self.arguments)
        self._consumers: list[ConsumerProcess] = []
        self._published = 0

    def close(self) -> None:
        for consumer in self._consumers:
            consumer.cleanup()
        self.broker.close()

    def pungi(self, body: dict[str, Any]) -> fm_message.Message:
        """The message Pungi sends for ``body`` (a base message, as Pungi's are)."""
        return fm_message.Message(topic=self.pungi_topic, body=body)

    def publish(self, *messages: fm_message.Message) -> None:
        self._published += 1
        path = write_messages(self.tmp / f"published-{self._published}.jsonl", messages)
        publish_file(path, self.tmp)

    def config(
        self,
        *,
        settings: str = "",
        requeue: str = "",
        name: str = "consumer",
        callback: str = "fedora_container_sync.consumer:Consumer",
        log_format: str = LOG_FORMAT,
    ) -> Path:
        """Write the consumer's config: ``settings`` are extra keys of
        [consumer_config.container], ``requeue`` the body of its requeue table."""
        self.harness.extra_config = (
            settings
            + "\n[consumer_config.container.requeue]\n"
            + (requeue or "initial_delay = 0.2\nmax_delay = 1.0\n")
        )
        table = self.harness.config().read_text()
        port = _free_port()
        path = self.tmp / f"{name}.toml"
        path.write_text(
            consumer_config(
                queue=self.queue,
                routing_keys=self.routing_keys,
                topic_prefix=self.topic_prefix,
                monitoring_port=port,
                container_table=table,
                arguments=self.arguments,
                callback=callback,
                log_format=log_format,
            )
        )
        return path

    def consumer(self, config: Path, *, env: dict[str, str] | None = None) -> ConsumerProcess:
        port = _monitoring_port(config)
        consumer = ConsumerProcess(
            config, config.with_suffix(".log"), monitoring_port=port, env=env
        )
        self._consumers.append(consumer)
        return consumer.start()

    def results(self, count: int, *, timeout: float = 60) -> list[Any]:
        return self.broker.wait_take(self.results_queue, count, timeout=timeout)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _monitoring_port(config: Path) -> int:
    import tomllib

    return int(tomllib.loads(config.read_text())["monitoring"]["port"])


class PrivateBroker:
    """A RabbitMQ node of its own on 127.0.0.1 (a free port, its own node name, data and logs
    in a temporary directory), so a test can stop and start a broker without disturbing the
    shared one. :meth:`stop_app` / :meth:`start_app` stop and start RabbitMQ the way an
    operator does (``rabbitmqctl stop_app``): connections closed, the port refusing."""

    def __init__(self) -> None:
        import pwd
        import shutil
        import tempfile
        import uuid

        self.port = _free_port()
        self.node = f"fcs-test-{uuid.uuid4().hex[:8]}@localhost"
        self.url = f"amqp://guest:guest@{AMQP_HOST}:{self.port}/%2F"
        self._dir = Path(tempfile.mkdtemp(prefix="fcs-rabbitmq-"))
        self._shutil = shutil
        (self._dir / "rabbitmq.conf").write_text(f"listeners.tcp.local = {AMQP_HOST}:{self.port}\n")
        for sub in ("mnesia", "log"):
            (self._dir / sub).mkdir()
        if os.geteuid() == 0:  # rabbitmq-server drops to the rabbitmq user
            user = pwd.getpwnam("rabbitmq")
            for path in (self._dir, *self._dir.iterdir()):
                os.chown(path, user.pw_uid, user.pw_gid)
        self._env = {
            **os.environ,
            "RABBITMQ_NODENAME": self.node,
            "RABBITMQ_CONFIG_FILE": str(self._dir / "rabbitmq.conf"),
            "RABBITMQ_DIST_PORT": str(_free_port()),
            "RABBITMQ_MNESIA_BASE": str(self._dir / "mnesia"),
            "RABBITMQ_LOG_BASE": str(self._dir / "log"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(self._dir / "enabled_plugins"),
            "RABBITMQ_PID_FILE": str(self._dir / "pid"),
        }

    def start(self) -> Self:
        subprocess.run(["rabbitmq-server", "-detached"], env=self._env, check=True, timeout=60)
        self._ctl("wait", str(self._dir / "pid"), "--timeout", "60")
        self.wait_listening()
        return self

    def wait_listening(self) -> None:
        def listening() -> bool:
            try:
                with socket.create_connection((AMQP_HOST, self.port), timeout=1):
                    return True
            except OSError:
                return False

        wait_until(listening, timeout=60, what=f"RabbitMQ {self.node} on port {self.port}")

    def stop_app(self) -> None:
        self._ctl("stop_app")

    def start_app(self) -> None:
        self._ctl("start_app")
        self.wait_listening()

    def close_connections(self, reason: str) -> None:
        """Close every client connection (``rabbitmqctl close_all_connections``), as a lost
        network or a broker restart does; the node stays up and clients reconnect."""
        self._ctl("close_all_connections", reason)

    def stop(self) -> None:
        try:
            self._ctl("stop")
        finally:
            self._shutil.rmtree(self._dir, ignore_errors=True)

    def _ctl(self, *args: str) -> None:
        result = subprocess.run(
            ["rabbitmqctl", "-n", self.node, *args],
            env=self._env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert result.returncode == 0, f"rabbitmqctl {' '.join(args)}: {result.stderr[-2000:]}"

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
