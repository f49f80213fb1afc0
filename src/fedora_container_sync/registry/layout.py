"""Local OCI layouts: each image archive is converted into one exactly once, then pushed from
it to every registry with its digest preserved (filesystem reads only)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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


#: Layer media types skopeo keeps as they are when it converts into an OCI layout (compressed).
_KEPT_LAYERS = frozenset(
    {"application/vnd.oci.image.layer.v1.tar+gzip", "application/vnd.oci.image.layer.v1.tar+zstd"}
)
_OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
#: index.json and a manifest larger than this are not adopted (skopeo gets them instead).
_MAX_JSON = 4 << 20
_REF_NAME = "org.opencontainers.image.ref.name"


def adopt_unpacked(unpacked: Path, layout: Path) -> bool:
    """Make the unpacked OCI archive ``unpacked`` the layout ``layout`` (renamed, not copied)
    when converting it with skopeo would change nothing: one OCI image manifest, an OCI config,
    compressed OCI layers with no external ``urls``; the manifest and the config match their
    digests, every layer is a regular file of the size named. Its index.json then names that
    manifest ``image``, as skopeo's would. False (nothing changed) for anything else: skopeo
    converts it, as before.

    A layer's bytes are not hashed here: skopeo checks each blob it uploads against its digest
    as it reads it (and the registry again), and a blob the registry already holds under that
    digest is not read at all.
    """
    try:
        index = _small_json(unpacked / "index.json")
        descriptors = index["manifests"]
        if not isinstance(descriptors, list) or len(descriptors) != 1:
            return False
        descriptor = descriptors[0]
        if descriptor.get("mediaType") != mediatype.OCI_MANIFEST:
            return False
        digest = str(descriptor["digest"])
        manifest = _verified_json(unpacked, digest, descriptor.get("size"))
        media_type = manifest.get("mediaType", mediatype.OCI_MANIFEST)
        if manifest.get("schemaVersion") != 2 or media_type != mediatype.OCI_MANIFEST:
            return False
        config, layers = manifest["config"], manifest["layers"]
        if config.get("mediaType") != _OCI_CONFIG or not isinstance(layers, list) or not layers:
            return False
        _verified_json(unpacked, str(config["digest"]), config.get("size"))
        for layer in layers:
            if layer.get("mediaType") not in _KEPT_LAYERS or "urls" in layer:
                return False
            if not _blob_sized(unpacked, str(layer["digest"]), layer.get("size")):
                return False
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return False
    named = {"mediaType": mediatype.OCI_MANIFEST, "digest": digest, "size": descriptor["size"]}
    named["annotations"] = {_REF_NAME: "image"}
    (unpacked / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [named]}))
    unpacked.rename(layout)
    return True


def _small_json(path: Path) -> dict[str, Any]:
    if path.is_symlink() or path.stat().st_size > _MAX_JSON:
        raise ValueError(f"{path.name}: not a small regular file")
    document = json.loads(path.read_bytes())
    if not isinstance(document, dict):
        raise ValueError(f"{path.name}: not a JSON object")
    return document


def _verified_json(layout: Path, digest: str, size: object) -> dict[str, Any]:
    """A small JSON blob of ``layout`` that matches ``digest`` and ``size`` (else ValueError)."""
    if not _blob_sized(layout, digest, size):
        raise ValueError(f"{digest}: missing or not of the size named")
    path = _blob_path(layout, digest)
    document = _small_json(path)
    if digest_of(path.read_bytes()) != digest:
        raise ValueError(f"{digest}: does not match its digest")
    return document


def _blob_path(layout: Path, digest: str) -> Path:
    algorithm, _, value = digest.partition(":")
    if algorithm != "sha256" or len(value) != 64 or not all(c in "0123456789abcdef" for c in value):
        raise ValueError(f"unexpected digest {digest!r}")
    return layout / "blobs" / "sha256" / value


def _blob_sized(layout: Path, digest: str, size: object) -> bool:
    path = _blob_path(layout, digest)
    if not isinstance(size, int) or path.is_symlink() or not path.is_file():
        return False
    return path.stat().st_size == size


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
