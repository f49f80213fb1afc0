"""What a run did: per-arch pushes, per-tag gate outcomes, failures; the exit code. Pure.

:func:`render` prints the plan/gate report of ``replay`` and ``--dry-run``: one row per
registry x repository x tag - what the tag serves now, what this compose brings, the verdict
(publish / carry / retire / unchanged / hold / stale, or failed) and the reason in words. Rows
are grouped by registry and digests shortened, so that the table fits :data:`WIDTH` columns;
when it still would not, each row's reason goes on a line of its own below the row.

With signing on, a real run's summary counts the signatures it wrote and those it found
already there (a free replay writes none); a dry run lists, per tag, the signatures a real
run would make sure of - identity and digest - and says that nothing is signed for a tag that
does not move (held, stale, unreadable).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from enum import StrEnum

from ..errors import SyncError, TransientError
from ..gate.verdicts import GateDecision, Verdict
from ..oci.platforms import sorted_arches
from .plan import Plan, TagSignatures

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_HELD = 3

#: The columns the summary fits in (a terminal of 100 columns shows it without wrapping).
WIDTH = 100
#: A digest in a reason, as the table shows it: the first 12 hex digits (as `podman images`).
_DIGEST = re.compile(r"\b(sha256:[0-9a-f]{12})[0-9a-f]{52}\b")


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
    #: The rollback guard's verdict for the tag (publish, unchanged or stale).
    decision: GateDecision | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def stale(self) -> bool:
        """The tag holds a newer compose and was not moved."""
        return self.decision is not None and self.decision.verdict is Verdict.STALE

    def row(self) -> tuple[str, str, str, str, str]:
        """The report row: tag, verdict, current arches, compose arches, reason."""
        name = f"{self.registry}/{self.repository}:{self.tag}"
        current = _arches(self.decision.current_arches) if self.decision else "-"
        reason = self.decision.reason if self.decision else ""
        if self.error:
            return (name, "failed", current, self.arch, self.error)
        if self.stale:
            return (name, Verdict.STALE.value, current, self.arch, reason)
        if self.skipped:
            return (name, Verdict.UNCHANGED.value, current, self.arch, f"holds {self.digest}")
        if self.planned:
            return (name, "would publish", current, self.arch, reason)
        detail = f"pushed {self.digest}" + (f"; {reason}" if reason else "")
        return (name, Verdict.PUBLISH.value, current, self.arch, detail)


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
    #: The arches this compose has for the repository: what the compose column shows when the
    #: decision's own are empty (a stale tag: its per-arch tags were stale too, nothing moved).
    brings: frozenset[str] = frozenset()

    @property
    def reason(self) -> str:
        if self.error:
            return self.error
        return self.decision.reason if self.decision else ""

    def arches(self, which: str) -> str:
        if self.decision is None:
            return "-"
        value = getattr(self.decision, which)
        if which == "compose_arches" and not value:
            value = self.brings
        return _arches(value)

    @property
    def stale(self) -> bool:
        """Not moved by the rollback guard: the tag serves a newer compose (not held)."""
        return (
            self.action in (TagAction.HELD, TagAction.WOULD_HOLD)
            and self.decision is not None
            and self.decision.verdict is Verdict.STALE
        )

    @property
    def verdict(self) -> str:
        """The gate's verdict in words ("would ..." for a move a dry run did not make)."""
        if self.action is TagAction.FAILED or self.decision is None:
            return "failed"
        verdict = self.decision.verdict.value
        return f"would {verdict}" if self.action is TagAction.WOULD_PUBLISH else verdict

    def row(self) -> tuple[str, str, str, str, str]:
        """The report row: tag, verdict, current arches, compose arches, reason."""
        name = f"{self.registry}/{self.repository}:{self.tag}"
        reason = self.reason
        if self.action is TagAction.PUBLISHED and self.digest:
            reason = f"{reason} ({self.digest})"
        return (
            name,
            self.verdict,
            self.arches("current_arches"),
            self.arches("compose_arches"),
            reason,
        )


def _size(count: int) -> str:
    value, unit = float(count), "B"
    for bigger in ("KiB", "MiB", "GiB", "TiB"):
        if value < 1024:
            break
        value, unit = value / 1024, bigger
    return f"{count} B" if unit == "B" else f"{value:.1f} {unit}"


def _arches(value: frozenset[str] | None) -> str:
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
    #: The work done: image files downloaded (and their compressed bytes), images converted.
    downloads: int = 0
    download_bytes: int = 0
    conversions: int = 0
    #: Wall-clock seconds the run took (set when it ends).
    seconds: float | None = None
    #: What the run planned and then did (None when it read no registry: nothing to publish,
    #: or a failure before).
    plan: Plan | None = None
    #: Signatures written, and found valid already (signing on).
    signed: int = 0
    already_signed: int = 0

    @property
    def pushed(self) -> int:
        """Per-arch images copied to a registry."""
        return sum(1 for p in self.pushes if p.ok and p.digest and not p.skipped)

    @property
    def already_there(self) -> int:
        """Per-arch tags that already held this compose's build."""
        return sum(1 for p in self.pushes if p.ok and p.skipped)

    def work(self) -> str:
        """One line: what the run downloaded, converted and pushed, and how long it took."""
        line = (
            f"downloaded {self.downloads} ({_size(self.download_bytes)}), "
            f"converted {self.conversions}, "
            f"pushed {self.pushed}, already there {self.already_there}"
        )
        return line if self.seconds is None else f"{line} in {self.seconds:.1f}s"

    @property
    def held(self) -> list[TagOutcome]:
        """Index tags the gate held (an arch would have been lost, or failed in this run)."""
        return [
            t
            for t in self.tags
            if t.action in (TagAction.HELD, TagAction.WOULD_HOLD) and not t.stale
        ]

    @property
    def stale_tags(self) -> list[TagOutcome]:
        """Index tags the rollback guard did not move: they serve a newer compose."""
        return [t for t in self.tags if t.stale]

    @property
    def stale_pushes(self) -> list[ArchPush]:
        """Per-arch tags the rollback guard did not move."""
        return [p for p in self.pushes if p.stale]

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
        if self.held or self.stale_tags or self.stale_pushes:
            return EXIT_HELD
        return EXIT_OK


