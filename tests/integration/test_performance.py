"""Issue 6 end to end: one download and one conversion per image, free replays (the registry is
the record), bounded parallelism, and the step lines people see. Everything is observed from
outside: the compose server's and the registries' access logs, and a recording skopeo."""

from __future__ import annotations

import functools
import gzip
import lzma
import re
import subprocess
import sys
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import httpx
import pytest

from fedora_container_sync.compose.fetch import ComposeFetcher
from fedora_container_sync.compose.selection import select_images
from fedora_container_sync.config.settings import RetrySettings
from support.compose import ComposeImage, build_compose
from support.harness import ARCHES, Harness, report_rows
from support.servers import Registry

pytestmark = pytest.mark.integration

TOOLBOX = "fedora-toolbox"
OLD = "Fedora-41-20241025.0"
NEW = "Fedora-41-20241026.0"
_ACCESS = re.compile(r'"(GET|HEAD|PUT|POST|PATCH|DELETE) (/v2/\S*) HTTP/')


def requests(registry: Registry, namespace: str, *, since: int = 0) -> list[tuple[str, str]]:
    """(method, path) of the registry's access-log lines for ``namespace``, from line ``since``."""
    lines = registry.log_text().splitlines()[since:]
    found = [m.groups() for m in map(_ACCESS.search, lines) if m]
    return [(method, path) for method, path in found if f"/v2/{namespace}/" in path]


def log_length(registry: Registry) -> int:
    return len(registry.log_text().splitlines())


def archives(harness: Harness) -> list[str]:
    """Paths of image archives the compose server was asked for."""
    return [p for _, p, _ in harness.server.requests if p.endswith((".tar.xz", ".tar.gz"))]


def recording_skopeo(harness: Harness, *, pause: float = 0.0) -> Path:
    """A skopeo that logs ``start PID ARGV`` and ``end PID`` around the real one, and
    ``files TARS LAYOUTS``: how many downloaded archives and converted images the work dir
    holds as it starts. Its path is configured as ``skopeo``. Returns the event log."""
    events = harness.tmp / "skopeo-events"
    events.touch()
    shim = harness.tmp / "skopeo"
    run = harness.tmp / "work" / "*.run"
    shim.write_text(
        "#!/bin/sh\n"
        f"tars=$(ls -d {run}/downloads/*.tar 2>/dev/null | wc -l)\n"
        f"layouts=$(ls -d {run}/layouts/* 2>/dev/null | wc -l)\n"
        f'echo "files $tars $layouts" >> {events}\n'
        f'echo "start $$ $*" >> {events}\n'
        + (f"sleep {pause}\n" if pause else "")
        + 'skopeo "$@"\nrc=$?\n'
        + f'echo "end $$" >> {events}\n'
        + "exit $rc\n"
    )
    shim.chmod(0o755)
    harness.extra_config += f'skopeo = "{shim}"\n'
    return events


def skopeo_runs(events: Path) -> list[str]:
    return [
        line.split(" ", 2)[2] for line in events.read_text().splitlines() if line[:5] == "start"
    ]


def most_at_once(events: Path) -> int:
    running = peak = 0
    for line in events.read_text().splitlines():
        if line.startswith(("start", "end")):
            running += 1 if line.startswith("start") else -1
            peak = max(peak, running)
    return peak


def files_in_work_dir(events: Path) -> list[tuple[int, int]]:
    found = []
    for line in events.read_text().splitlines():
        if line.startswith("files "):
            _, tars, layouts = line.split()
            found.append((int(tars), int(layouts)))
    return found


def test_each_image_is_downloaded_and_converted_once_for_all_registries(harness, second_registry):
    harness.registries.append(second_registry)
    events = recording_skopeo(harness)
    body = harness.compose(OLD)
    harness.server.clear_requests()

    result = harness.replay(body)

    assert result.code == 0, result.err
    fetched = archives(harness)
    assert sorted(fetched) == sorted(set(fetched)) and len(fetched) == len(ARCHES)
    runs = skopeo_runs(events)
    conversions = [run for run in runs if re.search(r" oci:\S+:image$", run)]
    pushes = [run for run in runs if " docker://" in run]
    assert len(conversions) == len(ARCHES)
    assert len(pushes) == len(ARCHES) * 2
    assert all("--preserve-digests" in run and " oci:" in run for run in pushes)
    for tag in ("41", "latest", *(f"41-{arch}" for arch in ARCHES)):
        first = harness.digest(TOOLBOX, tag, harness.registries[0])
        assert first is not None
        assert harness.digest(TOOLBOX, tag, second_registry) == first
    assert "work: downloaded 4 " in result.out and "converted 4, pushed 8" in result.out


