"""After kill -9 of a process that runs skopeo, its children die with it (PR_SET_PDEATHSIG), and
the sweep removes run directories that orphans recreated without their lock file.

The child here is a real process started exactly as skopeo is (``skopeo._children.start``):
``sleep``, so that it would outlive its parent by a minute if nothing ended it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from fedora_container_sync.publish.workdir import UNLOCKED_GRACE, sweep_stale_runs

pytestmark = pytest.mark.integration

PARENT = """
import sys, time
from fedora_container_sync.registry import skopeo
child = skopeo._children.start(["sleep", "60"], {"PATH": "/usr/bin:/bin"})
print(child.pid, flush=True)
time.sleep(60)
"""


def alive(pid: int) -> bool:
    """Running, and not a zombie waiting for whoever reaps orphans."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state not in ("Z", "X")


def test_children_die_when_their_parent_is_killed():
    with subprocess.Popen(
        [sys.executable, "-c", PARENT], stdout=subprocess.PIPE, text=True
    ) as parent:
        assert parent.stdout is not None
        child = int(parent.stdout.readline())
        try:
            assert alive(child)
            parent.send_signal(signal.SIGKILL)
            parent.wait(timeout=10)
            deadline = time.monotonic() + 10
            while alive(child) and time.monotonic() < deadline:
                time.sleep(0.05)
            assert not alive(child), "the child outlived its parent's kill -9"
        finally:
            if alive(child):
                os.kill(child, signal.SIGKILL)


def test_the_sweep_removes_a_run_directory_an_orphan_left_without_its_lock(tmp_path):
    orphaned = tmp_path / "Fedora-41-20241025.0.abc123.run"
    (orphaned / "tmp").mkdir(parents=True)
    (orphaned / "tmp" / "blob").write_bytes(b"x" * 10)
    starting = tmp_path / "Fedora-41-20241026.0.def456.run"
    starting.mkdir()
    now = orphaned.lstat().st_mtime
    sweep_stale_runs(tmp_path, now=now + 1)
    assert orphaned.exists() and starting.exists()  # young: a run may be creating its lock
    sweep_stale_runs(tmp_path, now=now + UNLOCKED_GRACE + 1)
    assert not orphaned.exists() and not starting.exists()


def test_a_live_run_is_never_swept(tmp_path):
    from fedora_container_sync.publish.workdir import run_directory

    with run_directory(tmp_path, "Fedora-41-20241025.0") as live:
        sweep_stale_runs(tmp_path, now=time.time() + 10 * UNLOCKED_GRACE)
        assert live.exists()
