"""``audit --html``: the status page of real registries, read back with an HTML parser and
loaded in a real browser (headless Chromium).

One scenario holds every case: two registries filled by real publishes, in five repositories
- fedora clean, fedora-toolbox carried (41) and held (latest), fedora-minimal missing an arch,
fedora-kinoite diverged (the second registry missed a publish), fedora-iot written by hand
with markup and quotes in its annotations - and a third registry nothing answers on.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
import uuid
import zipfile
from collections.abc import Iterator
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass
from pathlib import Path

import pytest

from fedora_container_sync.audit.cells import STATUSES
from fedora_container_sync.cli import main
from fedora_container_sync.oci.index import IndexEntry, build_index
from fedora_container_sync.oci.manifest import COMPOSE_ID, IMAGE_SHA256
from support.browser import chromium, read_png, render
from support.compose import ComposeImage, build_compose
from support.harness import ARCHES, Harness, Result
from support.htmlpage import cell, foreign_markup, parse, status
from support.servers import OCI_INDEX, Registry, free_port

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
OLD = "Fedora-41-20241025.0"
NEW = "Fedora-41-20241026.0"
NEWER = "Fedora-41-20241027.0"
REPOS = {
    "Container_Base": "fedora",
    "Container_Toolbox": "fedora-toolbox",
    "Container_Minimal_Base": "fedora-minimal",
    "Kinoite": "fedora-kinoite",
    "IoT": "fedora-iot",
}
HOSTILE_COMPOSE = "Fedora-41-20241025.0\"><script>alert('compose')</script>"
HOSTILE_INDEX = "</td></tr></table><img src=x onerror=\"alert('index')\">&amp;"
HOSTILE_SHA = "'&\"<b data-x='1'>"


@dataclass(frozen=True)
class Unreachable:
    """A registry address nothing listens on."""

    host: str


def publish(harness: Harness, compose_id: str, images: dict[str, tuple[str, ...]], **kw) -> int:
    compose_dir = build_compose(
        harness.served_root / harness.namespace,
        compose_id=compose_id,
        release_version="41",
        images=[ComposeImage(sub, arch) for sub, arches in images.items() for arch in arches],
    )
    return harness.replay(harness.message_for(compose_dir, **kw)).code


def carry_forward(harness: Harness, registry: Registry, repository: str, tag: str) -> None:
    """PUT the index the carry-forward policy writes: every per-arch tag's build, under the
    compose of the newest (aarch64 keeps the older compose's build)."""
    entries = []
    for arch in ARCHES:
        found = registry.get_manifest(harness.repo(repository), f"41-{arch}")
        assert found is not None
        media_type, digest, body = found
        annotations = json.loads(body)["annotations"]
        entries.append(
            IndexEntry(
                arch,
                media_type,
                digest,
                len(body),
                annotations[COMPOSE_ID],
                annotations[IMAGE_SHA256],
            )
        )
    put_manifest(registry, harness.repo(repository), tag, build_index(entries, compose_id=NEW))


def put_manifest(registry: Registry, repository: str, tag: str, body: bytes, media_type=OCI_INDEX):
    with registry.client() as client:
        response = client.put(
            f"/v2/{repository}/manifests/{tag}", content=body, headers={"Content-Type": media_type}
        )
    assert response.status_code == 201, response.text
    return response.headers["docker-content-digest"]


def write_hostile_repository(harness: Harness, registry: Registry) -> None:
    """fedora-iot, as another tool might have written it: fedora's x86_64 image re-annotated
    with markup and quotes, and an index 41 whose annotations hold more."""
    source, target = harness.repo("fedora"), harness.repo("fedora-iot")
    media_type, _, body = registry.get_manifest(source, "41-x86_64")
    manifest = json.loads(body)
    with registry.client() as client:
        for blob in [manifest["config"], *manifest["layers"]]:
            mounted = client.post(
                f"/v2/{target}/blobs/uploads/", params={"mount": blob["digest"], "from": source}
            )
            assert mounted.status_code == 201, mounted.text
    manifest["annotations"] = {COMPOSE_ID: HOSTILE_COMPOSE, IMAGE_SHA256: HOSTILE_SHA}
    image = json.dumps(manifest).encode()
    digest = put_manifest(registry, target, "41-x86_64", image, media_type)
    index = {
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [
            {
                "mediaType": media_type,
                "digest": digest,
                "size": len(image),
                "platform": {"architecture": "amd64", "os": "linux"},
                "annotations": {COMPOSE_ID: HOSTILE_COMPOSE, IMAGE_SHA256: HOSTILE_SHA},
            }
        ],
        "annotations": {COMPOSE_ID: HOSTILE_INDEX},
    }
    put_manifest(registry, target, "41", json.dumps(index).encode())


@dataclass
class Scenario:
    page: Path
    out: str
    code: int
    findings: list[dict]
    first: str
    second: str
    dead: str


class _ModuleHarness(Harness):
    """A harness shared by this module's tests (capsys is per test: capture by hand)."""

    def run(self, *argv: str) -> Result:  # capsys=None: capture by hand
        out, err = io.StringIO(), io.StringIO()
        with redirect_stdout(out), redirect_stderr(err):
            code = main(list(argv))
        return Result(code, out.getvalue(), err.getvalue())


@pytest.fixture(scope="module")
def scenario(
    tmp_path_factory, served_root, compose_server, registry, second_registry
) -> Iterator[Scenario]:
    """Built once: the publishes take most of the time, the tests only read the page."""
    tmp = tmp_path_factory.mktemp("audit-page")
    namespace = f"audit-page-{uuid.uuid4().hex[:6]}"
    harness = _ModuleHarness(tmp, served_root, compose_server, [registry], namespace, capsys=None)
    yield build_scenario(harness, second_registry, tmp)


def build_scenario(harness: Harness, second_registry: Registry, tmp_path: Path) -> Scenario:
    first = harness.registries[0]
    harness.repos = dict(REPOS)
    harness.registries = [first, second_registry]
    base = {"Container_Base": ARCHES, "Container_Toolbox": ARCHES}
    two = ("x86_64", "aarch64")
    old = {**base, "Container_Minimal_Base": two, "Kinoite": two}
    assert publish(harness, OLD, old) == 0
    # aarch64 failed in NEW: fedora-toolbox held; fedora-minimal also gained s390x (missing).
    new = {
        "Container_Toolbox": ARCHES[:1] + ARCHES[2:],
        "Container_Minimal_Base": ("x86_64", "s390x"),
    }
    assert publish(harness, NEW, new, status="FINISHED_INCOMPLETE") == 3
    for registry in harness.registries:
        carry_forward(harness, registry, "fedora-toolbox", "41")
    # The second registry misses NEWER's fedora-kinoite.
    harness.registries = [first]
    assert publish(harness, NEWER, {"Kinoite": two}) == 0
    write_hostile_repository(harness, first)
    dead = Unreachable(f"127.0.0.1:{free_port()}")
    harness.registries = [first, second_registry, dead]  # type: ignore[list-item]

    page = tmp_path / "status" / "index.html"
    page.parent.mkdir()
    result = harness.run("audit", "--config", str(harness.config()), "--json", "--html", str(page))
    return Scenario(
        page,
        result.out,
        result.code,
        json.loads(result.out)["findings"],
        f"{first.host}/{harness.namespace}",
        f"{second_registry.host}/{harness.namespace}",
        f"{dead.host}/{harness.namespace}",
    )


def column_of(finding: dict) -> tuple[str, str | None]:
    """The matrix cell of a finding: per-arch tag N-<arch> is in column N."""
    tag, arch = finding["tag"], finding["arch"]
    if arch and tag.endswith(f"-{arch}") and tag[: -len(arch) - 1].isdigit():
        return tag[: -len(arch) - 1], arch
    return tag, arch


def worst(kinds) -> str:
    return min(kinds, key=STATUSES.index)


def test_the_page_shows_every_repository_tag_and_finding_in_its_cell(scenario):
    assert scenario.code == 1  # the dead registry: same exit code as without --html
    assert stat_mode(scenario.page) == 0o644
    assert [p.name for p in scenario.page.parent.iterdir()] == ["index.html"]
    root = parse(scenario.page.read_text(encoding="utf-8"))
    kinds = {f["kind"] for f in scenario.findings}
    assert kinds == {"held", "missing", "carried", "diverged"}

    # Every registry has its section, every repository its row, every tag its column.
    sections = {s.attrs["data-registry"]: s for s in root.all("section", class_="registry")}
    assert list(sections) == [scenario.first, scenario.second, scenario.dead]
    for name in (scenario.first, scenario.second):
        section = sections[name]
        assert "unreadable" not in section.classes
        lines = [
            (tr.attrs["data-repository"], tr.attrs["data-tag"]) for tr in section.all("tr")[1:]
        ]
        assert sorted(lines) == sorted(
            (repository, tag)
            for repository in REPOS.values()
            for tag in ("41", "latest", "rawhide")
        )
        # What needs a look leads: no line after an ok or absent one is worse than ok.
        order = [status(tr.one("td", data_arch="")) for tr in section.all("tr")[1:]]
        assert order == sorted(order, key=STATUSES.index)

    # Each finding in its cell; each cell coloured by its most severe finding.
    by_cell: dict[tuple[str, str, str, str | None], list[dict]] = {}
    for finding in scenario.findings:
        tag, arch = column_of(finding)
        by_cell.setdefault((finding["registry"], finding["repository"], tag, arch), []).append(
            finding
        )
    for (registry, repository, tag, arch), found in by_cell.items():
        here = cell(sections[registry], repository, tag, arch)
        assert status(here) == worst(f["kind"] for f in found), (registry, repository, tag, arch)
        notes = [p for p in here.all("p") if "note" in p.classes]
        assert {f["kind"] for f in found} <= {n for p in notes for n in p.classes}
    # Index columns take the most severe status of their tag; cells without findings are ok
    # (the index serves the arch), stale, or absent.
    for name in (scenario.first, scenario.second):
        for row in sections[name].all("tr")[1:]:
            repository = row.attrs["data-repository"]
            for td in row.all("td"):
                tag, arch = td.attrs["data-tag"], td.attrs["data-arch"] or None
                found = [
                    f
                    for (r, rep, t, a), fs in by_cell.items()
                    if (r, rep, t) == (name, repository, tag) and (arch is None or a == arch)
                    for f in fs
                ]
                if found:
                    assert status(td) == worst(f["kind"] for f in found), (repository, tag, arch)
                else:  # the arch that failed is marked, without a finding of its own
                    assert status(td) in ("ok", "absent", "failed"), (repository, tag, arch)

    # The clean repository is ok everywhere it has tags.
    for name in (scenario.first, scenario.second):
        rows = sections[name].all("tr", data_repository="fedora")
        assert {
            status(td) for tr in rows for td in tr.all("td") if td.attrs["data-tag"] != "rawhide"
        } == {"ok"}
        assert status(cell(sections[name], "fedora", "rawhide", None)) == "absent"

    first = sections[scenario.first]
    toolbox_41 = cell(first, "fedora-toolbox", "41", "aarch64")
    assert status(toolbox_41) == "carried"
    assert f"aarch64 failed in {NEW}; the tag serves aarch64 from {OLD}" in toolbox_41.text()
    toolbox_latest = cell(first, "fedora-toolbox", "latest", "x86_64")
    assert status(toolbox_latest) == "held"
    assert f"aarch64 failed in {NEW}; the tag still serves {OLD}" in toolbox_latest.text()
    s390x = cell(first, "fedora-minimal", "41", "s390x")
    assert status(s390x) == "missing"
    assert "pulling fedora-minimal:41 on s390x fails" in s390x.text()
    kinoite = cell(sections[scenario.second], "fedora-kinoite", "41", "x86_64")
    assert status(kinoite) == "diverged"
    assert f"serves {OLD}; {scenario.first} serves {NEWER}" in kinoite.text()

    # The unreachable registry is shown as unreadable, with its error, every repository listed.
    dead = sections[scenario.dead]
    assert "unreadable" in dead.classes
    assert dead.one("p", class_="error").text().startswith("Unreadable: ")
    assert [status(td) for td in dead.all("td")] == ["unreadable"] * len(REPOS)

    # The summary: counts, the oldest held tag and since when, when it was made.
    summary = root.one("p", id="summary").text()
    assert summary.startswith(f"UNREADABLE: {len(scenario.findings)} findings (")
    assert "oldest held: " in summary and "since 2024-10-25" in summary
    assert root.one("p", id="made").text().startswith("Made 20")
    assert "(exit code 1)" in root.one("p", id="made").text()

    # Markup from the registry is text: shown as written, never elements or attributes.
    assert foreign_markup(root) == []
    assert root.all("script") == [] and root.all("img") == [] and root.all("b") == []
    iot = " ".join(tr.text() for tr in first.all("tr", data_repository="fedora-iot"))
    assert HOSTILE_COMPOSE in iot and HOSTILE_INDEX in iot
    assert f"{HOSTILE_COMPOSE}" in root.one("section", id="findings").text()


def stat_mode(path: Path) -> int:
    return path.stat().st_mode & 0o777


@pytest.fixture
def browser() -> str:
    """Chromium, or a skip with the reason - never in CI, where .ci/run installs it."""
    binary = chromium()
    if binary is None:
        message = "chromium is not installed (apt-get install chromium; make system-deps does)"
        if os.environ.get("CI"):
            pytest.fail(f"{message}: in CI, .ci/run installs it", pytrace=False)
        pytest.skip(message)
    return binary


@pytest.mark.usefixtures("browser")
def test_the_page_renders_in_a_real_browser(scenario):
    url = scenario.page.as_uri()
    rendering = render(url, width=1400, height=900)
    assert rendering.errors == []
    assert rendering.requests == [url]  # self-contained: nothing else is fetched
    image = read_png(rendering.png)
    assert (image.width, image.height) == (1400, 900)
    # Not blank: text in several colours on the status backgrounds.
    colours = image.colours()
    assert len(colours) > 50
    for background in ("#dcefdc", "#ffe8a8", "#f6c4c4", "#e2d0f2", "#cfe3f7"):
        assert bytes.fromhex(background[1:]) in {c[:3] for c in colours}, background


@pytest.mark.usefixtures("browser")
def test_the_browser_check_sees_errors_and_outside_requests(tmp_path):
    """The checks above can fail: a page with a script error and an outside image."""
    page = tmp_path / "bad.html"
    page.write_text(
        '<!DOCTYPE html><html><body><p>x</p><img src="http://127.0.0.1:9/x.png">'
        "<script>console.error('broken'); missing();</script></body></html>"
    )
    rendering = render(page.as_uri(), width=320, height=200)
    assert any("broken" in error for error in rendering.errors)
    assert any("missing is not defined" in error for error in rendering.errors)
    assert any("x.png" in error for error in rendering.errors)
    assert rendering.requests[1:] == ["http://127.0.0.1:9/x.png"]
    blank = tmp_path / "blank.html"
    blank.write_text("<!DOCTYPE html><html><body></body></html>")
    assert len(read_png(render(blank.as_uri(), width=320, height=200).png).colours()) == 1


def test_html_path_that_cannot_be_written(harness, tmp_path):
    config = str(harness.config())
    missing = tmp_path / "missing" / "index.html"
    for path, words in (
        (missing, f"directory {missing.parent} does not exist"),
        (tmp_path, "is a directory"),
    ):
        result = harness.run("audit", "--config", config, "--html", str(path))
        assert (result.code, result.out) == (2, "")
        assert result.err == f"fedora-container-sync: error: --html {path}: {words}\n"
    # A directory where nothing can be created, even by root: the audit runs, the table is
    # printed, the page fails in one line and the exit code says something failed.
    result = harness.run("audit", "--config", config, "--html", "/proc/status.html")
    assert result.code == 1
    assert result.out.splitlines()[-1] == "result: CLEAN: 0 findings"
    assert result.err.startswith("fedora-container-sync: error: /proc/status.html: cannot write: ")
    assert result.err.count("\n") == 1


def test_an_installed_wheel_carries_the_template(tmp_path):
    """The page's template is package data: a wheel built from this tree has it, and the
    package installed from that wheel (not the editable one) renders the page."""
    source = tmp_path / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    shutil.copytree(
        ROOT / "src", source / "src", ignore=shutil.ignore_patterns("*.egg-info", "__pycache__")
    )
    wheels = tmp_path / "wheels"
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--no-input"]
    subprocess.run(
        [*pip, "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(wheels), str(source)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    (wheel,) = wheels.glob("*.whl")
    assert "fedora_container_sync/templates/audit.html.j2" in zipfile.ZipFile(wheel).namelist()
    target = tmp_path / "installed"
    subprocess.run(
        [*pip, "install", "--no-deps", "-q", "--target", str(target), str(wheel)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    code = """
import fedora_container_sync, datetime
from fedora_container_sync.audit.findings import audit
from fedora_container_sync.audit.html import render_html
from fedora_container_sync.config.settings import Releases
now = datetime.datetime(2024, 10, 28, tzinfo=datetime.timezone.utc)
result = audit([], Releases(), now=now, registries=["r.example"], repositories=["fedora"])
print(fedora_container_sync.__file__)
print(render_html(result, [], Releases()).splitlines()[0])
"""
    run = subprocess.run(
        [sys.executable, "-c", code],
        env={**os.environ, "PYTHONPATH": str(target)},
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    location, first_line = run.stdout.splitlines()
    assert location.startswith(str(target))
    assert first_line == "<!DOCTYPE html>"
