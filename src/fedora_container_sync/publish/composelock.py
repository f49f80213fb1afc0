"""One run per compose at a time, per work dir (filesystem only).

Two runs of the same compose at once (a manual replay while the consumer handles the message,
two replays) would both download, convert and push everything, and both announce the moves. A
run holds an exclusive ``flock`` on ``<work_dir>/<compose id>.lock`` for its lifetime; a second
run of that compose says so in one line and waits for the first to end, then goes on (finding
the tags already moved: nothing to push, nothing to announce). The lock dies with its process,
kill -9 included; the file goes with the run that held it last.

Removing a lock file while another process waits on it is safe: a waiter that gets the lock
checks that the path still names the file it locked, and starts over when it does not.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
from collections.abc import Iterator
from pathlib import Path

from .workdir import safe_name, work_dir_error

_log = logging.getLogger(__name__)

_SUFFIX = ".lock"


def lock_path(work_dir: Path, compose_id: str) -> Path:
    return work_dir / f"{safe_name(compose_id)}{_SUFFIX}"


@contextlib.contextmanager
def compose_lock(work_dir: Path, compose_id: str) -> Iterator[None]:
    """Hold the compose's lock for the ``with`` block; wait (saying so once) while another
    run holds it."""
    path = lock_path(work_dir, compose_id)
    said = False
    while True:
        try:
            descriptor = os.open(path, os.O_CREAT | os.O_RDWR, 0o600)
        except OSError as error:
            raise work_dir_error(
                error, work_dir, "locking the compose", about=f"compose {compose_id}: "
            ) from None
        try:
            try:
                fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                if not said:
                    _log.warning(
                        "compose %s: another run is publishing it (%s); waiting for it to end",
                        compose_id,
                        _holder(descriptor),
                    )
                    said = True
                fcntl.flock(descriptor, fcntl.LOCK_EX)
            if not _same_file(descriptor, path):
                os.close(descriptor)
                continue  # removed by the run that held it: lock the new one
        except BaseException:
            os.close(descriptor)
            raise
        break
    try:
        if said:
            _log.warning("compose %s: the other run ended; going on", compose_id)
        with contextlib.suppress(OSError):
            os.ftruncate(descriptor, 0)
            os.pwrite(descriptor, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        with contextlib.suppress(OSError):
            os.unlink(path)  # still ours: only the holder removes it
        os.close(descriptor)


def _same_file(descriptor: int, path: Path) -> bool:
    try:
        named = os.stat(path)
    except OSError:
        return False
    held = os.fstat(descriptor)
    return (named.st_dev, named.st_ino) == (held.st_dev, held.st_ino)


def _holder(descriptor: int) -> str:
    """``pid N``, from what the holder wrote into the lock file (``pid unknown`` if nothing)."""
    try:
        text = os.pread(descriptor, 32, 0).decode("ascii", "replace").strip()
    except OSError:
        text = ""
    return f"pid {text}" if text.isdigit() else "pid unknown"
