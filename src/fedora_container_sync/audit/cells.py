"""The cells of the audit's status page: what one repository serves for one index tag, per arch,
and why each cell has its colour. Pure.

* held, missing, carried, diverged: the audit's findings (:mod:`.findings`), in words a user
  understands ("aarch64 failed in Fedora-41-20241026.0; the tag still serves
  Fedora-41-20241025.0");
* failed: the arch whose build failed in the compose the tag was held on: its per-arch tag did
  not get that compose while the held arches did (not a finding of its own: the held findings
  already count; it marks the arch the release engineer has to look at);
* stale: the per-arch tag ``N-<arch>`` serves an older build than the index does for that arch
  (the opposite of held; not a finding of the audit, so it does not change the exit code);
* ok: the index serves the arch and its per-arch tag agrees; absent: neither exists.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from ..oci.platforms import arch_sort_key
from .findings import Finding, Kind
from .report import format_age
from .state import (
    Build,
    IndexState,
    RepositoryState,
    age_hours,
    arch_tags,
    compose_date,
    compose_order,
)

#: Cell statuses, most severe first: a cell takes the first that applies.
FAILED = "failed"
STALE = "stale"
OK = "ok"
ABSENT = "absent"
STATUSES = (
    Kind.MISSING.value,
    Kind.DIVERGED.value,
    Kind.HELD.value,
    FAILED,
    Kind.UNSIGNED.value,
    Kind.CARRIED.value,
    STALE,
    OK,
    ABSENT,
)
_RANK = {status: rank for rank, status in enumerate(STATUSES)}

#: Longest foreign string (compose ID, digest label) shown whole; longer ones are cut.
CLIP = 120

RELEASE = re.compile(r"^[0-9]+$")


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


def row_cells(
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
    held_at = {
        f.newer_compose_id
        for arch in column.arches
        for f in findings.get((state.repository, column.tag, arch), [])
        if f.kind is Kind.HELD and f.newer_compose_id
    }
    failed = {arch: compose for compose in held_at for arch in facts.failed_in(compose)}
    arch_cells = []
    for arch in column.arches:
        here = findings.get((state.repository, column.tag, arch), [])
        notes = [Note(f.kind.value, facts.words(f), f in counted) for f in here]
        entry = index.entries.get(arch) if index else None
        build = per_arch.get(arch)
        serves: list[str] = []
        if entry is not None:
            serves += [clip(entry.label), _age(entry.compose_id, now)]
        elif index is not None:
            serves.append(f"not in {column.tag}")
        if build is not None and (entry is None or not build.same_as(entry)):
            serves += [f"{release}-{arch} has", clip(build.label)]
            if entry is not None and _older(build.compose_id, entry.compose_id):
                notes.append(
                    Note(
                        STALE,
                        f"{release}-{arch} still serves {clip(build.label)}, older than "
                        f"what {column.tag} serves for {arch}",
                    )
                )
        if arch in failed and entry is not None and not notes:
            words = f"{arch} failed in {clip(failed[arch])}; {release}-{arch} and the tag still "
            notes.append(Note(FAILED, f"{words}serve {clip(entry.label)}"))
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
        serves = [clip(index.label), _age(index.compose_id, now)]
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
        served = clip(finding.index_compose_id or finding.compose_id or "an older build")
        newer = clip(finding.newer_compose_id or "a newer build")
        if finding.kind is Kind.HELD:
            failed = self.failed_in(finding.newer_compose_id)
            if failed:
                return f"{', '.join(failed)} failed in {newer}; the tag still serves {served}"
            return (
                f"{finding.tag}-{arch} has {newer}, but the index was not moved; the tag "
                f"still serves {served}"
                if RELEASE.match(finding.tag)
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
                f"{clip(finding.compose_id or '?')}, carried forward"
            )
        return clip(finding.summary, 4 * CLIP)

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


def clip(text: str, limit: int = CLIP) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
