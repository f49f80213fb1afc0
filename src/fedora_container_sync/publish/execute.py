"""Act: run a plan's work in the pool, depth-first, and record every outcome.

Each image the plan builds is downloaded once and, in a real run, converted once, then pushed
to every registry whose per-arch tag it goes to. As soon as every per-arch tag of a repository
in a registry has its outcome, that repository's index tags are gated there, from those
outcomes (index tags move last). What happens next is derived from the plan and the outcomes
recorded so far - which tags still wait for their image, which repositories are settled, which
layouts are still needed - never from counters.

The workers only do the blocking work (download, convert, push, gate); recording, deciding what
comes next and removing what is no longer needed happen on the calling thread, in the pool's
follow-ups (:mod:`.workpool`). The workers say when they start and end a download, conversion
or push, for a terminal to show (:class:`.progress.Progress`).
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from concurrent.futures import Future

from ..compose.fetch import ComposeFetcher, LocalImage
from ..compose.selection import ImageArtifact
from ..errors import SyncError
from ..gate.verdicts import GateDecision, Verdict, decide_arch_tag
from ..signing.hook import sign_for_tag
from . import build, outcomes
from .build import PreparedImage
from .context import RunContext
from .indexes import gate_indexes
from .outcomes import ArchOutcome, ImageStep, Record, Stage
from .plan import ArchAction, ArchTagPlan, ImagePlan, Plan
from .progress import Progress
from .push import push_image
from .read import Registry
from .report import TagOutcome
from .workpool import WorkPool

#: Which waiting step starts first when a worker is free: the later in an image's way, the
#: sooner. Images go through depth-first and index tags move as soon as they may.
_DOWNLOAD, _CONVERT, _PUSH, _GATE = range(4)


def execute(
    ctx: RunContext,
    plan: Plan,
    registries: Mapping[str, Registry],
    fetcher: ComposeFetcher,
    pool: WorkPool,
    record: Record,
    progress: Progress,
) -> None:
    """Do what ``plan`` says, recording each outcome in ``record`` as it comes."""
    _Execution(ctx, plan, registries, fetcher, pool, record, progress).run()


class _Execution:
    def __init__(
        self,
        ctx: RunContext,
        plan: Plan,
        registries: Mapping[str, Registry],
        fetcher: ComposeFetcher,
        pool: WorkPool,
        record: Record,
        progress: Progress,
    ) -> None:
        self.ctx = ctx
        self.plan = plan
        self.registries = registries
        self.fetcher = fetcher
        self.pool = pool
        self.record = record
        self.progress = progress

    def run(self) -> None:
        """Settle the per-arch tags that need no image; start the downloads; run the pool."""
        self.progress.count(self.record.done(), self.record.total())
        for image in self.plan.images:
            for target in image.targets:
                if not (image.build and target.action in (ArchAction.PUSH, ArchAction.KEEP)):
                    self._settle(_without_image(target))
            if image.build and self.ctx.dry_run:
                self._built(image, None)  # a dry run downloads nothing: the plan says it all
            elif image.build:
                self.pool.submit(
                    functools.partial(self._download, image.artifact),
                    functools.partial(self._downloaded, image),
                    priority=_DOWNLOAD,
                )
        self.pool.run()

    def _downloaded(self, image: ImagePlan, done: Future[LocalImage]) -> None:
        try:
            local = done.result()
        except SyncError as error:
            self.record.image_step(ImageStep(image.artifact, Stage.DOWNLOAD, ok=False), error)
            self._abandon(image)
            return
        step = ImageStep(image.artifact, Stage.DOWNLOAD, ok=True, detail=local.transport)
        self.record.image_step(step)
        if self.ctx.dry_run:
            build.discard(local)
            self._built(image, None)
            return
        self.pool.submit(
            functools.partial(self._convert, local),
            functools.partial(self._converted, image),
            priority=_CONVERT,
        )

    def _converted(self, image: ImagePlan, done: Future[PreparedImage]) -> None:
        try:
            prepared = done.result()
        except SyncError as error:
            self.record.image_step(ImageStep(image.artifact, Stage.CONVERT, ok=False), error)
            self._abandon(image)
            return
        digest = prepared.manifest.digest
        self.record.image_step(ImageStep(image.artifact, Stage.CONVERT, ok=True, detail=digest))
        self._built(image, prepared)

    def _built(self, image: ImagePlan, prepared: PreparedImage | None) -> None:
        """Push a built image wherever the plan sends it (``prepared`` is None in a dry run:
        each tag gets what the plan says it would)."""
        pushes: list[tuple[ArchTagPlan, GateDecision]] = []
        for target in self.record.waiting(image):
            if prepared is None:
                keep = target.action is ArchAction.KEEP
                self._settle(outcomes.kept(target) if keep else outcomes.planned(target))
                continue
            # Now that the digest is known, decide as for any push: a registry that held this
            # build as another digest gets the same one as the others.
            decision = decide_arch_tag(
                target.current,
                target.artifact.arch,
                prepared.manifest.digest,
                compose_id=self.ctx.compose_id,
                force=self.ctx.options.force,
            )
            if decision.verdict is Verdict.UNCHANGED:
                entry = prepared.entry(self.ctx.compose_id)
                self._settle(outcomes.unchanged(target, decision, entry))
                continue
            pushes.append((target, decision))
        if prepared is None:
            return
        for number, (target, decision) in enumerate(pushes, 1):
            self.pool.submit(
                functools.partial(self._push, target, prepared, number, len(pushes)),
                functools.partial(self._pushed, image, target, decision, prepared),
                priority=_PUSH,
            )
        if not self.record.waiting(image):
            build.remove(prepared)

    # -- the work, on a worker -----------------------------------------------------------------

    def _download(self, artifact: ImageArtifact) -> LocalImage:
        with self.progress.downloading(artifact) as on_bytes:
            return build.download(self.ctx, self.fetcher, artifact, on_bytes=on_bytes)

    def _convert(self, local: LocalImage) -> PreparedImage:
        with self.progress.converting(local.artifact):
            return build.convert(self.ctx, local)

    def _push(
        self, target: ArchTagPlan, prepared: PreparedImage, number: int, of: int
    ) -> GateDecision | None:
        with self.progress.pushing(prepared.artifact, target.registry, number, of):
            registry = self.registries[target.registry]
            return push_image(self.ctx, registry, target.repository, target.tag, prepared)

    # -- follow-ups, on the orchestrator's thread -----------------------------------------------

    def _pushed(
        self,
        image: ImagePlan,
        target: ArchTagPlan,
        decision: GateDecision,
        prepared: PreparedImage,
        done: Future[GateDecision | None],
    ) -> None:
        if all(other.key == target.key for other in self.record.waiting(image)):
            build.remove(prepared)  # pushed everywhere it goes
        try:
            kept = done.result()
        except SyncError as error:
            self._settle(outcomes.failed(target, str(error)), error)
            return
        if kept is not None:  # a newer compose's run moved the tag while we uploaded
            self._settle(outcomes.overtaken(target, prepared.manifest.digest, kept))
            return
        self._settle(outcomes.pushed(target, decision, prepared.entry(self.ctx.compose_id)))

    def _abandon(self, image: ImagePlan) -> None:
        """The image could not be downloaded or converted (already reported): its tags stay."""
        for target in self.record.waiting(image):
            self._settle(outcomes.abandoned(target))

    def _settle(self, outcome: ArchOutcome, error: SyncError | None = None) -> None:
        """Record how a per-arch tag ended; gate the repository's index tags in that registry
        once all of its per-arch tags there have ended (index tags move last)."""
        self.record.arch_outcome(outcome, error)
        registry, repository = outcome.target.registry, outcome.target.repository
        signing = self.ctx.settings.signing.enabled and not self.ctx.dry_run
        if signing and outcome.push and outcome.push.skipped and outcome.entry:
            # It holds its build already: signing on, fill what its signatures lack.
            self.pool.submit(
                functools.partial(
                    sign_for_tag,
                    self.ctx,
                    self.registries[registry].client,
                    repository,
                    outcome.target.tag,
                    outcome.entry.digest,
                ),
                self._signed,
                priority=_GATE,
            )
        if not self.record.settled(registry, repository):
            return
        self.pool.submit(
            functools.partial(
                gate_indexes,
                self.ctx,
                self.registries[registry],
                repository,
                self.plan.tags.index_tags,
                self.record.inputs(registry, repository),
            ),
            self._gated,
            priority=_GATE,
            finish=True,  # a stop waits for it: the run announces what it moved
        )

    def _signed(self, done: Future[int]) -> None:
        try:
            done.result()
        except SyncError as error:
            self.record.fail(error)

    def _gated(self, done: Future[list[tuple[TagOutcome, SyncError | None]]]) -> None:
        for outcome, error in done.result():
            self.record.index_outcome(outcome, error)


def _without_image(target: ArchTagPlan) -> ArchOutcome:
    """The outcome of a per-arch tag that waits for no image: stale, unreadable, or kept."""
    if target.action is ArchAction.STALE:
        return outcomes.stale(target)
    if target.action is ArchAction.UNREADABLE:
        return outcomes.failed(target, target.error or "")
    return outcomes.kept(target)
