"""The audit's status page: which cell, which colour, which words (plain values, no registry),
and the HTML it renders to (read back with html.parser)."""

from __future__ import annotations

import hashlib
import os
import stat
import threading
from datetime import UTC, datetime

import pytest

from fedora_container_sync.audit.cells import STATUSES, Cell
from fedora_container_sync.audit.findings import audit
from fedora_container_sync.audit.html import render_html, write_atomically
from fedora_container_sync.audit.page import Page, Section, page_of
from fedora_container_sync.audit.state import Build, IndexState, ReadFailure, RepositoryState
from fedora_container_sync.config.settings import Releases
from fedora_container_sync.errors import PermanentError
from support.htmlpage import cell, foreign_markup, parse, status

NOW = datetime(2024, 10, 28, 6, 0, tzinfo=UTC)
OLD = "Fedora-41-20241025.0"
NEW = "Fedora-41-20241026.0"
NEWER = "Fedora-41-20241027.0"
RELEASES = Releases(latest=41, rawhide=43)
ALL = ("x86_64", "aarch64", "ppc64le", "s390x")
A, B = "registry.example", "quay.example/fedora"
TOOLBOX = "fedora-toolbox"


def digest(*parts: object) -> str:
    return "sha256:" + hashlib.sha256(repr(parts).encode()).hexdigest()


def build(compose: str | None, arch: str) -> Build:
    return Build(digest(compose, arch), compose, hashlib.sha256(arch.encode()).hexdigest())


def index(compose: str | None, builds: dict[str, Build]) -> IndexState:
    return IndexState(
        digest(compose, sorted((a, b.digest) for a, b in builds.items())), compose, builds
    )


def full(compose: str, arches=ALL, **carried: str) -> IndexState:
    return index(compose, {arch: build(carried.get(arch, compose), arch) for arch in arches})


def per_arch(builds: dict[str, str]) -> dict[str, Build]:
    """``{arch: compose}`` → the per-arch tags of release 41."""
    return {f"41-{arch}": build(compose, arch) for arch, compose in builds.items()}


def repo(contents, registry: str = A, repository: str = TOOLBOX) -> RepositoryState:
    return RepositoryState(registry, repository, frozenset(contents), dict(contents))


def run(states, *, registries=(A,), repositories=(TOOLBOX,), failures=(), max_age=None):
    result = audit(
        states,
        RELEASES,
        now=NOW,
        registries=list(registries),
        repositories=list(repositories),
        failures=list(failures),
        max_age_hours=max_age,
    )
    return result, page_of(result, states, RELEASES)


def section(page: Page, registry: str = A) -> Section:
    return next(s for s in page.sections if s.registry == registry)


def cells(page: Page, tag: str, registry: str = A, repository: str = TOOLBOX) -> dict:
    """arch (None: the index column) → Cell, for one tag of one repository."""
    found = section(page, registry)
    row = next(r for r in found.rows if r.repository == repository)
    position = [c.tag for c in found.columns].index(tag)
    return {c.arch: c for c in row.cells[position]}


def notes(cell: Cell) -> list[str]:
    return [note.text for note in cell.notes]


HELD_STATE = repo(
    {
        "41": full(OLD),
        "latest": full(OLD),
        **per_arch({"x86_64": NEW, "aarch64": OLD, "ppc64le": NEW, "s390x": NEW}),
    }
)


def test_held_cells_say_which_arch_failed_and_what_the_tag_still_serves():
    result, page = run([HELD_STATE])
    assert result.exit_code == 3
    for tag in ("41", "latest"):
        row = cells(page, tag)
        assert {arch: c.status for arch, c in row.items()} == {
            None: "held",
            "x86_64": "held",
            "aarch64": "failed",  # the arch that failed stands out from the held ones
            "ppc64le": "held",
            "s390x": "held",
        }
        words = f"aarch64 failed in {NEW}; the tag still serves {OLD}"
        assert notes(row["x86_64"]) == [words]
        assert notes(row[None]) == [words]  # once, for the whole tag
        assert notes(row["aarch64"]) == [
            f"aarch64 failed in {NEW}; 41-aarch64 and the tag still serve {OLD}"
        ]
        assert row["x86_64"].serves == (OLD, "3d06h old", "41-x86_64 has", NEW)
        assert row["aarch64"].serves == (OLD, "3d06h old")
        assert row[None].serves == (OLD, "3d06h old")
        assert row[None].arches == ALL
    assert page.summary == "6 findings (6 warning)"
    assert page.oldest_held == f"{A}/{TOOLBOX}:41 since 2024-10-25 (3d06h)"
    assert page.result == "findings"
    assert page.generated_at == "2024-10-28 06:00 UTC"


