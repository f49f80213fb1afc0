"""`make bench`: fedora-container-sync against the legacy releng approach and bare skopeo.

Builds a synthetic compose (default: 3 repositories x 4 arches, 16 MiB of incompressible data
per image), serves it over HTTP on 127.0.0.1 and, in interleaved rounds, each on fresh local
registries (2 by default), times:

  (a) legacy  - the old releng script: sequential `skopeo copy docker-archive:X.tar.xz
                docker://REG/REPO:N-ARCH` of every archive to every registry;
  (b) cold    - `fedora-container-sync replay` of the compose's FINISHED message;
  (c) replay  - the same message again, with an empty work dir (a redelivery);
  (d) floor   - the unavoidable work with bare skopeo and no orchestration: every archive
                converted once to an OCI layout (in parallel), then every converted image
                pushed once per registry (in parallel).

It prints the medians of the per-round ratios b/a, b/d, d/a and c/b, the peak RSS of (b)'s
Python process (also with one large image, --big-mib), and writes docs/benchmarks.md with the
machine description and its load. Ratios are measured side by side in the same run; no absolute
number is a target. The order of the scenarios rotates from round to round, so none always runs
first (or last) on a machine that warms up or gets busier.

Each run is checked, not only timed: (b) must publish every tag to every registry, and (c) must
fetch no image archive and write nothing to any registry - else its time means nothing.

Whatever follows the line ``<!-- notes -->`` in an existing output file is kept: the place for
what the numbers mean.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from support.compose import (  # noqa: E402
    ComposeImage,
    build_compose,
    finished_message,
    serialized_message,
)
from support.servers import FileServer, Registry  # noqa: E402

SUBVARIANTS = {
    "Container_Base": "fedora",
    "Container_Minimal_Base": "fedora-minimal",
    "Container_Toolbox": "fedora-toolbox",
    "Silverblue": "fedora-silverblue",
    "Kinoite": "fedora-kinoite",
    "Sericea": "fedora-sway-atomic",
}
ARCHES = ("x86_64", "aarch64", "ppc64le", "s390x")
RELEASE = "41"
CPUS = os.cpu_count() or 1

TARGETS = {"b/d": 1.10, "b/a": 0.75, "c/b": 0.15}
RSS_TARGET_MB = 150


@dataclass(frozen=True)
class Image:
    path: Path
    repository: str
    arch: str


@dataclass
class Compose:
    served_root: Path
    compose_dir: Path
    images: list[Image]
    message: Path


@dataclass(frozen=True)
class Cpu:
    """CPU seconds one scenario used: the commands it ran (skopeo; or fedora-container-sync
    and its skopeo children), the registry servers, and this process (the compose server)."""

    tools: float
    registries: float
    server: float

    @property
    def total(self) -> float:
        return self.tools + self.registries + self.server


@dataclass
class Round:
    seconds: dict[str, float] = field(default_factory=dict)
    cpu: dict[str, Cpu] = field(default_factory=dict)
    rss_mb: float = 0.0
    #: the largest skopeo child of (b), for information
    skopeo_rss_mb: float = 0.0
    #: CPU seconds of fedora-container-sync's own process during (b), without its children
    own_cpu: float = 0.0
    order: str = ""


@dataclass(frozen=True)
class Usage:
    """Peak RSS of fedora-container-sync's own process and of its largest child (skopeo), and
    the CPU seconds of its own process."""

    rss_mb: float
    children_rss_mb: float
    cpu: float


NOTES_MARKER = "<!-- notes -->"


def log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def skopeo(*args: str) -> None:
    subprocess.run(["skopeo", "--insecure-policy", *args], check=True, capture_output=True)


# -- set-up ------------------------------------------------------------------------------------


def build(root: Path, *, repos: int, arches: int, size_mib: int, compose_id: str) -> Compose:
    subvariants = list(SUBVARIANTS)[:repos]
    served = root / "served"
    compose_dir = build_compose(
        served,
        compose_id=compose_id,
        release_version=RELEASE,
        images=[ComposeImage(s, a) for s in subvariants for a in ARCHES[:arches]],
        payload_size=size_mib << 20,
        extra_images=(),
    )
    metadata = json.loads((compose_dir / "metadata" / "images.json").read_text())
    images = [
        Image(compose_dir / image["path"], SUBVARIANTS[image["subvariant"]], image["arch"])
        for variant in metadata["payload"]["images"].values()
        for entries in variant.values()
        for image in entries
        if image["subvariant"] in SUBVARIANTS
    ]
    return Compose(served, compose_dir, images, root / f"{compose_id}.jsonl")


def write_message(compose: Compose, server: FileServer) -> None:
    body = finished_message(
        compose.compose_dir, served_root=compose.served_root, base_url=server.url
    )
    compose.message.write_text(serialized_message(body))


def write_config(path: Path, server: FileServer, registries: list[Registry], work: Path) -> Path:
    repos = "".join(f'{subvariant} = "{repo}"\n' for subvariant, repo in SUBVARIANTS.items())
    regs = "".join(
        f'[[consumer_config.container.registries]]\nurl = "{r.host}/bench"\ntls_verify = false\n'
        for r in registries
    )
    path.write_text(
        f"""[consumer_config.container]
