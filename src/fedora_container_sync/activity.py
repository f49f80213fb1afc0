"""Signs that the work in progress moves bytes, for ``/live`` (:mod:`.bus.health`).

A step of a run can take hours without finishing (a 2 GiB image at the accepted minimum rate
takes about 8500 s to download), so finished steps alone cannot tell a slow run from a stuck
one. Bytes can:

* :func:`moved`: a download received bytes (called after each chunk; one addition);
  :func:`moves` counts the calls, so a reader sees whether any came since it last looked.
* :func:`io_of`: the bytes each running skopeo has read and written so far, from
  ``/proc/<pid>/io`` (``rchar`` + ``wchar``: its reads of the image and its writes to the
  registry connection); a process whose counters do not move is doing nothing.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

_moves = 0


def moved() -> None:
    """Bytes moved just now (a download's chunk arrived)."""
    global _moves
    _moves += 1  # a lost update under a race is one sign of life fewer, no more


def moves() -> int:
    """How often :func:`moved` was called so far."""
    return _moves


def io_of(pids: Iterable[int], proc: Path = Path("/proc")) -> dict[int, int]:
    """Bytes each of ``pids`` has read and written so far; a process whose counters cannot be
    read (gone, or not ours to read) is left out."""
    found = {}
    for pid in pids:
        try:
            text = (proc / str(pid) / "io").read_text()
        except (OSError, UnicodeDecodeError):
            continue
        counters = dict(line.split(":", 1) for line in text.splitlines() if ":" in line)
        try:
            found[pid] = int(counters["rchar"]) + int(counters["wchar"])
        except (KeyError, ValueError):
            continue
    return found