def test_held_without_a_lagging_arch_says_the_index_was_not_moved():
    state = repo({"41": full(OLD), **per_arch(dict.fromkeys(ALL, NEW))})
    _, page = run([state])
    assert notes(cells(page, "41")["s390x"]) == [
        f"41-s390x has {NEW}, but the index was not moved; the tag still serves {OLD}"
    ]


def test_missing_arch_says_who_cannot_pull_and_why_the_index_is_held():
    # The index has x86_64 and aarch64 from OLD; NEW added s390x but lost aarch64.
    state = repo(
        {
            "41": full(OLD, ("x86_64", "aarch64")),
            **per_arch({"x86_64": NEW, "aarch64": OLD, "s390x": NEW}),
        }
    )
    _, page = run([state])
    row = cells(page, "41")
    assert row["s390x"].status == "missing"
    assert row[None].status == "missing"  # the most severe of the tag
    assert row["x86_64"].status == "held"
    assert row["s390x"].serves == ("not in 41", "41-s390x has", NEW)
    assert notes(row["s390x"]) == [
        f"the index has no s390x entry: pulling {TOOLBOX}:41 on s390x fails; it is held at "
        f"{OLD} because aarch64 failed in {NEW}"
    ]


def test_missing_index_tag():
    _, page = run([repo(per_arch({"x86_64": NEW}))])
    row = cells(page, "41")
    assert row[None].status == "missing"
    assert row[None].serves == ("no such tag",)
    assert notes(row["x86_64"]) == [f"the tag 41 does not exist, though x86_64 has {NEW}"]
    # rawhide is configured but neither it nor release 43 exists: absent, not a finding.
    assert cells(page, "rawhide")[None].status == "absent"


def test_carried_entry_says_the_arch_failed_in_the_index_compose():
    state = repo(
        {"41": full(NEW, aarch64=OLD), **per_arch({**dict.fromkeys(ALL, NEW), "aarch64": OLD})}
    )
    _, page = run([state])
    row = cells(page, "41")
    assert row["aarch64"].status == "carried"
    assert row[None].status == "carried"
    assert row["x86_64"].status == "ok"
    assert notes(row["aarch64"]) == [
        f"aarch64 failed in {NEW}; the tag serves aarch64 from {OLD}, carried forward"
    ]


def test_diverged_per_arch_tags_are_in_their_release_column():
    ahead = repo({"41": full(NEW), **per_arch(dict.fromkeys(ALL, NEW))})
    behind = repo({"41": full(OLD), **per_arch(dict.fromkeys(ALL, OLD))}, registry=B)
    _, page = run([ahead, behind], registries=(A, B))
    assert {c.status for c in cells(page, "41", A).values()} == {"ok"}
    row = cells(page, "41", B)
    assert {arch: c.status for arch, c in row.items()} == dict.fromkeys([None, *ALL], "diverged")
    assert notes(row["x86_64"]) == [f"serves {OLD}; {A} serves {NEW}"]
    assert notes(row[None])[0].startswith(f"serves {OLD}; {A} serves {NEW}; they differ in")


def test_stale_per_arch_tag_is_shown_but_not_a_finding():
    state = repo(
        {
            "41": full(NEW),
            "latest": full(NEW),
            **per_arch({**dict.fromkeys(ALL, NEW), "ppc64le": OLD}),
        }
    )
    result, page = run([state])
    assert (result.findings, result.exit_code) == ((), 0)
    row = cells(page, "41")
    assert row["ppc64le"].status == "stale"
    assert notes(row["ppc64le"]) == [
        f"41-ppc64le still serves {OLD}, older than what 41 serves for ppc64le"
    ]
    assert row[None].status == "stale"
    assert row["x86_64"].status == "ok"
    assert page.summary == "0 findings"


def test_findings_younger_than_max_age_are_shown_but_not_counted():
    today, later = "Fedora-41-20241028.0", "Fedora-41-20241028.1"
    state = repo(
        {
            "41": full(today),
            "latest": full(today),
            **per_arch({**dict.fromkeys(ALL, later), "aarch64": today}),
        }
    )
    result, page = run([state], max_age=48)
    assert (result.findings, result.younger, result.exit_code) == ((), 6, 0)
    row = cells(page, "41")
    assert row["x86_64"].status == "held"
    assert [n.counted for n in row["x86_64"].notes] == [False]
    assert page.summary == "0 findings older than 48h; 6 younger not counted"
    assert page.oldest_held is None
    assert [item.counted for item in page.findings] == [False] * 6
    html = render_html(result, [state], RELEASES)
    x86 = cell(parse(html).one("section", data_registry=A), TOOLBOX, "41", "x86_64")
    assert status(x86) == "held"
    assert "(younger than --max-age: not counted)" in x86.text()
    assert x86.one("p", class_="young")
    # Without the limit the same findings count.
    result, page = run([state])
    assert [item.counted for item in page.findings] == [True] * 6


