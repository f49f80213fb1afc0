"""What a cosign signature says and how it is stored in a registry. Pure.

A signature is an ECDSA P-256 signature (SHA-256, DER, base64) over a "simple signing" payload
naming one identity (``registry/repository:tag``) and one manifest digest. The signatures of a
digest live in the same repository under the tag ``sha256-<hex>.sig``: an OCI image manifest
whose layers are the payloads (media type :data:`SIMPLESIGNING`), each with its signature in
the annotation :data:`SIGNATURE_ANNOTATION`. This is cosign's legacy tag scheme, the one that
containers/image (podman, skopeo, bootc, rpm-ostree) reads with ``use-sigstore-attachments``.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..oci import mediatype
from ..oci.manifest import digest_of

SIMPLESIGNING = "application/vnd.dev.cosign.simplesigning.v1+json"
SIGNATURE_ANNOTATION = "dev.cosignproject.cosign/signature"
PAYLOAD_TYPE = "cosign container image signature"
CONFIG_TYPE = "application/vnd.oci.image.config.v1+json"
#: A payload is a few hundred bytes; anything much larger is not one of ours to read.
MAX_PAYLOAD_BYTES = 64 << 10
#: Layers one ``.sig`` manifest may hold before we refuse to read (or grow) it.
MAX_SIGNATURES = 256

_DIGEST = re.compile(r"^sha256:([0-9a-f]{64})$")
_SIG_TAG = re.compile(r"^sha256-[0-9a-f]{64}\.sig$")
#: cosign's other attachments, and the OCI 1.1 referrers fallback tag.
_ATTACHMENT_TAG = re.compile(r"^sha256-[0-9a-f]{64}(\.(sig|att|sbom))?$")


class SignatureFormatError(ValueError):
    """A ``.sig`` manifest or payload that is not what cosign writes."""


def signature_tag(digest: str) -> str:
    """``sha256:<hex>`` → ``sha256-<hex>.sig``."""
    match = _DIGEST.match(digest)
    if not match:
        raise ValueError(f"{digest!r} is not a sha256 digest")
    return f"sha256-{match.group(1)}.sig"


def is_attachment_tag(tag: str) -> bool:
    """A cosign attachment tag (``.sig``, ``.att``, ``.sbom``) or a referrers fallback tag:
    never an image this project publishes."""
    return bool(_ATTACHMENT_TAG.match(tag))


def identity(registry_url: str, repository: str, tag: str) -> str:
    """The exact identity a client pulling ``tag`` checks: ``host[/namespace]/repository:tag``."""
    return f"{registry_url}/{repository}:{tag}"


def make_payload(identity: str, digest: str, *, creator: str, compose_id: str | None) -> bytes:
    """The payload signed for ``identity`` at ``digest``: no timestamp, so the same inputs
    always give the same bytes."""
    optional: dict[str, str] = {"creator": creator}
    if compose_id:
        optional["org.fedoraproject.compose.id"] = compose_id
    document = {
        "critical": {
            "identity": {"docker-reference": identity},
            "image": {"docker-manifest-digest": digest},
            "type": PAYLOAD_TYPE,
        },
        "optional": optional,
    }
    return json.dumps(document, separators=(",", ":"), sort_keys=True).encode()


@dataclass(frozen=True)
class Claim:
    """What a payload claims: this identity is this digest."""

    identity: str
    digest: str


def read_payload(data: bytes) -> Claim:
    """The identity and digest a payload names, or SignatureFormatError."""
    if len(data) > MAX_PAYLOAD_BYTES:
        raise SignatureFormatError("payload too large")
    try:
        document = json.loads(data)
        critical = document["critical"]
        if critical["type"] != PAYLOAD_TYPE:
            raise SignatureFormatError(f"payload type {str(critical['type'])[:64]!r}")
        reference = critical["identity"]["docker-reference"]
        digest = critical["image"]["docker-manifest-digest"]
    except (UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError) as error:
        kind = type(error).__name__
        raise SignatureFormatError(f"not a simple signing payload ({kind})") from None
    if not isinstance(reference, str) or not isinstance(digest, str):
        raise SignatureFormatError("identity or digest is not a string")
    return Claim(reference, digest)


@dataclass(frozen=True)
class SignatureLayer:
    """One layer of a ``.sig`` manifest: its descriptor as found (kept as-is when the manifest
    is rewritten), the payload's digest and size, and the base64 signature, if any."""

    descriptor: Mapping[str, Any]
    digest: str
    size: int
    signature: bytes | None

    @property
    def is_simplesigning(self) -> bool:
        return self.descriptor.get("mediaType") == SIMPLESIGNING


