"""Real small file systems (tmpfs) for tests of a work dir that fills up or turns read-only."""

from __future__ import annotations

import contextlib
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest


@contextlib.contextmanager
def small_file_system(path: Path, size: str, *, options: str = "") -> Iterator[Path]:
    """A tmpfs of ``size`` (and further mount ``options``, e.g. ``nr_inodes=2``) mounted at
    ``path`` (needs root, or CAP_SYS_ADMIN); skips the test where nothing can be mounted."""
    path.mkdir()
    flags = ",".join(part for part in (f"size={size}", "mode=0700", options) if part)
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", flags, "tmpfs", str(path)],
        capture_output=True,
        text=True,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.skip(
            "a full or read-only disk is tested on a small tmpfs, and this machine cannot "
            "mount one: " + (mounted.stderr.strip() or f"mount exited {mounted.returncode}")
        )
    try:
        yield path
    finally:
        unmount(path)


def mount_read_only(path: Path) -> None:
    """Mount a read-only tmpfs over the existing directory ``path`` (undo with
    :func:`unmount`); skips the test where nothing can be mounted."""
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(path)],
        capture_output=True,
        text=True,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.skip("cannot mount a read-only tmpfs here: " + mounted.stderr.strip())


def unmount(path: Path) -> None:
    subprocess.run(["umount", "--lazy", str(path)], check=False)
