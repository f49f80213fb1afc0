"""What a run did, recorded as data as it happens. Pure.

:class:`Record` keeps every outcome - each image downloaded and converted (or not), each per-arch
tag settled, each index tag gated, every error and note - and answers what follows from them
together with the plan: which per-arch tags still wait for their image, whether a repository's
per-arch tags are all settled (then its index tags are gated), what the gate gets
(:meth:`Record.inputs`), how many steps are done and how many the run will take, and in the
end the :class:`~.report.ComposeReport`. Nothing is counted in callbacks: every number is
derived from the plan and the outcomes.

Each outcome is handed to a :class:`Listener` as it is recorded (:mod:`.progress` shows it).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Protocol

from ..compose.selection import ImageArtifact
from ..errors import SyncError
from ..gate.verdicts import GateDecision
from ..oci.index import IndexEntry
from .context import SignatureCount
from .plan import ArchTagPlan, GateInputs, ImagePlan, Plan
from .report import ArchPush, ComposeReport, TagOutcome


class Stage(StrEnum):
    DOWNLOAD = "download"
    CONVERT = "convert"


@dataclass(frozen=True)
class ImageStep:
    """One step of building an image: downloaded (and verified) or converted, or failed."""

    artifact: ImageArtifact
    stage: Stage
    ok: bool
    #: download: the archive's transport; convert: the converted image's digest.
    detail: str = ""


@dataclass(frozen=True)
class ArchOutcome:
    """How one per-arch tag ended."""

    target: ArchTagPlan
    #: Its report row; None when its image could not be built (that error is the image's).
    push: ArchPush | None
    #: The entry it gives its repository's index tags (None: a dry run's push, or none).
    entry: IndexEntry | None = None
    #: The newer compose the tag holds (stale: the rollback guard kept it).
    newer: str | None = None
    failed: bool = False


def _row(target: ArchTagPlan, decision: GateDecision | None) -> ArchPush:
    artifact = target.artifact
    return ArchPush(
        target.registry, artifact.repository, target.tag, artifact.arch, decision=decision
    )


def stale(target: ArchTagPlan) -> ArchOutcome:
    """It holds a newer compose: not moved."""
    holder = target.decision.holder if target.decision else None
    return ArchOutcome(target, _row(target, target.decision), newer=holder or "")


def kept(target: ArchTagPlan) -> ArchOutcome:
    """It holds this compose's build already: its entry is what the registry holds."""
    if target.held is None:
        raise ValueError(f"{target.tag}: kept without holding this build")
    push = replace(_row(target, target.decision), digest=target.held.digest, skipped=True)
    return ArchOutcome(target, push, target.held)


def planned(target: ArchTagPlan) -> ArchOutcome:
    """A dry run's push: what the tag would get."""
    return ArchOutcome(target, replace(_row(target, target.decision), planned=True))


def unchanged(target: ArchTagPlan, decision: GateDecision, entry: IndexEntry) -> ArchOutcome:
    """The build, now converted, is what the tag holds."""
    push = replace(_row(target, decision), digest=entry.digest, skipped=True)
    return ArchOutcome(target, push, entry)


def pushed(target: ArchTagPlan, decision: GateDecision, entry: IndexEntry) -> ArchOutcome:
    return ArchOutcome(target, replace(_row(target, decision), digest=entry.digest), entry)


def overtaken(target: ArchTagPlan, digest: str, decision: GateDecision) -> ArchOutcome:
    """A newer compose's run moved the tag while the image was uploaded: not moved."""
    push = replace(_row(target, decision), digest=digest)
    return ArchOutcome(target, push, newer=decision.holder or "")


def failed(target: ArchTagPlan, error: str) -> ArchOutcome:
    """It could not be read, or pushed (the error is reported on its own)."""
    artifact = target.artifact
    push = ArchPush(target.registry, artifact.repository, target.tag, artifact.arch, error=error)
    return ArchOutcome(target, push, failed=True)


def abandoned(target: ArchTagPlan) -> ArchOutcome:
    """Its image could not be downloaded or converted: the tag stays as it is."""
    return ArchOutcome(target, None, failed=True)


class Listener(Protocol):
    """Shown each outcome as it is recorded, with the steps done and the steps the run takes."""

    def step(self, outcome: ImageStep | ArchOutcome | TagOutcome, done: int, total: int) -> None:
        """A step finished."""

    def error(self, error: SyncError) -> None:
        """Something failed."""

    def note(self, note: str) -> None:
        """Something the report says besides the tags."""

    def image_done(self, image: ImagePlan) -> None:
        """Every per-arch tag of ``image`` has its outcome: nothing more is done with it."""


