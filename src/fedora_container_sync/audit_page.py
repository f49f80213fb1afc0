"""The audit as a status page: one self-contained HTML file people look at. Pure.

:func:`render_html` turns what the registries serve (:class:`~.audit.RepositoryState`) and what
the audit found (:class:`~.audit.AuditResult`) into the page; :func:`page_of` builds the plain
data the template shows, so the decisions (which cell, which colour, which words) are tested
without parsing HTML. The template (``templates/audit.html.j2``, package data) is rendered by
Jinja2 with autoescaping: every tag, annotation and compose ID came from a registry and is
text on the page, never markup.

Per registry, a matrix: one row per repository, per index tag (``41``, ``latest``, ``rawhide``)
one column for the index and one per arch. A cell shows what the tag serves (compose, age,
arches) and takes the colour of its most severe finding:

* held, missing, carried, diverged: the audit's findings (:mod:`.audit`), in words a user
  understands ("aarch64 failed in Fedora-41-20241026.0; the tag still serves
  Fedora-41-20241025.0");
* stale: the per-arch tag ``N-<arch>`` serves an older build than the index does for that arch
  (the opposite of held; not a finding of the audit, so it does not change the exit code);
* ok: the index serves the arch and its per-arch tag agrees; absent: neither exists.

Findings younger than ``--max-age`` are not counted by the audit; the page still shows them,
marked as such, so a tag is never shown as ok while it is held.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import jinja2

from .audit import (
    SEVERITY,
    AuditResult,
    Build,
    Finding,
    IndexState,
    Kind,
    RepositoryState,
    Severity,
    age_hours,
    arch_tags,
    audit,
    compose_date,
    compose_order,
    index_tags,
)
from .audit_report import format_age
from .config.settings import Releases
from .gate.tags import LATEST, RAWHIDE
from .oci.platforms import arch_sort_key

#: Cell statuses, most severe first: a cell takes the first that applies.
STALE = "stale"
OK = "ok"
ABSENT = "absent"
STATUSES = (
    Kind.MISSING.value,
    Kind.DIVERGED.value,
    Kind.HELD.value,
    Kind.CARRIED.value,
    STALE,
    OK,
    ABSENT,
)
_RANK = {status: rank for rank, status in enumerate(STATUSES)}

#: Longest foreign string (compose ID, digest label) shown whole; longer ones are cut.
_CLIP = 120

_RELEASE = re.compile(r"^[0-9]+$")


# -- what the page shows -----------------------------------------------------------------------


@dataclass(frozen=True)
class Note:
    """Why a cell has its colour, in words."""

    status: str
    text: str
    #: False: younger than ``--max-age``, so the audit does not count it.
    counted: bool = True


@dataclass(frozen=True)
class Cell:
    status: str
    #: None: the index column of the tag.
    arch: str | None
    #: What the registry serves there, one short line each (compose, age, arches).
    serves: tuple[str, ...]
    notes: tuple[Note, ...] = ()
    #: The index column: the arches the index serves.
    arches: tuple[str, ...] = ()


@dataclass(frozen=True)
class Column:
    """An index tag: its index column and one column per arch."""

    tag: str
    arches: tuple[str, ...]


@dataclass(frozen=True)
class Row:
    repository: str
    #: Set when this repository could not be read in this registry.
    error: str | None
    #: Per column: the index cell, then one cell per arch of the column.
    cells: tuple[tuple[Cell, ...], ...] = ()


@dataclass(frozen=True)
class Section:
    registry: str
    #: Set when the registry could not be read at all.
    error: str | None
    columns: tuple[Column, ...] = ()
    rows: tuple[Row, ...] = ()

    @property
    def width(self) -> int:
        """Table columns after the repository's."""
        return sum(len(column.arches) + 1 for column in self.columns)


@dataclass(frozen=True)
class Listed:
    """A line of the findings list under the matrices."""

    finding: Finding
    counted: bool

    @property
    def age(self) -> str:
        return format_age(self.finding.age_hours)

    @property
    def where(self) -> str:
        return _clip(self.finding.where, 4 * _CLIP)

    @property
    def summary(self) -> str:
        return _clip(self.finding.summary, 4 * _CLIP)


