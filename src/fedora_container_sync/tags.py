"""Which tags a compose's images go under. Pure.

Release N → index tags ``N`` (+ ``latest`` when N is the current stable release) and per-arch
tags ``N-<arch>``; Rawhide → ``<rawhide number>`` and ``rawhide``.
"""

from __future__ import annotations

from dataclasses import dataclass

from .errors import ComposeError
from .settings import Releases

RAWHIDE = "rawhide"
LATEST = "latest"


@dataclass(frozen=True)
class ReleaseTags:
    """The tags one compose publishes to, in every repository."""

    release: int
    index_tags: tuple[str, ...]

    def arch_tag(self, arch: str) -> str:
        return f"{self.release}-{arch}"


def tags_for(release_version: str, releases: Releases, *, compose_id: str) -> ReleaseTags:
    """Tags for a compose of ``release_version`` ("41", "Rawhide", ...)."""
    if release_version.isdigit():
        release = int(release_version)
        extra = (LATEST,) if releases.latest == release else ()
        return ReleaseTags(release, (str(release), *extra))
    if release_version.lower() == RAWHIDE:
        if releases.rawhide is None:
            raise ComposeError(
                f"{compose_id}: a Rawhide compose, but releases.rawhide is not configured"
            )
        return ReleaseTags(releases.rawhide, (str(releases.rawhide), RAWHIDE))
    raise ComposeError(
        f"{compose_id}: release_version {release_version!r} is neither a number nor Rawhide"
    )
