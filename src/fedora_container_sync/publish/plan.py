"""The plan of one run: what each image, per-arch tag and index tag gets. Pure.

:func:`make_plan` decides it from what was read - the compose's images and tags, and what each
answering registry holds at each per-arch and index tag - before anything is downloaded or
written:

* per image, whether it is built: downloaded once (and in a real run converted once), because
  some registry lacks this compose's build of it and may get it;
* per image and registry, what its per-arch tag gets, with the rollback guard's verdict:
  ``push`` (the build goes there), ``keep`` (the tag holds this compose's build of this very
  file already; its index entry comes from the registry), ``stale`` (it holds a newer compose:
  the guard keeps it) or ``unreadable`` (it could not be read: left alone, its arch failed);
* per registry, repository and index tag, the gate's decision if every planned push succeeds;
* with signing on, the signatures each tag gets (:class:`TagSignatures`): its identity
  ``registry/repository:tag`` for the digest it moves to and, for an index, for each of its
  entries; nothing for a tag that does not move (held, stale, unreadable); for one that holds
  its content already, the same signatures, written only where missing.

A dry run shows the plan (it downloads nothing); a real run executes exactly it.
Each repository's index tags are gated again from what the run recorded (:class:`GateInputs`)
right before they are written, and differ from the plan only where an outcome did: a failed
push, a per-arch tag a newer compose took meanwhile, a tag another writer moved since it was
read. A planned ``keep`` of an image the run builds anyway (for another registry) is checked
again against the build: a registry holding this compose's build as another digest (another
skopeo made it) gets the same digest as the others.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum

from ..compose.selection import ImageArtifact
from ..config.settings import Settings
from ..gate.tags import ReleaseTags
from ..gate.verdicts import (
    MOVING,
    CurrentTag,
    GateDecision,
    Verdict,
    decide,
    decide_arch_tag,
    held_build,
)
from ..oci.index import IndexEntry
from ..oci.manifest import digest_of
from ..oci.platforms import sorted_arches
from ..signing.payload import identity
from .context import PublishOptions


@dataclass(frozen=True)
class Unreadable:
    """A tag that could not be read, and why."""

    error: str


#: What a tag held when it was read: its content, None for no such tag, or why it is unknown.
TagState = CurrentTag | Unreadable | None


@dataclass(frozen=True)
class RegistryState:
    """What one run read in one registry: every per-arch and index tag, by (repository, tag)."""

    registry: str
    tags: Mapping[tuple[str, str], TagState]


class ArchAction(StrEnum):
    PUSH = "push"
    KEEP = "keep"
    STALE = "stale"
    UNREADABLE = "unreadable"


@dataclass(frozen=True)
class ArchTagPlan:
    """One per-arch tag (``41-x86_64``) of one image in one registry, and what it gets."""

    registry: str
    artifact: ImageArtifact
    tag: str
    action: ArchAction
    #: What the tag held when read (None: no such tag, or unreadable).
    current: CurrentTag | None = None
    #: The rollback guard's verdict (None when the tag could not be read).
    decision: GateDecision | None = None
    #: ``keep``: the entry of this compose's build, which the tag holds.
    held: IndexEntry | None = None
    #: ``unreadable``: why.
    error: str | None = None

    @property
    def repository(self) -> str:
        return self.artifact.repository

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.registry, self.artifact.repository, self.tag)


@dataclass(frozen=True)
class ImagePlan:
    """One image of the compose: whether it is built, and its per-arch tag in each registry."""

    artifact: ImageArtifact
    build: bool
    targets: tuple[ArchTagPlan, ...]


@dataclass(frozen=True)
class IndexPlan:
    """One index tag of one repository in one registry."""

    registry: str
    repository: str
    tag: str
    #: The gate's decision if every planned push succeeds (its entries are unknown until the
    #: images are built); None when the tag could not be read.
    decision: GateDecision | None


@dataclass(frozen=True)
class PlannedSignature:
    """One signature of a tag's identity: for ``digest`` (None: what this run builds, known
    once it is built), of ``content``: ``index``, or the arch of an image (``x86_64``)."""

    digest: str | None
    content: str


@dataclass(frozen=True)
class TagSignatures:
    """The signatures one tag gets with signing on, and why none when it gets none."""

    registry: str
    identity: str
    signatures: tuple[PlannedSignature, ...]
    #: The tag moves to what is signed (False: it holds it already; only missing signatures
    #: are written).
    moves: bool = True
    #: Why nothing is signed (the tag does not move): ``held``, ``stale``, ``unreadable``.
    unsigned: str | None = None


@dataclass(frozen=True)
class Plan:
    compose_id: str
    tags: ReleaseTags
    images: tuple[ImagePlan, ...]
    indexes: tuple[IndexPlan, ...]
    #: With signing on, what each per-arch and index tag gets signed (None: signing off).
    signing: tuple[TagSignatures, ...] | None = None

    def targets(self) -> Iterator[ArchTagPlan]:
        for image in self.images:
            yield from image.targets

    def targets_of(self, registry: str, repository: str) -> list[ArchTagPlan]:
        return [t for t in self.targets() if (t.registry, t.repository) == (registry, repository)]

    def steps(self, *, dry_run: bool) -> int:
        """The steps a run of this plan takes, if nothing fails: each build downloaded and
        converted (not in a dry run), each per-arch tag settled, each index tag gated."""
        builds = sum(1 for image in self.images if image.build)
        targets = sum(len(image.targets) for image in self.images)
        return (0 if dry_run else 2 * builds) + targets + len(self.indexes)


@dataclass(frozen=True)
class GateInputs:
    """What one repository's index tags are gated with, from its per-arch tags: the entry of
    each arch (None: pushed in a dry run, or planned), the arches that failed in this run, and
    the arches whose per-arch tag holds a newer compose (and which)."""

    entries: Mapping[str, IndexEntry | None]
    failed: frozenset[str] = frozenset()
    stale: Mapping[str, str] | None = None


def decide_index(
    current: CurrentTag | None,
    inputs: GateInputs,
    *,
    repository: str,
    compose_id: str,
    settings: Settings,
    options: PublishOptions,
) -> GateDecision:
    """The gate's decision for one index tag of ``repository`` (:func:`..gate.verdicts.decide`)."""
    return decide(
        current,
        inputs.entries,
        compose_id=compose_id,
        policy=settings.gate_policy,
        expected=settings.expected_for(repository),
        failed=inputs.failed,
        stale=inputs.stale,
        allow_drop=options.allow_drop,
        force=options.force,
    )


