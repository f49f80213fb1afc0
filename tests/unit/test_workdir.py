import errno
import os
import stat
from pathlib import Path

import pytest

from fedora_container_sync.errors import TransientError, WorkDirError, WorkDirFull
from fedora_container_sync.publish.workdir import run_directory, sweep_stale_runs, work_dir_error


def test_run_directory_is_private_and_removed(tmp_path):
    with run_directory(tmp_path, "Fedora-41-20241025.0") as path:
        assert path.parent == tmp_path
        assert path.name.startswith("Fedora-41-20241025.0.")
        assert stat.S_IMODE(path.stat().st_mode) == 0o700
        (path / "file").write_text("x")
    assert not path.exists()


def test_live_runs_are_kept_and_dead_ones_swept(tmp_path):
    with run_directory(tmp_path, "a") as live:
        # A run killed with -9: its directory and lock file remain, nobody holds the lock.
        with run_directory(tmp_path, "b") as dead:
            pass
        dead.mkdir()
        (dead / ".lock").write_text("")
        (dead / "leftover.tar").write_text("x")
        unrelated = tmp_path / "not-a-run"
        unrelated.mkdir()
        sweep_stale_runs(tmp_path)
        assert live.exists()
        assert not dead.exists()
        assert unrelated.exists()


def test_two_runs_of_one_compose_get_two_directories(tmp_path):
    with run_directory(tmp_path, "c") as first, run_directory(tmp_path, "c") as second:
        assert first != second
        assert first.exists() and second.exists()
    assert os.listdir(tmp_path) == []


def test_a_full_disk_quota_or_size_limit_is_a_full_work_dir():
    import errno

    from fedora_container_sync.publish.workdir import is_full

    for code in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
        assert is_full(OSError(code, os.strerror(code)))
    for code in (errno.EACCES, errno.EIO, errno.EROFS):
        assert not is_full(OSError(code, os.strerror(code)))


@pytest.mark.parametrize(
    ("number", "kind", "words"),
    [
        (errno.ENOSPC, WorkDirFull, " is full while downloading: No space left on device"),
        (errno.EDQUOT, WorkDirFull, " is full while downloading: Disk quota exceeded"),
        (errno.EFBIG, WorkDirFull, " is full while downloading: File too large"),
        (errno.EROFS, WorkDirError, ": cannot write while downloading: Read-only file system"),
        (errno.EIO, WorkDirError, ": cannot write while downloading: Input/output error"),
    ],
)
def test_a_failed_write_is_one_transient_line_naming_the_work_dir(number, kind, words):
    error = OSError(number, os.strerror(number), "/var/lib/x/run.123/downloads/abc.tar.part")
    found = work_dir_error(error, Path("/var/lib/x"), "downloading", about="C-1: f.tar.xz: ")
    assert type(found) is kind
    assert isinstance(found, TransientError)  # the machine, not the compose: requeue
    assert str(found) == "C-1: f.tar.xz: work_dir /var/lib/x" + words
