"""Shared fixtures: real registries, a real compose file server, per-test namespaces.

Integration fixtures never skip: if ``skopeo`` or ``docker-registry`` is missing they fail
loudly, because CI installs both and a skip would hide a broken install.
"""

from __future__ import annotations

import re
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from support.servers import FileServer, Registry, registry_binary

REQUIRED_TOOLS = ("skopeo", registry_binary())

#: A test module that talks to the shared RabbitMQ on 127.0.0.1:5672 (or starts a node of its
#: own): its consumers bind the same topics as every other such module's, so under
#: ``pytest -n`` (``make test``) they all run on one worker, one at a time, as they would
#: without xdist. Everything else is spread over the workers.
_BROKER = re.compile(r"support\.broker|amqp|rabbit|fedora[_-]messaging", re.IGNORECASE)
_talks_to_the_broker: dict[Path, bool] = {}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        path = item.path
        if path not in _talks_to_the_broker:
            talks = "integration" in path.parts and bool(_BROKER.search(path.read_text()))
            _talks_to_the_broker[path] = talks
        if _talks_to_the_broker[path]:
            item.add_marker(pytest.mark.xdist_group("broker"))


def _require_tools() -> None:
    missing = [tool for tool in REQUIRED_TOOLS if shutil.which(tool) is None]
    if missing:
        pytest.fail(
            f"required tool(s) not on PATH: {', '.join(missing)} "
            "(apt-get install skopeo docker-registry); integration tests cannot run",
            pytrace=False,
        )


def _start_registry() -> Registry:
    _require_tools()
    return Registry().start()


@pytest.fixture(scope="session")
def registry() -> Iterator[Registry]:
    """A session-wide distribution registry on 127.0.0.1 (no auth). Use ``namespace``."""
    reg = _start_registry()
    try:
        yield reg
    finally:
        reg.stop()


@pytest.fixture(scope="session")
def second_registry() -> Iterator[Registry]:
    """Another, independent registry (for multi-registry publishing)."""
    reg = _start_registry()
    try:
        yield reg
    finally:
        reg.stop()


_NOT_ALNUM = re.compile(r"[^a-z0-9]+")


@pytest.fixture
def namespace(request: pytest.FixtureRequest) -> str:
    """A short unique registry path component for this test, e.g. ``push-twice-3f9a1c``.

    Matches distribution's ``[a-z0-9]+(?:[-][a-z0-9]+)*``, so tests can publish under
    ``<registry.host>/<namespace>/<repo>`` without seeing each other's tags.
    """
    name = _NOT_ALNUM.sub("-", request.node.name.lower()).strip("-")
    name = name.removeprefix("test-")[:40].strip("-") or "t"
    return f"{name}-{uuid.uuid4().hex[:6]}"


@pytest.fixture(scope="session")
def served_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Directory served by ``compose_server``; build composes under it."""
    return tmp_path_factory.mktemp("served")


@pytest.fixture(scope="session")
def compose_server(served_root: Path) -> Iterator[FileServer]:
    """A session-wide HTTP server for ``served_root`` (the "kojipkgs" of the tests)."""
    with FileServer(served_root) as server:
        yield server
