"""Reading and writing the signatures of a digest in a registry (I/O).

:func:`ensure_signed` is check-then-sign, one read-modify-write of the ``.sig`` tag per digest:
read what is there, sign only the identities that lack a valid signature, write them all in
one manifest PUT (keeping every signature already there, others' too), and read back. Writers
in this process are serialized per (registry, repository, digest); a writer elsewhere that
overwrote ours shows up in the read-back, and the write is done again.
"""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric import ec

from ..errors import RegistryError, SyncError
from ..oci import mediatype
from ..registry.client import RegistryClient
from .keys import SigningError, verify
from .payload import (
    MAX_PAYLOAD_BYTES,
    SignatureFormatError,
    SignatureLayer,
    make_payload,
    merged,
    new_layer,
    read_signature_manifest,
    signature_manifest,
    signature_tag,
)
from .setup import Signing
from .status import Checked, Signature, check, signed_claims

_log = logging.getLogger(__name__)
#: How often a digest's signatures are written again when the read-back lacks some.
_WRITES = 3

_locks_lock = threading.Lock()
_locks: dict[tuple[str, str, str], threading.Lock] = {}


@dataclass(frozen=True)
class Found:
    """The ``.sig`` manifest of a digest as read: its layers and their payloads."""

    layers: list[SignatureLayer]
    signatures: list[Signature]

    def checked(self, key: ec.EllipticCurvePublicKey) -> tuple[Checked, ...]:
        """What each signature claims, and whether ``key`` verifies it."""
        return check(self.signatures, functools.partial(verify, key))


def read_signatures(client: RegistryClient, repository: str, digest: str) -> Found:
    """The signatures stored for ``digest`` (none: empty). A ``.sig`` manifest that cannot be
    read is a RegistryError; a payload that cannot be fetched counts as unreadable."""
    tag = signature_tag(digest)
    found = client.manifest_get(repository, tag)
    if found is None:
        return Found([], [])
    try:
        layers = read_signature_manifest(found.body)
    except SignatureFormatError as error:
        raise RegistryError(f"{client.registry.url}/{repository}:{tag}: {error}") from None
    signatures = []
    for layer in layers:
        payload = None
        if layer.is_simplesigning and layer.size <= MAX_PAYLOAD_BYTES:
            try:
                payload = client.blob_get(repository, layer.digest)
            except RegistryError:
                payload = None
        signatures.append(Signature(layer, payload))
    return Found(layers, signatures)


@dataclass(frozen=True)
class Signed:
    """What :func:`ensure_signed` did, as (digest, identity) pairs: the signatures it wrote,
    and those it found valid before writing anything."""

    written: frozenset[tuple[str, str]] = frozenset()
    present: frozenset[tuple[str, str]] = frozenset()

    def __or__(self, other: Signed) -> Signed:
        return Signed(self.written | other.written, self.present | other.present)


def ensure_signed(
    client: RegistryClient,
    repository: str,
    needs: Mapping[str, Iterable[str]],
    signing: Signing,
    *,
    compose_id: str | None,
) -> Signed:
    """Make every digest of ``needs`` carry a valid signature for each of its identities:
    what was written (nothing: all were there) and what was there. SyncError when that fails."""
    signed = Signed()
    for digest in sorted(needs):
        identities = sorted(set(needs[digest]))
        if identities:
            with _lock(client.registry.url, repository, digest):
                signed |= _ensure_one(client, repository, digest, identities, signing, compose_id)
    return signed


def _ensure_one(
    client: RegistryClient,
    repository: str,
    digest: str,
    identities: list[str],
    signing: Signing,
    compose_id: str | None,
) -> Signed:
    name = f"{client.registry.url}/{repository}:{signature_tag(digest)}"
    written: set[tuple[str, str]] = set()
    present: frozenset[tuple[str, str]] | None = None
    for attempt in range(1, _WRITES + 1):
        found = read_signatures(client, repository, digest)
        have = signed_claims(found.checked(signing.public_key), digest)
        if present is None:
            present = frozenset((digest, identity) for identity in identities if identity in have)
        missing = [identity for identity in identities if identity not in have]
        if not missing:
            return Signed(frozenset(written), present)
        if attempt > 1:
            _log.warning("%s: read back without %s; writing again", name, ", ".join(missing))
        added = [_sign(signing, identity, digest, compose_id) for identity in missing]
        for _layer, payload in added:
            client.blob_put(repository, payload)
        layers = merged(found.layers, [layer for layer, _payload in added])
        body, config = signature_manifest(layers)
        client.blob_put(repository, config)
        client.manifest_put(repository, signature_tag(digest), mediatype.OCI_MANIFEST, body)
        written.update((digest, identity) for identity in missing)
    found = read_signatures(client, repository, digest)
    have = signed_claims(found.checked(signing.public_key), digest)
    missing = [identity for identity in identities if identity not in have]
    if missing:
        raise SigningError(f"{name}: signatures for {', '.join(missing)} did not read back valid")
    return Signed(frozenset(written), present or frozenset())


def _sign(
    signing: Signing, identity: str, digest: str, compose_id: str | None
) -> tuple[SignatureLayer, bytes]:
    payload = make_payload(identity, digest, creator=signing.creator, compose_id=compose_id)
    try:
        signature = signing.signer.sign(payload)
    except SyncError:
        raise
    except Exception as error:  # a signer's own failure, never its input
        raise SigningError(f"signing {identity}: {type(error).__name__}") from None
    if not verify(signing.public_key, payload, signature):
        raise SigningError(f"signing {identity}: the signature does not verify with public_key")
    return new_layer(payload, signature), payload


def _lock(registry: str, repository: str, digest: str) -> threading.Lock:
    with _locks_lock:
        return _locks.setdefault((registry, repository, digest), threading.Lock())