class Record:
    """Everything one run did, in the order it happened."""

    def __init__(
        self,
        compose_id: str,
        *,
        dry_run: bool,
        listener: Listener,
        signed: SignatureCount | None = None,
    ) -> None:
        self.compose_id = compose_id
        self.dry_run = dry_run
        self.plan: Plan | None = None
        #: the release number of the compose's tags, once known
        self.release: int | None = None
        self.errors: list[SyncError] = []
        self.notes: list[str] = []
        self.images: list[ImageStep] = []
        self.arch: dict[tuple[str, str, str], ArchOutcome] = {}
        self.indexes: list[TagOutcome] = []
        #: the signatures the run wrote and found (its context adds them, on the workers)
        self.signed = signed
        self._listener = listener

    # -- recording -----------------------------------------------------------------------------

    def note(self, note: str) -> None:
        self.notes.append(note)
        self._listener.note(note)

    def fail(self, error: SyncError) -> None:
        self.errors.append(error)
        self._listener.error(error)

    def image_step(self, step: ImageStep, error: SyncError | None = None) -> None:
        self.images.append(step)
        self._then(step, error)

    def arch_outcome(self, outcome: ArchOutcome, error: SyncError | None = None) -> None:
        self.arch[outcome.target.key] = outcome
        self._then(outcome, error)
        image = next(i for i in self._plan().images if i.artifact == outcome.target.artifact)
        if not self.waiting(image):
            self._listener.image_done(image)

    def index_outcome(self, outcome: TagOutcome, error: SyncError | None = None) -> None:
        self.indexes.append(outcome)
        self._then(outcome, error)

    def replace_index(self, number: int, outcome: TagOutcome) -> None:
        """The end-of-run check gated an index tag again (no step of its own)."""
        self.indexes[number] = outcome

    def _then(self, outcome: ImageStep | ArchOutcome | TagOutcome, error: SyncError | None) -> None:
        if error is not None:
            self.fail(error)
        elif _is_step(outcome):
            self._listener.step(outcome, self.done(), self.total())

    # -- what follows from the plan and the outcomes -----------------------------------------

    def waiting(self, image: ImagePlan) -> list[ArchTagPlan]:
        """The per-arch tags of ``image`` that have no outcome yet."""
        return [target for target in image.targets if target.key not in self.arch]

    def settled(self, registry: str, repository: str) -> bool:
        """Every per-arch tag of ``repository`` in ``registry`` has its outcome."""
        plan = self._plan()
        return all(t.key in self.arch for t in plan.targets_of(registry, repository))

    def inputs(self, registry: str, repository: str) -> GateInputs:
        """What the repository's index tags are gated with, from its per-arch tags' outcomes."""
        entries: dict[str, IndexEntry | None] = {}
        stale_arches: dict[str, str] = {}
        failures: set[str] = set()
        for target in self._plan().targets_of(registry, repository):
            arch = target.artifact.arch
            outcome = self.arch.get(target.key) or abandoned(target)
            if outcome.newer is not None:
                stale_arches[arch] = outcome.newer
            elif outcome.failed:
                failures.add(arch)
            else:
                entries[arch] = outcome.entry
        return GateInputs(entries, frozenset(failures), stale_arches)

    def done(self) -> int:
        """Steps finished: images downloaded and converted, per-arch tags settled (pushed, kept,
        found stale, planned), index tags gated."""
        outcomes: list[ImageStep | ArchOutcome | TagOutcome] = [
            *self.images,
            *self.arch.values(),
            *self.indexes,
        ]
        return sum(1 for outcome in outcomes if _is_step(outcome))

    def total(self) -> int:
        """Steps the run takes: the plan's, less those that failed and those a failure made
        moot (an image's conversion after its download failed, its tags after either)."""
        plan = self._plan()
        failures = sum(1 for step in self.images if not step.ok)
        failures += sum(1 for o in self.arch.values() if o.failed and o.push is not None)
        failures += sum(1 for outcome in self.indexes if outcome.error is not None)
        moot = sum(1 for o in self.arch.values() if o.push is None)
        if not self.dry_run:
            moot += sum(1 for s in self.images if s.stage is Stage.DOWNLOAD and not s.ok)
        return plan.steps(dry_run=self.dry_run) - failures - moot

    def report(self, *, registries: Sequence[str], seconds: float) -> ComposeReport:
        """The run's report: rows in a fixed order, however the parallel work finished -
        registries as configured, then images as the compose lists them, then index tags."""
        order = {url: n for n, url in enumerate(registries)}
        images: dict[tuple[str, str], int] = {}
        repositories: dict[str, int] = {}
        for image in self.plan.images if self.plan else ():
            artifact = image.artifact
            images[(artifact.repository, artifact.arch)] = len(images)
            repositories.setdefault(artifact.repository, len(repositories))
        pushes = [outcome.push for outcome in self.arch.values() if outcome.push is not None]
        pushes.sort(key=lambda p: (order.get(p.registry, 0), images.get((p.repository, p.arch), 0)))
        # Stable: each repository's index tags were recorded together, in their planned order.
        tags = sorted(
            self.indexes,
            key=lambda t: (order.get(t.registry, 0), repositories.get(t.repository, 0)),
        )
        downloaded = [s for s in self.images if s.stage is Stage.DOWNLOAD and s.ok]
        return ComposeReport(
            self.compose_id,
            dry_run=self.dry_run,
            release=self.release,
            pushes=pushes,
            tags=tags,
            errors=sorted(self.errors, key=str),
            notes=list(self.notes),
            downloads=len(downloaded),
            download_bytes=sum(step.artifact.size for step in downloaded),
            conversions=sum(1 for s in self.images if s.stage is Stage.CONVERT and s.ok),
            seconds=seconds,
            plan=self.plan,
            signed=self.signed.written if self.signed else 0,
            already_signed=self.signed.present if self.signed else 0,
        )

    def _plan(self) -> Plan:
        if self.plan is None:
            raise ValueError("no plan recorded yet")
        return self.plan


def _is_step(outcome: ImageStep | ArchOutcome | TagOutcome) -> bool:
    if isinstance(outcome, ImageStep):
        return outcome.ok
    if isinstance(outcome, ArchOutcome):
        return outcome.push is not None and not outcome.failed
    return outcome.error is None
