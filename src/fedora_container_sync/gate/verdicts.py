"""The manifest gate and the rollback guard: may this compose move a tag? Pure.

For an index tag (``41``, ``latest``, ``rawhide``) the gate compares what the registry serves
now with what this compose published, under one of three policies (cloud-image-uploader
issue 16 weighed them):

* ``strict`` (upstream's choice): publish only when every arch the tag serves now is in the
  compose; otherwise hold the tag.
* ``carry-forward`` (the "hybrid manifest"): the new index takes this compose's builds and
  keeps the current entry (same digest) of every arch the compose lacks.
* expected arches (``expected_arches`` set for the repository): the configured list is the
  authority, not the registry. Hold when an expected arch is missing, also for a new tag;
  leave out every arch not listed (retiring an arch is a config change).

``allow_drop`` (``replay --allow-drop ARCH``) lets an operator drop an arch once on purpose.

Before any of that, the rollback guard: a compose never moves a tag - index or per-arch -
that holds content from a newer compose of the same release (see :mod:`.ordering`), unless
forced. The registry is the record: index and entry annotations and the per-arch OCI
manifests' annotations name the compose. A tag with no such annotation was not written by
this project; there is nothing to compare, and it moves.

Fail closed on what a tag serves: every entry of its index is an image of a Fedora arch, a
positive (buildkit) attestation, or an entry the gate cannot read - and the last holds the
tag under every policy (:func:`.oci.index.read_index`). The index written is OCI and lists
only OCI image manifests: a Docker schema2 entry is never carried into it.
"""

from __future__ import annotations

from collections.abc import Mapping, Set
from dataclasses import dataclass, field, replace
from enum import StrEnum

from ..oci import mediatype
from ..oci.index import (
    IndexEntry,
    UnknownEntry,
    build_index,
    describe_unknown,
    entry_of,
    read_index,
)
from ..oci.manifest import COMPOSE_ID, IMAGE_SHA256, Manifest, digest_of
from ..oci.platforms import sorted_arches
from .ordering import is_newer, newest

STRICT = "strict"
CARRY_FORWARD = "carry-forward"
POLICIES = (STRICT, CARRY_FORWARD)


class Verdict(StrEnum):
    PUBLISH = "publish"
    CARRY = "carry"
    RETIRE = "retire"
    UNCHANGED = "unchanged"
    HOLD = "hold"
    STALE = "stale"


#: Verdicts that write the tag.
MOVING = frozenset({Verdict.PUBLISH, Verdict.CARRY, Verdict.RETIRE})


@dataclass(frozen=True)
class CurrentTag:
    """What a tag holds now, read from the registry.

    ``compose_id`` is the index's (or single manifest's) compose annotation; ``entries``
    maps each arch to its entry (one entry for a single-image manifest); ``unknown`` are the
    entries (or the single image) that cannot be read with certainty.
    """

    digest: str
    compose_id: str | None = None
    entries: Mapping[str, IndexEntry] = field(default_factory=dict)
    unknown: tuple[UnknownEntry, ...] = ()

    @classmethod
    def of(cls, found: Manifest, arch: str | UnknownEntry | None = None) -> CurrentTag:
        """What the manifest ``found`` at a tag serves. ``arch`` is the Fedora arch of a single
        image (from its annotations or config), or why it has none; unused for an index."""
        compose_id = found.annotations.get(COMPOSE_ID)
        if found.is_index:
            content = read_index(found)
            entries = {name: entry_of(name, d) for name, d in content.images.items()}
            return cls(found.digest, compose_id, entries, content.unknown)
        if arch is None:
            raise ValueError("a single image needs its arch")
        if isinstance(arch, UnknownEntry):
            return cls(found.digest, compose_id, {}, (arch,))
        sha256 = found.annotations.get(IMAGE_SHA256)
        entry = IndexEntry(
            arch, found.media_type, found.digest, len(found.body), compose_id, sha256
        )
        return cls(found.digest, compose_id, {arch: entry})

    @property
    def arches(self) -> frozenset[str]:
        return frozenset(self.entries)

    @property
    def composes(self) -> set[str]:
        """Every compose the tag's content names (also in entries that cannot be read)."""
        found = {entry.compose_id for entry in self.entries.values() if entry.compose_id}
        found |= {entry.compose_id for entry in self.unknown if entry.compose_id}
        if self.compose_id:
            found.add(self.compose_id)
        return found


