"""Reading and writing manifests and image indexes as plain data. Pure.

The index this project writes is an OCI image index with one entry per arch, serialized
deterministically (sorted keys, fixed entry order, no timestamps): the same compose always
produces the same bytes and digest, so a replay is a no-op.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .errors import RegistryError
from .platforms import FEDORA_PLATFORMS, Platform, arch_sort_key, fedora_arch, platform_for
from .registry import mediatype

#: Index annotation: the compose that produced this index. Entry annotation: the compose the
#: entry's image came from.
COMPOSE_ID = "org.fedoraproject.compose.id"
#: Entry annotation: the Fedora arch name of the entry.
ARCH = "org.fedoraproject.arch"
#: Per-arch manifest and entry annotation: sha256 of the compose's image file (images.json).
IMAGE_SHA256 = "org.fedoraproject.image.sha256"

#: Index entries that describe something other than a runnable image (buildkit attestations).
_NON_IMAGE_ANNOTATION = "vnd.docker.reference.type"


def digest_of(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@dataclass(frozen=True)
class Descriptor:
    """A content descriptor: what an index entry points at."""

    media_type: str
    digest: str
    size: int
    platform: Platform | None = None
    annotations: Mapping[str, str] = field(default_factory=dict)

    @property
    def arch(self) -> str:
        """Fedora arch of the entry ('unknown' without a platform)."""
        if self.platform is None:
            return "unknown"
        return fedora_arch(self.platform.architecture, self.platform.os, self.platform.variant)


@dataclass(frozen=True)
class Manifest:
    """A manifest as a registry returned it: exact bytes, media type and digest."""

    media_type: str
    digest: str
    body: bytes

    @property
    def is_index(self) -> bool:
        return self.media_type in mediatype.INDEX_TYPES

    @property
    def is_image(self) -> bool:
        return self.media_type in mediatype.IMAGE_TYPES

    def json(self) -> dict[str, Any]:
        try:
            document = json.loads(self.body)
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise RegistryError(f"manifest {self.digest} is not valid JSON") from None
        if not isinstance(document, dict):
            raise RegistryError(f"manifest {self.digest} is not a JSON object")
        return document

    @property
    def annotations(self) -> dict[str, str]:
        value = self.json().get("annotations") or {}
        return {str(k): str(v) for k, v in value.items()} if isinstance(value, dict) else {}

    def entries(self) -> list[Descriptor]:
        """The image entries of an index (attestations and other non-images left out)."""
        if not self.is_index:
            raise RegistryError(f"manifest {self.digest} is not an index")
        manifests = self.json().get("manifests")
        if not isinstance(manifests, list):
            raise RegistryError(f"index {self.digest} has no manifests list")
        entries = []
        for raw in manifests:
            entry = _descriptor(raw, self.digest)
            annotations = entry.annotations
            if _NON_IMAGE_ANNOTATION in annotations:
                continue
            if entry.platform is not None and entry.platform.os == "unknown":
                continue
            entries.append(entry)
        return entries

    def config_digest(self) -> str:
        """The config blob digest of a single-image manifest."""
        config = self.json().get("config")
        if not isinstance(config, dict) or not isinstance(config.get("digest"), str):
            raise RegistryError(f"manifest {self.digest} has no config descriptor")
        return str(config["digest"])


def _descriptor(raw: object, where: str) -> Descriptor:
    if not isinstance(raw, dict):
        raise RegistryError(f"index {where} has an entry that is not an object")
    try:
        media_type = str(raw["mediaType"])
        digest = str(raw["digest"])
        size = int(raw["size"])
    except (KeyError, TypeError, ValueError):
        raise RegistryError(
            f"index {where} has an entry without mediaType, digest or size"
        ) from None
    platform = None
    if isinstance(raw.get("platform"), dict):
        p = raw["platform"]
        platform = Platform(
            str(p.get("architecture", "unknown")),
            str(p.get("os", "unknown")),
            str(p["variant"]) if p.get("variant") else None,
        )
    annotations = raw.get("annotations") or {}
    if not isinstance(annotations, dict):
        annotations = {}
    return Descriptor(
        media_type, digest, size, platform, {str(k): str(v) for k, v in annotations.items()}
    )


def platform_of_config(config: bytes, where: str) -> Platform:
    """The platform recorded in an image config blob."""
    try:
        document = json.loads(config)
        return Platform(
            str(document["architecture"]),
            str(document.get("os") or "linux"),
            str(document["variant"]) if document.get("variant") else None,
        )
    except (UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError):
        raise RegistryError(f"{where}: image config has no architecture") from None


def annotate_manifest(body: bytes, annotations: Mapping[str, str]) -> bytes:
    """An OCI image manifest with ``annotations`` added (deterministic bytes).

    The per-arch manifests this project pushes carry the compose they came from and the
    checksum of the compose file they were built from, so the registry itself records what
    each per-arch tag holds.
    """
    document = json.loads(body)
    if not isinstance(document, dict) or document.get("mediaType", mediatype.OCI_MANIFEST) != (
        mediatype.OCI_MANIFEST
    ):
        raise ValueError("only OCI image manifests carry annotations")
    document["annotations"] = {**document.get("annotations", {}), **annotations}
    return json.dumps(document, sort_keys=True, separators=(",", ":")).encode()


@dataclass(frozen=True)
class IndexEntry:
    """One arch of an index: the image and the compose it came from.

    ``compose_id`` is None for an entry of an index this project did not write (nothing
    records where it came from); ``platform`` is set for an entry carried over from such an
    index whose platform has no Fedora arch name.
    """

    arch: str
    media_type: str
    digest: str
    size: int
    compose_id: str | None
    image_sha256: str | None = None
    platform: Platform | None = None


def entry_of(descriptor: Descriptor) -> IndexEntry:
    """The entry of an existing index, as it would be carried into a new one."""
    annotations = descriptor.annotations
    arch = descriptor.arch
    return IndexEntry(
        arch,
        descriptor.media_type,
        descriptor.digest,
        descriptor.size,
        annotations.get(COMPOSE_ID),
        annotations.get(IMAGE_SHA256),
        None if arch in FEDORA_PLATFORMS else descriptor.platform,
    )


def build_index(entries: Sequence[IndexEntry], *, compose_id: str) -> bytes:
    """The exact bytes of the OCI image index for ``entries`` (one per arch)."""
    arches = [entry.arch for entry in entries]
    if len(set(arches)) != len(arches):
        raise ValueError(f"duplicate arch in index entries: {arches}")
    manifests = [
        {
            "mediaType": entry.media_type,
            "digest": entry.digest,
            "size": entry.size,
            "platform": (entry.platform or platform_for(entry.arch)).as_json(),
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
