"""Index tags: gate each one on what it holds now and what the run recorded, then write it.

Gate, write, read back. distribution has no conditional PUT, so another writer can move the
tag between our read and our write: the read-back catches that, and the gate runs again on
what the tag holds now. A dry run gates and writes nothing.
"""

from __future__ import annotations

import dataclasses
import itertools

from .. import shutdown
from ..errors import SyncError
from ..gate.verdicts import CurrentTag, GateDecision, Verdict
from ..oci import mediatype
from ..oci.index import UnknownEntry
from ..oci.manifest import digest_of
from ..signing.hook import sign_for_tag
from .context import RunContext
from .plan import GateInputs, decide_index
from .read import Registry, contradicted, holds_after_write, read_tag
from .report import TagAction, TagOutcome


def gate_indexes(
    ctx: RunContext,
    registry: Registry,
    repository: str,
    tags: tuple[str, ...],
    inputs: GateInputs,
) -> list[tuple[TagOutcome, SyncError | None]]:
    """Gate every index tag of ``repository`` in ``registry``, in order (a worker); a stop
    of the process ends it before the next tag (a write in flight completes)."""
    gated = []
    for tag in tags:
        if shutdown.requested():
            break
        gated.append(gate_index(ctx, registry, repository, tag, inputs))
    return gated


def action_for(decision: GateDecision, *, dry_run: bool) -> TagAction | None:
    """What a decision does to its tag; None: write the index."""
    if decision.verdict in (Verdict.HOLD, Verdict.STALE):
        return TagAction.WOULD_HOLD if dry_run else TagAction.HELD
    if decision.verdict is Verdict.UNCHANGED:
        return TagAction.UNCHANGED
    if dry_run or not decision.entries:
        return TagAction.WOULD_PUBLISH
    return None


def gate_index(
    ctx: RunContext, registry: Registry, repository: str, tag: str, inputs: GateInputs
) -> tuple[TagOutcome, SyncError | None]:
    """Gate one index tag, and write it when the gate lets it move."""
    client = registry.client

    brings = frozenset(inputs.entries) | frozenset(inputs.stale or ()) | inputs.failed

    def outcome(action: TagAction, decision: GateDecision, digest: str | None) -> TagOutcome:
        return TagOutcome(registry.url, repository, tag, action, decision, digest, brings=brings)

    def decide(current: CurrentTag | None) -> GateDecision:
        return decide_index(
            current,
            inputs,
            repository=repository,
            compose_id=ctx.compose_id,
            settings=ctx.settings,
            options=ctx.options,
        )

    try:
        for attempt in itertools.count(1):
            current = read_tag(client, repository, tag)
            decision = decide(current)
            action = action_for(decision, dry_run=ctx.dry_run)
            if action is TagAction.WOULD_PUBLISH:
                return outcome(action, decision, None), None
            if action is TagAction.UNCHANGED and current is not None:  # signing on: fill gaps
                entries = [entry.digest for entry in current.entries.values()]
                sign_for_tag(ctx, client, repository, tag, current.digest, entries)
            if action is not None:
                return outcome(action, decision, current.digest if current else None), None
            wrong = contradicted(registry, repository, decision.entries)
            if wrong:
                # Every entry of the index about to be written is the image its own config
                # says (what this run pushed, what a per-arch tag or the index held): the gate
                # holds the tag over one that is not, as over any entry it cannot read.
                current = _with_unknown(current, wrong)
                decision = decide(current)
                action = action_for(decision, dry_run=ctx.dry_run) or TagAction.HELD
                return outcome(action, decision, current.digest if current.digest else None), None
            body = decision.index_body(ctx.compose_id)
            entries = [entry.digest for entry in decision.entries]
            sign_for_tag(ctx, client, repository, tag, digest_of(body), entries)  # before it moves
            digest = client.manifest_put(repository, tag, mediatype.OCI_INDEX, body)
            if holds_after_write(
                ctx, client, repository, tag, digest, attempt, then="gating again"
            ):
                return outcome(TagAction.PUBLISHED, decision, digest), None
    except SyncError as error:
        failure = TagOutcome(registry.url, repository, tag, TagAction.FAILED, error=str(error))
        return failure, error
    raise AssertionError("unreachable")  # pragma: no cover


def _with_unknown(current: CurrentTag | None, wrong: list[UnknownEntry]) -> CurrentTag:
    """``current`` (None: no tag yet) with ``wrong`` among what cannot be read."""
    digests = {entry.digest for entry in wrong}
    if current is None:
        return CurrentTag("", unknown=tuple(wrong))
    entries = {arch: e for arch, e in current.entries.items() if e.digest not in digests}
    return dataclasses.replace(current, entries=entries, unknown=(*current.unknown, *wrong))