def make_plan(
    compose_id: str,
    tags: ReleaseTags,
    artifacts: Sequence[ImageArtifact],
    states: Sequence[RegistryState],
    *,
    settings: Settings,
    options: PublishOptions,
) -> Plan:
    """The plan for ``artifacts`` under ``tags``, given what each answering registry holds."""
    images = []
    for artifact in artifacts:
        targets = tuple(_arch_tag(state, artifact, tags, compose_id, options) for state in states)
        build = any(target.action is ArchAction.PUSH for target in targets)
        images.append(ImagePlan(artifact, build, targets))
    plan = Plan(compose_id, tags, tuple(images), ())
    repositories = list(dict.fromkeys(artifact.repository for artifact in artifacts))
    indexes = []
    signing: list[TagSignatures] = []
    for state in states:
        for repository in repositories:
            inputs = planned_inputs(plan.targets_of(state.registry, repository))
            for tag in tags.index_tags:
                current = state.tags.get((repository, tag))
                decision = None
                if not isinstance(current, Unreadable):
                    decision = decide_index(
                        current,
                        inputs,
                        repository=repository,
                        compose_id=compose_id,
                        settings=settings,
                        options=options,
                    )
                indexes.append(IndexPlan(state.registry, repository, tag, decision))
                if settings.signing.enabled:
                    signing.append(
                        _index_signatures(
                            plan, state.registry, repository, tag, current, decision, settings
                        )
                    )
    if settings.signing.enabled:
        arch_tags = [_arch_signatures(target) for target in plan.targets()]
        return Plan(compose_id, tags, plan.images, tuple(indexes), (*arch_tags, *signing))
    return Plan(compose_id, tags, tuple(images), tuple(indexes))


