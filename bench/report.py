"""docs/benchmarks.md as `make bench` writes it: pure, from the measured rounds and cells."""

from __future__ import annotations

import argparse
import platform
import shutil
import statistics
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from scaling import Cell, section, spread
from scenarios import CPUS, Round, Usage

NOTES_MARKER = "<!-- notes -->"

#: issue 13's targets, on the medians of the per-round ratios
TARGETS = {"b/e": 1.10, "b/a": 0.70, "c/b": 0.10}
RSS_TARGET_MB = 150
#: the ratios reported, with what each says
RATIOS = {
    "b/e": "cold publish / fetch floor",
    "b/a": "cold publish / legacy",
    "c/b": "replay / cold publish",
    "b/d": "cold publish / disk floor",
    "e/d": "what fetching and checking add to the floor",
    "e/a": "fetch floor / legacy: the best b/a can be",
}
SCENARIOS = {
    "a": "a legacy",
    "b": "b cold",
    "c": "c replay",
    "d": "d disk floor",
    "e": "e fetch floor",
}


@dataclass
class Results:
    rounds: list[Round]
    big: Usage | None = None
    cells: list[Cell] = field(default_factory=list)
    #: wall-clock seconds of the whole benchmark, set-up included
    duration: float = 0.0


def machine() -> list[str]:
    def version(command: list[str]) -> str:
        try:
            out = subprocess.run(command, capture_output=True, text=True, check=False).stdout
            return out.strip().splitlines()[0]
        except (OSError, IndexError):
            return "unknown"

    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory = "unknown"
    try:
        kib = int(Path("/proc/meminfo").read_text().split()[1])
        memory = f"{kib / 1024 / 1024:.1f} GiB"
    except (OSError, ValueError, IndexError):
        pass
    registry = shutil.which("docker-registry") or shutil.which("registry") or "registry"
    curl = " ".join(version(["curl", "--version"]).split()[:2])
    return [
        f"- CPU: {cpu}, {CPUS} cores; memory {memory}",
        f"- OS: {platform.platform()}",
        f"- Python {platform.python_version()}; {version(['skopeo', '--version'])}; "
        f"{version([registry, '--version'])}; {curl}",
    ]


def load() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "unknown"


OPENING = """\
# Benchmarks

Written by `make bench` ([`bench/bench.py`](../bench/bench.py)). Each round runs every
scenario on fresh local registries, in an order that rotates from round to round; ratios
are per round, then the median across rounds, with their spread (min-max) in brackets.
Lower is better. How a run keeps its cost down:
[publishing.md](publishing.md#what-one-run-does-and-does-not-do).

- (a) legacy: sequential `skopeo copy docker-archive:X.tar.xz docker://...` of every
  archive to every registry;
- (b) cold publish by fedora-container-sync (`replay` of the compose's message, a fresh
  process);
- (c) the same message again, from a fresh process and an empty work dir;
- (d) the disk floor: every archive converted once by bare skopeo from the local disk (in
  parallel), then every converted image pushed once per registry (in parallel);
- (e) the fetch floor, the work a correct tool cannot skip: every archive fetched once over
  HTTP from the compose server (`curl`), its sha256 checked against images.json
  (`sha256sum`) and converted once by bare skopeo (in parallel), then every converted image
  pushed once per registry by bare skopeo (in parallel).

Every run is checked, not only timed: (a), (b), (d) and (e) must have published every
image to every registry, (e) must have fetched every archive once with a matching
checksum, and (c) must fetch no archive and write nothing. The scaling section repeats
the scenarios at three image sizes and with one, two and four registries, fits the cost
against bytes and registries, and estimates Fedora's real workload from the fit.
"""


def verdict(value: float, target: float) -> str:
    return "met" if value <= target else "**missed**"


