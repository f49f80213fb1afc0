"""`make bench`: fedora-container-sync against the legacy releng approach and two bare-tool floors.

Builds a synthetic compose (default: 3 repositories x 4 arches, 16 MiB of incompressible data
per image), serves it over HTTP on 127.0.0.1 and, in interleaved rounds, each scenario on fresh
local registries (2 by default), times (a) legacy, (b) a cold publish, (c) its replay, (d) the
disk floor and (e) the fetch floor (see scenarios.py for what each does).

It prints the medians of the per-round ratios with their spread (min-max), whether each target
of issue 13 is met (b/e <= 1.10, b/a <= 0.70, c/b <= 0.10, peak RSS <= 150 MB, also with one
large image, --big-mib), and a scaling table: the same scenarios at several image sizes
(--scale-sizes) and registry counts (--scale-registries), with fewer images per cell, a
least-squares fit of cost against bytes and registries, and from it an estimate for Fedora's
real workload. It writes docs/benchmarks.md (or --output) with the machine description and its
load. Ratios are measured side by side in the same run; no absolute number is a target. The
order of the scenarios rotates from round to round, so none always runs first (or last) on a
machine that warms up or gets busier; the scaling cells take their turns round by round too.

Each run is checked, not only timed (see scenarios.py): else its time means nothing.

Whatever follows the line ``<!-- notes -->`` in an existing output file is kept: the place for
what the numbers mean.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from contextlib import ExitStack
from functools import partial
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path[:0] = [str(HERE), str(ROOT / "tests")]

import layered  # noqa: E402
from report import NOTES_MARKER, Results, kept_notes, load, machine, report  # noqa: E402
from scaling import Cell  # noqa: E402
from scenarios import (  # noqa: E402
    SCENARIOS,
    Compose,
    Cpu,
    Round,
    Usage,
    build,
    check_fetched_once,
    check_free_replay,
    check_published,
    measured,
    ours,
    usage,
    write_config,
    write_message,
)

from support.servers import FileServer, Registry  # noqa: E402

__all__ = ["NOTES_MARKER", "Cpu", "Results", "Round", "kept_notes", "machine", "report"]

#: Scenario order per round (rotating): "bc" is the cold publish and its replay, back to back.
ORDERS = (
    ("a", "d", "e", "bc"),
    ("d", "e", "bc", "a"),
    ("e", "bc", "a", "d"),
    ("bc", "a", "d", "e"),
)


def log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def fresh_registries(count: int) -> list[Registry]:
    return [Registry().start() for _ in range(count)]


def stop(registries: list[Registry]) -> None:
    for registry in registries:
        registry.stop()


def run_round(
    compose: Compose, server: FileServer, scratch: Path, registries: int, number: int
) -> Round:
    result = Round()
    order = ORDERS[(number - 1) % len(ORDERS)]
    result.order = ", ".join(order)
    for step in order:
        regs = fresh_registries(registries)
        work = Path(tempfile.mkdtemp(dir=scratch))
        try:
            if step == "bc":
                run_ours(compose, server, regs, work, result)
            else:
                scenario = SCENARIOS[step]
                server.clear_requests()
                result.seconds[step], result.cpu[step] = measured(
                    partial(scenario, compose, server, regs, work), regs
                )
                check_published(f"({step})", compose, regs, index=False)
                if step == "e":
                    check_fetched_once(compose, server)
        finally:
            stop(regs)
            shutil.rmtree(work, ignore_errors=True)
    return result


def run_ours(
    compose: Compose, server: FileServer, regs: list[Registry], scratch: Path, result: Round
) -> None:
    """(b) a cold publish, then (c) the same message from a fresh process and work dir."""
    for name in ("b", "c"):
        work = scratch / f"work-{name}"
        config = write_config(scratch / f"config-{name}.toml", server, regs, work)
        rss = scratch / f"rss-{name}"
        server.clear_requests()
        since = [len(r.log_text().splitlines()) for r in regs]
        result.seconds[name], result.cpu[name] = measured(
            partial(ours, config, compose.message, rss), regs
        )
        if name == "b":
            check_published("(b) the cold publish", compose, regs)
            used = usage(rss)
            result.rss_mb, result.skopeo_rss_mb = used.rss_mb, used.children_rss_mb
            result.own_cpu = used.cpu
        else:
            check_free_replay(server, regs, since)


def big_image_rss(root: Path, size_mib: int, registries: int) -> Usage:
    compose = build(root, repos=1, arches=1, size_mib=size_mib, compose_id="Fedora-41-20241101.0")
    regs = fresh_registries(registries)
    try:
        with FileServer(compose.served_root) as server:
            write_message(compose, server)
            config = write_config(root / "big.toml", server, regs, root / "big-work")
            ours(config, compose.message, root / "rss-big")
        check_published("(b) with one large image", compose, regs)
        return usage(root / "rss-big")
    finally:
        stop(regs)


def sizes(text: str) -> list[int]:
    return [int(part) for part in text.split(",") if part.strip()]


def arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repos", type=int, default=3)
    parser.add_argument("--arches", type=int, default=4, choices=range(1, 5))
    parser.add_argument("--size-mib", type=int, default=16)
    parser.add_argument("--registries", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--big-mib", type=int, default=200, help="0 skips the large-image run")
    scaling = parser.add_argument_group("scaling", "the grid of image sizes x registry counts")
    scaling.add_argument("--scale-sizes", type=sizes, default=[4, 16, 64], help="MiB, e.g. 4,16,64")
    scaling.add_argument("--scale-registries", type=sizes, default=[1, 2, 4], help="e.g. 1,2,4")
    scaling.add_argument("--scale-repos", type=int, default=2)
    scaling.add_argument("--scale-arches", type=int, default=2, choices=range(1, 5))
    scaling.add_argument("--scale-rounds", type=int, default=2, help="0 skips the scaling grid")
    parser.add_argument("--output", type=Path, default=ROOT / "docs" / "benchmarks.md")
    layered.add_arguments(parser)
    return parser.parse_args()


def main() -> int:
    args = arguments()
    if args.only_layered:
        args.rounds = args.scale_rounds = args.big_mib = 0
    started, started_load = time.monotonic(), load()
    with tempfile.TemporaryDirectory(prefix="fcs-bench-") as tmp, ExitStack() as servers:
        root = Path(tmp)
        log(f"building {args.repos}x{args.arches} images of {args.size_mib} MiB ...")
        compose = build(root / "main", repos=args.repos, arches=args.arches, size_mib=args.size_mib)
        server = servers.enter_context(FileServer(compose.served_root))
        write_message(compose, server)
        grid: list[tuple[Cell, Compose, FileServer]] = []
        if args.scale_rounds:
            for size in args.scale_sizes:
                log(f"building {args.scale_repos}x{args.scale_arches} images of {size} MiB ...")
                small = build(
                    root / f"scale-{size}", repos=args.scale_repos, arches=args.scale_arches,
                    size_mib=size,
                )  # fmt: skip
                small_server = servers.enter_context(FileServer(small.served_root))
                write_message(small, small_server)
                grid += [
                    (Cell(size, registries, len(small.images)), small, small_server)
                    for registries in args.scale_registries
                ]
        results = Results(rounds=[], cells=[cell for cell, _, _ in grid])
        layers: layered.LayeredResults | None = None
        if args.layered_rounds:
            layers = layered.run(args, root, servers, compose, server, log)
        for number in range(1, args.rounds + 1):
            scratch = root / f"round-{number}"
            scratch.mkdir()
            results.rounds.append(run_round(compose, server, scratch, args.registries, number))
            seconds = ", ".join(
                f"{k}={v:.2f}s" for k, v in sorted(results.rounds[-1].seconds.items())
            )
            log(f"round {number}: {seconds}, peak RSS {results.rounds[-1].rss_mb:.0f} MB")
            shutil.rmtree(scratch, ignore_errors=True)
        turn = 0
        if grid:
            log(f"scaling: {len(grid)} cells x {args.scale_rounds} round(s) ...")
        for number in range(1, args.scale_rounds + 1):
            for cell, small, small_server in grid:
                turn += 1
                scratch = root / f"scale-round-{turn}"
                scratch.mkdir()
                cell.rounds.append(run_round(small, small_server, scratch, cell.registries, turn))
                log(
                    f"scaling round {number}, {cell.size_mib} MiB x {cell.registries} "
                    f"registries: b={cell.rounds[-1].seconds['b']:.2f}s, "
                    f"b/e={cell.rounds[-1].ratio('b/e'):.2f}"
                )
                shutil.rmtree(scratch, ignore_errors=True)
        if args.big_mib:
            log(f"peak RSS with one {args.big_mib} MiB image ...")
            results.big = big_image_rss(root / "big", args.big_mib, args.registries)
    results.duration = time.monotonic() - started
    if args.only_layered:  # the rest of the report stays as it was
        text = (
            args.output.read_text() if args.output.exists() else f"# Benchmarks\n\n{NOTES_MARKER}\n"
        )
    else:
        text = report(results, args, (started_load, load()), machine(), kept_notes(args.output))
    if layers is not None:
        text = layered.splice(text, layered.section(layers))
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
