"""Manifests as a registry returns them: exact bytes, media type, digest; and this project's
annotations on them. Pure.

A manifest is kept as the bytes the registry sent (or the bytes this project will send), so its
digest is always the digest of exactly those bytes; what it says is read from them on demand.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..errors import RegistryError
from . import mediatype
from .platforms import Platform

#: Index annotation: the compose that produced this index. Entry annotation: the compose the
#: entry's image came from.
COMPOSE_ID = "org.fedoraproject.compose.id"
#: Entry annotation: the Fedora arch name of the entry.
ARCH = "org.fedoraproject.arch"
#: Per-arch manifest and entry annotation: sha256 of the compose's image file (images.json).
IMAGE_SHA256 = "org.fedoraproject.image.sha256"


def digest_of(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


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

    def config_digest(self) -> str:
        """The config blob digest of a single-image manifest."""
        config = self.json().get("config")
        if not isinstance(config, dict) or not isinstance(config.get("digest"), str):
            raise RegistryError(f"manifest {self.digest} has no config descriptor")
        return str(config["digest"])


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
