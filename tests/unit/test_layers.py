"""The layers of docs/architecture.md: every module of src/ is classified here, and the import
rule holds (tests/support/layers.py). A new module fails this test until it is classified."""

from __future__ import annotations

from pathlib import Path

import pytest

from support.layers import PACKAGE, Module, check

SRC = Path(__file__).resolve().parents[2] / "src" / PACKAGE

PURE, IO, ORCHESTRATION, ENTRY = "pure", "io", "orchestration", "entry"

#: Every module, by dotted name under the package, and its layer.
LAYERS = {
    "": PURE,
    "errors": PURE,
    "shown": PURE,
    "shown_logs": IO,
    "shutdown": IO,
    "activity": IO,
    # entry points
    "__main__": ENTRY,
    "cli": ENTRY,
    "consumer": ENTRY,
    # OCI value types
    "oci": PURE,
    "oci.platforms": PURE,
    "oci.mediatype": PURE,
    "oci.manifest": PURE,
    "oci.index": PURE,
    "oci.verify": IO,
    # configuration
    "config": PURE,
    "config.settings": PURE,
    "config.bus": PURE,
    "config.load": IO,
    "config.cpus": PURE,
    "config.cgroups": IO,
    # a compose
    "compose": PURE,
    "compose.message": PURE,
    "compose.urls": PURE,
    "compose.metadata": PURE,
    "compose.selection": PURE,
    "compose.decompress": PURE,
    "compose.members": PURE,
    "compose.fetch": IO,
    "compose.archive": IO,
    "compose.bodhi": IO,
    # the gate
    "gate": PURE,
    "gate.verdicts": PURE,
    "gate.ordering": PURE,
    "gate.tags": PURE,
    # network and registries
    "net": PURE,
    "net.httpclient": IO,
    "net.retry": IO,
    "net.tls": IO,
    "registry": PURE,
    "registry.client": IO,
    "registry.auth": IO,
    "registry.skopeo": IO,
    "registry.layout": IO,
    # publishing
    "publish": PURE,
    "publish.context": PURE,
    "publish.plan": PURE,
    "publish.outcomes": PURE,
    "publish.report": PURE,
    "publish.progress": IO,
    "publish.terminal": IO,
    "publish.workpool": IO,
    "publish.workdir": IO,
    "publish.composelock": IO,
    "publish.read": IO,
    "publish.build": IO,
    "publish.push": IO,
    "publish.mounts": IO,
    "publish.indexes": IO,
    "publish.verify": IO,
    "publish.execute": ORCHESTRATION,
    "publish.pipeline": ORCHESTRATION,
    # the bus
    "bus": PURE,
    "bus.results": PURE,
    "bus.answers": PURE,
    "bus.ledger": PURE,
    "bus.schemas": IO,
    "bus.notify": IO,
    "bus.health": IO,
    "bus.deadletters": IO,
    "bus.delivery": IO,
    "bus.reach": IO,
    # signing
    "signing": PURE,
    "signing.payload": PURE,
    "signing.status": PURE,
    "signing.tally": IO,
    "signing.keys": IO,
    "signing.setup": IO,
    "signing.store": IO,
    "signing.hook": IO,
    # the audit
    "audit": PURE,
    "audit.state": PURE,
    "audit.findings": PURE,
    "audit.report": PURE,
    "audit.cells": PURE,
    "audit.page": PURE,
    "audit.inventory": IO,
    "audit.html": IO,
    "audit.run": ORCHESTRATION,
}


def dotted(relative: str) -> str:
    return f"{PACKAGE}.{relative}" if relative else PACKAGE


def source_modules() -> dict[str, Module]:
    modules = {}
    for path in sorted(SRC.rglob("*.py")):
        parts = list(path.relative_to(SRC).with_suffix("").parts)
        is_package = parts[-1] == "__init__"
        if is_package:
            parts.pop()
        modules[dotted(".".join(parts))] = Module(path.read_text(), is_package)
    return modules