compose_url_allowlist = ["{server.url}/"]
work_dir = "{work}"
[consumer_config.container.repos]
{repos}
[consumer_config.container.releases]
latest = {RELEASE}
{regs}"""
    )
    return path


# -- the four scenarios ------------------------------------------------------------------------


def legacy(compose: Compose, registries: list[Registry], _: Path) -> None:
    for image in compose.images:
        for registry in registries:
            skopeo(
                "copy",
                "--quiet",
                "--dest-tls-verify=false",
                f"docker-archive:{image.path}",
                f"docker://{registry.host}/bench/{image.repository}:{RELEASE}-{image.arch}",
            )


def floor(compose: Compose, registries: list[Registry], scratch: Path) -> None:
    layouts = {image: scratch / f"layout-{n}" for n, image in enumerate(compose.images)}
    with ThreadPoolExecutor(CPUS) as pool:
        list(
            pool.map(
                lambda image: skopeo(
                    "--tmpdir",
                    str(scratch),
                    "copy",
                    "--quiet",
                    f"docker-archive:{image.path}",
                    f"oci:{layouts[image]}:image",
                ),
                compose.images,
            )
        )
    pushes = [(image, registry) for image in compose.images for registry in registries]
    with ThreadPoolExecutor(CPUS) as pool:
        list(
            pool.map(
                lambda job: skopeo(
                    "copy",
                    "--quiet",
                    "--preserve-digests",
                    "--dest-tls-verify=false",
                    f"oci:{layouts[job[0]]}:image",
                    f"docker://{job[1].host}/bench/{job[0].repository}:{RELEASE}-{job[0].arch}",
                ),
                pushes,
            )
        )


def ours(config: Path, message: Path, rss_file: Path) -> None:
    """Run the real CLI in a child process that reports its own peak RSS and CPU seconds, and
    its largest child's peak RSS."""
    code = (
        "import resource, sys\n"
        "from fedora_container_sync.cli import main\n"
        "rc = main(sys.argv[2:])\n"
        "me, kids = (resource.getrusage(w) for w in (resource.RUSAGE_SELF, "
        "resource.RUSAGE_CHILDREN))\n"
        "usage = [me.ru_maxrss, kids.ru_maxrss, me.ru_utime + me.ru_stime]\n"
        "open(sys.argv[1], 'w').write(' '.join(map(str, usage)))\n"
        "sys.exit(rc)\n"
    )
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            code,
            str(rss_file),
            "replay",
            "--config",
            str(config),
            str(message),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"fedora-container-sync exited {result.returncode}: {result.stderr}")


def usage(rss_file: Path) -> Usage:
    own, children, cpu = rss_file.read_text().split()
    return Usage(int(own) / 1024, int(children) / 1024, float(cpu))


def _rusage(who: int) -> float:
    used = resource.getrusage(who)
    return used.ru_utime + used.ru_stime


