"""What one run's signing did, counted once per signature: written, or found already there.

Each (registry, repository, digest, identity) counts once however often it is asked for (a tag
gated again after a lost race asks again). Workers add to it; the run's report reads it.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable

#: One signature: registry, repository, digest, identity.
Key = tuple[str, str, str, str]


class Tally:
    """The signatures one run wrote, and those it found valid already (a free replay)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._written: set[Key] = set()
        self._present: set[Key] = set()

    def add(
        self,
        registry: str,
        repository: str,
        *,
        written: Iterable[tuple[str, str]] = (),
        present: Iterable[tuple[str, str]] = (),
    ) -> None:
        """Record (digest, identity) pairs written, and found valid before any write."""
        with self._lock:
            self._written.update((registry, repository, d, i) for d, i in written)
            self._present.update((registry, repository, d, i) for d, i in present)

    @property
    def written(self) -> int:
        with self._lock:
            return len(self._written)

    @property
    def present(self) -> int:
        """Found valid and not written by this run."""
        with self._lock:
            return len(self._present - self._written)
