"""Where the publish pipeline asks for signatures: one call before a tag moves (or where it
already holds its content), naming the tag and the digests it serves. A no-op when signing is
off or in a dry run.

What a tag needs (:func:`needs_for_tag`, pure): the digest it points at, and for an index every
image entry too, each for the identity ``registry/repository:tag``. A held tag is never asked
for. A failure raises :class:`~..errors.SyncError` and the tag does not move.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from ..errors import SyncError, TransientError
from ..publish.context import RunContext
from ..registry.client import RegistryClient
from .payload import identity
from .setup import signing_for

_log = logging.getLogger(__name__)


def needs_for_tag(
    registry_url: str, repository: str, tag: str, digest: str, entries: Iterable[str] = ()
) -> dict[str, set[str]]:
    """digest → identities to sign for ``tag``: the manifest it serves and, for an index, each
    of its image entries, all for the one identity of ``tag``."""
    name = identity(registry_url, repository, tag)
    needs: dict[str, set[str]] = {digest: {name}}
    for entry in entries:
        needs.setdefault(entry, set()).add(name)
    return needs


def sign_for_tag(
    ctx: RunContext,
    client: RegistryClient,
    repository: str,
    tag: str,
    digest: str,
    entries: Iterable[str] = (),
) -> int:
    """Before ``tag`` moves to ``digest`` (an index: with ``entries``), or where it holds it:
    make sure every signature it needs is in the registry and valid (the run's tally counts
    them, written or found). The number written."""
    if ctx.dry_run:
        return 0
    signing = signing_for(ctx.settings)
    if signing is None:
        return 0
    from .keys import SignerUnavailable, SigningError  # cryptography: only when signing is on
    from .store import ensure_signed

    needs = needs_for_tag(client.registry.url, repository, tag, digest, entries)
    try:
        signed = ensure_signed(client, repository, needs, signing, compose_id=ctx.compose_id)
    except SyncError as error:
        if isinstance(error, TransientError):
            raise SignerUnavailable(f"signing failed: {error}") from None
        raise SigningError(f"signing failed: {error}") from None
    if ctx.signed is not None:
        url = client.registry.url
        ctx.signed.add(url, repository, written=signed.written, present=signed.present)
    written = len(signed.written)
    if written:
        _log.info(
            "compose %s: signed %s/%s:%s (%d signature%s)",
            ctx.compose_id,
            client.registry.url,
            repository,
            tag,
            written,
            "" if written == 1 else "s",
        )
    return written