def _registry_cpu(registry: Registry) -> float:
    """utime + stime of a running registry server, from /proc."""
    fields = Path(f"/proc/{registry._proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measured(action: Callable[[], None], registries: list[Registry]) -> tuple[float, Cpu]:
    """Wall-clock seconds and CPU seconds of ``action``."""
    tools, server = _rusage(resource.RUSAGE_CHILDREN), _rusage(resource.RUSAGE_SELF)
    served = sum(_registry_cpu(r) for r in registries)
    seconds = timed(action)
    return seconds, Cpu(
        _rusage(resource.RUSAGE_CHILDREN) - tools,
        sum(_registry_cpu(r) for r in registries) - served,
        _rusage(resource.RUSAGE_SELF) - server,
    )


def check_published(compose: Compose, registries: list[Registry]) -> None:
    """(b) did its job: every per-arch tag and the index tag, in every registry."""
    for registry in registries:
        for image in compose.images:
            for tag in (f"{RELEASE}-{image.arch}", RELEASE):
                if registry.get_manifest(f"bench/{image.repository}", tag) is None:
                    raise RuntimeError(
                        f"cold publish left out {registry.host} {image.repository}:{tag}"
                    )


_WRITE = re.compile(r'"(PUT|POST|PATCH|DELETE) /v2/')


def check_free_replay(server: FileServer, registries: list[Registry], since: list[int]) -> None:
    """(c) did no work: no image archive fetched, nothing written to a registry."""
    fetched = [path for _, path, _ in server.requests if not path.endswith(".json")]
    if fetched:
        raise RuntimeError(f"the replay fetched {len(fetched)} image files, e.g. {fetched[0]}")
    for registry, start in zip(registries, since, strict=True):
        writes = [line for line in registry.log_text().splitlines()[start:] if _WRITE.search(line)]
        if writes:
            raise RuntimeError(f"the replay wrote to {registry.host}: {writes[0]}")


def timed(action: Callable[[], None]) -> float:
    start = time.perf_counter()
    action()
    return time.perf_counter() - start


def fresh_registries(count: int) -> list[Registry]:
    return [Registry().start() for _ in range(count)]


def stop(registries: list[Registry]) -> None:
    for registry in registries:
        registry.stop()


#: Scenario order per round (rotating): "bc" is the cold publish and its replay, back to back.
ORDERS = (("a", "d", "bc"), ("d", "bc", "a"), ("bc", "a", "d"))


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
                scenario = legacy if step == "a" else floor
                result.seconds[step], result.cpu[step] = measured(
                    lambda s=scenario, r=regs, w=work: s(compose, r, w), regs
                )
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
            lambda c=config, f=rss: ours(c, compose.message, f), regs
        )
        if name == "b":
            check_published(compose, regs)
            used = usage(rss)
            result.rss_mb, result.skopeo_rss_mb = used.rss_mb, used.children_rss_mb
            result.own_cpu = used.cpu
        else:
            check_free_replay(server, regs, since)


def big_image_rss(root: Path, server: FileServer, size_mib: int, registries: int) -> Usage:
    compose = build(root, repos=1, arches=1, size_mib=size_mib, compose_id="Fedora-41-20241101.0")
    write_message(compose, server)
    regs = fresh_registries(registries)
    try:
        config = write_config(root / "big.toml", server, regs, root / "big-work")
        ours(config, compose.message, root / "rss-big")
        check_published(compose, regs)
        return usage(root / "rss-big")
    finally:
        stop(regs)


# -- report ------------------------------------------------------------------------------------


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
    return [
        f"- CPU: {cpu}, {CPUS} cores; memory {memory}",
        f"- OS: {platform.platform()}",
        f"- Python {platform.python_version()}; {version(['skopeo', '--version'])}; "
        f"{version([registry, '--version'])}",
    ]


def load() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "unknown"


