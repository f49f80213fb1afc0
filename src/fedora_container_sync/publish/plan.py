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
* per registry, repository and index tag, the gate's decision if every planned push succeeds.

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
from ..gate.verdicts import CurrentTag, GateDecision, Verdict, decide, decide_arch_tag, held_build
from ..oci.index import IndexEntry
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
class Plan:
    compose_id: str
    tags: ReleaseTags
    images: tuple[ImagePlan, ...]
    indexes: tuple[IndexPlan, ...]

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
