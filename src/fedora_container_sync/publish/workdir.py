"""Per-run work directories under ``work_dir`` (filesystem only).

Every run gets a private directory (mode 0700: auth files live there while skopeo runs) that
it holds an exclusive ``flock`` on for its lifetime. A run killed mid-way (kill -9, power
loss) loses its lock with its process, so the next run removes what it left behind; a run that
is still going keeps its lock and is never disturbed. A run directory without its lock file
(recreated by a child that outlived its run, before children died with their parent) is
removed too, once it is older than :data:`UNLOCKED_GRACE` (a new run creates its lock file
right after its directory).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import os
import re
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from ..errors import WorkDirError, WorkDirFull

_log = logging.getLogger(__name__)

#: What a write into a full work dir fails with: no space, no quota left, a file size limit.
_FULL = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})

_LOCK = ".lock"
_SUFFIX = ".run"
#: Seconds a run directory may be without its lock file before the sweep removes it.
UNLOCKED_GRACE = 60.0


@contextlib.contextmanager
def run_directory(work_dir: Path, name: str) -> Iterator[Path]:
    """A fresh, locked, private directory for one run; removed when the run ends."""
    sweep_stale_runs(work_dir)
    path: Path | None = None
    try:
        path = Path(tempfile.mkdtemp(prefix=f"{safe_name(name)}.", suffix=_SUFFIX, dir=work_dir))
        descriptor = os.open(path / _LOCK, os.O_CREAT | os.O_RDWR, 0o600)
    except OSError as error:
        if path is not None:
            shutil.rmtree(path, ignore_errors=True)
        raise work_dir_error(
            error, work_dir, "creating the run directory", about=f"{name}: "
        ) from None
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX)
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)
        os.close(descriptor)


def sweep_stale_runs(work_dir: Path, *, now: float | None = None) -> None:
    """Remove run directories whose process is gone (their lock is free), and those without
    a lock file older than :data:`UNLOCKED_GRACE`."""
    try:
        candidates = [p for p in work_dir.iterdir() if p.name.endswith(_SUFFIX) and p.is_dir()]
    except OSError:
        return
    for path in candidates:
        try:
            descriptor = os.open(path / _LOCK, os.O_RDWR)
        except FileNotFoundError:
            _sweep_unlocked(path, time.time() if now is None else now)
            continue
        except OSError:
            continue
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(descriptor)
            continue  # a live run holds it
        try:
            _log.info("removing %s, left behind by an interrupted run", path)
            shutil.rmtree(path, ignore_errors=True)
        finally:
            os.close(descriptor)


def _sweep_unlocked(path: Path, now: float) -> None:
    """A run directory with no lock file: being created right now (young), or left by an
    orphaned child that recreated it after its run was swept (old: remove it)."""
    try:
        age = now - path.lstat().st_mtime
    except OSError:
        return
    if age > UNLOCKED_GRACE:
        _log.info("removing %s, without a lock file for %.0fs (left by an orphan)", path, age)
        shutil.rmtree(path, ignore_errors=True)


def safe_name(value: str) -> str:
    """``value`` as a single, harmless file name component."""
    return re.sub(r"[^A-Za-z0-9._-]", "_", value)


def is_full(error: OSError) -> bool:
    """Did a write fail because the file system (or a quota or size limit) is full?"""
    return error.errno in _FULL


def work_dir_error(error: OSError, work_dir: Path, doing: str, *, about: str) -> WorkDirError:
    """Our error for a failed write into ``work_dir`` while ``doing`` something: one line,
    starting with ``about`` (the compose, the image)."""
    reason = error.strerror or str(error)
    if is_full(error):
        return WorkDirFull(f"{about}work_dir {work_dir} is full while {doing}: {reason}")
    return WorkDirError(f"{about}work_dir {work_dir}: cannot write while {doing}: {reason}")