def test_every_module_is_classified_and_every_entry_is_a_module():
    found = set(source_modules())
    listed = {dotted(name) for name in LAYERS}
    assert sorted(found - listed) == [], "classify these modules in LAYERS"
    assert sorted(listed - found) == [], "these LAYERS entries name no module"


def test_every_module_keeps_to_its_layer():
    layers = {dotted(name): layer for name, layer in LAYERS.items()}
    violations = [str(v) for v in check(source_modules(), layers)]
    assert violations == []


# -- the checker catches what it must -----------------------------------------------------------

CLEAN = """
from __future__ import annotations
import json
import os
from collections.abc import Mapping
from pathlib import Path
from pydantic import BaseModel
from . import gate_like
from .other import helper

WORKERS = os.cpu_count()

def decide(path: Path, table: Mapping[str, str]) -> str:
    return json.dumps({"name": path.name, **table}).replace("a", "b")
"""


@pytest.mark.parametrize(
    ("source", "layer", "expected"),
    [
        ("import httpx\n", PURE, "pure module imports httpx"),
        ("def f():\n    import subprocess\n", PURE, "pure module imports subprocess"),
        (
            "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import fedora_messaging\n",
            PURE,
            "pure module imports fedora_messaging",
        ),
        (
            "from ..registry.client import RegistryClient\n",
            PURE,
            "pure module imports fedora_container_sync.registry.client (io)",
        ),
        (
            "from .. import shutdown\n",
            PURE,
            "pure module imports fedora_container_sync.shutdown (io)",
        ),
        ("import logging\n", PURE, "pure module imports logging"),
        ("import uuid\nID = uuid.uuid4()\n", PURE, "pure module uses uuid.uuid4"),
        ("data = open('x').read()\n", PURE, "pure module calls open()"),
        ("def f(path):\n    return path.read_text()\n", PURE, "pure module calls .read_text()"),
        ("def f(path):\n    path.parent.mkdir()\n", PURE, "pure module calls .mkdir()"),
        ("from datetime import datetime\nNOW = datetime.now()\n", PURE, "pure module calls .now()"),
        ("import os\nHOME = os.environ['HOME']\n", PURE, "pure module uses os.environ"),
        ("from os import environ\n", PURE, "pure module uses os.environ"),
        (
            "import posixpath\nFOUND = posixpath.exists('x')\n",
            PURE,
            ("pure module calls .exists()", "pure module uses posixpath.exists"),
        ),
        (
            "import posixpath\nREAL = posixpath.abspath('x')\n",
            PURE,
            "pure module uses posixpath.abspath",
        ),
        ("print('hello')\n", PURE, "pure module calls print()"),
        (
            "from ..publish.pipeline import publish_compose\n",
            IO,
            "io module imports fedora_container_sync.publish.pipeline (orchestration)",
        ),
        (
            "from .. import cli\n",
            ORCHESTRATION,
            "orchestration module imports fedora_container_sync.cli (entry)",
        ),
        (
            "from ..nowhere import thing\n",
            IO,
            "imports fedora_container_sync.nowhere, which is not classified",
        ),
    ],
)
def test_the_checker_catches_a_planted_violation(source, layer, expected):
    planted = "fedora_container_sync.gate.planted"
    modules = {**source_modules(), planted: Module(source)}
    layers = {dotted(name): kind for name, kind in LAYERS.items()}
    layers[planted] = layer
    found = [v.what for v in check(modules, layers) if v.module == planted]
    assert sorted(found) == sorted([expected] if isinstance(expected, str) else expected)


def test_the_checker_passes_a_clean_pure_module_and_names_an_unclassified_one():
    modules = {
        "fedora_container_sync.gate": Module("", is_package=True),
        "fedora_container_sync.gate.gate_like": Module(""),
        "fedora_container_sync.gate.other": Module("def helper(): pass\n"),
        "fedora_container_sync.gate.clean": Module(CLEAN),
        "fedora_container_sync.gate.stray": Module(""),
    }
    layers = {name: PURE for name in modules if not name.endswith("stray")}
    found = [str(v) for v in check(modules, layers)]
    assert found == ["fedora_container_sync.gate.stray:1: not classified (layer None)"]
