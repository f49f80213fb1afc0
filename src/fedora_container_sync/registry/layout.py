"""Local OCI layouts: each image archive is converted into one exactly once, then pushed from
it to every registry with its digest preserved (filesystem reads only)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from ..errors import ComposeError
from ..oci import mediatype
from ..oci.manifest import annotate_manifest, digest_of, platform_of_config
from ..oci.platforms import Platform


@dataclass(frozen=True)
class LocalManifest:
    """The manifest of a converted image: what its index entry will say."""

    media_type: str
    digest: str
    size: int
    platform: Platform


def annotate_layout(layout: Path, annotations: Mapping[str, str], *, where: str) -> None:
    """Add ``annotations`` to the single OCI image manifest of ``layout`` (rewrites index.json)."""
    try:
        index = json.loads((layout / "index.json").read_bytes())
        descriptor = index["manifests"][0]
        body = annotate_manifest(_blob(layout, str(descriptor["digest"])), annotations)
        digest = digest_of(body)
        (layout / "blobs" / "sha256" / digest.removeprefix("sha256:")).write_bytes(body)
        descriptor["digest"] = digest
        descriptor["size"] = len(body)
        (layout / "index.json").write_text(json.dumps(index, sort_keys=True))
    except (OSError, ValueError, KeyError, IndexError, TypeError) as error:
        raise ComposeError(f"{where}: cannot annotate the converted image: {error}") from None


def read_layout(layout: Path, *, where: str) -> LocalManifest:
    """Read the single image of an OCI layout written by ``skopeo copy ... oci:DIR:image``."""
    try:
        index = json.loads((layout / "index.json").read_bytes())
        descriptor = index["manifests"][0]
        digest = str(descriptor["digest"])
        media_type = str(descriptor["mediaType"])
        body = _blob(layout, digest)
        manifest = json.loads(body)
        config = _blob(layout, str(manifest["config"]["digest"]))
    except (OSError, ValueError, KeyError, IndexError, TypeError) as error:
        raise ComposeError(f"{where}: converted image is unreadable: {error}") from None
    if media_type not in mediatype.IMAGE_TYPES:
        raise ComposeError(f"{where}: converted image has media type {media_type}")
    if digest_of(body) != digest:
        raise ComposeError(f"{where}: converted manifest does not match its digest")
    try:
        platform = platform_of_config(config, where)
    except Exception as error:
        raise ComposeError(str(error)) from None
    return LocalManifest(media_type, digest, len(body), platform)


def manifest_blob(layout: Path, digest: str, *, where: str) -> bytes:
    """The exact bytes of the manifest ``digest`` in ``layout``, checked against the digest."""
    try:
        body = _blob(layout, digest)
    except (OSError, ValueError) as error:
        raise ComposeError(f"{where}: converted manifest is unreadable: {error}") from None
    if digest_of(body) != digest:
        raise ComposeError(f"{where}: converted manifest does not match its digest")
    return body


def _blob(layout: Path, digest: str) -> bytes:
    algorithm, _, value = digest.partition(":")
    if algorithm != "sha256" or not value.isalnum():
        raise ValueError(f"unexpected digest {digest!r}")
    return (layout / "blobs" / algorithm / value).read_bytes()
