"""Bootable containers in `make bench`: multi-layer OCI composes, and the daemon path.

A bootable-container-like compose (tests/support/layered.py): 2 repositories (Silverblue,
Kinoite) x 2 arches, OCI archives of ``--layers`` gzip layers of ``--layer-mib`` each; the first
``--shared-layers`` are a base both repositories share, and from one compose to the next 2
layers of each image change (and its config). Per round, each on fresh registries:

  (f) bare skopeo, incremental - the registries hold compose 1, pushed by bare skopeo, so its
      blob-info cache is warm; timed: `skopeo copy oci-archive:FILE docker://...` of every
      image of compose 2 to every registry (CPU-count copies at a time), from the local disk;
  (i) bare tools, incremental, fetching too - as (f), but each archive is first fetched from
      the compose server with `curl` and checked with `sha256sum`, as fedora-container-sync must;
  (g) ours, incremental - the registries hold compose 1, published by fedora-container-sync;
      timed: `replay` of compose 2 (a fresh process). Its work dir is sampled meanwhile: the
      peak of the bytes it holds over the archive bytes of the images it holds then;
  (h) a new repository beside its sibling, skopeo's cache of no use - Silverblue published
      first (Kinoite not configured) through one proxy, then the compose with both through
      another proxy (another host:port: skopeo's cache files what it learned under the first),
      which counts what goes up: bytes (blob and manifest bodies), finished blob uploads,
      mounts, blob HEADs. The least a correct tool uploads: Kinoite's blobs Silverblue does
      not hold (its own layers and configs) and the manifests it PUT;
  (w) the daemon path - a warm consumer (fedora_container_sync.consumer.Consumer in a process
      that already handled a small compose: no interpreter start, no imports) handles the
      main single-layer compose's message; against (e), the fetch floor of that compose, in the
      same round.

Each run is checked: every per-arch tag (and for ours the index tag) in every registry.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from statistics import median
from typing import Any

from scenarios import (
    CPUS,
    SUBVARIANTS,
    Compose,
    Image,
    check_published,
    fetch_floor,
    images_of,
    measured,
    ours,
    skopeo,
    write_config,
    write_message,
)

from support.layered import Layers, build_layered_compose
from support.proxy import FaultProxy, ProxyRequest
from support.servers import FileServer, Registry

LAYERED = ("Silverblue", "Kinoite")
ARCHES = ("x86_64", "aarch64")
SIBLING, NEW = SUBVARIANTS["Silverblue"], SUBVARIANTS["Kinoite"]

#: the issue's goals, on the medians of the per-round ratios
GOALS = {"g/f": 1.5, "h bytes / least": 1.10, "peak work dir": 1.2}


@dataclass
class Count:
    """What went up through a proxy."""

    bytes: int = 0
    manifest_bytes: int = 0
    uploads: int = 0
    mounts: int = 0
    declined: int = 0
    heads: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __call__(self, request: ProxyRequest, status: int) -> None:
        path, method = request.path, request.method
        with self._lock:
            if method in ("PATCH", "PUT", "POST") and path.startswith("/v2/"):
                self.bytes += len(request.body)
                if "/manifests/" in path:
                    self.manifest_bytes += len(request.body)
            if method == "PUT" and "/blobs/uploads/" in path and "digest=" in path:
                self.uploads += 1
            if method == "POST" and "mount=" in path:
                if status == 201:
                    self.mounts += 1
                else:
                    self.declined += 1
            if method == "HEAD" and "/blobs/" in path:
                self.heads += 1


@dataclass
class LayeredRound:
    seconds: dict[str, float] = field(default_factory=dict)
    #: peak of the work dir's bytes over the archive bytes of the images it held then
    work_ratio: float = 0.0
    work_peak_mib: float = 0.0
    counted: Count = field(default_factory=Count)
    #: bytes a correct tool cannot avoid uploading in (h), and what uploading every blob of the
    #: new repository (no mounts) would be
    least: int = 0
    unmounted: int = 0
    order: str = ""

    def ratio(self, key: str) -> float:
        top, bottom = key.split("/")
        return self.seconds[top] / self.seconds[bottom]


@dataclass
class LayeredResults:
    shape: Layers
    registries: int
    image_mib: float
    rounds: list[LayeredRound] = field(default_factory=list)
    #: load average (1, 5, 15 min) before and after these scenarios
    loads: tuple[str, str] = ("", "")
    seconds: float = 0.0


# -- set-up ------------------------------------------------------------------------------------


@dataclass
class Layered:
    gen1: Compose
    gen2: Compose
    server: FileServer
    image_bytes: int


def build_layered(root: Path, shape: Layers, stack: Any) -> Layered:
    served = root / "served"
    composes = []
    for generation, compose_id in ((1, "Fedora-41-20241025.0"), (2, "Fedora-41-20241026.0")):
        compose_dir = build_layered_compose(
            served, compose_id=compose_id, release_version="41", subvariants=LAYERED,
            arches=ARCHES, shape=shape, generation=generation,
        )  # fmt: skip
        composes.append(
            Compose(
                served, compose_dir, images_of(served, compose_dir), root / f"{compose_id}.jsonl"
            )
        )
    server = stack.enter_context(FileServer(served))
    for compose in composes:
        write_message(compose, server)
    size = composes[1].images[0].path.stat().st_size
    return Layered(composes[0], composes[1], server, size)


def bare_copy(images: list[Image], registries: list[Any]) -> None:
    """`skopeo copy oci-archive:` of every image to every registry, CPU-count at a time."""
    jobs = [(image, registry) for image in images for registry in registries]
    with ThreadPoolExecutor(CPUS) as pool:
        list(
            pool.map(
                lambda job: skopeo(
                    "copy",
                    "--quiet",
                    "--dest-tls-verify=false",
                    f"oci-archive:{job[0].path}",
                    f"docker://{job[1].host}/bench/{job[0].repository}:{job[0].per_arch_tag}",
                ),
                jobs,
            )
        )


class WorkDirSampler:
    """Samples a work dir every ``every`` seconds: the largest ratio of its allocated bytes to
    the archive bytes of the images it holds (downloads - archives, or OCI archives unpacked as
    they arrive -, unpacked archives, layouts)."""

    def __init__(self, work: Path, image_bytes: int, every: float = 0.05) -> None:
        self.work, self.image_bytes, self.every = work, image_bytes, every
        self.ratio, self.peak = 0.0, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> WorkDirSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            used, images = 0, set()
            for directory, _, files in os.walk(self.work):
                name = Path(directory).name
                parent = Path(directory).parent.name
                if parent in ("unpacked", "layouts"):
                    images.add(name)
                elif parent == "downloads":  # an OCI archive unpacked as it is downloaded
                    images.add(name.split(".", 1)[0])
                for file in files:
                    try:
                        used += os.lstat(os.path.join(directory, file)).st_blocks * 512
                    except OSError:
                        continue
                    if name == "downloads":
                        images.add(file.split(".", 1)[0])
            self.peak = max(self.peak, used)
            if images:
                self.ratio = max(self.ratio, used / (len(images) * self.image_bytes))


def config(path: Path, server: FileServer, hosts: list[Any], work: Path, repos: tuple[str, ...]):  # type: ignore[no-untyped-def]
    return write_config(path, server, hosts, work, subvariants=repos)


# -- the scenarios -----------------------------------------------------------------------------


def bare_incremental(
    layered: Layered, scratch: Path, registries: int, result: LayeredRound
) -> None:
    regs = [Registry().start() for _ in range(registries)]
    try:
        bare_copy(layered.gen1.images, regs)  # warms skopeo's cache for these registries
        result.seconds["f"], _ = measured(partial(bare_copy, layered.gen2.images, regs), regs)
        check_published("(f)", layered.gen2, regs, index=False)
    finally:
        for registry in regs:
            registry.stop()


def fetch_then_copy(
    images: list[Image], server: FileServer, registries: list[Any], scratch: Path
) -> None:
    """(i): every archive fetched with curl and checked with sha256sum, then copied with
    `skopeo copy oci-archive:` to every registry - CPU-count images at a time."""

    def one(image: Image) -> None:
        archive = scratch / f"{image.sha256}.tar"
        subprocess.run(
            ["curl", "--silent", "--show-error", "--fail", "--output", str(archive),
             server.url + image.url_path],
            check=True, capture_output=True,
        )  # fmt: skip
        out = subprocess.run(
            ["sha256sum", str(archive)], check=True, capture_output=True, text=True
        )
        if out.stdout.split()[0] != image.sha256:
            raise RuntimeError(f"(i) got a bad checksum for {image.url_path}")
        for registry in registries:
            skopeo(
                "copy", "--quiet", "--dest-tls-verify=false", f"oci-archive:{archive}",
                f"docker://{registry.host}/bench/{image.repository}:{image.per_arch_tag}",
            )  # fmt: skip
        archive.unlink()

    with ThreadPoolExecutor(CPUS) as pool:
        list(pool.map(one, images))


def fetch_incremental(
    layered: Layered, scratch: Path, registries: int, result: LayeredRound
) -> None:
    regs = [Registry().start() for _ in range(registries)]
    try:
        bare_copy(layered.gen1.images, regs)
        result.seconds["i"], _ = measured(
            partial(fetch_then_copy, layered.gen2.images, layered.server, regs, scratch), regs
        )
        check_published("(i)", layered.gen2, regs, index=False)
    finally:
        for registry in regs:
            registry.stop()


def ours_incremental(
    layered: Layered, scratch: Path, registries: int, result: LayeredRound
) -> None:
    regs = [Registry().start() for _ in range(registries)]
    try:
        for number, compose in enumerate((layered.gen1, layered.gen2), 1):
            work = scratch / f"work-g{number}"
            cfg = config(scratch / f"g{number}.toml", layered.server, regs, work, LAYERED)
            if number == 1:
                ours(cfg, compose.message, scratch / "rss-g1")
                continue
            with WorkDirSampler(work, layered.image_bytes) as sampler:
                result.seconds["g"], _ = measured(
                    partial(ours, cfg, compose.message, scratch / "rss-g2"), regs
                )
            result.work_ratio, result.work_peak_mib = sampler.ratio, sampler.peak / (1 << 20)
        check_published("(g)", layered.gen2, regs)
    finally:
        for registry in regs:
            registry.stop()


def new_repository(layered: Layered, scratch: Path, result: LayeredRound) -> None:
    registry = Registry().start()
    try:
        with FaultProxy(registry.url) as first, FaultProxy(registry.url) as second:
            compose = layered.gen2
            cfg = config(
                scratch / "h1.toml", layered.server, [first], scratch / "w-h1", LAYERED[:1]
            )
            ours(cfg, compose.message, scratch / "rss-h1")
            second.on_response = result.counted
            cfg = config(scratch / "h2.toml", layered.server, [second], scratch / "w-h2", LAYERED)
            ours(cfg, compose.message, scratch / "rss-h2")
        check_published("(h)", compose, [registry])
        sibling, new = set(), {}
        for image in compose.images:
            found = registry.get_manifest(f"bench/{image.repository}", image.per_arch_tag)
            assert found is not None
            document = json.loads(found[2])
            blobs = {b["digest"]: b["size"] for b in [document["config"], *document["layers"]]}
            if image.repository == SIBLING:
                sibling |= set(blobs)
            else:
                new |= blobs
        own = sum(size for digest, size in new.items() if digest not in sibling)
        result.least = own + result.counted.manifest_bytes
        result.unmounted = sum(new.values()) + result.counted.manifest_bytes
    finally:
        registry.stop()


_DRIVER = """
import logging, sys, time
logging.basicConfig(level=logging.INFO)
from pathlib import Path
from fedora_messaging import message as fm
from fedora_container_sync.config.load import load_settings
from fedora_container_sync.consumer import Consumer
consumer = Consumer(load_settings(Path(sys.argv[1])))
warm, timed = (fm.loads(Path(p).read_text())[0] for p in sys.argv[2:4])
consumer(warm)
start = time.perf_counter()
consumer(timed)
print(time.perf_counter() - start)
"""


def daemon_path(main: Compose, warm: Compose, server: FileServer, scratch: Path, registries: int,
                result: LayeredRound) -> None:  # fmt: skip
    """(w) a warm consumer's time for the main compose, and (e) the fetch floor's."""
    for step in ("w", "e") if len(result.seconds) % 2 == 0 else ("e", "w"):
        regs = [Registry().start() for _ in range(registries)]
        work = Path(tempfile.mkdtemp(dir=scratch))
        try:
            if step == "e":
                result.seconds["e"], _ = measured(
                    partial(fetch_floor, main, server, regs, work), regs
                )
                check_published("(e)", main, regs, index=False)
                continue
            cfg = write_config(scratch / "w.toml", server, regs, work / "work")
            done = subprocess.run(
                [sys.executable, "-c", _DRIVER, str(cfg), str(warm.message), str(main.message)],
                capture_output=True, text=True, check=False,
            )  # fmt: skip
            if done.returncode != 0:
                raise RuntimeError(f"the warm consumer failed: {done.stderr[-2000:]}")
            result.seconds["w"] = float(done.stdout.split()[-1])
            try:
                check_published("(w) the warm consumer", main, regs)
            except RuntimeError as error:
                raise RuntimeError(f"{error}: {done.stderr[-3000:]}") from None
        finally:
            for registry in regs:
                registry.stop()
            shutil.rmtree(work, ignore_errors=True)


def run(
    args: argparse.Namespace,
    root: Path,
    stack: Any,
    main: Compose | None,
    main_server: FileServer | None,
    log: Any,
) -> LayeredResults:
    """The layered rounds (and the daemon path, given the main compose and its server)."""
    shape = Layers(
        layers=args.layers, layer_size=int(args.layer_mib * (1 << 20)),
        shared=args.shared_layers, changed=(args.layers - 2, args.layers - 1),
        salt=os.urandom(8).hex(),
    )  # fmt: skip
    from report import load

    started, started_load = time.monotonic(), load()
    log(f"building 2 layered composes: 2 repos x 2 arches x {shape.layers} layers ...")
    layered = build_layered(root / "layered", shape, stack)
    results = LayeredResults(shape, args.layered_registries, layered.image_bytes / (1 << 20))
    warm: Compose | None = None
    if main is not None and main_server is not None:
        from scenarios import build

        # a small compose of a repository the main one does not have, served by the main
        # compose's server (the allowlist is the same)
        small = build(
            root / "warm", repos=1, arches=1, size_mib=1, subvariants=["Sericea"],
            compose_id="Fedora-41-20241020.0",
        )  # fmt: skip
        shutil.copytree(small.served_root, main.served_root, dirs_exist_ok=True)
        inside = main.served_root / small.compose_dir.relative_to(small.served_root)
        warm = Compose(main.served_root, inside, small.images, small.message)
        write_message(warm, main_server)
    steps = ["f", "g", "h", "i", "w"] if warm is not None else ["f", "g", "h", "i"]
    for number in range(1, args.layered_rounds + 1):
        scratch = root / f"layered-{number}"
        scratch.mkdir()
        turn = (number - 1) % len(steps)
        order = steps[turn:] + steps[:turn]
        result = LayeredRound(order=", ".join(order))
        for step in order:
            if step == "f":
                bare_incremental(layered, scratch, args.layered_registries, result)
            elif step == "g":
                ours_incremental(layered, scratch, args.layered_registries, result)
            elif step == "h":
                new_repository(layered, scratch, result)
            elif step == "i":
                fetch_incremental(layered, scratch, args.layered_registries, result)
            elif warm is not None and main is not None and main_server is not None:
                daemon_path(main, warm, main_server, scratch, args.registries, result)
        results.rounds.append(result)
        seconds = ", ".join(f"{k}={v:.2f}s" for k, v in sorted(result.seconds.items()))
        log(f"layered round {number}: {seconds}, work dir x{result.work_ratio:.2f}, "
            f"(h) {result.counted.bytes / (1 << 20):.1f} MiB up")  # fmt: skip
        shutil.rmtree(scratch, ignore_errors=True)
    results.loads, results.seconds = (started_load, load()), time.monotonic() - started
    return results


# -- the report --------------------------------------------------------------------------------


def _spread(values: list[float]) -> str:
    return f"{median(values):.2f} ({min(values):.2f}-{max(values):.2f})"


def _verdict(value: float, goal: float) -> str:
    return "met" if value <= goal else "**missed**"


def section(results: LayeredResults) -> list[str]:
    rounds, shape = results.rounds, results.shape
    if not rounds:
        return []
    mib = shape.layer_size / (1 << 20)
    gf = [r.ratio("g/f") for r in rounds]
    hb = [r.counted.bytes / r.least for r in rounds]
    work = [r.work_ratio for r in rounds]
    lines = [
        "## Bootable containers (multi-layer OCI archives)",
        "",
        f"2 repositories (Silverblue, Kinoite) x 2 arches, OCI archives of {shape.layers} gzip "
        f"layers of {mib:g} MiB ({results.image_mib:.1f} MiB per image), the first "
        f"{shape.shared} shared by both repositories; from one compose to the next "
        f"{len(shape.changed)} layers of each image change, and its config. "
        f"{results.registries} registr{'y' if results.registries == 1 else 'ies'}; "
        f"{len(rounds)} round(s), the order rotating. See bench/layered.py for each scenario. "
        f"These scenarios took {results.seconds / 60:.1f} min; load average (1, 5, 15 min) at "
        f"their start: {results.loads[0]}; at their end: {results.loads[1]}.",
        "",
        "Goals (medians over rounds):",
        "",
        f"- incremental publish / bare `skopeo copy oci-archive:` with a warm cache (g/f) ≤ 1.50: "
        f"{_spread(gf)}: {_verdict(median(gf), 1.5)}",
        f"- bytes uploaded for a new repository beside its sibling, skopeo's cache of no use / "
        f"its unshared blobs + manifests (h) ≤ 1.10: {_spread(hb)}: {_verdict(median(hb), 1.1)}",
        f"- peak work dir / the archives of the images in it (g) ≤ 1.20: {_spread(work)}: "
        f"{_verdict(median(work), 1.2)}",
    ]
    gi = [r.ratio("g/i") for r in rounds]
    lines.append(
        f"- incremental publish / bare tools fetching too: `curl` + `sha256sum` + `skopeo copy "
        f"oci-archive:` (g/i), no target: {_spread(gi)}"
    )
    if all("w" in r.seconds for r in rounds):
        we = [r.ratio("w/e") for r in rounds]
        lines.append(
            f"- daemon path: a warm consumer's time per message / the fetch floor (w/e), the "
            f"main compose above: {_spread(we)} (no target; compare b/e)"
        )
    lines += [
        "",
        "| round | order | f s | i s | g s | g/f | g/i | peak work dir | work dir peak MiB | "
        "(h) MiB up | least MiB | without mounts MiB | uploads | mounts | declined | blob HEADs |"
        + (" w s | e s | w/e |" if all("w" in r.seconds for r in rounds) else ""),
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
        + ("---|---|---|" if all("w" in r.seconds for r in rounds) else ""),
    ]
    for number, r in enumerate(rounds, 1):
        c = r.counted
        row = (
            f"| {number} | {r.order} | {r.seconds['f']:.2f} | {r.seconds['i']:.2f} | "
            f"{r.seconds['g']:.2f} | {r.ratio('g/f'):.2f} | {r.ratio('g/i'):.2f} | "
            f"{r.work_ratio:.2f} | {r.work_peak_mib:.1f} | "
            f"{c.bytes / (1 << 20):.2f} | {r.least / (1 << 20):.2f} | "
            f"{r.unmounted / (1 << 20):.2f} | {c.uploads} | {c.mounts} | {c.declined} | "
            f"{c.heads} |"
        )
        if "w" in r.seconds:
            row += f" {r.seconds['w']:.2f} | {r.seconds['e']:.2f} | {r.ratio('w/e'):.2f} |"
        lines.append(row)
    return [*lines, ""]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group(
        "layered", "bootable-container-like composes (bench/layered.py)"
    )
    group.add_argument("--layers", type=int, default=20)
    group.add_argument("--layer-mib", type=float, default=2.0)
    group.add_argument("--shared-layers", type=int, default=15)
    group.add_argument("--layered-registries", type=int, default=1)
    group.add_argument("--layered-rounds", type=int, default=3, help="0 skips them")
    group.add_argument(
        "--only-layered", action="store_true",
        help="only these scenarios and the daemon path (not the main rounds, grid, large image)",
    )  # fmt: skip


def splice(text: str, lines: list[str]) -> str:
    """``text`` (a report) with this section in place of the one it has, before the notes."""
    from report import NOTES_MARKER

    title = "## Bootable containers"
    start = text.find(title)
    marker = text.find(NOTES_MARKER)
    if marker < 0:
        marker = len(text)
    if start < 0 or start > marker:
        start = marker
    return text[:start] + "\n".join(lines) + "\n" + text[marker:]