def test_a_replay_from_a_fresh_process_downloads_uploads_and_puts_nothing(harness, second_registry):
    harness.registries.append(second_registry)
    events = recording_skopeo(harness)
    body = harness.compose(OLD, subvariants=("Container_Toolbox", "Container_Base"))
    assert harness.replay(body).code == 0
    assert len(skopeo_runs(events)) == 2 * len(ARCHES) * 3  # the shim is in use
    since = {id(r): log_length(r) for r in harness.registries}
    events.write_text("")
    harness.server.clear_requests()
    # A new process with an empty work dir: only the registries know what was published.
    config = harness.config()
    config.write_text(
        config.read_text().replace(str(harness.tmp / "work"), str(harness.tmp / "w2"))
    )

    replay = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "fedora_container_sync", "replay",
         "--config", str(config), str(harness.message_file(body))],
        capture_output=True, text=True, check=False,
    )  # fmt: skip

    assert replay.returncode == 0, replay.stderr
    # A replay is mostly interpreter start: the bus client stays out of it.
    imported = {line.rsplit("|", 1)[1].strip() for line in replay.stderr.splitlines()
                if line.startswith("import time:")}  # fmt: skip
    assert "fedora_container_sync.publish" in imported
    heavy = {"fedora_messaging", "twisted", "pika", "fedora_container_sync.bus.notify"}
    assert not {m for m in imported if m in heavy or m.split(".")[0] in heavy}
    assert archives(harness) == []
    assert {path.rsplit("/", 1)[1] for _, path, _ in harness.server.requests} == {
        "composeinfo.json",
        "images.json",
    }
    assert skopeo_runs(events) == []
    for registry in harness.registries:
        seen = requests(registry, harness.namespace, since=since[id(registry)])
        assert seen, "the replay read nothing"
        assert [(m, p) for m, p in seen if m != "GET"] == []  # no blob upload, no manifest put
        assert [p for _, p in seen if "/blobs/" in p] == []
    verdicts = {row[0] for row in report_rows(replay.stdout).values()}
    assert verdicts == {"unchanged"}
    assert "work: downloaded 0 (0 B), converted 0, pushed 0, already there 16" in replay.stdout


def test_a_registry_that_lacks_the_build_gets_it_and_the_other_is_left_alone(
    harness, second_registry
):
    body = harness.compose(OLD)
    assert harness.replay(body).code == 0  # the first registry only
    harness.registries.append(second_registry)
    first, second = harness.registries
    since = log_length(first)
    harness.server.clear_requests()

    result = harness.replay(body)

    assert result.code == 0, result.err
    assert len(archives(harness)) == len(ARCHES)  # needed once, for the second registry
    assert [m for m, _ in requests(first, harness.namespace, since=since) if m != "GET"] == []
    for tag in ("41", "latest", *(f"41-{arch}" for arch in ARCHES)):
        assert harness.digest(TOOLBOX, tag, second) == harness.digest(TOOLBOX, tag, first)


def test_work_runs_in_parallel_up_to_max_parallel_and_index_tags_move_last(
    harness, second_registry
):
    harness.registries.append(second_registry)
    harness.extra_config = "max_parallel = 2\n"
    events = recording_skopeo(harness, pause=0.3)
    body = harness.compose(OLD)
    since = {id(r): log_length(r) for r in harness.registries}

    result = harness.replay(body)

    assert result.code == 0, result.err
    assert most_at_once(events) == 2
    # In each registry, the index tags are written after every per-arch tag of the repository.
    for registry in harness.registries:
        puts = [
            path.rsplit("/", 1)[1]
            for method, path in requests(registry, harness.namespace, since=since[id(registry)])
            if method == "PUT" and "/manifests/" in path
        ]
        # Images are uploaded by digest, then their tags move: count the tag moves.
        puts = [reference for reference in puts if not reference.startswith("sha256:")]
        arch_tags = {f"41-{arch}" for arch in ARCHES}
        assert set(puts) == arch_tags | {"41", "latest"}
        assert set(puts[: len(arch_tags)]) == arch_tags


def test_one_image_at_a_time_with_max_parallel_1(harness, second_registry):
    """Depth-first: each image is downloaded, converted and pushed everywhere before the next
    is downloaded, and the work dir holds only what is still needed."""
    harness.registries.append(second_registry)
    harness.extra_config = "max_parallel = 1\n"
    events = recording_skopeo(harness, pause=0.1)
    result = harness.replay(harness.compose(OLD, arches=("x86_64", "aarch64", "s390x")))
    assert result.code == 0, result.err
    assert most_at_once(events) == 1
    kinds = ["push" if " docker://" in run else "convert" for run in skopeo_runs(events)]
    assert kinds == ["convert", "push", "push"] * 3
    # converting: its archive (being read) and its layout (being written); pushing: the layout
    assert files_in_work_dir(events) == [(1, 0), (0, 1), (0, 1)] * 3


