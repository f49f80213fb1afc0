"""What `make bench` times, and how it checks that each timed run did its job.

The scenarios, each on fresh local registries:

  (a) legacy      - the old releng script: sequential `skopeo copy docker-archive:X.tar.xz
                    docker://REG/REPO:N-ARCH` of every archive to every registry;
  (b) cold        - `fedora-container-sync replay` of the compose's FINISHED message;
  (c) replay      - the same message again, with an empty work dir (a redelivery);
  (d) disk floor  - bare skopeo, no orchestration: every archive converted once from the local
                    disk to an OCI layout (in parallel), then every converted image pushed once
                    per registry (in parallel);
  (e) fetch floor - the work a correct tool cannot skip: every archive fetched once over HTTP
                    from the compose server (`curl`), its sha256 checked against images.json
                    (`sha256sum`) and converted once by bare skopeo (in parallel), then pushed
                    once per registry by bare skopeo (in parallel).
"""

from __future__ import annotations

import json
import os
import re
import resource
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

from support.compose import (
    ComposeImage,
    build_compose,
    finished_message,
    serialized_message,
)
from support.proxy import FaultProxy
from support.servers import FileServer, Registry

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


@dataclass(frozen=True)
class Image:
    path: Path
    #: the archive's URL path on the compose server (percent-encoded, from its root)
    url_path: str
    #: sha256 of the archive, as images.json states it
    sha256: str
    repository: str
    arch: str

    @property
    def per_arch_tag(self) -> str:
        return f"{RELEASE}-{self.arch}"


@dataclass
class Compose:
    served_root: Path
    compose_dir: Path
    images: list[Image]
    message: Path


@dataclass(frozen=True)
class Cpu:
    """CPU seconds one scenario used: the commands it ran (skopeo, curl and sha256sum; or
    fedora-container-sync and its skopeo children), the registry servers, and this process (the
    compose server)."""

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

    def ratio(self, key: str) -> float:
        """``"b/e"``: (b)'s seconds over (e)'s."""
        top, bottom = key.split("/")
        return self.seconds[top] / self.seconds[bottom]


@dataclass(frozen=True)
class Usage:
    """Peak RSS of fedora-container-sync's own process (VmHWM) and of its largest child
    (skopeo; an upper bound, see USAGE_CODE), and the CPU seconds of its own process."""

    rss_mb: float
    children_rss_mb: float
    cpu: float


def skopeo(*args: str) -> None:
    subprocess.run(["skopeo", "--insecure-policy", *args], check=True, capture_output=True)


# -- set-up ------------------------------------------------------------------------------------


def build(
    root: Path,
    *,
    repos: int,
    arches: int,
    size_mib: int,
    compose_id: str = "Fedora-41-20241025.0",
    subvariants: list[str] | None = None,
) -> Compose:
    subvariants = subvariants or list(SUBVARIANTS)[:repos]
    served = root / "served"
    compose_dir = build_compose(
        served,
        compose_id=compose_id,
        release_version=RELEASE,
        images=[ComposeImage(s, a) for s in subvariants for a in ARCHES[:arches]],
        payload_size=size_mib << 20,
        extra_images=(),
    )
    images = images_of(served, compose_dir)
    return Compose(served, compose_dir, images, root / f"{compose_id}.jsonl")


def images_of(served: Path, compose_dir: Path) -> list[Image]:
    """The images of a compose tree, as its images.json lists them."""
    metadata = json.loads((compose_dir / "metadata" / "images.json").read_text())
    images = []
    for variant in metadata["payload"]["images"].values():
        for entries in variant.values():
            for image in entries:
                if image["subvariant"] not in SUBVARIANTS:
                    continue
                path = compose_dir / image["path"]
                images.append(
                    Image(
                        path,
                        "/" + quote(path.relative_to(served).as_posix()),
                        image["checksums"]["sha256"],
                        SUBVARIANTS[image["subvariant"]],
                        image["arch"],
                    )
                )
    return images


def write_message(compose: Compose, server: FileServer) -> None:
    body = finished_message(
        compose.compose_dir, served_root=compose.served_root, base_url=server.url
    )
    compose.message.write_text(serialized_message(body))


def write_config(
    path: Path,
    server: FileServer,
    registries: Sequence[Registry | FaultProxy],
    work: Path,
    *,
    subvariants: Iterable[str] = tuple(SUBVARIANTS),
) -> Path:
    """A config for these registries (or proxies in front of them), these subvariants."""
    repos = "".join(f'{subvariant} = "{SUBVARIANTS[subvariant]}"\n' for subvariant in subvariants)
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


# -- the scenarios -----------------------------------------------------------------------------


def legacy(compose: Compose, _server: FileServer, registries: list[Registry], _: Path) -> None:
    for image in compose.images:
        for registry in registries:
            skopeo(
                "copy",
                "--quiet",
                "--dest-tls-verify=false",
                f"docker-archive:{image.path}",
                f"docker://{registry.host}/bench/{image.repository}:{image.per_arch_tag}",
            )


def _push_all(layouts: dict[Image, Path], registries: list[Registry]) -> None:
    """Every converted image pushed once per registry, CPU-count skopeo runs at a time."""
    pushes = [(image, registry) for image in layouts for registry in registries]
    with ThreadPoolExecutor(CPUS) as pool:
        list(
            pool.map(
                lambda job: skopeo(
                    "copy",
                    "--quiet",
                    "--preserve-digests",
                    "--dest-tls-verify=false",
                    f"oci:{layouts[job[0]]}:image",
                    f"docker://{job[1].host}/bench/{job[0].repository}:{job[0].per_arch_tag}",
                ),
                pushes,
            )
        )


