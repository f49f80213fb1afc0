"""What a run shows while it works: the one place a run's outcomes become lines.

:class:`Progress` is handed every outcome as the run records it (:mod:`.outcomes`) and logs one
line per finished step - an image downloaded, an image converted, a per-arch tag pushed (or
found already there, or stale), an index tag gated - on the :data:`STEPS` logger, each counted
(``[7/30]``: the steps done, and the steps the run takes as the plan and the outcomes so far
say). Errors, notes and the run's first and last lines go to the :data:`RUN` logger. The CLI
always shows the step logger's INFO lines; the daemon's log config decides for itself.

On a terminal the CLI hands the run a :class:`View` (:mod:`.terminal`, rich's live display):
:class:`Progress` also shows it the count, what is being done to each image while it is done
(the workers say when a download, conversion or push starts and ends, and a download how many
bytes it has), and when an image is done with. The view shows the INFO step lines as that count
instead of as lines, and prints everything else above itself. Without a view none of this
costs anything.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Protocol

from ..activity import moved
from ..compose.selection import ImageArtifact
from ..errors import SyncError, about_compose
from .outcomes import ArchOutcome, ImageStep, Stage
from .plan import ImagePlan
from .report import ComposeReport, TagAction, TagOutcome, signed_line

#: The logger of the per-step lines.
STEPS = "fedora_container_sync.steps"
#: The logger of a run's own lines: its start, notes, errors and result. Named for the package,
#: as these lines always were, whichever of its modules writes them.
RUN = "fedora_container_sync.publish"

#: What a download calls with the bytes it has received so far, after each chunk.
OnBytes = Callable[[int], None]


@dataclass(frozen=True)
class Activity:
    """Something a worker does to an image: how to say it while it runs, and once it is over."""

    doing: str
    done: str
    failed: str
    #: A download: the bytes it will have.
    size: int | None = None


class View(Protocol):
    """A live display of runs (:mod:`.terminal`). Called from the run's thread, and
    :meth:`working` from the workers too."""

    def begin(self, compose_id: str) -> None:
        """A run starts."""

    def count(self, done: int, total: int) -> None:
        """Steps done, of the steps the run takes."""

    def working(self, image: str, activity: Activity) -> contextlib.AbstractContextManager[OnBytes]:
        """While ``activity`` is done to ``image``; a download reports its bytes to what this
        yields."""

    def finished(self, image: str) -> None:
        """Nothing more is done to ``image`` in this run."""

    def end(self) -> None:
        """The run is over (also when it failed)."""


def _alive(_received: int) -> None:
    moved()


class Progress:
    """Shows one run: its first line, each finished step, each error and note, its result; to
    a view, also what the workers are doing."""

    def __init__(self, compose_id: str, view: View | None = None) -> None:
        self.compose_id = compose_id
        self._view = view
        self._run = logging.getLogger(RUN)
        self._steps = logging.getLogger(STEPS)

    def started(self, status: str, location: str, *, dry_run: bool) -> None:
        doing = "planning" if dry_run else "publishing"
        self._run.info("compose %s: %s %s from %s", self.compose_id, doing, status, location)
        if self._view is not None:
            self._view.begin(self.compose_id)

    def count(self, done: int, total: int) -> None:
        """The steps done, of the steps the run takes (shown with each step; this shows them
        before the first)."""
        if self._view is not None:
            self._view.count(done, max(total, done))

    # -- what the workers are doing (shown on a terminal only) --------------------------------

    @contextlib.contextmanager
    def downloading(self, artifact: ImageArtifact) -> Iterator[OnBytes]:
        """While ``artifact`` is downloaded: yields what to call with the bytes received so
        far. Each call is a sign of life for ``/live`` (:mod:`..activity`), and shown on a
        view."""
        if self._view is None:
            yield _alive
            return
        activity = Activity("downloading", "downloaded", "download failed", artifact.size)
        with self._view.working(artifact.name, activity) as on_bytes:

            def shown_and_alive(received: int) -> None:
                moved()
                on_bytes(received)

            yield shown_and_alive

    def converting(self, artifact: ImageArtifact) -> contextlib.AbstractContextManager[object]:
        return self._working(artifact, Activity("converting", "converted", "conversion failed"))

    def pushing(
        self, artifact: ImageArtifact, registry: str, number: int, of: int
    ) -> contextlib.AbstractContextManager[object]:
        """Push ``number`` of the ``of`` pushes of ``artifact`` in this run, to ``registry``."""
        where = f"to {registry} ({number} of {of})"
        activity = Activity(f"pushing {where}", f"pushed {where}", f"push {where} failed")
        return self._working(artifact, activity)

    def _working(
        self, artifact: ImageArtifact, activity: Activity
    ) -> contextlib.AbstractContextManager[object]:
        if self._view is None:
            return contextlib.nullcontext()
        return self._view.working(artifact.name, activity)

    def image_done(self, image: ImagePlan) -> None:
        if self._view is not None:
            self._view.finished(image.artifact.name)

    # -- lines ---------------------------------------------------------------------------------

    def note(self, note: str) -> None:
        self._run.info("compose %s: %s", self.compose_id, note)

    def error(self, error: SyncError) -> None:
        self._run.error("compose %s: %s", self.compose_id, about_compose(self.compose_id, error))

    def step(self, outcome: ImageStep | ArchOutcome | TagOutcome, done: int, total: int) -> None:
        if isinstance(outcome, ImageStep):
            artifact = outcome.artifact
            if outcome.stage is Stage.DOWNLOAD:
                text = "downloaded and verified %s (%s, %d bytes, sha256 %s)"
                args: tuple[object, ...] = (
                    artifact.path,
                    outcome.detail,
                    artifact.size,
                    artifact.sha256,
                )
            else:
                text, args = "converted %s to %s", (artifact.path, outcome.detail)
            self._step(done, total, logging.INFO, text, *args)
        elif isinstance(outcome, ArchOutcome) and outcome.push is not None:
            push = outcome.push
            name, verdict, current, compose, reason = push.row()
            # A stale tag is the normal end of a late older compose: news (INFO), as its bus
            # message; a tag forced backwards is a warning.
            forced = push.decision is not None and push.decision.forced
            self._step(
                done,
                total,
                logging.WARNING if forced else logging.INFO,
                "tag %s, verdict %s: current [%s], compose [%s]: %s%s",
                name,
                verdict,
                current,
                compose,
                reason,
                "; not moved" if push.stale else "",
            )
        elif isinstance(outcome, TagOutcome):
            self._gated(outcome, done, total)

    def _gated(self, outcome: TagOutcome, done: int, total: int) -> None:
        decision, action = outcome.decision, outcome.action
        # A tag kept only because an arch failed in this run follows from that failure, which
        # was already reported as an error: one line per problem, not three.
        kept = (
            action in (TagAction.HELD, TagAction.WOULD_HOLD)
            and not outcome.stale  # news, not a warning (INFO, as its bus message)
            and not (decision is not None and decision.after_failure)
        )
        forced = decision is not None and decision.forced
        # A dry run's move names its verdict itself ("would carry"), once.
        would = action is TagAction.WOULD_PUBLISH
        self._step(
            done,
            total,
            logging.WARNING if kept or forced else logging.INFO,
            "gate: %s %s%s: current [%s], compose [%s]: %s%s",
            outcome.verdict if would else "stale" if outcome.stale else action.value,
            f"{outcome.registry}/{outcome.repository}:{outcome.tag}",
            "" if would else f", verdict {decision.verdict.value if decision else 'failed'}",
            outcome.arches("current_arches"),
            outcome.arches("compose_arches"),
            outcome.reason,
            f" ({outcome.digest})" if outcome.digest and action is TagAction.PUBLISHED else "",
        )

    def _step(self, done: int, total: int, level: int, text: str, *args: object) -> None:
        self._steps.log(
            level, "compose %s: [%d/%d] " + text, self.compose_id, done, max(total, done), *args
        )
        self.count(done, total)

    def finished(self, report: ComposeReport) -> None:
        signing = report.plan is not None and report.plan.signing is not None
        self._run.info(
            "compose %s: done: %s; %d index tags published, %d held, %d stale; "
            "%d stale per-arch tags; %d errors%s",
            self.compose_id,
            report.work(),
            sum(1 for t in report.tags if t.action is TagAction.PUBLISHED),
            len(report.held),
            len(report.stale_tags),
            len(report.stale_pushes),
            len(report.errors),
            f"; {signed_line(report)}" if signing and not report.dry_run else "",
        )

    def ended(self) -> None:
        """The run is over, however it ended: the live display goes."""
        if self._view is not None:
            self._view.end()
