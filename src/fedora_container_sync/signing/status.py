"""Which identities of a digest carry a valid signature, and why the others do not. Pure.

A signature counts for ``identity`` at ``digest`` only when its layer is a simple signing
payload, the payload names exactly that identity and digest, and the public key verifies the
signature over the payload's exact bytes - what containers/image checks for an exact identity.
The cryptographic check itself is handed in (:func:`check`'s ``verify``; the I/O layers pass
:func:`.keys.verify` with the configured key).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum

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
class Checked:
    """What one signature claims (None: nothing readable) and whether the key verifies it."""

    claim: Claim | None
    verified: bool


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


def check(
    signatures: Iterable[Signature], verify: Callable[[bytes, bytes], bool]
) -> tuple[Checked, ...]:
    """Each signature's claim, and whether ``verify(payload, signature)`` accepts it."""
    result: list[Checked] = []
    for signature in signatures:
        layer, payload = signature.layer, signature.payload
        if not layer.is_simplesigning or payload is None or not layer.signature:
            result.append(Checked(None, False))
            continue
        try:
            claim = read_payload(payload)
        except SignatureFormatError:
            result.append(Checked(None, False))
            continue
        result.append(Checked(claim, verify(payload, layer.signature)))
    return tuple(result)


def signed_claims(checked: Iterable[Checked], digest: str) -> set[str]:
    """The identities validly signed for ``digest``."""
    return {
        c.claim.identity
        for c in checked
        if c.verified and c.claim is not None and c.claim.digest == digest
    }


def judge(checked: Sequence[Checked], digest: str, identity: str) -> Judgement:
    """Whether ``identity`` at ``digest`` is validly signed, and if not, why."""
    valid = signed_claims(checked, digest)
    if identity in valid:
        return Judgement(Status.VALID)
    if valid:
        return Judgement(Status.OTHER_IDENTITY, tuple(sorted(valid)))
    if not checked:
        return Judgement(Status.NONE)
    # Well-formed signatures for this digest that the key does not verify: another key's (or
    # altered). Anything else (unreadable, or naming another digest): invalid.
    if any(c.claim is not None and c.claim.digest == digest and not c.verified for c in checked):
        return Judgement(Status.OTHER_KEY)
    return Judgement(Status.INVALID)