def _convert(archive: Path, layout: Path, scratch: Path) -> None:
    skopeo(
        "--tmpdir",
        str(scratch),
        "copy",
        "--quiet",
        f"docker-archive:{archive}",
        f"oci:{layout}:image",
    )


def disk_floor(
    compose: Compose, _server: FileServer, registries: list[Registry], scratch: Path
) -> None:
    layouts = {image: scratch / f"layout-{n}" for n, image in enumerate(compose.images)}
    with ThreadPoolExecutor(CPUS) as pool:
        list(pool.map(lambda image: _convert(image.path, layouts[image], scratch), compose.images))
    _push_all(layouts, registries)


class ChecksumMismatch(RuntimeError):
    pass


def fetch_floor(
    compose: Compose, server: FileServer, registries: list[Registry], scratch: Path
) -> None:
    layouts = {image: scratch / f"layout-{n}" for n, image in enumerate(compose.images)}

    def fetch_check_convert(image: Image) -> None:
        archive = layouts[image].with_suffix(".tar.xz")
        subprocess.run(
            ["curl", "--silent", "--show-error", "--fail", "--output", str(archive),
             server.url + image.url_path],
            check=True, capture_output=True,
        )  # fmt: skip
        out = subprocess.run(
            ["sha256sum", str(archive)], check=True, capture_output=True, text=True
        ).stdout
        if out.split()[0] != image.sha256:
            raise ChecksumMismatch(f"the fetch floor got a bad checksum for {image.url_path}")
        _convert(archive, layouts[image], scratch)
        archive.unlink()

    with ThreadPoolExecutor(CPUS) as pool:
        list(pool.map(fetch_check_convert, compose.images))
    _push_all(layouts, registries)


Scenario = Callable[[Compose, FileServer, list[Registry], Path], None]
SCENARIOS: dict[str, Scenario] = {"a": legacy, "d": disk_floor, "e": fetch_floor}


#: Run as ``python -c`` after a line that defines ``main``: ``main(argv[2:])``, then its usage
#: written to ``argv[1]`` (see :func:`usage`). The process's own peak RSS is VmHWM, the
#: high-water mark of its memory since its exec: ``ru_maxrss`` also counts the high-water mark
#: of the process that spawned it (Linux carries it over the exec), so it reported the
#: benchmark's own 138 MB, not the CLI's. The largest child's ``ru_maxrss`` has the same flaw
#: (it counts fedora-container-sync's RSS when that child started): an upper bound for skopeo.
USAGE_CODE = (
    "import resource, sys\n"
    "rc = main(sys.argv[2:])\n"
    "with open('/proc/self/status') as status:\n"
    "    hwm = next(int(l.split()[1]) for l in status if l.startswith('VmHWM:'))\n"
    "me, kids = (resource.getrusage(w) for w in (resource.RUSAGE_SELF, "
    "resource.RUSAGE_CHILDREN))\n"
    "usage = [hwm, kids.ru_maxrss, me.ru_utime + me.ru_stime]\n"
    "open(sys.argv[1], 'w').write(' '.join(map(str, usage)))\n"
    "sys.exit(rc)\n"
)


def ours(config: Path, message: Path, rss_file: Path) -> None:
    """Run the real CLI in a child process that reports its own peak RSS and CPU seconds, and
    its largest child's peak RSS."""
    code = "from fedora_container_sync.cli import main\n" + USAGE_CODE
    result = subprocess.run(
        [sys.executable, "-c", code, str(rss_file), "replay", "--config", str(config),
         str(message)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    if result.returncode != 0:
        raise RuntimeError(f"fedora-container-sync exited {result.returncode}: {result.stderr}")


def usage(rss_file: Path) -> Usage:
    own, children, cpu = rss_file.read_text().split()
    return Usage(int(own) / 1024, int(children) / 1024, float(cpu))


# -- measuring ---------------------------------------------------------------------------------


def _rusage(who: int) -> float:
    used = resource.getrusage(who)
    return used.ru_utime + used.ru_stime


def _registry_cpu(registry: Registry) -> float:
    """utime + stime of a running registry server, from /proc."""
    assert registry._proc is not None
    fields = Path(f"/proc/{registry._proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measured(action: Callable[[], None], registries: list[Registry]) -> tuple[float, Cpu]:
    """Wall-clock seconds and CPU seconds of ``action``."""
    tools, server = _rusage(resource.RUSAGE_CHILDREN), _rusage(resource.RUSAGE_SELF)
    served = sum(_registry_cpu(r) for r in registries)
    start = time.perf_counter()
    action()
    seconds = time.perf_counter() - start
    return seconds, Cpu(
        _rusage(resource.RUSAGE_CHILDREN) - tools,
        sum(_registry_cpu(r) for r in registries) - served,
        _rusage(resource.RUSAGE_SELF) - server,
    )


# -- checking ----------------------------------------------------------------------------------


def check_published(
    name: str, compose: Compose, registries: list[Registry], *, index: bool = True
) -> None:
    """Scenario ``name`` did its job: every per-arch tag (and, with ``index``, the index tag) in
    every registry."""
    for registry in registries:
        for image in compose.images:
            for tag in (image.per_arch_tag, RELEASE) if index else (image.per_arch_tag,):
                if registry.get_manifest(f"bench/{image.repository}", tag) is None:
                    raise RuntimeError(f"{name} left out {registry.host} {image.repository}:{tag}")


def check_fetched_once(compose: Compose, server: FileServer) -> None:
    """The fetch floor fetched every archive, once, and had it served."""
    fetched = Counter(path for method, path, status in server.requests if status == 200)
    for image in compose.images:
        if fetched[image.url_path] != 1:
            raise RuntimeError(
                f"the fetch floor fetched {image.url_path} {fetched[image.url_path]} times"
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
