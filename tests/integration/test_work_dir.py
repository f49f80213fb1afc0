"""A work dir that cannot be written - out of inodes when a run starts, read-only in the middle
of one - fails with one line naming it, never an internal error, and moves no tag. Real tmpfs
mounts as work_dir (root only; skipped where nothing can be mounted), real HTTP and registry."""

from __future__ import annotations

import threading

import pytest

from support.broker import wait_until
from support.filesystems import mount_read_only, small_file_system, unmount
from support.harness import Harness
from support.proxy import FaultProxy, ProxyRequest

pytestmark = pytest.mark.integration

TOOLBOX = "fedora-toolbox"
COMPOSE = "Fedora-41-20241025.0"


def test_a_work_dir_out_of_inodes_fails_the_run_in_one_line(harness):
    body = harness.compose(COMPOSE, arches=("x86_64",))
    # Two inodes: the root, and one for the run directory; its lock file finds none left.
    with small_file_system(harness.tmp / "work", "16m", options="nr_inodes=2") as work_dir:
        result = harness.replay(body)

    assert result.code == 1, result.err
    assert "Traceback" not in result.err and "internal error" not in result.err
    (line,) = result.err.splitlines()
    assert line == (
        f"fedora-container-sync: error: {COMPOSE}: work_dir {work_dir} is full while "
        "creating the run directory: No space left on device"
    )
    assert harness.digest(TOOLBOX, "41-x86_64") is None
    assert harness.digest(TOOLBOX, "41") is None


class HoldImages:
    """A proxy rule that holds the first image file request until released, then forwards it."""

    def __init__(self) -> None:
        self.held = threading.Event()
        self.release = threading.Event()

    def __call__(self, request: ProxyRequest) -> None:
        if not self.held.is_set() and "/images/" in request.path:
            self.held.set()
            self.release.wait(120)


def test_a_work_dir_gone_read_only_fails_the_image_in_one_line(
    tmp_path, served_root, compose_server, registry, namespace, capsys
):
    hold = HoldImages()
    with FaultProxy(compose_server.url) as proxy:
        proxy.rule = hold  # type: ignore[assignment]
        harness = Harness(tmp_path, served_root, proxy, [registry], namespace, capsys)  # type: ignore[arg-type]
        body = harness.compose(COMPOSE, arches=("x86_64",))
        work_dir = tmp_path / "work"
        outcome: dict[str, object] = {}
        run = threading.Thread(target=lambda: outcome.update(result=harness.replay(body)))
        run.start()
        downloads = None
        try:
            wait_until(hold.held.is_set, timeout=120, what="the image download")
            # The run is waiting for the image's first byte: its downloads directory turns
            # read-only (a read-only file system mounted over it) before the file is opened.
            (downloads,) = work_dir.glob("*.run/downloads")
            mount_read_only(downloads)
        finally:
            hold.release.set()
            run.join(300)
            if downloads is not None:
                unmount(downloads)
    result = outcome["result"]

    assert result.code == 1, result.err  # type: ignore[attr-defined]
    err = result.err  # type: ignore[attr-defined]
    assert "Traceback" not in err and "internal error" not in err
    (line,) = [line for line in err.splitlines() if ": ERROR: " in line]
    assert line.endswith(
        f"work_dir {work_dir}: cannot write while downloading: Read-only file system"
    )
    assert "Container/x86_64/images/" in line  # the image, named once
    assert harness.digest(TOOLBOX, "41-x86_64") is None
    assert harness.digest(TOOLBOX, "41") is None
