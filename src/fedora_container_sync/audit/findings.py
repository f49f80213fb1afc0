"""The audit: which index tags are held, miss an arch, carry old entries or diverge. Pure.

Input: what each registry serves for each configured repository (:class:`RepositoryState`,
read by :mod:`.inventory`). Output: :class:`Finding` values sorted by severity and age and an
exit code (:class:`AuditResult`); :mod:`.report` renders them for people and monitoring.

For every index tag the configuration implies (each release ``N`` found in the repository's
tag list, ``latest``, ``rawhide``):

* **held** - the per-arch tag ``N-<arch>`` holds a newer build than the index's entry for
  that arch: the gate held the index;
* **missing** - ``N-<arch>`` exists but the index has no entry for that arch (or the index
  tag does not exist at all);
* **carried** - an index entry comes from another compose than the index itself;
* **diverged** - a tag (index or per-arch) holds another build in another registry, or
  exists in one registry and not in another;
* **unrecognized** - the index has an entry that is neither an image of a Fedora arch nor a
  positive attestation (the same reading as the gate's, which holds such a tag under every
  policy until someone fixes it);
* **unsigned** (only with a signing ``public_key`` configured) - a tag, or an entry of an index
  tag, without a valid signature by that key for its exact identity ``registry/repo:tag``,
  saying why: no signature, signed only by other keys, signed only for other tags, invalid.


Each kind's age counts from the build that has not moved since (:func:`.state.age_hours`): held
and missing from the index's compose (when the index last moved), carried from the carried
entry's compose, diverged from the lagging registry's build (or, where it lacks the tag, from
the build it lacks). A finding whose compose ID carries no date has no age and is always
reported.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import date, datetime
from enum import StrEnum
from typing import Any

from ..config.settings import Releases
from ..oci.platforms import arch_sort_key
from ..signing.payload import identity
from ..signing.status import Status, judge
from .state import (
    Build,
    Content,
    IndexState,
    ReadFailure,
    RepositoryState,
    age_hours,
    arch_of,
    arch_tags,
    compose_date,
    compose_order,
    index_tags,
    tag_order,
    tags_to_read,
)

EXIT_CLEAN = 0
EXIT_UNREADABLE = 1
EXIT_FINDINGS = 3


class Kind(StrEnum):
    MISSING = "missing"
    DIVERGED = "diverged"
    HELD = "held"
    CARRIED = "carried"
    UNRECOGNIZED = "unrecognized"
    UNSIGNED = "unsigned"


class Severity(StrEnum):
    ERROR = "error"
    WARNING = "warning"
    INFO = "info"


#: missing: users of that arch cannot pull the tag at all; diverged: what users get depends on
#: the registry; held: the tag serves an old build; carried: mixed composes, by policy;
#: unrecognized: the gate will hold the tag until a person fixes its index.
SEVERITY = {
    Kind.MISSING: Severity.ERROR,
    Kind.DIVERGED: Severity.ERROR,
    Kind.HELD: Severity.WARNING,
    Kind.CARRIED: Severity.INFO,
    Kind.UNRECOGNIZED: Severity.ERROR,
    Kind.UNSIGNED: Severity.ERROR,
}
_KIND_RANK = {kind: rank for rank, kind in enumerate(Kind)}
_SEVERITY_RANK = {severity: rank for rank, severity in enumerate(Severity)}


# -- findings --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Finding:
    """One thing an operator should know about one tag in one registry."""

    kind: Kind
    registry: str
    repository: str
    tag: str
    arch: str | None
    summary: str
    #: What the tag (or, with ``arch``, the index entry for that arch) serves now.
    compose_id: str | None = None
    #: The newer build it lags behind: the per-arch tag's (held, missing) or the other
    #: registry's (diverged).
    newer_compose_id: str | None = None
    #: The compose the index tag was last moved to (index tags).
    index_compose_id: str | None = None
    #: diverged: the registry serving the newer content.
    reference_registry: str | None = None
    #: The manifest digest the tag serves in this registry (None: the tag does not exist).
    digest: str | None = None
    since: date | None = None
    age_hours: int | None = None

    @property
    def severity(self) -> Severity:
        return SEVERITY[self.kind]

    @property
    def where(self) -> str:
        return f"{self.registry}/{self.repository}:{self.tag}"

    def older_than(self, hours: float) -> bool:
        """Counts under ``--max-age hours``: older than the limit, or of unknown age."""
        return self.age_hours is None or self.age_hours > hours

    def sort_key(self) -> tuple[Any, ...]:
        """Severity first, then the oldest (unknown age counts as oldest), then by name."""
        age = float("inf") if self.age_hours is None else float(self.age_hours)
        return (
            _SEVERITY_RANK[self.severity],
            -age,
            _KIND_RANK[self.kind],
            self.registry,
            self.repository,
            tag_order(self.tag),
            arch_sort_key(self.arch or ""),
        )

    def as_json(self) -> dict[str, Any]:
        """The finding as documented in FINDING_SCHEMA (also the body of its bus message)."""
        return {
            "kind": self.kind.value,
            "severity": self.severity.value,
            "registry": self.registry,
            "repository": self.repository,
            "tag": self.tag,
            "arch": self.arch,
            "compose_id": self.compose_id,
            "newer_compose_id": self.newer_compose_id,
            "index_compose_id": self.index_compose_id,
            "reference_registry": self.reference_registry,
            "digest": self.digest,
            "since": self.since.isoformat() if self.since else None,
            "age_hours": self.age_hours,
            "summary": self.summary,
        }


def find_in_repository(state: RepositoryState, releases: Releases, now: datetime) -> list[Finding]:
    """held, missing and carried findings of one repository in one registry."""
    findings: list[Finding] = []
    for index_tag in index_tags(state.tags, releases):
        tag = index_tag.tag
        found = state.content(tag)
        index = found if isinstance(found, IndexState) else None
        base = Finding(
            Kind.MISSING,
            state.registry,
            state.repository,
            tag,
            arch=None,
            summary="",
            index_compose_id=index.compose_id if index else None,
            digest=index.digest if index else None,
        )
        if index is not None:
            for unknown in index.unknown:
                since = compose_date(index.compose_id)
                findings.append(
                    replace(
                        base,
                        kind=Kind.UNRECOGNIZED,
                        summary=f"{unknown}; the gate holds this tag until that is fixed by hand",
                        compose_id=unknown.compose_id,
                        since=since,
                        age_hours=age_hours(since, now),
                    )
                )
            for arch in sorted(index.entries, key=arch_sort_key):
                carried = index.entries[arch]
                if (
                    carried.compose_id
                    and index.compose_id
                    and carried.compose_id != index.compose_id
                ):
                    since = compose_date(carried.compose_id)
                    findings.append(
                        replace(
                            base,
                            kind=Kind.CARRIED,
                            arch=arch,
                            summary=f"{arch} entry carried from {carried.compose_id} into the "
                            f"index of {index.compose_id}",
                            compose_id=carried.compose_id,
                            since=since,
                            age_hours=age_hours(since, now),
                        )
                    )
        if index_tag.release is None:
            continue
        index_since = compose_date(index.compose_id) if index else None
        per_arch = arch_tags(state.tags, index_tag.release)
        for arch in sorted(per_arch, key=arch_sort_key):
            arch_tag = per_arch[arch]
            build = state.content(arch_tag)
            if not isinstance(build, Build):
                continue
            if index is None or arch not in index.entries:
                since = index_since if index else compose_date(build.compose_id)
                lacks = (
                    f"the index ({index.label}) has no {arch} entry"
                    if index
                    else f"the index tag {tag} does not exist"
                )
                findings.append(
                    replace(
                        base,
                        kind=Kind.MISSING,
                        arch=arch,
                        summary=f"{arch_tag} has {build.label}; {lacks}",
                        newer_compose_id=build.compose_id,
                        since=since,
                        age_hours=age_hours(since, now),
                    )
                )
                continue
            entry = index.entries[arch]
            if not build.same_as(entry) and not _older(build.compose_id, entry.compose_id):
                findings.append(
                    replace(
                        base,
                        kind=Kind.HELD,
                        arch=arch,
                        summary=f"{arch_tag} has {build.label}; the index still serves "
                        f"{entry.label} for {arch}",
                        compose_id=entry.compose_id,
                        newer_compose_id=build.compose_id,
                        since=index_since,
                        age_hours=age_hours(index_since, now),
                    )
                )
    return findings


def find_unsigned(state: RepositoryState, now: datetime) -> list[Finding]:
    """unsigned findings of one repository in one registry: each audited tag, and each entry
    of an index tag, without a valid signature by the configured key for the tag's exact
    identity (none when its signatures were not read)."""
    if state.signatures is None:
        return []
    findings: list[Finding] = []
    for tag in sorted(state.contents, key=tag_order):
        content = state.content(tag)
        if content is None:
            continue
        name = identity(state.registry, state.repository, tag)
        served: list[tuple[str | None, Build | IndexState]] = [(arch_of(tag), content)]
        if isinstance(content, IndexState):
            served = [(None, content)]
            served += [
                (arch, content.entries[arch]) for arch in sorted(content.entries, key=arch_sort_key)
            ]
        for arch, what in served:
            judgement = judge(state.signatures.get(what.digest, ()), what.digest, name)
            if judgement.status is Status.VALID:
                continue
            since = compose_date(what.compose_id)
            entry = (
                f"its {arch} entry {what.label}" if isinstance(content, IndexState) and arch else ""
            )
            findings.append(
                Finding(
                    Kind.UNSIGNED,
                    state.registry,
                    state.repository,
                    tag,
                    arch,
                    summary=f"{entry or what.label}: {judgement.describe()} for :{tag}",
                    compose_id=what.compose_id,
                    index_compose_id=content.compose_id
                    if isinstance(content, IndexState)
                    else None,
                    digest=content.digest,
                    since=since,
                    age_hours=age_hours(since, now),
                )
            )
    return findings


def find_diverged(
    states: Sequence[RepositoryState], releases: Releases, now: datetime
) -> list[Finding]:
    """diverged findings of one repository across registries (``states`` in config order)."""
    if len(states) < 2:
        return []
    tags: set[str] = set()
    for state in states:
        tags.update(tags_to_read(state.tags, releases))
    findings = []
    for tag in sorted(tags, key=tag_order):
        served = [(state, state.content(tag)) for state in states]
        present = [(state, content) for state, content in served if content is not None]
        if not present:
            continue
        # The newest content is the reference; on a tie, the first configured registry.
        reference_state, reference = max(
            present, key=lambda item: compose_order(item[1].compose_id)
        )
        for state, content in served:
            if content is not None and _same(content, reference):
                continue
            lagging = content.compose_id if content else None
            since = compose_date(lagging if content else reference.compose_id)
            here = f"serves {content.label}" if content else "does not exist here"
            findings.append(
                Finding(
                    Kind.DIVERGED,
                    registry=state.registry,
                    repository=state.repository,
                    tag=tag,
                    arch=arch_of(tag),
                    summary=f"{here}; {reference_state.registry} serves {reference.label}"
                    + _differing_arches(content, reference),
                    compose_id=lagging,
                    newer_compose_id=reference.compose_id,
                    index_compose_id=content.compose_id
                    if isinstance(content, IndexState)
                    else None,
                    reference_registry=reference_state.registry,
                    digest=content.digest if content else None,
                    since=since,
                    age_hours=age_hours(since, now),
                )
            )
    return findings


def _differing_arches(content: Content | None, reference: Content) -> str:
    """For two indexes: ``; they differ in x86_64, aarch64`` (the compose IDs may agree)."""
    if not isinstance(content, IndexState) or not isinstance(reference, IndexState):
        return ""
    arches = content.entries.keys() | reference.entries.keys()
    differing = [
        arch
        for arch in sorted(arches, key=arch_sort_key)
        if arch not in content.entries
        or arch not in reference.entries
        or not content.entries[arch].same_as(reference.entries[arch])
    ]
    return f"; they differ in {', '.join(differing)}" if differing else ""


def _same(a: Content, b: Content) -> bool:
    if isinstance(a, Build) and isinstance(b, Build):
        return a.same_as(b)
    if isinstance(a, IndexState) and isinstance(b, IndexState):
        return a.same_as(b)
    return False


def _older(compose_id: str | None, than: str | None) -> bool:
    """True only when both compose IDs have dates and the first is the earlier compose."""
    if compose_date(compose_id) is None or compose_date(than) is None:
        return False
    return compose_order(compose_id) < compose_order(than)


# -- the whole audit -------------------------------------------------------------------------


@dataclass(frozen=True)
class AuditResult:
    """Everything one audit found, filtered by age and sorted by severity and age."""

    generated_at: datetime
    registries: tuple[str, ...]
    repositories: tuple[str, ...]
    findings: tuple[Finding, ...]
    failures: tuple[ReadFailure, ...] = ()
    max_age_hours: float | None = None
    #: Findings not counted because they are younger than ``max_age_hours``.
    younger: int = 0

    @property
    def exit_code(self) -> int:
        if self.failures:
            return EXIT_UNREADABLE
        if self.findings:
            return EXIT_FINDINGS
        return EXIT_CLEAN

    @property
    def result(self) -> str:
        return {EXIT_UNREADABLE: "unreadable", EXIT_FINDINGS: "findings"}.get(
            self.exit_code, "clean"
        )

    def counts(self) -> dict[str, int]:
        return {kind.value: sum(1 for f in self.findings if f.kind is kind) for kind in Kind}


def audit(
    states: Sequence[RepositoryState],
    releases: Releases,
    *,
    now: datetime,
    registries: Sequence[str],
    repositories: Sequence[str],
    failures: Sequence[ReadFailure] = (),
    max_age_hours: float | None = None,
) -> AuditResult:
    """All findings of the registries' ``states`` (unreadable ones are in ``failures``).

    A registry that could not be read is left out of every comparison: it is never reported
    as lacking a tag.
    """
    findings: list[Finding] = []
    for state in states:
        findings += find_in_repository(state, releases, now)
        findings += find_unsigned(state, now)
    for repository in repositories:
        same_repository = [s for s in states if s.repository == repository]
        same_repository.sort(key=lambda s: list(registries).index(s.registry))
        findings += find_diverged(same_repository, releases, now)
    counted = [f for f in findings if max_age_hours is None or f.older_than(max_age_hours)]
    return AuditResult(
        generated_at=now,
        registries=tuple(registries),
        repositories=tuple(repositories),
        findings=tuple(sorted(counted, key=Finding.sort_key)),
        failures=tuple(failures),
        max_age_hours=max_age_hours,
        younger=len(findings) - len(counted),
    )
