"""The status page at a glance, in a real browser (headless Chromium): with Fedora's real number
of tags (three releases, latest and rawhide) and repositories it fits a laptop's 1366 pixels,
what is held leads, and the arch that failed is not painted like the ones that are fine."""

from __future__ import annotations

import hashlib
import os
from datetime import UTC, datetime

import pytest

from fedora_container_sync.audit.findings import audit
from fedora_container_sync.audit.html import render_html
from fedora_container_sync.audit.state import Build, IndexState, RepositoryState
from fedora_container_sync.config.settings import Releases
from support.browser import chromium, render
from support.htmlpage import parse, status

pytestmark = pytest.mark.integration

NOW = datetime(2024, 10, 28, 6, 0, tzinfo=UTC)
RELEASES = Releases(latest=41, rawhide=43)
ARCHES = ("x86_64", "aarch64", "ppc64le", "s390x")
REGISTRY = "registry.fedoraproject.org"
#: Fedora's repositories on registry.fedoraproject.org that carry multi-arch tags.
REPOSITORIES = ("fedora", "fedora-minimal", "fedora-toolbox", "fedora-bootc", "fedora-kinoite")
#: 40 to 43, latest and rawhide (43), each an index with per-arch tags.
RELEASE_TAGS = {"40": 40, "41": 41, "42": 42, "43": 43, "latest": 41, "rawhide": 43}


def build(compose: str, arch: str) -> Build:
    digest = "sha256:" + hashlib.sha256(f"{compose} {arch}".encode()).hexdigest()
    return Build(digest, compose, hashlib.sha256(arch.encode()).hexdigest())


def state(repository: str, *, failed: str | None = None) -> RepositoryState:
    """Every tag complete at its release's compose; with ``failed``, release 41's next compose
    built every arch but that one, and the gate held 41 and latest."""
    contents: dict[str, Build | IndexState] = {}
    for tag, release in RELEASE_TAGS.items():
        old = f"Fedora-{release}-20241025.0"
        builds = {arch: build(old, arch) for arch in ARCHES}
        contents[tag] = IndexState(f"sha256:{'0' * 63}{release % 10}", old, builds)
        for arch in ARCHES:
            new = f"Fedora-{release}-20241026.0"
            moved = failed is not None and release == 41 and arch != failed
            contents[f"{release}-{arch}"] = build(new if moved else old, arch)
    return RepositoryState(REGISTRY, repository, frozenset(contents), contents)


@pytest.fixture
def page(tmp_path):
    states = [state(r, failed="aarch64" if r == "fedora-toolbox" else None) for r in REPOSITORIES]
    result = audit(
        states, RELEASES, now=NOW, registries=[REGISTRY], repositories=list(REPOSITORIES)
    )
    path = tmp_path / "index.html"
    path.write_text(render_html(result, states, RELEASES), encoding="utf-8")
    return path


def test_held_lines_lead_and_the_failed_arch_stands_out(page):
    root = parse(page.read_text(encoding="utf-8"))
    lines = root.one("section", data_registry=REGISTRY).all("tr")[1:]
    assert [(tr.attrs["data-repository"], tr.attrs["data-tag"]) for tr in lines[:2]] == [
        ("fedora-toolbox", "41"),
        ("fedora-toolbox", "latest"),
    ]
    assert len(lines) == len(REPOSITORIES) * len(RELEASE_TAGS)
    held = {td.attrs["data-arch"]: status(td) for td in lines[0].all("td")}
    assert held == {"": "held", "x86_64": "held", "aarch64": "failed", "ppc64le": "held",
                    "s390x": "held"}  # fmt: skip
    failed = lines[0].one("td", data_arch="aarch64")
    assert "aarch64 failed in Fedora-41-20241026.0" in failed.text()
    assert {status(td) for tr in lines[2:] for td in tr.all("td")} == {"ok"}


def test_the_page_fits_a_laptop_screen(page):
    if chromium() is None:
        message = "chromium is not installed (apt-get install chromium; make system-deps does)"
        if os.environ.get("CI"):
            pytest.fail(f"{message}: in CI, .ci/run installs it", pytrace=False)
        pytest.skip(message)
    rendering = render(page.as_uri(), width=1366, height=768)
    assert rendering.errors == []
    assert 1000 < rendering.width <= 1366