def planned_inputs(targets: Sequence[ArchTagPlan]) -> GateInputs:
    """What a repository's index tags would be gated with if every planned push succeeded."""
    entries: dict[str, IndexEntry | None] = {}
    stale: dict[str, str] = {}
    failed: set[str] = set()
    for target in targets:
        arch = target.artifact.arch
        if target.action is ArchAction.PUSH:
            entries[arch] = None
        elif target.action is ArchAction.KEEP:
            entries[arch] = target.held
        elif target.action is ArchAction.STALE and target.decision is not None:
            stale[arch] = target.decision.holder or ""
        else:
            failed.add(arch)
    return GateInputs(entries, frozenset(failed), stale)


def _arch_tag(
    state: RegistryState,
    artifact: ImageArtifact,
    tags: ReleaseTags,
    compose_id: str,
    options: PublishOptions,
) -> ArchTagPlan:
    tag = tags.arch_tag(artifact.arch)
    current = state.tags.get((artifact.repository, tag))
    if isinstance(current, Unreadable):
        return ArchTagPlan(
            state.registry, artifact, tag, ArchAction.UNREADABLE, error=current.error
        )
    held = held_build(current, artifact.arch, image_sha256=artifact.sha256, compose_id=compose_id)
    decision = decide_arch_tag(
        current,
        artifact.arch,
        held.digest if held else None,
        compose_id=compose_id,
        force=options.force,
    )
    action = {
        Verdict.PUBLISH: ArchAction.PUSH,
        Verdict.UNCHANGED: ArchAction.KEEP,
        Verdict.STALE: ArchAction.STALE,
    }[decision.verdict]
    return ArchTagPlan(state.registry, artifact, tag, action, current, decision, held)


def _arch_signatures(target: ArchTagPlan) -> TagSignatures:
    """A per-arch tag's signature: its identity for the build it gets or holds."""
    name = identity(target.registry, target.repository, target.tag)
    content = target.artifact.arch
    if target.action is ArchAction.PUSH:
        return TagSignatures(target.registry, name, (PlannedSignature(None, content),))
    if target.action is ArchAction.KEEP and target.held is not None:
        signature = PlannedSignature(target.held.digest, content)
        return TagSignatures(target.registry, name, (signature,), moves=False)
    return TagSignatures(target.registry, name, (), unsigned=str(target.action))


def _index_signatures(
    plan: Plan,
    registry: str,
    repository: str,
    tag: str,
    current: TagState,
    decision: GateDecision | None,
    settings: Settings,
) -> TagSignatures:
    """An index tag's signatures: its identity for the index and for each of its entries.
    Where this run builds an entry (or the index), its digest is known once it is built."""
    name = identity(registry, repository, tag)
    if decision is None or isinstance(current, Unreadable):
        return TagSignatures(registry, name, (), unsigned="unreadable")
    if decision.verdict is Verdict.UNCHANGED and current is not None:
        holds = [PlannedSignature(current.digest, "index")]
        holds += [
            PlannedSignature(current.entries[arch].digest, arch)
            for arch in sorted_arches(current.entries)
        ]
        return TagSignatures(registry, name, tuple(holds), moves=False)
    if decision.verdict not in MOVING:
        why = "held" if decision.verdict is Verdict.HOLD else decision.verdict.value
        return TagSignatures(registry, name, (), unsigned=why)
    if decision.entries:  # every entry known: the index's exact bytes are too
        index = digest_of(decision.index_body(plan.compose_id))
        known = [PlannedSignature(index, "index")]
        known += [PlannedSignature(e.digest, e.arch) for e in decision.entries]
        return TagSignatures(registry, name, tuple(known))
    builds = {t.artifact.arch: t for t in plan.targets_of(registry, repository)}
    expected = settings.expected_for(repository)
    listed = decision.compose_arches if expected is None else decision.compose_arches & expected
    signatures = [PlannedSignature(None, "index")]
    for arch in sorted_arches(listed | decision.carried):
        target = builds.get(arch)
        if arch in decision.carried and current is not None:
            signatures.append(PlannedSignature(current.entries[arch].digest, f"{arch}, kept"))
        elif target is not None and target.held is not None:
            signatures.append(PlannedSignature(target.held.digest, arch))
        else:
            signatures.append(PlannedSignature(None, arch))
    return TagSignatures(registry, name, tuple(signatures))