def test_unreadable_registry_and_repository():
    state = repo({"41": full(OLD), "latest": full(OLD), **per_arch(dict.fromkeys(ALL, OLD))})
    failures = [
        ReadFailure(B, None, "connection refused"),
        ReadFailure(A, "fedora", "HTTP 500 from registry.example"),
    ]
    result, page = run(
        [state], registries=(A, B), repositories=("fedora", TOOLBOX), failures=failures
    )
    assert result.exit_code == 1
    assert section(page, B).error == "connection refused"
    assert [r.repository for r in section(page, B).rows] == ["fedora", TOOLBOX]
    rows = {r.repository: r for r in section(page, A).rows}
    assert rows["fedora"].error == "HTTP 500 from registry.example"
    assert rows[TOOLBOX].error is None
    root = parse(render_html(result, [state], RELEASES))
    dead = root.one("section", data_registry=B)
    assert "unreadable" in dead.classes
    assert "Unreadable: connection refused" in dead.text()
    (row_cell,) = root.one("section", data_registry=A).one("tr", data_repository="fedora").all("td")
    assert status(row_cell) == "unreadable"
    assert "HTTP 500" in row_cell.text()
    assert root.one("p", id="summary").text().startswith("UNREADABLE: 0 findings; 2 unreadable")


def test_matrix_columns_are_tags_then_arches_in_order():
    state = repo(
        {
            "40": full(OLD, ("x86_64", "aarch64")),
            "41": full(OLD),
            "latest": full(OLD),
            **per_arch(dict.fromkeys(ALL, OLD)),
            "40-riscv64": build(OLD, "riscv64"),
        }
    )
    _, page = run([state])
    columns = [(c.tag, c.arches) for c in section(page).columns]
    assert columns == [
        ("40", ("x86_64", "aarch64", "riscv64")),
        ("41", ALL),
        ("latest", ALL),
        ("rawhide", ()),
    ]
    assert section(page).width == 4 + 5 + 5 + 1
    root = parse(
        render_html(
            audit([state], RELEASES, now=NOW, registries=[A], repositories=[TOOLBOX]),
            [state],
            RELEASES,
        )
    )
    # One line per repository and tag, one column per arch of any tag: the page is as wide
    # as the arches, however many tags there are.
    assert section(page).arches == (*ALL, "riscv64")
    assert [th.text() for th in root.all("th", class_="arch")] == [*ALL, "riscv64"]
    lines = root.one("section", data_registry=A).all("tr")[1:]
    assert [tr.attrs["data-tag"] for tr in lines] == ["40", "41", "latest", "rawhide"]
    assert [len(tr.all("td")) for tr in lines] == [1 + 5] * 4
    # A tag without a column for an arch shows the arch absent.
    assert status(cell(root, TOOLBOX, "41", "riscv64")) == "absent"


def test_every_status_has_a_colour_and_a_legend():
    result, _ = run([HELD_STATE])
    root = parse(render_html(result, [HELD_STATE], RELEASES))
    css = root.one("style").text()
    legend = [li.classes for li in root.one("ul", class_="legend").all("li")]
    assert legend == [{s} for s in STATUSES]
    for name in STATUSES:
        assert f".{name} {{ background:" in css


HOSTILE = "x\"'><script>alert(1)</script><img src=x onerror=alert(2)>&amp;"


def test_foreign_strings_are_text_never_markup():
    """Compose IDs, digests, arch names, errors - and, to be sure, registry and repository
    names - full of markup and quotes are shown as they are and stay inert."""
    evil_arch = f"linux/{HOSTILE}"  # what index_of makes of a platform Fedora has no name for
    builds = {
        "x86_64": Build(digest(1), f"Fedora-41-20241025.0{HOSTILE}", HOSTILE),
        evil_arch: Build(f"sha256:{HOSTILE}", None, None),
    }
    state = RepositoryState(
        f"{A}/{HOSTILE}",
        f"toolbox{HOSTILE}",
        frozenset({"41", "41-x86_64"}),
        {
            "41": IndexState(digest(2), f"{HOSTILE}-20241026.0", builds),
            "41-x86_64": Build(digest(3), f"Fedora-41-20241027.0{HOSTILE}", HOSTILE),
        },
    )
    result = audit(
        [state],
        RELEASES,
        now=NOW,
        registries=[state.registry, f"{B}{HOSTILE}"],
        repositories=[state.repository],
        failures=[ReadFailure(f"{B}{HOSTILE}", None, f"bad answer {HOSTILE}")],
    )
    assert result.findings  # held and carried, with the strings in their words
    html = render_html(result, [state], RELEASES)
    root = parse(html)
    assert foreign_markup(root) == []
    assert root.all("script") == [] and root.all("img") == []
    text = root.text()
    for shown in (HOSTILE, f"Fedora-41-20241027.0{HOSTILE}", f"bad answer {HOSTILE}"):
        assert shown in text
    section = root.one("section", data_registry=state.registry)
    assert section.one("tr", data_repository=state.repository, data_tag="41")
    assert evil_arch in [th.text() for th in section.all("th", class_="arch")]
    assert cell(section, state.repository, "41", evil_arch)
    # The raw markup never appears unescaped, not even inside an attribute.
    assert "<script" not in html and "<img" not in html