def render(reports: list[ComposeReport], *, width: int = WIDTH) -> str:
    """A plain-text summary for a terminal or a mail: pushes, then one row per tag, grouped
    by registry."""
    lines: list[str] = []
    for report in reports:
        mode = " (dry run: nothing written)" if report.dry_run else ""
        lines.append(f"compose {report.compose_id}{mode}")
        lines.extend(f"  note: {note}" for note in report.notes)
        rows = [(push.registry, push.row()) for push in report.pushes]
        rows += [(tag.registry, tag.row()) for tag in report.tags]
        lines.extend(_table(rows, width))
        lines.extend(f"  error: {error}" for error in report.errors)
        if report.pushes or report.tags or report.downloads:
            lines.append(f"  work: {report.work()}")
        signing = report.plan.signing if report.plan is not None else None
        if signing is not None and report.dry_run:
            lines.extend(signing_lines(signing, width))
        elif signing is not None:
            lines.append(f"  {signed_line(report)}")
        lines.append(f"  result: {_result(report)}")
    return "\n".join(lines)


def short_digests(text: str) -> str:
    """``sha256:`` and 64 hex digits shortened to 12 of them, as the table shows digests."""
    return _DIGEST.sub(r"\1", text)


def _table(rows: list[tuple[str, tuple[str, str, str, str, str]]], width: int) -> list[str]:
    """The rows under one heading per registry (tags named without it), columns aligned
    across registries; each reason on its own line when a row would be wider than *width*."""
    header = ("tag", "verdict", "current", "compose", "reason")
    cells: dict[str, list[tuple[str, ...]]] = {}
    for registry, row in rows:
        name = row[0].removeprefix(f"{registry}/")
        cells.setdefault(registry, [header]).append((name, *row[1:4], short_digests(row[4])))
    every = [row for table in cells.values() for row in table]
    if not every:
        return []
    widths = [max(len(row[i]) for row in every) for i in range(4)]
    below = 4 + sum(widths) + 2 * 4 + max(len(row[4]) for row in every) > width
    lines: list[str] = []
    for registry, table in cells.items():
        lines.append(f"  tags in {registry}:")
        for shown in table:
            columns = [cell.ljust(size) for cell, size in zip(shown[:4], widths, strict=True)]
            if below:
                lines.append("    " + "  ".join(columns).rstrip())
                if shown[4]:
                    lines.append(f"      {shown[4]}")
            else:
                lines.append("    " + "  ".join([*columns, shown[4]]).rstrip())
    return lines


def _result(report: ComposeReport) -> str:
    if report.exit_code == EXIT_FAILED:
        return f"FAILED ({len(report.errors)} error{'s' if len(report.errors) != 1 else ''})"
    if report.exit_code == EXIT_HELD:
        return f"{'HELD' if report.held else 'STALE'} ({kept_line(report)})"
    return "OK"


def kept_line(report: ComposeReport) -> str:
    """The tags a run did not move, held apart from stale: ``3 tags not moved: 1 held, 2
    stale``. A held tag lacks an arch it would have lost; a stale one serves a newer compose."""
    held = len(report.held)
    stale = len(report.stale_tags) + len(report.stale_pushes)
    kept = held + stale
    parts = [f"{count} {word}" for count, word in ((held, "held"), (stale, "stale")) if count]
    return f"{kept} tag{'s' if kept != 1 else ''} not moved: {', '.join(parts)}"


def signed_line(report: ComposeReport) -> str:
    """``signed: 6 signatures written, 4 already there``."""
    written = report.signed
    return (
        f"signed: {written} signature{'s' if written != 1 else ''} written, "
        f"{report.already_signed} already there"
    )


#: A digest a dry run does not know: what the run builds (an image, or the index).
NEW = "(once built)"


def signing_lines(tags: tuple[TagSignatures, ...], width: int = WIDTH) -> list[str]:
    """What a dry run would sign: one row per signature - identity, digest, what it is -
    and a row saying nothing is signed for each tag that does not move."""
    rows: list[tuple[str, str, str]] = []
    for tag in tags:
        if tag.unsigned:
            rows.append((tag.identity, "-", f"nothing: {tag.unsigned}"))
            continue
        for signature in tag.signatures:
            digest = short_digests(signature.digest) if signature.digest else NEW
            what = signature.content if tag.moves else f"{signature.content}, if missing"
            rows.append((tag.identity, digest, what))
    if not rows:
        return []
    lines = ["  would sign (identity, digest, what; a dry run signs nothing):"]
    widths = [max(len(row[i]) for row in rows) for i in range(2)]
    below = 4 + widths[0] + 2 + widths[1] + 2 + max(len(row[2]) for row in rows) > width
    for name, digest, what in rows:
        left = f"    {name.ljust(widths[0])}  {digest.ljust(widths[1])}"
        if below:
            lines.extend([left.rstrip(), f"      {what}"])
        else:
            lines.append(f"{left}  {what}")
    return lines
