"""Checking an OCI image layout before skopeo reads or pushes it (filesystem reads only).

skopeo trusts a layout: a descriptor with ``urls`` (or a non-distributable layer) makes it
fetch the blob from any host named there, and the manifest it pushes then sends every puller
there too; it does not check that the manifest is the one ``index.json`` names by digest. So
every layout skopeo gets (an unpacked OCI archive from the compose) and every layout it wrote
(the converted image about to be pushed) is checked here first: one image manifest, named by
its digest in ``index.json``, its bytes matching that digest and size; its config and every
layer a local blob of the declared size, plain (no ``urls``, no non-distributable media type).
Anything else is a :class:`ComposeError` naming what was wrong, never the foreign text raw.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any

from ..errors import ComposeError
from . import mediatype

_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")
#: Layers a registry may not hold: their descriptors point elsewhere (``urls``).
NON_DISTRIBUTABLE = frozenset(
    {
        "application/vnd.oci.image.layer.nondistributable.v1.tar",
        "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
        "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd",
        "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
    }
)
#: A manifest or a config larger than this is refused (real ones are a few KiB).
_MAX_DOCUMENT = 4 << 20


def verify_layout(layout: Path, *, where: str) -> str:
    """Check the layout at ``layout`` (see the module docstring); the manifest's digest."""
    index = _document(layout / "index.json", f"{where}: index.json")
    manifests = index.get("manifests")
    if not isinstance(manifests, list) or len(manifests) != 1:
        count = len(manifests) if isinstance(manifests, list) else "no"
        raise ComposeError(f"{where}: index.json names {count} manifests, not one image")
    descriptor = manifests[0]
    what = f"{where}: the manifest index.json names"
    _plain(descriptor, what)
    if descriptor.get("mediaType") in mediatype.INDEX_TYPES:
        raise ComposeError(f"{where}: index.json names an index (several platforms), not an image")
    body = _blob(layout, descriptor, what, read=True)
    manifest = _parse(body, what)
    declared = manifest.get("mediaType", descriptor.get("mediaType"))
    if declared in mediatype.INDEX_TYPES or "manifests" in manifest:
        raise ComposeError(f"{where}: index.json names an index (several platforms), not an image")
    if declared != descriptor.get("mediaType"):
        raise ComposeError(f"{what} is not of the media type index.json says")
    config = manifest.get("config")
    layers = manifest.get("layers")
    if not isinstance(config, dict) or not isinstance(layers, list) or not layers:
        raise ComposeError(f"{what} has no config or no layers")
    _plain(config, f"{where}: the image config")
    _blob(layout, config, f"{where}: the image config", read=False)
    for number, layer in enumerate(layers, 1):
        what = f"{where}: layer {number}"
        _plain(layer, what)
        _blob(layout, layer, what, read=False)
    return str(descriptor["digest"])


def _plain(descriptor: Any, what: str) -> None:
    """A descriptor of a blob that is in the layout: no foreign URLs, distributable."""
    if not isinstance(descriptor, dict):
        raise ComposeError(f"{what} is no descriptor")
    if descriptor.get("urls") is not None:
        raise ComposeError(f"{what} has external urls (the blob would come from elsewhere)")
    if descriptor.get("mediaType") in NON_DISTRIBUTABLE:
        raise ComposeError(f"{what} is a non-distributable layer (it would come from elsewhere)")


def _blob(layout: Path, descriptor: dict[str, Any], what: str, *, read: bool) -> bytes:
    """The blob a descriptor names: in the layout, of the declared size (and, when ``read``,
    its bytes, checked against the digest)."""
    digest, size = descriptor.get("digest"), descriptor.get("size")
    if not isinstance(digest, str) or not _DIGEST.fullmatch(digest):
        raise ComposeError(f"{what} has no sha256 digest")
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise ComposeError(f"{what} has no valid size")
    path = layout / "blobs" / "sha256" / digest.removeprefix("sha256:")
    try:
        if not path.is_file():
            raise ComposeError(f"{what} is not in the layout (its blob is missing)")
        actual = path.stat().st_size
        if actual != size:
            raise ComposeError(f"{what} is {actual} bytes, not the {size} declared")
        if not read:
            return b""
        if size > _MAX_DOCUMENT:
            raise ComposeError(f"{what} is larger than {_MAX_DOCUMENT} bytes")
        body = path.read_bytes()
    except OSError as error:
        raise ComposeError(f"{what} cannot be read: {error.strerror}") from None
    if "sha256:" + hashlib.sha256(body).hexdigest() != digest:
        raise ComposeError(f"{what} does not match its digest")
    return body


def _document(path: Path, what: str) -> dict[str, Any]:
    try:
        if path.stat().st_size > _MAX_DOCUMENT:
            raise ComposeError(f"{what} is larger than {_MAX_DOCUMENT} bytes")
        return _parse(path.read_bytes(), what)
    except OSError as error:
        raise ComposeError(f"{what} cannot be read: {error.strerror}") from None


def _parse(body: bytes, what: str) -> dict[str, Any]:
    try:
        document = json.loads(body)
    except (ValueError, RecursionError):
        raise ComposeError(f"{what} is not JSON") from None
    if not isinstance(document, dict):
        raise ComposeError(f"{what} is not a JSON object")
    return document
