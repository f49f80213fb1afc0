"""End-to-end harness: compose trees served over HTTP, a config file pointing at
the session's real registries under a per-test namespace, and the real CLI entry point."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from fedora_container_sync.cli import main
from support.compose import ComposeImage, build_compose, finished_message, serialized_message
from support.servers import FileServer, Registry

ARCHES = ("x86_64", "aarch64", "ppc64le", "s390x")
REPOS = {
    "Container_Base": "fedora",
    "Container_Minimal_Base": "fedora-minimal",
    "Container_Toolbox": "fedora-toolbox",
}


def report_rows(out: str) -> dict[str, tuple[str, str, str, str]]:
    """The rows of the printed plan/gate report: tag (after the last ':') → (verdict,
    current arches, compose arches, reason). Later composes' (and registries') rows replace
    earlier ones. A reason on a line of its own (indented under its row) belongs to the row."""
    rows: dict[str, tuple[str, str, str, str]] = {}
    in_table = False
    last: str | None = None
    for line in out.splitlines():
        if line.startswith("  tags in ") and line.endswith(":"):
            in_table, last = True, None
            continue
        if not line.startswith("    "):
            in_table = False
            continue
        if not in_table:
            continue
        if line.startswith("      "):  # the reason of the row above
            if last is not None:
                verdict, current, compose, _ = rows[last]
                rows[last] = (verdict, current, compose, line.strip())
            continue
        cells = re.split(r"\s{2,}", line.strip(), maxsplit=4)
        last = None
        if cells[0] != "tag" and len(cells) >= 4:
            reason = cells[4] if len(cells) > 4 else ""
            last = cells[0].rsplit(":", 1)[1]
            rows[last] = (cells[1], cells[2], cells[3], reason)
    return rows


@dataclass
class Result:
    code: int
    out: str
    err: str


@dataclass
class Harness:
    """Builds composes, writes messages and config, runs ``fedora-container-sync``."""

    tmp: Path
    served_root: Path
    server: FileServer
    registries: list[Registry]
    namespace: str
    capsys: pytest.CaptureFixture[str]
    #: ``[releases]``; None leaves the table out (the numbers then come from Bodhi)
    releases: dict[str, int] | None = field(default_factory=lambda: {"latest": 41, "rawhide": 43})
    repos: dict[str, str] = field(default_factory=lambda: dict(REPOS))
    extra_config: str = ""
    #: ``[retry]`` table: few attempts and tiny delays keep failing tests fast.
    retry: dict[str, float] = field(
        default_factory=lambda: {"attempts": 2, "initial_delay": 0.1, "max_delay": 0.2}
    )
    #: registry host -> the TOML keys of its ``[[registries]]`` entry, replacing the default
    #: ``url = "<host>/<namespace>"`` + ``tls_verify = false`` (e.g. to go through a proxy).
    registry_entries: dict[str, str] = field(default_factory=dict)

    def compose(
        self,
        compose_id: str,
        *,
        version: str = "41",
        arches: Iterable[str] = ARCHES,
        subvariants: Iterable[str] = ("Container_Toolbox",),
        fmt: str = "docker",
        status: str = "FINISHED",
        label: str | None = None,
    ) -> dict[str, Any]:
        """Build a compose tree under the served root; return its FINISHED message body."""
        images = [
            ComposeImage(subvariant, arch, fmt=fmt) for subvariant in subvariants for arch in arches
        ]
        compose_dir = build_compose(
            self.served_root / self.namespace,
            compose_id=compose_id,
            release_version=version,
            images=images,
            label=label,
        )
        return self.message_for(compose_dir, status=status)

    def message_for(self, compose_dir: Path, *, status: str = "FINISHED") -> dict[str, Any]:
        return finished_message(
            compose_dir, served_root=self.served_root, base_url=self.server.url, status=status
        )

    def compose_dir(self, body: dict[str, Any]) -> Path:
        return self.served_root / self.namespace / body["compose_id"] / "compose"

    def message_file(self, *bodies: dict[str, Any], name: str = "messages.jsonl") -> Path:
        path = self.tmp / name
        path.write_text("".join(serialized_message(body) for body in bodies))
        return path

    def config(self) -> Path:
        registries = "".join(
            "[[consumer_config.container.registries]]\n"
            + self.registry_entries.get(
                r.host, f'url = "{r.host}/{self.namespace}"\ntls_verify = false\n'
            )
            for r in self.registries
        )
        retry = "".join(f"{k} = {v}\n" for k, v in self.retry.items())
        repos = "".join(f'{k} = "{v}"\n' for k, v in self.repos.items())
        releases = (
            "[consumer_config.container.releases]\n"
            + "".join(f"{k} = {v}\n" for k, v in self.releases.items())
            if self.releases is not None
            else ""
        )
        path = self.tmp / "config.toml"
        path.write_text(
            f"""
[consumer_config.container]
compose_url_allowlist = ["{self.server.url}/{self.namespace}/"]
work_dir = "{self.tmp / "work"}"
{self.extra_config}
[consumer_config.container.retry]
{retry}[consumer_config.container.repos]
{repos}
{releases}
{registries}
"""
        )
        return path

    def replay(self, *bodies: dict[str, Any], args: Sequence[str] = ()) -> Result:
        """Run ``replay`` in-process on a message file holding ``bodies``."""
        return self.run(
            "replay", "--config", str(self.config()), *args, str(self.message_file(*bodies))
        )

    def run(self, *argv: str) -> Result:
        self.capsys.readouterr()
        code = main(list(argv))
        captured = self.capsys.readouterr()
        return Result(code, captured.out, captured.err)

    # -- registry reads ------------------------------------------------------------------------

    def repo(self, repository: str) -> str:
        return f"{self.namespace}/{repository}"

    def digest(self, repository: str, tag: str, registry: Registry | None = None) -> str | None:
        found = (registry or self.registries[0]).get_manifest(self.repo(repository), tag)
        return None if found is None else found[1]

    def index(self, repository: str, tag: str, registry: Registry | None = None) -> dict[str, Any]:
        found = (registry or self.registries[0]).get_manifest(self.repo(repository), tag)
        assert found is not None, f"{repository}:{tag} does not exist"
        return json.loads(found[2])

    def arches(self, repository: str, tag: str, registry: Registry | None = None) -> set[str]:
        return (registry or self.registries[0]).index_arches(self.repo(repository), tag)
