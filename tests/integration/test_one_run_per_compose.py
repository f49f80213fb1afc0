"""One run of a compose at a time: a replay of a compose another run is publishing says so in
one line and waits for it, then finds the work done (nothing pushed twice, nothing announced
twice). The other run is this test, holding the compose's lock in the work dir."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time

import pytest

from fedora_container_sync.publish.composelock import compose_lock, lock_path

pytestmark = pytest.mark.integration

CID = "Fedora-41-20241025.0"


def test_a_second_run_of_a_compose_waits_for_the_first(harness):
    body = harness.compose(CID, arches=("x86_64", "aarch64"))
    config, messages = harness.config(), harness.message_file(body)
    work = harness.tmp / "work"
    work.mkdir()
    held = threading.Event()
    release = threading.Event()

    def first_run() -> None:
        with compose_lock(work, CID):
            held.set()
            release.wait(timeout=120)

    holder = threading.Thread(target=first_run)
    holder.start()
    assert held.wait(timeout=10)
    argv = [sys.executable, "-m", "fedora_container_sync", "replay", "--config", str(config)]
    process = subprocess.Popen(
        [*argv, str(messages)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        assert process.stderr is not None
        line = process.stderr.readline()
        assert line == (
            f"fedora-container-sync: WARNING: compose {CID}: another run is publishing it "
            f"(pid {os.getpid()}); waiting for it to end\n"
        )
        time.sleep(0.5)
        assert process.poll() is None  # still waiting
        assert harness.digest("fedora-toolbox", "41-x86_64") is None  # and nothing pushed
    finally:
        release.set()
        holder.join()
    out, err = process.communicate(timeout=120)
    assert process.returncode == 0, err
    assert f"compose {CID}: the other run ended; going on" in err
    assert harness.arches("fedora-toolbox", "41") == {"x86_64", "aarch64"}
    assert not lock_path(work, CID).exists()  # the lock goes with the run
    assert "result: OK" in out


def test_the_lock_is_taken_again_after_its_file_was_removed(tmp_path):
    """A waiter woken by a run that removed the file locks a fresh one, never a removed one."""
    order: list[str] = []
    inside = threading.Event()

    def other() -> None:
        with compose_lock(tmp_path, CID):
            order.append("other in")
            inside.set()
            time.sleep(0.3)
            order.append("other out")

    thread = threading.Thread(target=other)
    thread.start()
    assert inside.wait(timeout=10)
    with compose_lock(tmp_path, CID):
        order.append("this in")
        assert lock_path(tmp_path, CID).exists()
    thread.join()
    assert order == ["other in", "other out", "this in"]
    assert list(tmp_path.iterdir()) == []
