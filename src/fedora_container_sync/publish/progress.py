"""What a run shows while it works: the one place a run's outcomes become lines.

:class:`Progress` is handed every outcome as the run records it (:mod:`.outcomes`) and logs one
line per finished step - an image downloaded, an image converted, a per-arch tag pushed (or
found already there, or stale), an index tag gated - on the :data:`STEPS` logger, each counted
(``[7/30]``: the steps done, and the steps the run takes as the plan and the outcomes so far
say). Errors, notes and the run's first and last lines go to the :data:`RUN` logger. The CLI
always shows the step logger's INFO lines; the daemon's log config decides for itself. On a
terminal, :class:`Console` turns the INFO step lines into one status line rewritten in place,
and prints everything else (warnings, errors, held tags) as lines above it.
"""

from __future__ import annotations

import logging
import shutil
from typing import TextIO

from ..errors import SyncError, about_compose
from .outcomes import ArchOutcome, ImageStep, Stage
from .report import ComposeReport, TagAction, TagOutcome

#: The logger of the per-step lines.
STEPS = "fedora_container_sync.steps"
#: The logger of a run's own lines: its start, notes, errors and result. Named for the package,
#: as these lines always were, whichever of its modules writes them.
RUN = "fedora_container_sync.publish"

_CLEAR = "\r\x1b[K"


class Console(logging.StreamHandler):  # type: ignore[type-arg]
    """A stderr handler that, when ``status`` is on, shows INFO step lines as a status line."""

    def __init__(self, stream: TextIO, *, status: bool) -> None:
        super().__init__(stream)
        self.status = status
        self._shown = ""

    def emit(self, record: logging.LogRecord) -> None:
        if not (self.status and record.name == STEPS and record.levelno == logging.INFO):
            self.clear()
            super().emit(record)
            self._draw()
            return
        try:
            width = shutil.get_terminal_size().columns
            text = " ".join(record.getMessage().split())
            self._shown = text if len(text) < width else text[: max(0, width - 2)] + "…"
            self._draw()
        except Exception:
            self.handleError(record)

    def clear(self) -> None:
        """Remove the status line (before other output, and when the run is over)."""
        if self._shown:
            self.stream.write(_CLEAR)
            self.flush()

    def done(self) -> None:
        self.clear()
        self._shown = ""

    def _draw(self) -> None:
        if self._shown:
            self.stream.write(_CLEAR + self._shown)
            self.flush()


class Progress:
    """Shows one run: its first line, each finished step, each error and note, its result."""

    def __init__(self, compose_id: str) -> None:
        self.compose_id = compose_id
        self._run = logging.getLogger(RUN)
        self._steps = logging.getLogger(STEPS)

    def started(self, status: str, location: str, *, dry_run: bool) -> None:
        doing = "planning" if dry_run else "publishing"
        self._run.info("compose %s: %s %s from %s", self.compose_id, doing, status, location)

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
            kept_or_forced = push.stale or (push.decision is not None and push.decision.forced)
            self._step(
                done,
                total,
                logging.WARNING if kept_or_forced else logging.INFO,
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
        kept = action in (TagAction.HELD, TagAction.WOULD_HOLD) and not (
            decision is not None and decision.after_failure
        )
        forced = decision is not None and decision.forced
        self._step(
            done,
            total,
            logging.WARNING if kept or forced else logging.INFO,
            "gate: %s %s, verdict %s: current [%s], compose [%s]: %s%s",
            "stale" if outcome.stale else action.value,
            f"{outcome.registry}/{outcome.repository}:{outcome.tag}",
            decision.verdict.value if decision else "failed",
            outcome.arches("current_arches"),
            outcome.arches("compose_arches"),
            outcome.reason,
            f" ({outcome.digest})" if outcome.digest and action is TagAction.PUBLISHED else "",
        )

    def _step(self, done: int, total: int, level: int, text: str, *args: object) -> None:
        self._steps.log(
            level, "compose %s: [%d/%d] " + text, self.compose_id, done, max(total, done), *args
        )

    def finished(self, report: ComposeReport) -> None:
        self._run.info(
            "compose %s: done: %s; %d index tags published, %d held, %d stale; "
            "%d stale per-arch tags; %d errors",
            self.compose_id,
            report.work(),
            sum(1 for t in report.tags if t.action is TagAction.PUBLISHED),
            len(report.held),
            len(report.stale_tags),
            len(report.stale_pushes),
            len(report.errors),
        )
