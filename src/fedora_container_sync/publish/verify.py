"""Verify: read back every tag this run moved, once all its work is done.

distribution has no conditional PUT, and the read-back after each PUT cannot see a writer whose
PUT lands later: a run for an older compose that read the tag before our write may overwrite it
afterwards. If one did, a per-arch tag gets this compose's image back (it is still in the
registry by digest), and an index tag is gated again from this run's outcomes: the rollback
guard lets it move forward to this compose, so the newer compose ends up on the tag.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Mapping
from concurrent.futures import Future

from ..errors import RegistryError, SyncError
from ..gate.ordering import is_newer
from ..oci.manifest import COMPOSE_ID, Manifest
from .context import RunContext
from .indexes import gate_index
from .outcomes import Record
from .progress import RUN
from .push import move_arch_tag
from .read import Registry
from .report import ArchPush, TagAction, TagOutcome
from .workpool import WorkPool

_log = logging.getLogger(RUN)


def verify_moved_tags(
    ctx: RunContext, registries: Mapping[str, Registry], record: Record, pool: WorkPool
) -> None:
    """Re-read every per-arch and index tag this run moved; undo an older compose's write.

    The reads run in parallel (``max_parallel`` at a time): at this point of a run nothing
    else is left to do. What a read found is judged, and acted on, one tag at a time."""
    for outcome in list(record.arch.values()):
        push = outcome.push
        if push and push.digest and push.ok and not (push.skipped or push.planned or push.stale):
            registry = registries[push.registry]
            pool.submit(
                functools.partial(registry.client.manifest_get, push.repository, push.tag),
                functools.partial(_arch_tag_read, ctx, registry, push, record),
            )
    for number, tag in enumerate(list(record.indexes)):
        if tag.action is TagAction.PUBLISHED:
            registry = registries[tag.registry]
            pool.submit(
                functools.partial(registry.client.manifest_get, tag.repository, tag.tag),
                functools.partial(_index_tag_read, ctx, registry, number, tag, record),
            )
    pool.run()


def _arch_tag_read(
    ctx: RunContext,
    registry: Registry,
    push: ArchPush,
    record: Record,
    read: Future[Manifest | None],
) -> None:
    """Put this compose's image back on a per-arch tag that a run for an older compose moved
    after ours."""
    client = registry.client
    name = f"{push.registry}/{push.repository}:{push.tag}"
    try:
        found = read.result()
        holder = None if found is None else found.annotations.get(COMPOSE_ID)
        if found is not None and (
            found.digest == push.digest or not is_newer(ctx.compose_id, holder)
        ):
            return
        _log.warning(
            "compose %s: %s was overwritten by %s after this run wrote it; moving it back",
            ctx.compose_id,
            name,
            holder,
        )
        ours = client.manifest_get(push.repository, str(push.digest))
        if ours is None:
            raise RegistryError(f"{name}: {push.digest} is gone from the registry")
        move_arch_tag(ctx, client, push.repository, push.tag, push.arch, ours.media_type, ours.body)
    except SyncError as error:
        record.fail(error)


def _index_tag_read(
    ctx: RunContext,
    registry: Registry,
    number: int,
    tag: TagOutcome,
    record: Record,
    read: Future[Manifest | None],
) -> None:
    """Gate an index tag again that a run for an older compose overwrote after ours."""
    name = f"{tag.registry}/{tag.repository}:{tag.tag}"
    try:
        found = read.result()
    except SyncError as read_error:
        record.fail(read_error)
        return
    holder = None if found is None else found.annotations.get(COMPOSE_ID)
    if found is not None and (found.digest == tag.digest or not is_newer(ctx.compose_id, holder)):
        return  # still ours, or a newer compose's: as it should be
    _log.warning(
        "compose %s: %s was overwritten by %s after this run wrote it; gating again",
        ctx.compose_id,
        name,
        holder,
    )
    inputs = record.inputs(tag.registry, tag.repository)
    again, gate_error = gate_index(ctx, registry, tag.repository, tag.tag, inputs)
    if gate_error is not None:
        record.fail(gate_error)
    record.replace_index(number, again)