@dataclass(frozen=True)
class GateDecision:
    """The verdict for one tag in one registry, with the facts behind it."""

    verdict: Verdict
    current_arches: frozenset[str] | None
    compose_arches: frozenset[str]
    reason: str
    missing: frozenset[str] = frozenset()
    carried: frozenset[str] = frozenset()
    retired: frozenset[str] = frozenset()
    #: The entries of the index to write (empty when the tag does not move, or in a dry run).
    entries: tuple[IndexEntry, ...] = ()
    #: The newer compose the tag holds (stale, or forced over).
    holder: str | None = None
    forced: bool = False
    #: Held only because an arch failed in this run: a consequence of an error already
    #: reported, not a finding of its own.
    after_failure: bool = False

    @property
    def moves_tag(self) -> bool:
        return self.verdict in MOVING

    @property
    def index_arches(self) -> frozenset[str]:
        return frozenset(entry.arch for entry in self.entries)

    def index_body(self, compose_id: str) -> bytes:
        """The exact bytes of the index this decision writes."""
        if not self.entries:
            raise ValueError("this decision writes no index")
        return build_index(self.entries, compose_id=compose_id)


def _names(arches: Set[str]) -> str:
    return ", ".join(sorted_arches(arches))


def guard(current: CurrentTag | None, compose_id: str) -> str | None:
    """The rollback guard: the newer compose of the same release ``current`` holds, if any."""
    if current is None:
        return None
    holder = newest(current.composes, release_of=compose_id)
    return holder if is_newer(holder, compose_id) else None


def held_build(
    current: CurrentTag | None, arch: str, *, image_sha256: str, compose_id: str
) -> IndexEntry | None:
    """The entry of a per-arch tag that already holds this compose's build of ``arch``.

    It does when the tag is a single image whose manifest annotations name this compose and
    the checksum (from images.json) of the very file it was built from. The registry is the
    record: a replay then needs neither that file nor a conversion, and the index entry is
    what the registry holds. None otherwise.
    """
    if current is None or current.compose_id != compose_id or len(current.entries) != 1:
        return None
    entry = current.entries.get(arch)
    if entry is None or entry.digest != current.digest or current.unknown:
        return None
    if entry.media_type != mediatype.OCI_MANIFEST:  # not what this project pushes
        return None
    if entry.compose_id != compose_id or entry.image_sha256 != image_sha256:
        return None
    return entry


def decide_arch_tag(
    current: CurrentTag | None,
    arch: str,
    new_digest: str | None,
    *,
    compose_id: str,
    force: bool = False,
) -> GateDecision:
    """May this compose's ``arch`` image move its per-arch tag (``41-x86_64``)?

    Per-arch tags are not gated on arches (upstream's rule: each moves when its own build
    succeeded); only the rollback guard applies. ``new_digest`` is None in a dry run.
    """
    arches = frozenset(current.arches) if current else None
    compose = frozenset({arch})
    if current is not None and new_digest is not None and current.digest == new_digest:
        return GateDecision(Verdict.UNCHANGED, arches, compose, "already holds this build")
    holder = guard(current, compose_id)
    if holder and not force:
        return GateDecision(
            Verdict.STALE,
            arches,
            compose,
            f"holds {holder}, newer than this compose",
            holder=holder,
        )
    if holder:
        reason = f"--force: replaces {holder}, newer than this compose"
        return GateDecision(Verdict.PUBLISH, arches, compose, reason, holder=holder, forced=True)
    if current is None:
        return GateDecision(Verdict.PUBLISH, arches, compose, "new tag")
    if current.compose_id is None:
        return GateDecision(
            Verdict.PUBLISH, arches, compose, "replaces an image this tool did not write"
        )
    return GateDecision(Verdict.PUBLISH, arches, compose, f"replaces {current.compose_id}")