def new_layer(payload: bytes, signature: bytes) -> SignatureLayer:
    """A layer for ``payload`` with its DER ``signature``."""
    encoded = base64.b64encode(signature).decode()
    descriptor = {
        "mediaType": SIMPLESIGNING,
        "size": len(payload),
        "digest": digest_of(payload),
        "annotations": {SIGNATURE_ANNOTATION: encoded},
    }
    return SignatureLayer(descriptor, digest_of(payload), len(payload), signature)


def read_signature_manifest(body: bytes) -> list[SignatureLayer]:
    """The layers of a ``.sig`` manifest, or SignatureFormatError."""
    try:
        document = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise SignatureFormatError("signature manifest is not JSON") from None
    layers = document.get("layers") if isinstance(document, dict) else None
    if not isinstance(layers, list):
        raise SignatureFormatError("signature manifest has no layers")
    if len(layers) > MAX_SIGNATURES:
        raise SignatureFormatError(f"signature manifest has more than {MAX_SIGNATURES} layers")
    found = []
    for layer in layers:
        if not isinstance(layer, dict):
            raise SignatureFormatError("a signature layer is not an object")
        digest, size = layer.get("digest"), layer.get("size")
        if not isinstance(digest, str) or not _DIGEST.match(digest):
            raise SignatureFormatError("a signature layer has no sha256 digest")
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise SignatureFormatError("a signature layer has no size")
        annotations = layer.get("annotations")
        encoded = annotations.get(SIGNATURE_ANNOTATION) if isinstance(annotations, dict) else None
        signature = None
        if isinstance(encoded, str):
            try:
                signature = base64.b64decode(encoded, validate=True)
            except ValueError:  # binascii.Error
                signature = b""  # present but not base64: an invalid signature
        found.append(SignatureLayer(layer, digest, size, signature))
    return found


def signature_manifest(layers: Sequence[SignatureLayer]) -> tuple[bytes, bytes]:
    """The ``.sig`` manifest holding ``layers``, and its config blob (as cosign writes it: a
    config listing the layers as its rootfs)."""
    config = json.dumps(
        {
            "architecture": "",
            "config": {},
            "created": "0001-01-01T00:00:00Z",
            "history": [{"created": "0001-01-01T00:00:00Z"}],
            "os": "",
            "rootfs": {"type": "layers", "diff_ids": [layer.digest for layer in layers]},
        },
        separators=(",", ":"),
    ).encode()
    manifest = {
        "schemaVersion": 2,
        "mediaType": mediatype.OCI_MANIFEST,
        "config": {"mediaType": CONFIG_TYPE, "size": len(config), "digest": digest_of(config)},
        "layers": [dict(layer.descriptor) for layer in layers],
    }
    return json.dumps(manifest, separators=(",", ":")).encode(), config


def merged(
    existing: Sequence[SignatureLayer], added: Iterable[SignatureLayer]
) -> list[SignatureLayer]:
    """``existing`` (kept as found, foreign signatures too) followed by each layer of ``added``
    that is not already there (same payload and same signature)."""
    result = list(existing)
    present = {(layer.digest, layer.signature) for layer in existing}
    for layer in added:
        if (layer.digest, layer.signature) not in present:
            result.append(layer)
            present.add((layer.digest, layer.signature))
    return result
