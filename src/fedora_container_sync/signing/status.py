"""Which identities of a digest carry a valid signature, and why the others do not. Pure
(given the payloads and the public key).

A signature counts for ``identity`` at ``digest`` only when its layer is a simple signing
payload, the payload names exactly that identity and digest, and ``public_key`` verifies the
signature over the payload's exact bytes - what containers/image checks for an exact identity.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum

from cryptography.hazmat.primitives.asymmetric import ec

from .keys import verify
from .payload import Claim, SignatureFormatError, SignatureLayer, read_payload


class Status(StrEnum):
    VALID = "valid"
    NONE = "no signature"
    OTHER_KEY = "signed only by other keys"
    OTHER_IDENTITY = "signed only for other tags"
    INVALID = "invalid signature"


@dataclass(frozen=True)
class Signature:
    """One signature layer with its payload's bytes (None: the payload could not be read)."""

    layer: SignatureLayer
    payload: bytes | None


@dataclass(frozen=True)
class Judgement:
    status: Status
    #: For OTHER_IDENTITY: the identities this key did sign at this digest.
    others: tuple[str, ...] = ()

    def describe(self) -> str:
        if self.status is Status.OTHER_IDENTITY and self.others:
            tags = ", ".join(sorted(identity.rpartition(":")[2] for identity in self.others))
            return f"{self.status} ({tags})"
        return str(self.status)


def signed_claims(
    signatures: Iterable[Signature], digest: str, key: ec.EllipticCurvePublicKey
) -> set[str]:
    """The identities ``key`` validly signed for ``digest``."""
    return {
        claim.identity
        for claim, ok in _checked(signatures, key)
        if ok and claim is not None and claim.digest == digest
    }


def judge(
    signatures: Sequence[Signature], digest: str, identity: str, key: ec.EllipticCurvePublicKey
) -> Judgement:
    """Whether ``identity`` at ``digest`` is validly signed by ``key``, and if not, why."""
    checked = _checked(signatures, key)
    valid = {c.identity for c, ok in checked if ok and c is not None and c.digest == digest}
    if identity in valid:
        return Judgement(Status.VALID)
    if valid:
        return Judgement(Status.OTHER_IDENTITY, tuple(sorted(valid)))
    if not signatures:
        return Judgement(Status.NONE)
    # Well-formed signatures for this digest that this key does not verify: another key's (or
    # altered). Anything else (unreadable, another digest, verified but naming another digest):
    # invalid.
    if any(c is not None and c.digest == digest and not ok for c, ok in checked):
        return Judgement(Status.OTHER_KEY)
    return Judgement(Status.INVALID)


def _checked(
    signatures: Iterable[Signature], key: ec.EllipticCurvePublicKey
) -> list[tuple[Claim | None, bool]]:
    result: list[tuple[Claim | None, bool]] = []
    for signature in signatures:
        layer, payload = signature.layer, signature.payload
        if not layer.is_simplesigning or payload is None or not layer.signature:
            result.append((None, False))
            continue
        try:
            claim = read_payload(payload)
        except SignatureFormatError:
            result.append((None, False))
            continue
        result.append((claim, verify(key, payload, layer.signature)))
    return result