def test_one_line_per_finished_step_without_a_terminal(harness):
    body = harness.compose(OLD, arches=("x86_64", "s390x"))
    result = harness.replay(body)  # stderr is not a terminal here; no -v
    assert result.code == 0, result.err
    steps = [line for line in result.err.splitlines() if re.search(r": \[\d+/\d+\] ", line)]
    # 2 downloads, 2 conversions, 2 per-arch tags, 2 index tags
    assert len(steps) == 8, result.err
    assert [int(re.search(r"\[(\d+)/", line)[1]) for line in steps] == list(range(1, 9))
    assert all(f"compose {OLD}: [" in line and "/8] " in line for line in steps)
    assert sum("downloaded and verified" in line for line in steps) == 2
    assert sum("converted" in line for line in steps) == 2

    again = harness.replay(body)
    steps = [line for line in again.err.splitlines() if re.search(r": \[\d+/\d+\] ", line)]
    assert len(steps) == 4 and all("unchanged" in line for line in steps)


def test_the_step_count_stays_true_when_an_image_fails(harness):
    body = harness.compose(OLD, arches=("x86_64", "s390x"))
    tampered = next(harness.compose_dir(body).glob("Container/s390x/images/*.tar.xz"))
    tampered.write_bytes(b"\0" * tampered.stat().st_size)
    result = harness.replay(body)
    assert result.code == 1
    counts = [(int(m[1]), int(m[2])) for m in re.finditer(r": \[(\d+)/(\d+)\] ", result.err)]
    # x86_64: downloaded, converted, pushed; s390x: nothing; 41 and latest: held. The total
    # drops by the steps the failure made moot (s390x's conversion and push), and ends true.
    assert [done for done, _ in counts] == [1, 2, 3, 4, 5], result.err
    assert counts[-1] == (5, 5)


def test_a_replay_of_an_older_compose_downloads_nothing_either(harness):
    old = harness.compose(OLD)
    assert harness.replay(harness.compose(NEW)).code == 0
    harness.server.clear_requests()
    result = harness.replay(old)
    assert result.code == 3, result.err
    assert archives(harness) == []


class _EncodingHandler(SimpleHTTPRequestHandler):
    """Serves files gzip-encoded whatever the client asked for (a misconfigured server)."""

    asked: ClassVar[list[str]] = []

    def do_GET(self) -> None:
        self.asked.append(self.headers.get("Accept-Encoding", ""))
        path = Path(self.translate_path(self.path))
        body = gzip.compress(path.read_bytes())
        self.send_response(200)
        self.send_header("Content-Encoding", "gzip")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


def test_image_files_are_asked_for_as_they_are_and_decoded_if_encoded_anyway(harness, tmp_path):
    compose_dir = harness.compose_dir(harness.compose(OLD, arches=("s390x",)))
    server = ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(_EncodingHandler, directory=str(compose_dir))
    )
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/"
        with httpx.Client() as http:
            fetcher = ComposeFetcher(
                http, url, compose_id=OLD, allowlist=[url], retry=RetrySettings(attempts=1)
            )
            (artifact,) = select_images(
                fetcher.metadata().images.images, {"Container_Toolbox": TOOLBOX}, compose_id=OLD
            )
            _EncodingHandler.asked.clear()
            local = fetcher.download(artifact, tmp_path)
    finally:
        server.shutdown()
        server.server_close()
    assert _EncodingHandler.asked == ["identity"]
    archive = compose_dir / artifact.path
    assert local.path.read_bytes() == lzma.decompress(archive.read_bytes())


def peak_rss_mib(harness, compose_id: str, payload_mib: int) -> float:
    """Publish one image of ``payload_mib`` in a fresh process; its peak RSS in MiB."""
    compose_dir = build_compose(
        harness.served_root / harness.namespace,
        compose_id=compose_id,
        release_version="41",
        images=[ComposeImage("Container_Toolbox", "x86_64")],
        payload_size=payload_mib << 20,
    )
    code = (
        "import resource, sys\n"
        "from fedora_container_sync.cli import main\n"
        "code = main(sys.argv[1:])\n"
        "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)\n"
        "sys.exit(code)\n"
    )
    replay = subprocess.run(
        [sys.executable, "-c", code, "replay", "--config", str(harness.config()),
         str(harness.message_file(harness.message_for(compose_dir)))],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert replay.returncode == 0, replay.stderr
    assert f"work: downloaded 1 ({payload_mib}." in replay.stdout, replay.stdout
    return int(replay.stdout.split()[-1]) / 1024


def test_memory_stays_flat_with_a_large_image(harness):
    """No image is ever held in memory whole: publishing a 96 MiB image costs well under 96 MiB
    more than publishing a 1 MiB one, measured side by side in the same conditions (the
    process's usual size, about 60 MB, varies with the machine)."""
    small = peak_rss_mib(harness, OLD, 1)
    large = peak_rss_mib(harness, "Fedora-41-20241026.0", 96)
    assert large - small < 32, f"peak RSS {small:.0f} MiB with 1 MiB, {large:.0f} MiB with 96 MiB"