@dataclass(frozen=True)
class Page:
    generated_at: str
    result: str
    exit_code: int
    #: "3 findings (1 error, 2 warning)" and the like.
    summary: str
    #: "registry/repository:41 since 2024-10-25 (3d04h)", or None.
    oldest_held: str | None
    sections: tuple[Section, ...]
    findings: tuple[Listed, ...]
    statuses: tuple[str, ...] = STATUSES


# -- building it -------------------------------------------------------------------------------


def page_of(result: AuditResult, states: Sequence[RepositoryState], releases: Releases) -> Page:
    """What the page shows, from the audit's result and the states it was computed from."""
    now = result.generated_at
    # The page shows every finding; those under --max-age are marked, not hidden.
    everything = audit(
        states,
        releases,
        now=now,
        registries=result.registries,
        repositories=result.repositories,
    ).findings
    counted = set(result.findings)
    sections = tuple(
        _section(registry, result, states, everything, counted, releases, now)
        for registry in _registries(result)
    )
    listed = tuple(Listed(f, f in counted) for f in everything)
    return Page(
        generated_at=_timestamp(now),
        result=result.result,
        exit_code=result.exit_code,
        summary=_summary(result),
        oldest_held=_oldest_held(result.findings),
        sections=sections,
        findings=listed,
    )


def render_html(result: AuditResult, states: Sequence[RepositoryState], releases: Releases) -> str:
    """The whole page: one HTML document with inline CSS, no script, no external asset."""
    return render_page(page_of(result, states, releases))


def render_page(page: Page) -> str:
    return _template().render(page=page)


