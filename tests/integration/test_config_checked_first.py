"""The whole config file is checked before any work: fedora-messaging's keys as well as ours,
and every registry's cert_dir. A bad one is exit 2 and one line naming it, and neither the
compose server nor a registry sees a single request (both sit behind a recording proxy); the
consumer stops at start, before it consumes anything."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from support.broker import Bus
from support.harness import Harness
from support.proxy import FaultProxy
from support.servers import Registry

pytestmark = pytest.mark.integration

COMPOSE = "Fedora-41-20241025.0"
BUS_KEYS = """amqp_url = "amqp://guest:guest@127.0.0.1:5672/%2F"
topic_prefix = "org.fedoraproject.test"
"""


@pytest.fixture
def watched(
    harness: Harness, registry: Registry
) -> Iterator[tuple[Harness, FaultProxy, FaultProxy]]:
    """The harness with the compose server and the registry behind recording proxies."""
    with FaultProxy(harness.server.url) as compose, FaultProxy(registry.url) as registry_proxy:
        harness.server = compose  # type: ignore[assignment]
        harness.registry_entries[registry.host] = (
            f'url = "{registry_proxy.host}/{harness.namespace}"\ntls_verify = false\n'
        )
        yield harness, compose, registry_proxy


def with_bus_keys(config: Path, bus_keys: str) -> Path:
    config.write_text(bus_keys + config.read_text())
    return config


def one_error(err: str) -> str:
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("fedora-container-sync: error: "), err
    return lines[0]


@pytest.mark.parametrize(
    ("bus_keys", "named"),
    [
        (BUS_KEYS.replace("topic_prefix", "topic_prefx"), "topic_prefx: unknown key"),
        (BUS_KEYS + "publish_exchnage = 'amq.topic'\n", "publish_exchnage: unknown key"),
        (BUS_KEYS + "\n[qos]\nprefetch_count = 1\n", "qos.prefetch_size: required key is missing"),
        (
            BUS_KEYS + '\n[tls]\nca_cert = "/ca.pem"\ncertfile = "/c.pem"\nkeyfle = "/k.pem"\n',
            "tls.keyfle: unknown key",
        ),
    ],
    ids=["top-level", "another-top-level", "qos-incomplete", "tls-misspelt"],
)
def test_a_bad_fedora_messaging_key_stops_replay_and_audit_before_any_request(
    watched, bus_keys, named
):
    harness, compose, registry = watched
    message = harness.message_file(harness.compose(COMPOSE, arches=("x86_64",)))
    harness.extra_config = "publish_amqp_messages = true\n"
    config = with_bus_keys(harness.config(), bus_keys)

    for argv in (
        ["replay", "--config", str(config), str(message)],
        ["replay", "--dry-run", "--config", str(config), str(message)],
        ["audit", "--config", str(config)],
    ):
        result = harness.run(*argv)
        assert result.code == 2, (argv, result.err)
        assert result.out == ""
        assert named in one_error(result.err)
    assert compose.requests == []
    assert registry.requests == []

    # The same file without the mistake does the work (so the proxies would have seen it).
    harness.extra_config = ""
    config = with_bus_keys(harness.config(), BUS_KEYS)
    result = harness.run("replay", "--config", str(config), str(message))
    assert result.code == 0, result.err
    assert compose.requests and registry.requests


@pytest.mark.parametrize("problem", ["missing", "a file", "garbage CA"])
def test_an_unusable_cert_dir_stops_replay_and_audit_before_any_request(
    watched, registry, tmp_path, problem
):
    harness, compose, registry_proxy = watched
    message = harness.message_file(harness.compose(COMPOSE, arches=("x86_64",)))
    cert_dir = tmp_path / "certs.d"
    if problem == "a file":
        cert_dir.write_text("not a directory\n")
    elif problem == "garbage CA":
        cert_dir.mkdir()
        (cert_dir / "registry-ca.crt").write_text("-----BEGIN CERTIFICATE-----\nnope\n")
    harness.registry_entries[registry.host] += f'cert_dir = "{cert_dir}"\n'
    config = harness.config()

    for argv in (
        ["replay", "--config", str(config), str(message)],
        ["replay", "--dry-run", "--config", str(config), str(message)],
        ["audit", "--config", str(config)],
    ):
        result = harness.run(*argv)
        assert result.code == 2, (argv, result.err)
        line = one_error(result.err)
        assert f"cert_dir {cert_dir}: " in line
    assert compose.requests == []
    assert registry_proxy.requests == []

    # An existing, readable (here: empty) cert_dir is fine.
    if cert_dir.is_file():
        cert_dir.unlink()
    elif cert_dir.is_dir():
        (cert_dir / "registry-ca.crt").unlink()
    cert_dir.mkdir(exist_ok=True)
    result = harness.run("replay", "--config", str(config), str(message))
    assert result.code == 0, result.err


@pytest.mark.parametrize(
    ("edit", "named"),
    [
        (("prefetch_count = 1", "prefetch_count = '1'"), "qos.prefetch_count"),
        (("prefetch_size = 0\n", ""), "qos.prefetch_size: required key is missing"),
        (
            (
                "\n[consumer_config.container]\n",
                "\n[consumer_config.containers]\n[consumer_config.container]\n",
            ),
            "consumer_config.containers: unknown key",
        ),
    ],
    ids=["qos-wrong-type", "qos-incomplete", "second-app-table"],
)
def test_the_consumer_refuses_a_bad_fedora_messaging_table_at_start(bus: Bus, edit, named):
    # fedora-messaging checks only the names of its top-level keys; it would fail on these when
    # it connects (a KeyError, or a prefetch count pika refuses).
    config = bus.config()
    old, new = edit
    assert old in config.read_text()
    config.write_text(config.read_text().replace(old, new, 1))
    consumer = bus.consumer(config)
    code = consumer.proc.wait(timeout=60)
    output = consumer.output()
    assert code == 2, output
    errors = [line for line in output.splitlines() if "cannot start" in line]
    assert len(errors) == 1, output
    assert named in errors[0]
    assert "Traceback" not in output


def test_the_consumer_refuses_a_missing_cert_dir_at_start(bus: Bus, tmp_path):
    harness = bus.harness
    registry = harness.registries[0]
    missing = tmp_path / "no-certs.d"
    harness.registry_entries[registry.host] = (
        f'url = "{registry.host}/{harness.namespace}"\ntls_verify = false\ncert_dir = "{missing}"\n'
    )
    consumer = bus.consumer(bus.config())
    code = consumer.proc.wait(timeout=60)
    output = consumer.output()
    assert code == 2, output
    (error,) = [line for line in output.splitlines() if "cannot start" in line]
    assert f"cert_dir {missing}: not found" in error
    assert "Traceback" not in output
