"""What the registries serve, as the audit reads it; which tags it looks at; how old a compose
is. Pure.

A *build* is the compose ID plus the sha256 of the compose's image file, as the annotations
this project writes record them. Two manifests with different digests but the same build are
the same content. Without those annotations the digest is the only identity.

Ages are counted from compose dates, because a registry keeps no time for a tag: the date in
a compose ID (``Fedora-41-20241025.0``) is the UTC day the compose was made, so the age of a
finding is the time since midnight UTC of that day - exact to the day, never younger than the
truth.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime

from ..config.settings import Releases
from ..gate.ordering import date_type_respin
from ..gate.tags import LATEST, RAWHIDE
from ..oci.index import UnknownEntry, read_index
from ..oci.manifest import COMPOSE_ID, IMAGE_SHA256, Manifest
from ..oci.platforms import FEDORA_PLATFORMS, arch_sort_key
from ..signing.status import Checked

# -- what a registry serves ------------------------------------------------------------------


@dataclass(frozen=True)
class Build:
    """What a per-arch tag or an index entry points at."""

    digest: str
    compose_id: str | None = None
    image_sha256: str | None = None

    def same_as(self, other: Build) -> bool:
        """Same content: the same bytes, or the same image file of the same compose."""
        if self.digest == other.digest:
            return True
        if self.compose_id and self.image_sha256 and other.compose_id and other.image_sha256:
            return (self.compose_id, self.image_sha256) == (other.compose_id, other.image_sha256)
        return False

    @property
    def label(self) -> str:
        return self.compose_id or _short(self.digest)


@dataclass(frozen=True)
class IndexState:
    """What an index tag points at: the index's compose, one build per Fedora arch, and the
    entries that cannot be read (never left out)."""

    digest: str
    compose_id: str | None
    entries: Mapping[str, Build]
    unknown: tuple[UnknownEntry, ...] = ()

    def same_as(self, other: IndexState) -> bool:
        if self.digest == other.digest:
            return True
        if self.unknown or other.unknown:
            return False  # nothing to compare them by
        return self.entries.keys() == other.entries.keys() and all(
            build.same_as(other.entries[arch]) for arch, build in self.entries.items()
        )

    @property
    def label(self) -> str:
        return self.compose_id or _short(self.digest)


Content = Build | IndexState


@dataclass(frozen=True)
class RepositoryState:
    """One repository in one registry: its tag list and the content of the tags audited."""

    registry: str
    repository: str
    tags: frozenset[str]
    contents: Mapping[str, Content] = field(default_factory=dict)
    #: The signatures stored for each digest the audited tags serve, checked with the
    #: configured ``public_key`` (None: not read, no ``public_key`` configured).
    signatures: Mapping[str, tuple[Checked, ...]] | None = None

    def content(self, tag: str) -> Content | None:
        return self.contents.get(tag) if tag in self.tags else None

    @property
    def name(self) -> str:
        return f"{self.registry}/{self.repository}"


@dataclass(frozen=True)
class ReadFailure:
    """A registry (``repository`` None) or one repository in it that could not be read."""

    registry: str
    repository: str | None
    error: str

    @property
    def name(self) -> str:
        return f"{self.registry}/{self.repository}" if self.repository else self.registry


def build_of(manifest: Manifest) -> Build:
    """The build an image manifest records in its annotations (only its digest otherwise)."""
    annotations = manifest.annotations if manifest.is_image else {}
    return Build(manifest.digest, annotations.get(COMPOSE_ID), annotations.get(IMAGE_SHA256))


def index_of(manifest: Manifest, *, single_arch: str | UnknownEntry | None = None) -> IndexState:
    """What an index tag serves, read as the gate reads it. A single image at an index tag
    counts as a one-entry index for ``single_arch`` (the arch of its config, or why it has
    none)."""
    if not manifest.is_index:
        build = build_of(manifest)
        if isinstance(single_arch, UnknownEntry):
            return IndexState(manifest.digest, build.compose_id, {}, (single_arch,))
        entries = {single_arch: build} if single_arch else {}
        return IndexState(manifest.digest, build.compose_id, entries)
    content = read_index(manifest)
    entries = {
        arch: Build(
            entry.digest, entry.annotations.get(COMPOSE_ID), entry.annotations.get(IMAGE_SHA256)
        )
        for arch, entry in content.images.items()
    }
    compose_id = manifest.annotations.get(COMPOSE_ID)
    return IndexState(manifest.digest, compose_id, entries, content.unknown)


# -- which tags ------------------------------------------------------------------------------

RELEASE_TAG = re.compile(r"^[1-9][0-9]*$")
ARCH_TAG = re.compile(r"^(?P<release>[1-9][0-9]*)-(?P<arch>[a-z0-9_]+)$")


@dataclass(frozen=True)
class IndexTag:
    """An index tag and the release whose per-arch tags it should list (None: unknown)."""

    tag: str
    release: int | None


def index_tags(tags: Iterable[str], releases: Releases) -> list[IndexTag]:
    """The index tags the configuration implies for a repository with ``tags``.

    Every release ``N`` with an index tag ``N`` or a per-arch tag ``N-<arch>``, then ``latest``
    and ``rawhide`` when configured in ``releases`` (or present without a configured release:
    then only compared across registries).
    """
    present = set(tags)
    numbers = {int(tag) for tag in present if RELEASE_TAG.match(tag)}
    numbers |= {int(release) for release, _arch in _arch_tags(present)}
    found = [IndexTag(str(number), number) for number in sorted(numbers)]
    for name, release in ((LATEST, releases.latest), (RAWHIDE, releases.rawhide)):
        if release is not None or name in present:
            found.append(IndexTag(name, release))
    return found


def arch_tags(tags: Iterable[str], release: int) -> dict[str, str]:
    """Fedora arch → per-arch tag ``<release>-<arch>`` present in ``tags``."""
    return {arch: f"{number}-{arch}" for number, arch in _arch_tags(tags) if number == str(release)}


def tags_to_read(tags: Iterable[str], releases: Releases) -> list[str]:
    """The tags whose manifests the audit needs: implied index tags and per-arch tags."""
    present = set(tags)
    wanted = [t.tag for t in index_tags(present, releases) if t.tag in present]
    wanted += sorted(f"{number}-{arch}" for number, arch in _arch_tags(present))
    return wanted


def _arch_tags(tags: Iterable[str]) -> list[tuple[str, str]]:
    found = []
    for tag in tags:
        match = ARCH_TAG.match(tag)
        if match and match["arch"] in FEDORA_PLATFORMS:
            found.append((match["release"], match["arch"]))
    return found


def arch_of(tag: str) -> str | None:
    """The Fedora arch of a per-arch tag (``41-aarch64``), else None."""
    match = ARCH_TAG.match(tag)
    return match["arch"] if match and match["arch"] in FEDORA_PLATFORMS else None


def tag_order(tag: str) -> tuple[int, int, str, tuple[int, str]]:
    """Releases in numeric order, each index tag before its per-arch tags; latest, rawhide last."""
    match = ARCH_TAG.match(tag)
    if match:
        return (0, int(match["release"]), "", arch_sort_key(match["arch"]))
    if RELEASE_TAG.match(tag):
        return (0, int(tag), "", (-1, ""))
    return (1, 0, tag, (-1, ""))


# -- ages ------------------------------------------------------------------------------------


def compose_date(compose_id: str | None) -> date | None:
    """The day in a compose ID (``Fedora-41-20241025.n.0`` → 2024-10-25), if it has one."""
    parsed = date_type_respin(compose_id)
    if parsed is None:
        return None
    day, _type, _respin = parsed
    try:
        return datetime.strptime(day, "%Y%m%d").replace(tzinfo=UTC).date()
    except ValueError:
        return None


def compose_order(compose_id: str | None) -> tuple[int, str, int]:
    """Sort key: later composes are greater; a compose ID without a date sorts first."""
    parsed = date_type_respin(compose_id)
    if parsed is None:
        return (0, "", 0)
    day, _type, respin = parsed
    return (1, day, respin)


def age_hours(since: date | None, now: datetime) -> int | None:
    """Whole hours from midnight UTC of ``since`` to ``now`` (never negative)."""
    if since is None:
        return None
    start = datetime(since.year, since.month, since.day, tzinfo=UTC)
    return max(0, int((now - start).total_seconds() // 3600))


def _short(digest: str) -> str:
    return digest[:19]
