"""What a run did: per-arch pushes, per-tag gate outcomes, failures; the exit code. Pure."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from .errors import SyncError, TransientError
from .gate import GateDecision
from .platforms import sorted_arches

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_HELD = 3


class TagAction(StrEnum):
    PUBLISHED = "published"
    UNCHANGED = "unchanged"
    HELD = "held"
    FAILED = "failed"
    WOULD_PUBLISH = "would publish"
    WOULD_HOLD = "would hold"


@dataclass(frozen=True)
class ArchPush:
    """One image/arch pushed (or planned, or failed) to one registry as its per-arch tag."""

    registry: str
    repository: str
    tag: str
    arch: str
    digest: str | None = None
    skipped: bool = False
    planned: bool = False
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass(frozen=True)
class TagOutcome:
    """What happened to one index tag in one registry."""

    registry: str
    repository: str
    tag: str
    action: TagAction
    decision: GateDecision | None = None
    digest: str | None = None
    error: str | None = None

    @property
    def reason(self) -> str:
        if self.error:
            return self.error
        return self.decision.reason if self.decision else ""

    def arches(self, which: str) -> str:
        if self.decision is None:
            return "-"
        value = getattr(self.decision, which)
        return ",".join(sorted_arches(value)) if value else "-"


@dataclass
class ComposeReport:
    """Everything one message led to."""

    compose_id: str
    dry_run: bool = False
    #: the release number the compose's tags are for (known once its metadata is read)
    release: int | None = None
    pushes: list[ArchPush] = field(default_factory=list)
    tags: list[TagOutcome] = field(default_factory=list)
    errors: list[SyncError] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def held(self) -> list[TagOutcome]:
        return [t for t in self.tags if t.action in (TagAction.HELD, TagAction.WOULD_HOLD)]

    @property
    def failed(self) -> bool:
        return bool(self.errors)

    @property
    def transient(self) -> bool:
        """True when every failure may heal on its own (requeue rather than drop)."""
        return bool(self.errors) and all(isinstance(e, TransientError) for e in self.errors)

    @property
    def exit_code(self) -> int:
        if self.errors:
            return EXIT_FAILED
        if self.held:
            return EXIT_HELD
        return EXIT_OK


def render(reports: list[ComposeReport]) -> str:
    """A plain-text summary for a terminal or a mail: pushes, then one row per tag."""
    lines: list[str] = []
    for report in reports:
        mode = " (dry run: nothing written)" if report.dry_run else ""
        lines.append(f"compose {report.compose_id}{mode}")
        lines.extend(f"  note: {note}" for note in report.notes)
        if report.pushes:
            lines.append("  per-arch tags:")
            for push in report.pushes:
                if push.error:
                    state = f"FAILED: {push.error}"
                elif push.planned:
                    state = "would push"
                elif push.skipped:
                    state = f"already there {push.digest}"
                else:
                    state = f"pushed {push.digest}"
                lines.append(f"    {push.registry}/{push.repository}:{push.tag}  {state}")
        if report.tags:
            rows = [("tag", "verdict", "current", "compose", "reason")]
            rows += [
                (
                    f"{t.registry}/{t.repository}:{t.tag}",
                    t.action.value,
                    t.arches("current_arches"),
                    t.arches("compose_arches"),
                    t.reason,
                )
                for t in report.tags
            ]
            widths = [max(len(row[i]) for row in rows) for i in range(4)]
            lines.append("  index tags:")
            for row in rows:
                cells = [cell.ljust(width) for cell, width in zip(row[:4], widths, strict=True)]
                lines.append("    " + "  ".join([*cells, row[4]]).rstrip())
        lines.extend(f"  error: {error}" for error in report.errors)
        lines.append(f"  result: {_result(report)}")
    return "\n".join(lines)


def _result(report: ComposeReport) -> str:
    if report.exit_code == EXIT_FAILED:
        return f"FAILED ({len(report.errors)} error{'s' if len(report.errors) != 1 else ''})"
    if report.exit_code == EXIT_HELD:
        return f"HELD ({len(report.held)} tag{'s' if len(report.held) != 1 else ''} not moved)"
    return "OK"
