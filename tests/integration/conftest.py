"""Fixtures for end-to-end runs (see support.harness)."""

from __future__ import annotations

import pytest

from support.harness import Harness


@pytest.fixture
def harness(tmp_path, served_root, compose_server, registry, namespace, capsys) -> Harness:
    return Harness(tmp_path, served_root, compose_server, [registry], namespace, capsys)
