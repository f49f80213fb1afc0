"""Image indexes as plain data: reading every entry of one with certainty, and writing one. Pure.

Reading fails closed: each entry is an image of a Fedora arch, a positive (buildkit)
attestation, or an entry that cannot be read (:class:`UnknownEntry`) - never skipped.

The index this project writes is an OCI image index with one entry per arch, serialized
deterministically (sorted keys, fixed entry order, no timestamps): the same compose always
produces the same bytes and digest, so a replay is a no-op.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from ..errors import RegistryError
from . import mediatype
from .manifest import ARCH, COMPOSE_ID, IMAGE_SHA256, Manifest
from .platforms import FEDORA_PLATFORMS, Platform, arch_sort_key, fedora_arch, platform_for

#: Buildkit's attestation entries (moby/buildkit docs/attestations/attestation-storage.md): an
#: OCI image manifest with platform ``unknown/unknown`` whose reference type is
#: ``attestation-manifest`` and whose reference digest names the image it attests.
REFERENCE_TYPE = "vnd.docker.reference.type"
REFERENCE_DIGEST = "vnd.docker.reference.digest"
ATTESTATION_MANIFEST = "attestation-manifest"

#: The digests an entry may name: OCI's registered algorithms, lowercase hex.
_DIGEST = re.compile(r"^(sha256:[0-9a-f]{64}|sha512:[0-9a-f]{128})$")
#: How many unreadable entries a reason names before it counts the rest.
_NAMED = 3


@dataclass(frozen=True)
class Descriptor:
    """A content descriptor: what an index entry points at."""

    media_type: str
    digest: str
    size: int
    platform: Platform | None = None
    annotations: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class UnknownEntry:
    """Something a tag serves that cannot be read with certainty: an index entry that is
    neither an image of a Fedora arch nor a positive attestation, or a single image whose
    platform has no Fedora arch. It is never skipped: the gate holds the tag over it.

    ``what`` names it (``index entry 2 (sha256:0123456789ab, platform arm64)``), ``problem``
    says why it cannot be read; both are safe to print (foreign text is sanitized).
    """

    what: str
    problem: str
    digest: str | None = None
    compose_id: str | None = None

    def __str__(self) -> str:
        return f"{self.what} {self.problem}"


@dataclass(frozen=True)
class IndexContent:
    """What an index serves, entry by entry: every entry is in exactly one of the three."""

    #: Fedora arch -> the image entry for it
    images: Mapping[str, Descriptor] = field(default_factory=dict)
    #: positive attestations (buildkit's), each of another entry of the same index
    attestations: tuple[Descriptor, ...] = ()
    unknown: tuple[UnknownEntry, ...] = ()


def describe_unknown(unknown: Sequence[UnknownEntry]) -> str:
    """One line naming the first few entries that cannot be read, and how many more."""
    named = "; ".join(str(entry) for entry in unknown[:_NAMED])
    more = len(unknown) - _NAMED
    return named + (f" (and {more} more)" if more > 0 else "")


def read_index(manifest: Manifest) -> IndexContent:
    """Every entry of an index, each read as an image of a Fedora arch, a positive
    attestation, or an entry that cannot be read (fail closed: nothing is skipped).

    An image entry is an OCI or Docker image manifest whose platform is ``linux`` with an
    architecture (and variant) that maps to a Fedora arch, with no other platform field
    set and no artifact type; the second entry for the same arch cannot be read. An
    attestation is buildkit's: an OCI image manifest with platform ``unknown/unknown``,
    reference type ``attestation-manifest`` and a reference digest that is another entry
    of this index. A malformed index as a whole raises :class:`RegistryError`.
    """
    if not manifest.is_index:
        raise RegistryError(f"manifest {manifest.digest} is not an index")
    document = manifest.json()
    declared = document.get("mediaType")
    if declared is not None and declared != manifest.media_type:
        raise RegistryError(
            f"index {manifest.digest} was served as {manifest.media_type} "
            f"but says it is {_shown(declared)}"
        )
    manifests = document.get("manifests")
    if not isinstance(manifests, list):
        raise RegistryError(f"index {manifest.digest} has no manifests list")
    read = [_read_entry(raw, number) for number, raw in enumerate(manifests, 1)]
    # An attestation must name an entry of this index that is not an attestation itmanifest.
    attested = {
        entry.digest if isinstance(entry, UnknownEntry) else entry.descriptor.digest
        for entry in read
        if isinstance(entry, UnknownEntry) or entry.arch is not None
    }
    images: dict[str, Descriptor] = {}
    first: dict[str, int] = {}
    attestations: list[Descriptor] = []
    unknown: list[UnknownEntry] = []
    for entry in read:
        if isinstance(entry, UnknownEntry):
            unknown.append(entry)
        elif entry.arch is None:  # shaped like an attestation
            subject = entry.descriptor.annotations.get(REFERENCE_DIGEST, "")
            if subject in attested:
                attestations.append(entry.descriptor)
            else:
                problem = f"is an attestation of {_short(subject)}, which this index lacks"
                unknown.append(entry.cannot(problem))
        elif entry.arch in images:
            problem = f"is a second {entry.arch} entry (after index entry {first[entry.arch]})"
            unknown.append(entry.cannot(problem))
        else:
            images[entry.arch] = entry.descriptor
            first[entry.arch] = entry.number
    return IndexContent(images, tuple(attestations), tuple(unknown))


@dataclass(frozen=True)
class _Entry:
    """A well-formed index entry: an image of ``arch``, or shaped like an attestation (None)."""

    number: int
    what: str
    descriptor: Descriptor
    arch: str | None

    def cannot(self, problem: str) -> UnknownEntry:
        digest, annotations = self.descriptor.digest, self.descriptor.annotations
        return UnknownEntry(self.what, problem, digest, annotations.get(COMPOSE_ID))


def _read_entry(raw: object, number: int) -> _Entry | UnknownEntry:
    """Read one entry of an index; anything short of certain is an unknown entry."""
    if not isinstance(raw, dict):
        what = f"index entry {number}"
        return UnknownEntry(what, f"is {_kind(raw)}, not an object")
    digest = raw.get("digest")
    valid_digest = digest if isinstance(digest, str) and _DIGEST.match(digest) else None
    platform = raw.get("platform")
    what = (
        f"index entry {number} ({_short(digest) if valid_digest else 'no valid digest'}, "
        f"{_platform_text(platform)})"
    )
    annotations = raw.get("annotations")
    annotations = {} if annotations is None else annotations
    well_formed = isinstance(annotations, dict) and all(
        isinstance(value, str) for value in annotations.values()
    )
    compose_id = annotations.get(COMPOSE_ID) if well_formed else None

    def cannot(problem: str) -> UnknownEntry:
        return UnknownEntry(what, problem, valid_digest, compose_id)

    media_type, size = raw.get("mediaType"), raw.get("size")
    if valid_digest is None:
        return cannot(f"has no valid digest (got {_shown(digest)})")
    if not isinstance(media_type, str):
        return cannot("has no media type")
    if not isinstance(size, int) or isinstance(size, bool) or not 0 <= size < 2**63:
        return cannot(f"has no valid size (got {_shown(size)})")
    if not well_formed:
        return cannot("has malformed annotations")
    if media_type in mediatype.INDEX_TYPES:
        return cannot(f"is a nested index ({media_type}), not an image")
    if media_type not in mediatype.IMAGE_TYPES:
        return cannot(f"has media type {_shown(media_type)}, not an image manifest")
    if raw.get("artifactType") is not None:
        return cannot(f"is an artifact ({_shown(raw['artifactType'])}), not an image")
    if platform is None:
        return cannot("has no platform")
    if not isinstance(platform, dict):
        return cannot("has a malformed platform")
    architecture, os, variant = (platform.get(k) for k in ("architecture", "os", "variant"))
    if not isinstance(architecture, str) or not architecture:
        return cannot("has no platform architecture")
    if not isinstance(os, str) or not os:
        return cannot("has no platform os")
    if variant is not None and not isinstance(variant, str):
        return cannot("has a malformed platform variant")
    extras = sorted(k for k, v in platform.items() if k not in _PLATFORM_KEYS and v)
    if extras:
        return cannot(f"sets platform field {_shown(extras[0])}, which the gate does not read")
    descriptor = Descriptor(
        media_type, valid_digest, size, Platform(architecture, os, variant or None), annotations
    )
    reference = annotations.get(REFERENCE_TYPE)
    if (architecture, os) == ("unknown", "unknown"):
        subject = annotations.get(REFERENCE_DIGEST, "")
        if (
            variant
            or media_type != mediatype.OCI_MANIFEST
            or reference != ATTESTATION_MANIFEST
            or not _DIGEST.match(subject)
        ):
            return cannot("has platform unknown/unknown but is not a buildkit attestation")
        return _Entry(number, what, descriptor, None)
    if reference is not None or REFERENCE_DIGEST in annotations:
        return cannot("has a runnable platform but buildkit's attestation annotations")
    arch = fedora_arch(architecture, os, variant or None)
    if arch not in FEDORA_PLATFORMS:
        return cannot("has no Fedora arch")
    return _Entry(number, what, descriptor, arch)


#: The platform fields an entry of a Fedora index may set.
_PLATFORM_KEYS = frozenset({"architecture", "os", "variant"})


def _platform_text(platform: object) -> str:
    """``os/architecture[/variant]`` for people, ``?`` where a part is missing."""
    if platform is None:
        return "no platform"
    if not isinstance(platform, dict):
        return "malformed platform"
    parts = [platform.get("os"), platform.get("architecture")]
    if platform.get("variant") is not None:
        parts.append(platform.get("variant"))
    return "/".join(_shown(part) if isinstance(part, str) and part else "?" for part in parts)


def _shown(value: object, limit: int = 64) -> str:
    """Foreign text made safe for one log line: printable ASCII only, bounded."""
    if not isinstance(value, str):
        return _kind(value)
    if not value:
        return '""'
    text = "".join(c if " " <= c <= "~" else "?" for c in value[: limit + 1])
    return text if len(text) <= limit else text[:limit] + "..."


def _kind(value: object) -> str:
    """The JSON type of a value, for people: ``a string``, ``null``, ..."""
    if isinstance(value, bool):
        return "a boolean"
    kinds = {str: "a string", int: "a number", float: "a number", list: "an array"}
    return kinds.get(type(value), "null" if value is None else "an object")


def _short(digest: object) -> str:
    """``sha256:`` and the first 12 hex digits; anything else sanitized."""
    if isinstance(digest, str) and _DIGEST.match(digest):
        algorithm, _, value = digest.partition(":")
        return f"{algorithm}:{value[:12]}"
    return _shown(digest)


def image_arch(image: Manifest, config: bytes) -> str | UnknownEntry:
    """The Fedora arch of a single image at a tag, from its config blob (never from what its
    annotations claim); an image whose platform cannot be read with certainty, or whose
    ``arch`` annotation names another arch than its config, comes back as an
    :class:`UnknownEntry`."""
    what = f"the single image {_short(image.digest)}"
    arch = config_arch(config, what, image.digest, image.annotations.get(COMPOSE_ID))
    claimed = image.annotations.get(ARCH)
    if isinstance(arch, str) and claimed is not None and claimed != arch:
        problem = f"is annotated {_shown(claimed)} but its config says {arch}"
        return UnknownEntry(what, problem, image.digest, image.annotations.get(COMPOSE_ID))
    return arch


def config_arch(
    config: bytes, what: str, digest: str | None = None, compose_id: str | None = None
) -> str | UnknownEntry:
    """The Fedora arch an image config blob records (its ``os``, ``architecture`` and
    ``variant``), or why it has none as an :class:`UnknownEntry` named ``what``."""
    try:
        document = json.loads(config)
    except (UnicodeDecodeError, json.JSONDecodeError):
        document = None
    if not isinstance(document, dict):
        return UnknownEntry(what, "has an unreadable config", digest, compose_id)
    what = f"{what} ({_platform_text(document)})"
    architecture, os, variant = (document.get(k) for k in ("architecture", "os", "variant"))
    if not isinstance(architecture, str) or not isinstance(os, str) or not architecture or not os:
        return UnknownEntry(what, "has no os or architecture", digest, compose_id)
    if variant is not None and not isinstance(variant, str):
        return UnknownEntry(what, "has a malformed variant", digest, compose_id)
    arch = fedora_arch(architecture, os, variant or None)
    if arch not in FEDORA_PLATFORMS:
        return UnknownEntry(what, "has no Fedora arch", digest, compose_id)
    return arch


def entry_contradiction(
    entry: IndexEntry, child: Manifest | None, config: bytes | None
) -> UnknownEntry | None:
    """Why the image an index entry points at is not what the entry says (its platform is
    taken from the image's own config), or None when it is. ``child`` is the manifest at the
    entry's digest (None: the registry does not have it), ``config`` its config blob."""
    what = f"the {entry.arch} entry {_short(entry.digest)}"
    if child is None:
        return UnknownEntry(what, "points at a manifest the registry lacks", entry.digest)
    if child.is_index:
        return UnknownEntry(what, "points at an index, not an image", entry.digest)
    if config is None:
        return UnknownEntry(what, "has no config blob", entry.digest)
    arch = config_arch(config, what, entry.digest, entry.compose_id)
    if isinstance(arch, UnknownEntry):
        return arch
    if arch != entry.arch:
        problem = f"is an image whose config says {arch}"
        return UnknownEntry(what, problem, entry.digest, entry.compose_id)
    return None


@dataclass(frozen=True)
class IndexEntry:
    """One arch of an index: the image and the compose it came from.

    ``compose_id`` is None for an entry of an index this project did not write (nothing
    records where it came from).
    """

    arch: str
    media_type: str
    digest: str
    size: int
    compose_id: str | None
    image_sha256: str | None = None


def entry_of(arch: str, descriptor: Descriptor) -> IndexEntry:
    """The image entry for ``arch`` of an existing index, as it would be carried into a new one."""
    annotations = descriptor.annotations
    return IndexEntry(
        arch,
        descriptor.media_type,
        descriptor.digest,
        descriptor.size,
        annotations.get(COMPOSE_ID),
        annotations.get(IMAGE_SHA256),
    )


def build_index(entries: Sequence[IndexEntry], *, compose_id: str) -> bytes:
    """The exact bytes of the OCI image index for ``entries`` (one per arch).

    Every entry must be an OCI image manifest: an OCI index never mixes in Docker schema2
    manifests (the gate holds a tag rather than carry one in).
    """
    arches = [entry.arch for entry in entries]
    if len(set(arches)) != len(arches):
        raise ValueError(f"duplicate arch in index entries: {arches}")
    foreign = [entry.arch for entry in entries if entry.media_type != mediatype.OCI_MANIFEST]
    if foreign:
        raise ValueError(f"not an OCI image manifest, cannot go into an OCI index: {foreign}")
    manifests = [
        {
            "mediaType": entry.media_type,
            "digest": entry.digest,
            "size": entry.size,
            "platform": platform_for(entry.arch).as_json(),
            "annotations": _entry_annotations(entry),
        }
        for entry in sorted(entries, key=lambda e: arch_sort_key(e.arch))
    ]
    document = {
        "schemaVersion": 2,
        "mediaType": mediatype.OCI_INDEX,
        "manifests": manifests,
        "annotations": {COMPOSE_ID: compose_id},
    }
    return json.dumps(document, sort_keys=True, separators=(",", ":")).encode()


def _entry_annotations(entry: IndexEntry) -> dict[str, str]:
    annotations = {ARCH: entry.arch}
    if entry.compose_id:
        annotations[COMPOSE_ID] = entry.compose_id
    if entry.image_sha256:
        annotations[IMAGE_SHA256] = entry.image_sha256
    return annotations
