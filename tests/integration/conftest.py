"""Fixtures for end-to-end runs (see support.harness)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from support.broker import Bus, rabbitmq_listening
from support.harness import Harness


@pytest.fixture
def harness(tmp_path, served_root, compose_server, registry, namespace, capsys) -> Harness:
    return Harness(tmp_path, served_root, compose_server, [registry], namespace, capsys)


@pytest.fixture
def bus(harness, tmp_path) -> Iterator[Bus]:
    """This test's queues on the real RabbitMQ, and ``fedora-messaging consume`` runs."""
    if not rabbitmq_listening():
        pytest.fail(
            "RabbitMQ is not listening on 127.0.0.1:5672 (.ci/run starts it with "
            "rabbitmq-server -detached); consumer tests cannot run",
            pytrace=False,
        )
    bus = Bus(harness, tmp_path, env=f"t{uuid.uuid4().hex[:12]}")
    try:
        yield bus
    finally:
        bus.close()