@functools.cache
def _template() -> jinja2.Template:
    environment = jinja2.Environment(
        loader=jinja2.PackageLoader("fedora_container_sync", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    return environment.get_template("audit.html.j2")


def _registries(result: AuditResult) -> list[str]:
    """The configured registries, then any other a failure names (never left off the page)."""
    names = list(result.registries)
    names += [f.registry for f in result.failures if f.registry not in names]
    return list(dict.fromkeys(names))


def _section(
    registry: str,
    result: AuditResult,
    states: Sequence[RepositoryState],
    everything: Sequence[Finding],
    counted: set[Finding],
    releases: Releases,
    now: datetime,
) -> Section:
    unreadable = next(
        (f.error for f in result.failures if f.registry == registry and f.repository is None),
        None,
    )
    repositories = list(result.repositories)
    if unreadable is not None:
        return Section(registry, unreadable, rows=tuple(Row(r, "not read") for r in repositories))
    here = {s.repository: s for s in states if s.registry == registry}
    failed = {
        f.repository: f.error
        for f in result.failures
        if f.registry == registry and f.repository is not None
    }
    findings: dict[tuple[str, str, str | None], list[Finding]] = {}
    for finding in everything:
        if finding.registry == registry:
            tag, arch = _cell_of(finding)
            findings.setdefault((finding.repository, tag, arch), []).append(finding)
    columns = _columns(here.values(), findings, releases)
    release_of = _releases_of(columns, here.values(), releases)
    rows = []
    for repository in repositories:
        state = here.get(repository)
        if state is None:
            rows.append(Row(repository, failed.get(repository, "not read")))
            continue
        cells = tuple(
            _cells(state, column, release_of.get(column.tag), findings, counted, now)
            for column in columns
        )
        rows.append(Row(repository, None, cells))
    return Section(registry, None, columns, tuple(rows))


def _cell_of(finding: Finding) -> tuple[str, str | None]:
    """The (index tag, arch) cell of a finding: a per-arch tag ``N-<arch>`` is in column N."""
    arch = finding.arch
    if arch is not None and finding.tag.endswith(f"-{arch}"):
        release = finding.tag[: -len(arch) - 1]
        if _RELEASE.match(release):
            return release, arch
    return finding.tag, arch


def _columns(
    states: Iterable[RepositoryState],
    findings: Mapping[tuple[str, str, str | None], list[Finding]],
    releases: Releases,
) -> tuple[Column, ...]:
    arches: dict[str, set[str]] = {}
    for state in states:
        for index_tag in index_tags(state.tags, releases):
            found = arches.setdefault(index_tag.tag, set())
            content = state.content(index_tag.tag)
            if isinstance(content, IndexState):
                found.update(content.entries)
            if index_tag.release is not None:
                found.update(arch_tags(state.tags, index_tag.release))
    for _repository, tag, arch in findings:
        found = arches.setdefault(tag, set())
        if arch is not None:
            found.add(arch)
    return tuple(
        Column(tag, tuple(sorted(arches[tag], key=arch_sort_key)))
        for tag in sorted(arches, key=_column_order)
    )


def _column_order(tag: str) -> tuple[int, int, str]:
    if _RELEASE.match(tag):
        return (0, int(tag), "")
    return ({LATEST: 1, RAWHIDE: 2}.get(tag, 3), 0, tag)


def _releases_of(
    columns: Sequence[Column], states: Iterable[RepositoryState], releases: Releases
) -> dict[str, int]:
    """Index tag → the release whose per-arch tags it should list."""
    found: dict[str, int] = {}
    for state in states:
        for index_tag in index_tags(state.tags, releases):
            if index_tag.release is not None:
                found[index_tag.tag] = index_tag.release
    for column in columns:
        if column.tag not in found and _RELEASE.match(column.tag):
            found[column.tag] = int(column.tag)
    return found


def _cells(
    state: RepositoryState,
    column: Column,
    release: int | None,
    findings: Mapping[tuple[str, str, str | None], list[Finding]],
    counted: set[Finding],
    now: datetime,
) -> tuple[Cell, ...]:
    content = state.content(column.tag)
    index = content if isinstance(content, IndexState) else None
    per_arch: dict[str, Build] = {}
    if release is not None:
        for arch, tag in arch_tags(state.tags, release).items():
            build = state.content(tag)
            if isinstance(build, Build):
                per_arch[arch] = build
    facts = _Facts(index, per_arch)
    arch_cells = []
    for arch in column.arches:
        here = findings.get((state.repository, column.tag, arch), [])
        notes = [Note(f.kind.value, facts.words(f), f in counted) for f in here]
        entry = index.entries.get(arch) if index else None
        build = per_arch.get(arch)
        serves: list[str] = []
        if entry is not None:
            serves += [_clip(entry.label), _age(entry.compose_id, now)]
        elif index is not None:
            serves.append(f"not in {column.tag}")
        if build is not None and (entry is None or not build.same_as(entry)):
            serves += [f"{release}-{arch} has", _clip(build.label)]
            if entry is not None and _older(build.compose_id, entry.compose_id):
                notes.append(
                    Note(
                        STALE,
                        f"{release}-{arch} still serves {_clip(build.label)}, older than "
                        f"what {column.tag} serves for {arch}",
                    )
                )
        default = OK if entry is not None else ABSENT
        arch_cells.append(Cell(_worst(notes, default), arch, tuple(serves), tuple(notes)))

    index_findings = findings.get((state.repository, column.tag, None), [])
    index_notes = [Note(f.kind.value, facts.words(f), f in counted) for f in index_findings]
    in_arch_cells = [
        f for arch in column.arches for f in findings.get((state.repository, column.tag, arch), [])
    ]
    index_notes += facts.tag_notes(in_arch_cells, counted)
    served_arches = tuple(sorted(index.entries, key=arch_sort_key)) if index else ()
    if index is not None:
        serves = [_clip(index.label), _age(index.compose_id, now)]
        if not served_arches:
            serves.append("no arches")
    else:
        serves = ["no such tag"]
    group = [cell.status for cell in arch_cells] + [n.status for n in index_notes]
    status = min(group, key=_RANK.__getitem__, default=ABSENT)
    if status in (OK, ABSENT):
        status = OK if index is not None else ABSENT
    index_cell = Cell(status, None, tuple(serves), tuple(dict.fromkeys(index_notes)), served_arches)
    return (index_cell, *arch_cells)


@dataclass(frozen=True)
class _Facts:
    """What one repository serves for one index tag: the source of a finding's words."""

    index: IndexState | None
    per_arch: Mapping[str, Build]

    def failed_in(self, compose_id: str | None) -> list[str]:
        """Arches whose per-arch tag has no build of ``compose_id`` (an older one instead):
        their build failed in that compose, which is why the index did not move."""
        if not compose_id:
            return []
        return [
            arch
            for arch in sorted(self.per_arch, key=arch_sort_key)
            if self.per_arch[arch].compose_id != compose_id
            and compose_order(self.per_arch[arch].compose_id) <= compose_order(compose_id)
        ]

    def words(self, finding: Finding) -> str:
        arch = finding.arch or ""
        served = _clip(finding.index_compose_id or finding.compose_id or "an older build")
        newer = _clip(finding.newer_compose_id or "a newer build")
        if finding.kind is Kind.HELD:
            failed = self.failed_in(finding.newer_compose_id)
            if failed:
                return f"{', '.join(failed)} failed in {newer}; the tag still serves {served}"
            return (
                f"{finding.tag}-{arch} has {newer}, but the index was not moved; the tag "
                f"still serves {served}"
                if _RELEASE.match(finding.tag)
                else f"the {arch} build of {newer} is not in the index; the tag still serves "
                f"{served}"
            )
        if finding.kind is Kind.MISSING:
            if self.index is None:
                return f"the tag {finding.tag} does not exist, though {arch} has {newer}"
            words = (
                f"the index has no {arch} entry: pulling {finding.repository}:{finding.tag} "
                f"on {arch} fails"
            )
            failed = [a for a in self.failed_in(finding.newer_compose_id) if a != arch]
            if failed and _older(self.index.compose_id, finding.newer_compose_id):
                words += f"; it is held at {served} because {', '.join(failed)} failed in {newer}"
            return words
        if finding.kind is Kind.CARRIED:
            return (
                f"{arch} failed in {served}; the tag serves {arch} from "
                f"{_clip(finding.compose_id or '?')}, carried forward"
            )
        return _clip(finding.summary, 4 * _CLIP)

    def tag_notes(self, findings: Sequence[Finding], counted: set[Finding]) -> list[Note]:
        """For the index cell: why the tag is held, once (its arch cells repeat it)."""
        return [
            Note(f.kind.value, self.words(f), f in counted) for f in findings if f.kind is Kind.HELD
        ]


def _worst(notes: Sequence[Note], default: str) -> str:
    return min((n.status for n in notes), key=_RANK.__getitem__, default=default)


def _older(compose_id: str | None, than: str | None) -> bool:
    """Both have dates and the first is the earlier compose."""
    if compose_date(compose_id) is None or compose_date(than) is None:
        return False
    return compose_order(compose_id) < compose_order(than)


def _age(compose_id: str | None, now: datetime) -> str:
    hours = age_hours(compose_date(compose_id), now)
    return "age unknown" if hours is None else f"{format_age(hours)} old"


def _clip(text: str, limit: int = _CLIP) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _summary(result: AuditResult) -> str:
    n = len(result.findings)
    text = f"{n} finding{'s' if n != 1 else ''}"
    by_severity = [
        f"{count} {severity.value}"
        for severity in Severity
        if (count := sum(1 for f in result.findings if SEVERITY[f.kind] is severity))
    ]
    if by_severity:
        text += f" ({', '.join(by_severity)})"
    if result.max_age_hours is not None:
        text += f" older than {result.max_age_hours:g}h"
    if result.younger:
        text += f"; {result.younger} younger not counted"
    if result.failures:
        text += f"; {len(result.failures)} unreadable"
    return text


def _oldest_held(findings: Sequence[Finding]) -> str | None:
    held = [f for f in findings if f.kind is Kind.HELD]
    if not held:
        return None
    oldest = max(held, key=lambda f: float("inf") if f.age_hours is None else f.age_hours)
    since = oldest.since.isoformat() if oldest.since else "an unknown date"
    return f"{_clip(oldest.where, 4 * _CLIP)} since {since} ({format_age(oldest.age_hours)})"


def _timestamp(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")