def report(
    rounds: list[Round],
    big: Usage | None,
    args: argparse.Namespace,
    loads: tuple[str, str],
    notes: str,
) -> str:
    def ratio(top: str, bottom: str) -> float:
        return statistics.median(r.seconds[top] / r.seconds[bottom] for r in rounds)

    ratios = {key: ratio(*key.split("/")) for key in ("b/a", "b/d", "d/a", "c/b")}
    rss = max(r.rss_mb for r in rounds)
    lines = [
        "# Benchmarks",
        "",
        "Written by `make bench` ([`bench/bench.py`](../bench/bench.py)). Each round runs every",
        "scenario on fresh local registries, in an order that rotates from round to round; ratios",
        "are per round, then the median across rounds. Lower is better. How a run keeps its cost",
        "down: [publishing.md](publishing.md#what-one-run-does-and-does-not-do).",
        "",
        "- (a) legacy: sequential `skopeo copy docker-archive:X.tar.xz docker://...` of every",
        "  archive to every registry;",
        "- (b) cold publish by fedora-container-sync (`replay` of the compose's message, a fresh",
        "  process);",
        "- (c) the same message again, from a fresh process and an empty work dir;",
        "- (d) the floor: every archive converted once by bare skopeo (in parallel), then every",
        "  converted image pushed once per registry (in parallel).",
        "",
        "## Machine",
        "",
        *machine(),
        f"- load average (1, 5, 15 min) at the start: {loads[0]}; at the end: {loads[1]}",
        "",
        "## Workload",
        "",
        f"- {args.repos} repositories x {args.arches} arches = {args.repos * args.arches} images, "
        f"{args.size_mib} MiB of incompressible data each (xz-compressed docker-archives)",
        f"- {args.registries} local registries (docker-registry on 127.0.0.1), compose over HTTP "
        "on 127.0.0.1",
        f"- {args.rounds} interleaved rounds; fedora-container-sync with its default "
        f"max_parallel ({CPUS}, the CPU count); the floor with {CPUS} parallel skopeo runs",
        "",
        "## Results",
        "",
        "| ratio | median | target | |",
        "|---|---|---|---|",
    ]
    for key, value in ratios.items():
        target = TARGETS.get(key)
        verdict = "" if target is None else ("met" if value <= target else "**missed**")
        lines.append(
            f"| {key} | {value:.2f} | {'≤ ' + format(target, '.2f') if target else '-'} "
            f"| {verdict} |"
        )
    lines += [
        "",
        f"- Peak RSS of fedora-container-sync during (b): {rss:.0f} MB "
        f"(target ≤ {RSS_TARGET_MB} MB: {'met' if rss <= RSS_TARGET_MB else '**missed**'}); "
        f"its largest skopeo child: {max(r.skopeo_rss_mb for r in rounds):.0f} MB",
    ]
    if big is not None:
        lines.append(
            f"- Peak RSS with one {args.big_mib} MiB image: {big.rss_mb:.0f} MB "
            f"({'met' if big.rss_mb <= RSS_TARGET_MB else '**missed**'}); "
            f"its largest skopeo child: {big.children_rss_mb:.0f} MB"
        )

    def cpu(scenario: str, part: str) -> float:
        return statistics.median(getattr(r.cpu[scenario], part) for r in rounds)

    lines += [
        "",
        "CPU seconds per scenario (medians over rounds; the machine has "
        f"{CPUS} cores, so at most {CPUS} CPU seconds per second):",
        "",
        "| scenario | wall s | commands | registries | compose server | total | cores busy |",
        "|---|---|---|---|---|---|---|",
    ]
    for key, name in (("a", "a legacy"), ("b", "b cold"), ("c", "c replay"), ("d", "d floor")):
        wall = statistics.median(r.seconds[key] for r in rounds)
        total = cpu(key, "total")
        lines.append(
            f"| {name} | {wall:.2f} | {cpu(key, 'tools'):.2f} | {cpu(key, 'registries'):.2f} "
            f"| {cpu(key, 'server'):.2f} | {total:.2f} | {total / wall:.2f} |"
        )
    own = statistics.median(r.own_cpu for r in rounds)
    lines += [
        "",
        f"Of (b)'s commands, fedora-container-sync's own process (downloads with checksum and "
        f"decompression, interpreter start, orchestration; not its skopeo children): "
        f"{own:.2f} CPU seconds.",
    ]
    lines += [
        "",
        "Seconds per round (a legacy, b cold publish, c replay, d bare-skopeo floor):",
        "",
        "| round | order | a | b | c | d | b/a | b/d | d/a | c/b |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for n, r in enumerate(rounds, 1):
        t = r.seconds
        cells = " | ".join(f"{t[k]:.2f}" for k in "abcd")
        quotients = " | ".join(
            f"{t[x] / t[y]:.2f}" for x, y in (("b", "a"), ("b", "d"), ("d", "a"), ("c", "b"))
        )
        lines.append(f"| {n} | {r.order} | {cells} | {quotients} |")
    lines += ["", NOTES_MARKER]
    return "\n".join(lines) + "\n" + notes


def kept_notes(path: Path) -> str:
    """What follows the notes marker in an existing report (hand-written; kept)."""
    try:
        text = path.read_text()
    except OSError:
        return ""
    _, marker, notes = text.partition(NOTES_MARKER + "\n")
    return notes if marker else ""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repos", type=int, default=3)
    parser.add_argument("--arches", type=int, default=4, choices=range(1, 5))
    parser.add_argument("--size-mib", type=int, default=16)
    parser.add_argument("--registries", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--big-mib", type=int, default=200, help="0 skips the large-image run")
    parser.add_argument("--output", type=Path, default=ROOT / "docs" / "benchmarks.md")
    args = parser.parse_args()

    started_load = load()
    with tempfile.TemporaryDirectory(prefix="fcs-bench-") as tmp:
        root = Path(tmp)
        log(f"building {args.repos}x{args.arches} images of {args.size_mib} MiB ...")
        compose = build(
            root,
            repos=args.repos,
            arches=args.arches,
            size_mib=args.size_mib,
            compose_id="Fedora-41-20241025.0",
        )
        with FileServer(compose.served_root) as server:
            write_message(compose, server)
            rounds = []
            for number in range(1, args.rounds + 1):
                scratch = root / f"round-{number}"
                scratch.mkdir()
                rounds.append(run_round(compose, server, scratch, args.registries, number))
                seconds = ", ".join(f"{k}={v:.2f}s" for k, v in sorted(rounds[-1].seconds.items()))
                log(f"round {number}: {seconds}, peak RSS {rounds[-1].rss_mb:.0f} MB")
                shutil.rmtree(scratch, ignore_errors=True)
        big = None
        if args.big_mib:
            log(f"peak RSS with one {args.big_mib} MiB image ...")
            big_root = root / "big"
            (big_root / "served").mkdir(parents=True)
            with FileServer(big_root / "served") as big_server:
                big = big_image_rss(big_root, big_server, args.big_mib, args.registries)
    text = report(rounds, big, args, (started_load, load()), kept_notes(args.output))
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