def test_page_is_self_contained_and_says_so_to_the_browser():
    result, _ = run([HELD_STATE])
    html = render_html(result, [HELD_STATE], RELEASES)
    root = parse(html)
    assert html.startswith("<!DOCTYPE html>")
    csp = root.one("meta", http_equiv="Content-Security-Policy").attrs["content"]
    assert csp == "default-src 'none'; style-src 'unsafe-inline'"
    assert root.one("meta", charset="utf-8")
    for element in root.walk():
        assert "src" not in element.attrs and "href" not in element.attrs
    assert "url(" not in root.one("style").text() and "@import" not in root.one("style").text()
    assert render_html(result, [HELD_STATE], RELEASES) == html  # deterministic


def test_long_foreign_strings_are_cut():
    huge = "Fedora-41-20241026.0" + "x" * 100_000
    state = repo({"41": full(OLD), "41-x86_64": build(huge, "x86_64")})
    result, page = run([state])
    (x86,) = [c for c in cells(page, "41").values() if c.arch == "x86_64"]
    assert max(len(line) for line in x86.serves) == 120
    assert max(len(text) for text in notes(x86)) < 400
    assert len(render_html(result, [state], RELEASES)) < 60_000


def test_clean_page():
    state = repo({"41": full(OLD), "latest": full(OLD), **per_arch(dict.fromkeys(ALL, OLD))})
    result, page = run([state])
    assert result.exit_code == 0
    assert {c.status for c in cells(page, "41").values()} == {"ok"}
    root = parse(render_html(result, [state], RELEASES))
    assert root.one("p", id="summary").text() == "CLEAN: 0 findings"
    assert "clean" in root.one("p", id="summary").classes
    assert "None: every index tag serves every arch" in root.one("section", id="findings").text()


# -- the atomic write ----------------------------------------------------------------------


def test_write_atomically_replaces_the_file_readable_by_others(tmp_path):
    page = tmp_path / "index.html"
    page.write_text("old")
    old_umask = os.umask(0o077)
    try:
        write_atomically(page, "<p>new ✓</p>")
    finally:
        os.umask(old_umask)
    assert page.read_text(encoding="utf-8") == "<p>new ✓</p>"
    assert stat.S_IMODE(page.stat().st_mode) == 0o644
    assert [p.name for p in tmp_path.iterdir()] == ["index.html"]


def test_write_atomically_fails_in_one_line_and_leaves_nothing(tmp_path):
    with pytest.raises(PermanentError) as error:
        write_atomically(tmp_path / "missing" / "index.html", "x")
    assert (
        str(error.value)
        == f"{tmp_path}/missing/index.html: cannot write: No such file or directory"
    )
    target = tmp_path / "index.html"
    target.mkdir()  # rename over a directory fails after the temporary file was written
    with pytest.raises(PermanentError, match="cannot write: Is a directory"):
        write_atomically(target, "x")
    assert [p.name for p in tmp_path.iterdir()] == ["index.html"]


def test_a_reader_never_sees_a_partial_page(tmp_path):
    page = tmp_path / "index.html"
    pages = [f"<html>{n}{'x' * 200_000}</html>" for n in range(2)]
    write_atomically(page, pages[0])
    seen: set[str] = set()
    done = threading.Event()

    def read() -> None:
        while not done.is_set():
            seen.add(page.read_text())

    reader = threading.Thread(target=read)
    reader.start()
    try:
        for n in range(40):
            write_atomically(page, pages[n % 2])
    finally:
        done.set()
        reader.join()
    assert seen <= set(pages)
    assert seen


def test_the_footer_says_whether_findings_went_to_the_bus():
    result, _ = run([HELD_STATE])
    quiet = parse(render_html(result, [HELD_STATE], RELEASES)).one("footer").text()
    loud = parse(render_html(result, [HELD_STATE], RELEASES, messages=True)).one("footer").text()
    assert "message bus" not in quiet
    assert "It also sent one message per finding to the message bus" in loud
    assert "audit --no-messages" in loud