def decide(
    current: CurrentTag | None,
    compose: Mapping[str, IndexEntry | None],
    *,
    compose_id: str,
    policy: str = STRICT,
    expected: Set[str] | None = None,
    failed: Set[str] = frozenset(),
    stale: Mapping[str, str] | None = None,
    allow_drop: Set[str] = frozenset(),
    force: bool = False,
) -> GateDecision:
    """Decide for one index tag in one registry.

    ``current`` is None when the tag does not exist. ``compose`` maps every arch this compose
    published to the registry to its entry (None in a dry run, where nothing was built).
    ``failed`` are arches the compose has but this run failed to download, verify or push: an
    index is never written without them, even for a new tag. ``stale`` maps arches whose
    per-arch tag the guard kept (it holds a newer compose) to that compose. ``expected`` is
    the repository's ``expected_arches``, if configured.
    """
    if policy not in POLICIES:
        raise ValueError(f"unknown gate policy {policy!r}")
    published = frozenset(compose)
    current_arches = None if current is None else current.arches

    def verdict(
        kind: Verdict,
        reason: str,
        *,
        missing: frozenset[str] = frozenset(),
        holder: str | None = None,
    ) -> GateDecision:
        return GateDecision(kind, current_arches, published, reason, missing, holder=holder)

    # 1. The rollback guard, for the index itself and for the images it would list.
    holder = guard(current, compose_id)
    if holder and not force:
        return verdict(Verdict.STALE, f"holds {holder}, newer than this compose", holder=holder)
    if stale and not force:
        arch, newer = min(stale.items(), key=lambda item: sorted_arches([item[0]]))
        return verdict(
            Verdict.STALE,
            f"the {arch} image tag holds {newer}, newer than this compose",
            holder=newer,
        )

    # 2. What the tag serves must be readable: an entry the gate cannot map to a Fedora arch
    #    (and that is no attestation) holds the tag under every policy.
    if current is not None and current.unknown:
        reason = f"{describe_unknown(current.unknown)}; the tag stays until that is fixed by hand"
        return verdict(Verdict.HOLD, reason)

    # 3. This run's own failures.
    failures = frozenset(failed) - published
    if failures:
        reason = f"publishing {_names(failures)} failed in this run"
        return replace(verdict(Verdict.HOLD, reason, missing=failures), after_failure=True)
    if not published:
        return verdict(
            Verdict.HOLD, "no arch of this image published", missing=current_arches or frozenset()
        )

    # 4. The policy: which arches the new index lists, and where each comes from.
    dropping = frozenset(allow_drop)
    carried: frozenset[str] = frozenset()
    if expected is not None:
        wanted = frozenset(expected)
        lacking = wanted - published - dropping
        if lacking:
            return verdict(
                Verdict.HOLD,
                f"compose lacks {_names(lacking)}, which expected_arches lists",
                missing=lacking,
            )
        from_compose = published & wanted
    elif current is None:
        from_compose = published
    else:
        lacking = current.arches - published - dropping
        if lacking and policy == STRICT:
            return verdict(
                Verdict.HOLD,
                f"compose lacks {_names(lacking)}, which the tag serves now",
                missing=lacking,
            )
        from_compose = published
        carried = lacking
    if not from_compose:
        return verdict(
            Verdict.HOLD,
            "the index would list no arch (none of expected_arches published)",
            missing=frozenset(expected or ()) - published,
        )
    retired = (current.arches - from_compose - carried) if current else frozenset()

    # 5. The new index is OCI: it never mixes in a Docker schema2 image carried from the old one.
    unfit = frozenset(
        arch
        for arch in carried
        if current is not None and current.entries[arch].media_type != mediatype.OCI_MANIFEST
    )
    if unfit:
        images = "image" if len(unfit) == 1 else "images"
        return verdict(
            Verdict.HOLD,
            f"cannot carry the schema2 {_names(unfit)} {images} into an OCI index "
            "(it would mix Docker and OCI manifests)",
            missing=unfit,
        )

    # 6. The verdict and its reason.
    outside = frozenset(a for a in retired if expected is not None and a not in expected)
    by_operator = retired - outside
    parts: list[str] = []
    if carried and current is not None:
        sources = ", ".join(
            f"{arch} from {current.entries[arch].compose_id or 'an index this tool did not write'}"
            for arch in sorted_arches(carried)
        )
        parts.append(f"compose lacks {_names(carried)}; keeps {sources}")
    if outside:
        parts.append(f"drops {_names(outside)} (not in expected_arches)")
    if by_operator:
        parts.append(f"drops {_names(by_operator)} (--allow-drop)")
    if not parts:
        parts.append("new tag" if current is None else "all current arches present")
    if current is not None and from_compose - current.arches:
        parts.append(f"adds {_names(from_compose - current.arches)}")
    left_out = published - from_compose - retired
    if left_out:
        parts.append(f"leaves out {_names(left_out)} (not in expected_arches)")
    if expected is not None and (frozenset(expected) - published) - retired:
        parts.append(
            f"without {_names((frozenset(expected) - published) - retired)} (--allow-drop)"
        )
    if holder:
        parts.append(f"--force: replaces {holder}, newer than this compose")
    elif stale:
        parts.append("--force: image tags held newer composes")
    kind = Verdict.CARRY if carried else Verdict.RETIRE if retired else Verdict.PUBLISH
    reason = "; ".join(parts)

    # 7. The index to write; the same bytes as now means nothing to do.
    entries: tuple[IndexEntry, ...] = ()
    chosen = [compose[arch] for arch in sorted_arches(from_compose)]
    if all(entry is not None for entry in chosen):
        kept = [current.entries[arch] for arch in carried] if current else []
        entries = (*(entry for entry in chosen if entry is not None), *kept)
        if current is not None and digest_of(build_index(entries, compose_id=compose_id)) == (
            current.digest
        ):
            return verdict(Verdict.UNCHANGED, "already published")
    return GateDecision(
        kind,
        current_arches,
        published,
        reason,
        carried=carried,
        retired=retired,
        entries=entries,
        holder=holder,
        forced=bool(holder or stale),
    )
