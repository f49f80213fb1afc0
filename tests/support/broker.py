"""The real RabbitMQ on 127.0.0.1:5672 (guest/guest) for consumer tests.

* :class:`Broker`: a pika connection to declare, bind, count, read and delete test queues.
* :class:`ConsumerProcess`: ``fedora-messaging --conf FILE consume`` as a subprocess, in its
  own process group (so ``kill9`` also kills the skopeo it is running), its output in a file,
  its ``[monitoring]`` statistics over HTTP.
* :func:`publish_file`: ``fedora-messaging publish`` of saved messages, as an operator would.

Every test works under its own routing-key namespace ``org.fedoraproject.<env>.``, so parallel
runs on the same broker never see each other's messages.
"""

from __future__ import annotations

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

    def close(self) -> None:
        for queue in self._queues:
            self._channel.queue_delete(queue)
        self._connection.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def declare(self, queue: str, routing_keys: Iterable[str], exchange: str = "amq.topic") -> str:
        """A durable queue bound to ``routing_keys``; deleted by :meth:`close`."""
        self._channel.queue_declare(queue, durable=True, auto_delete=False, exclusive=False)
        for key in routing_keys:
            self._channel.queue_bind(queue, exchange, routing_key=key)
        self._queues.append(queue)
        return queue

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


def consumer_config(
    *,
    queue: str,
    routing_keys: Sequence[str],
    topic_prefix: str,
    monitoring_port: int,
    container_table: str,
) -> str:
    """A fedora-messaging config for the consumer: a durable named queue, prefetch 1,
    monitoring, logs on stdout, then ``container_table`` ([consumer_config.container]...)."""
    keys = ", ".join(f'"{key}"' for key in routing_keys)
    return f"""
amqp_url = "{AMQP_URL}"
callback = "fedora_container_sync.consumer:Consumer"
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
arguments = {{}}

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
format = "%(levelname)s %(name)s: %(message)s"

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

    def __init__(self, config: Path, log: Path, *, monitoring_port: int | None = None) -> None:
        self.config = config
        self.log = log
        self.monitoring_port = monitoring_port
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Self:
        env = {k: v for k, v in os.environ.items() if not k.startswith("FEDORA_MESSAGING")}
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

    def __init__(self, harness: Any, tmp: Path, env: str) -> None:
        self.harness = harness
        self.tmp = tmp
        self.env = env
        self.topic_prefix = f"org.fedoraproject.{env}"
        self.pungi_topic = f"{self.topic_prefix}.pungi.compose.status.change"
        self.queue = f"fedora-container-sync-test-{env}"
        self.results_queue = f"{self.queue}-results"
        self.broker = Broker()
        self.broker.declare(
            self.results_queue,
            [
                f"{self.topic_prefix}.fedora_image_uploader.#",
                f"{self.topic_prefix}.fedora_container_sync.#",
            ],
        )
        self.routing_keys = [self.pungi_topic, f"{self.topic_prefix}.hotness.#"]
        self.broker.declare(self.queue, self.routing_keys)
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

    def config(self, *, settings: str = "", requeue: str = "", name: str = "consumer") -> Path:
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
            )
        )
        return path

    def consumer(self, config: Path) -> ConsumerProcess:
        port = _monitoring_port(config)
        consumer = ConsumerProcess(config, config.with_suffix(".log"), monitoring_port=port)
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