def report(
    results: Results,
    args: argparse.Namespace,
    loads: tuple[str, str],
    machine_lines: list[str],
    notes: str,
) -> str:
    rounds = results.rounds

    def per_round(key: str) -> list[float]:
        return [r.ratio(key) for r in rounds]

    rss = max(r.rss_mb for r in rounds)
    lines = [
        OPENING,
        "## Machine",
        "",
        *machine_lines,
        f"- load average (1, 5, 15 min) at the start: {loads[0]}; at the end: {loads[1]}",
        "",
        "## Workload",
        "",
        f"- {args.repos} repositories x {args.arches} arches = {args.repos * args.arches} images, "
        f"{args.size_mib} MiB of incompressible data each (xz-compressed docker-archives)",
        f"- {args.registries} local registries (docker-registry on 127.0.0.1), compose over HTTP "
        "on 127.0.0.1",
        f"- {args.rounds} interleaved rounds; fedora-container-sync with its default "
        f"max_parallel ({CPUS}, the CPU count); the floors with {CPUS} parallel runs",
        f"- the whole benchmark (these rounds, the scaling grid and the large image) took "
        f"{results.duration / 60:.1f} min",
        "",
        "## Results",
        "",
        "Targets (medians over rounds):",
        "",
    ]
    for key, target in TARGETS.items():
        value = statistics.median(per_round(key))
        lines.append(
            f"- {RATIOS[key]} ({key}) ≤ {target:.2f}: {spread(per_round(key))}: "
            f"{verdict(value, target)}"
        )
    lines.append(f"- peak RSS ≤ {RSS_TARGET_MB} MB: {rss:.0f} MB: {verdict(rss, RSS_TARGET_MB)}")
    if results.big is not None:
        big = results.big.rss_mb
        lines.append(
            f"- peak RSS ≤ {RSS_TARGET_MB} MB with one {args.big_mib} MiB image: {big:.0f} MB: "
            f"{verdict(big, RSS_TARGET_MB)}"
        )
    lines += [
        "",
        "| ratio | median (min-max) | target | | what it says |",
        "|---|---|---|---|---|",
    ]
    for key, meaning in RATIOS.items():
        goal = TARGETS.get(key)
        value = statistics.median(per_round(key))
        shown = "-" if goal is None else f"≤ {goal:.2f}"
        judged = "" if goal is None else verdict(value, goal)
        lines.append(f"| {key} | {spread(per_round(key))} | {shown} | {judged} | {meaning} |")
    lines += [
        "",
        f"- Peak RSS of fedora-container-sync during (b): {rss:.0f} MB; its largest skopeo "
        f"child: {max(r.skopeo_rss_mb for r in rounds):.0f} MB",
    ]
    if results.big is not None:
        lines.append(
            f"- Peak RSS with one {args.big_mib} MiB image: {results.big.rss_mb:.0f} MB; its "
            f"largest skopeo child: {results.big.children_rss_mb:.0f} MB"
        )
    lines += _cpu_table(rounds)
    lines += _round_table(rounds)
    lines += ["", *section(results.cells), NOTES_MARKER]
    return "\n".join(lines) + "\n" + notes


def _cpu_table(rounds: Sequence[Round]) -> list[str]:
    def cpu(scenario: str, part: str) -> float:
        return statistics.median(float(getattr(r.cpu[scenario], part)) for r in rounds)

    lines = [
        "",
        "CPU seconds per scenario (medians over rounds; the machine has "
        f"{CPUS} cores, so at most {CPUS} CPU seconds per second):",
        "",
        "| scenario | wall s | commands | registries | compose server | total | cores busy |",
        "|---|---|---|---|---|---|---|",
    ]
    for key, name in SCENARIOS.items():
        wall = statistics.median(r.seconds[key] for r in rounds)
        total = cpu(key, "total")
        lines.append(
            f"| {name} | {wall:.2f} | {cpu(key, 'tools'):.2f} | {cpu(key, 'registries'):.2f} "
            f"| {cpu(key, 'server'):.2f} | {total:.2f} | {total / wall:.2f} |"
        )
    own = statistics.median(r.own_cpu for r in rounds)
    return [
        *lines,
        "",
        f"Of (b)'s commands, fedora-container-sync's own process (downloads with checksum and "
        f"decompression, interpreter start, orchestration; not its skopeo children): "
        f"{own:.2f} CPU seconds.",
    ]


def _round_table(rounds: Sequence[Round]) -> list[str]:
    keys = list(SCENARIOS)
    lines = [
        "",
        "Seconds per round (" + ", ".join(SCENARIOS.values()) + "):",
        "",
        "| round | order | " + " | ".join(keys) + " | " + " | ".join(RATIOS) + " |",
        "|---|---|" + "---|" * (len(keys) + len(RATIOS)),
    ]
    for n, r in enumerate(rounds, 1):
        cells = " | ".join(f"{r.seconds[k]:.2f}" for k in keys)
        quotients = " | ".join(f"{r.ratio(k):.2f}" for k in RATIOS)
        lines.append(f"| {n} | {r.order} | {cells} | {quotients} |")
    return lines


def kept_notes(path: Path) -> str:
    """What follows the notes marker in an existing report (hand-written; kept)."""
    try:
        text = path.read_text()
    except OSError:
        return ""
    _, marker, notes = text.partition(NOTES_MARKER + "\n")
    return notes if marker else ""
