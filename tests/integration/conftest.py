"""Fixtures for end-to-end runs (see support.harness)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from fedora_container_sync.compose import bodhi
from fedora_container_sync.config.settings import Credentials
from fedora_container_sync.registry.auth import RegistryAuth
from support.auth import PASSWORD, USER
from support.bodhi import BodhiServer
from support.broker import Bus, rabbitmq_listening
from support.harness import Harness
from support.proxy import FaultProxy
from support.servers import Registry, write_htpasswd
from support.tokens import TokenServer


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


# Registries that need credentials (USER / PASSWORD from support.auth), one per session.


@pytest.fixture(scope="session")
def basic_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    """distribution with htpasswd (Basic) auth."""
    htpasswd = write_htpasswd(tmp_path_factory.mktemp("htpasswd") / "htpasswd", {USER: PASSWORD})
    with Registry(htpasswd=htpasswd, credentials=(USER, PASSWORD)) as registry:
        yield registry


@pytest.fixture(scope="session")
def token_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TokenServer]:
    with TokenServer(tmp_path_factory.mktemp("tokens"), {USER: PASSWORD}) as server:
        yield server


@pytest.fixture(scope="session")
def token_registry(token_server: TokenServer) -> Iterator[Registry]:
    """distribution with token auth, trusting ``token_server``'s signing certificate."""
    auth = RegistryAuth(Credentials(USER, PASSWORD), registry="test", allow_http_realm=True)
    with Registry(token_auth=token_server.registry_auth_config(), http_auth=auth) as registry:
        yield registry


# Bodhi (release numbers), with the process's cache of its answers cleared before and after.


@pytest.fixture
def bodhi_server() -> Iterator[BodhiServer]:
    bodhi.clear_cache()
    server = BodhiServer().start()
    try:
        yield server
    finally:
        server.stop()
        bodhi.clear_cache()


@pytest.fixture
def bodhi_proxy(bodhi_server: BodhiServer) -> Iterator[FaultProxy]:
    """A fault proxy in front of ``bodhi_server``."""
    with FaultProxy(bodhi_server.url) as proxy:
        yield proxy
