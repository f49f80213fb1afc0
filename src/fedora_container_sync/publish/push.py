"""Push: upload a converted image by digest, then move its per-arch tag to it.

skopeo uploads the blobs and the manifest by digest (untagged, digest preserved and checked):
that is the slow part, and no tag changes meanwhile. The tag then moves with one manifest PUT,
right after the rollback guard looked at what it holds *now*, and is read back; so a run for
another compose has only milliseconds, not a whole upload, to slip in between. A tag that
turned out to hold a newer compose is not moved: the guard's decision comes back.
"""

from __future__ import annotations

import itertools
import json

from ..errors import SkopeoError
from ..gate.verdicts import GateDecision, Verdict, decide_arch_tag
from ..net.retry import call_with_retry
from ..oci.manifest import digest_of
from ..registry import skopeo
from ..registry.client import RegistryClient
from ..registry.layout import manifest_blob
from .build import PreparedImage
from .context import RunContext
from .read import Registry, holds_after_write, read_tag
from .workdir import safe_name, work_dir_error


def push_image(
    ctx: RunContext, registry: Registry, repository: str, tag: str, image: PreparedImage
) -> GateDecision | None:
    """Push the converted image, then move ``tag`` to it; None when it moved, else the guard's
    decision that kept the tag (it holds a newer compose now)."""
    layout, manifest = image.layout, image.manifest
    name = f"{registry.url}/{repository}:{tag}"
    digest_file = ctx.work / "digests" / safe_name(f"{registry.url}-{repository}-{tag}")
    try:
        digest_file.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        about = f"{ctx.compose_id}: {name}: "
        raise work_dir_error(error, ctx.settings.work_dir, "pushing", about=about) from None
    body = manifest_blob(layout, manifest.digest, where=name)
    path = registry.settings.repository_path(repository)
    destination = skopeo.Destination(
        f"docker://{registry.settings.host}/{path}@{manifest.digest}",
        tls_verify=registry.settings.tls_verify,
        cert_dir=registry.settings.cert_dir,
        auth_file=registry.authfile,
    )
    call_with_retry(
        lambda: skopeo.run(
            skopeo.copy_argv(
                ctx.settings.skopeo,
                f"oci:{layout}:image",
                destination,
                digest_file=digest_file,
                tmpdir=ctx.work / "tmp",
                preserve_digests=True,
            ),
            timeout=ctx.settings.push_deadline(upload_size(body)),
            what=f"push of {name}",
            hide_env=ctx.secret_env,
        ),
        what=f"compose {ctx.compose_id}: push of {name}",
        policy=ctx.settings.retry,
    )
    landed = skopeo.read_digest(digest_file, what=f"push of {name}")
    if landed != manifest.digest:
        raise SkopeoError(f"push of {name}: landed as {landed}, expected {manifest.digest}")
    return move_arch_tag(
        ctx, registry.client, repository, tag, image.artifact.arch, manifest.media_type, body
    )


def upload_size(manifest: bytes) -> int:
    """The bytes a push of an image uploads at most: its config and layers, as its manifest
    lists them (0 for what it cannot read: the deadline is then ``skopeo_timeout``). Pure."""
    try:
        document = json.loads(manifest)
        blobs = [document["config"], *document["layers"]]
        return sum(int(blob["size"]) for blob in blobs)
    except (ValueError, TypeError, KeyError):
        return 0


def move_arch_tag(
    ctx: RunContext,
    client: RegistryClient,
    repository: str,
    tag: str,
    arch: str,
    media_type: str,
    body: bytes,
) -> GateDecision | None:
    """Guard, PUT and read back one per-arch tag (again after a lost race)."""
    digest = digest_of(body)
    for attempt in itertools.count(1):
        current = read_tag(client, repository, tag)
        decision = decide_arch_tag(
            current, arch, digest, compose_id=ctx.compose_id, force=ctx.options.force
        )
        if decision.verdict is Verdict.STALE:
            return decision
        if decision.verdict is not Verdict.UNCHANGED:
            client.manifest_put(repository, tag, media_type, body)
        if holds_after_write(ctx, client, repository, tag, digest, attempt, then="checking again"):
            return None
    raise AssertionError("unreachable")  # pragma: no cover
