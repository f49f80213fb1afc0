"""The audit as a status page, as plain data: what each cell shows and why. Pure.

:func:`page_of` turns what the registries serve (:class:`~.state.RepositoryState`) and what
the audit found (:class:`~.findings.AuditResult`) into the plain data the page shows, so the
decisions (which cell, which colour, which words) are tested without parsing HTML;
:mod:`.html` renders it.

Per registry, a table: one line per repository and index tag (``41``, ``latest``, ``rawhide``),
with a column for the index and one per arch, so the page is as wide as Fedora's arches however
many tags a repository has (it fits a laptop's 1366 pixels). Lines that need a look lead: held,
missing, diverged first, then the rest, absent tags last. A cell shows what the tag serves
(compose, age, arches) and takes the colour of its most severe finding (:mod:`.cells`); the arch
that failed stands out from the held ones.

Findings younger than ``--max-age`` are not counted by the audit; the page still shows them,
marked as such, so a tag is never shown as ok while it is held.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from ..config.settings import Releases
from ..gate.tags import LATEST, RAWHIDE
from ..oci.platforms import arch_sort_key
from .cells import ABSENT, CLIP, RELEASE, STATUSES, Cell, Column, clip, row_cells
from .findings import SEVERITY, AuditResult, Finding, Kind, Severity, audit
from .report import format_age
from .state import IndexState, RepositoryState, arch_tags, index_tags

# -- what the page shows -----------------------------------------------------------------------


@dataclass(frozen=True)
class Row:
    repository: str
    #: Set when this repository could not be read in this registry.
    error: str | None
    #: Per column: the index cell, then one cell per arch of the column.
    cells: tuple[tuple[Cell, ...], ...] = ()


@dataclass(frozen=True)
class Line:
    """A line of a registry's table: one repository's index tag, or its read error."""

    repository: str
    tag: str | None
    error: str | None
    #: The index cell (None with an error).
    index: Cell | None = None
    #: One per arch of the section (:attr:`Section.arches`); an arch the tag has no column for
    #: is absent.
    arches: tuple[Cell, ...] = ()

    @property
    def status(self) -> str:
        return "unreadable" if self.index is None else self.index.status


@dataclass(frozen=True)
class Section:
    registry: str
    #: Set when the registry could not be read at all.
    error: str | None
    columns: tuple[Column, ...] = ()
    rows: tuple[Row, ...] = ()

    @property
    def width(self) -> int:
        """Matrix columns after the repository's (every tag's index and arches)."""
        return sum(len(column.arches) + 1 for column in self.columns)

    @property
    def arches(self) -> tuple[str, ...]:
        """The arch columns of the table: every arch of every tag, in Fedora's order."""
        found = {arch for column in self.columns for arch in column.arches}
        return tuple(sorted(found, key=arch_sort_key))

    @property
    def lines(self) -> tuple[Line, ...]:
        """The table's lines, those that need a look first: unreadable, then by the status of
        the tag (missing, diverged, held, ... absent), in repository and tag order within."""
        arches = self.arches
        found: list[tuple[int, int, Line]] = []
        for row in self.rows:
            if row.error is not None:
                found.append((-1, len(found), Line(row.repository, None, row.error)))
                continue
            for column, cells in zip(self.columns, row.cells, strict=True):
                index, *per_arch = cells
                by_arch = {cell.arch: cell for cell in per_arch}
                line = Line(
                    row.repository,
                    column.tag,
                    None,
                    index,
                    tuple(by_arch.get(arch) or Cell(ABSENT, arch, ()) for arch in arches),
                )
                found.append((STATUSES.index(index.status), len(found), line))
        return tuple(line for _, _, line in sorted(found, key=lambda item: item[:2]))


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
        return clip(self.finding.where, 4 * CLIP)

    @property
    def summary(self) -> str:
        return clip(self.finding.summary, 4 * CLIP)


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
    #: The run also sent its findings to the message bus.
    messages: bool = False


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
            row_cells(state, column, release_of.get(column.tag), findings, counted, now)
            for column in columns
        )
        rows.append(Row(repository, None, cells))
    return Section(registry, None, columns, tuple(rows))


def _cell_of(finding: Finding) -> tuple[str, str | None]:
    """The (index tag, arch) cell of a finding: a per-arch tag ``N-<arch>`` is in column N."""
    arch = finding.arch
    if arch is not None and finding.tag.endswith(f"-{arch}"):
        release = finding.tag[: -len(arch) - 1]
        if RELEASE.match(release):
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
    if RELEASE.match(tag):
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
        if column.tag not in found and RELEASE.match(column.tag):
            found[column.tag] = int(column.tag)
    return found


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
    return f"{clip(oldest.where, 4 * CLIP)} since {since} ({format_age(oldest.age_hours)})"


def _timestamp(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")
