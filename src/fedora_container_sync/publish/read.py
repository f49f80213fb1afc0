"""Read: what the compose lists, and what every registry holds at its tags - once, in parallel.

The registry is the record: what a tag holds now (its arches, the composes its annotations
name, what cannot be read) decides what the run does, for a fresh process as much as for a
redelivery. A per-arch tag that cannot be read is an error of this run (its arch then counts
as failed); an index tag that cannot be read is read again right before it is gated.
"""

from __future__ import annotations

import contextlib
import functools
import logging
from collections.abc import Iterable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from ..compose import bodhi
from ..compose.fetch import ComposeFetcher
from ..compose.metadata import ComposeFacts, compose_facts
from ..compose.selection import ImageArtifact, select_images
from ..config.load import registry_credentials
from ..config.settings import RegistrySettings, Releases
from ..errors import RegistryError, SyncError, TagRaceError
from ..gate.tags import ReleaseTags, excluded, merge_releases, needs_lookup, plan_tags
from ..gate.verdicts import CurrentTag
from ..net.tls import TlsContexts
from ..oci.index import IndexEntry, UnknownEntry, entry_contradiction, image_arch
from ..oci.manifest import ARCH, Manifest
from ..oci.platforms import FEDORA_PLATFORMS
from ..registry import skopeo
from ..registry.auth import RegistryAuth
from ..registry.client import RegistryClient
from ..shown import shown
from .context import RunContext
from .mounts import BlobLocations, manifest_blobs
from .outcomes import Record
from .plan import RegistryState, TagState, Unreadable
from .progress import RUN
from .workdir import work_dir_error
from .workpool import WorkPool

_log = logging.getLogger(RUN)


@dataclass(frozen=True)
class Registry:
    """A configured registry this run talks to: its API client and skopeo's auth file; and
    which of its repositories hold which blobs, as far as this run has seen (for mounts)."""

    settings: RegistrySettings
    client: RegistryClient
    authfile: Path | None
    has_credentials: bool = False
    #: (repository, digest, arch) -> why that index entry is not the image it says (None: it
    #: is), for :func:`contradicted`: an image does not change under its digest.
    checked: dict[tuple[str, str, str], UnknownEntry | None] = field(
        default_factory=dict, compare=False, hash=False
    )
    blobs: BlobLocations = field(default_factory=BlobLocations, compare=False)

    @property
    def url(self) -> str:
        return self.settings.url


def read_compose(
    ctx: RunContext, fetcher: ComposeFetcher, http: httpx.Client, record: Record
) -> tuple[list[ImageArtifact], ReleaseTags] | None:
    """The compose's images to publish and the tags they go under; None (with a note or an
    error recorded) when it publishes nothing."""
    settings = ctx.settings
    try:
        metadata = fetcher.metadata()
        artifacts = select_images(metadata.images.images, settings.repos, compose_id=ctx.compose_id)
        if not artifacts:
            record.note("no container images for the configured subvariants")
            return None
        facts = compose_facts(metadata)
        reason = excluded(facts, settings.compose_rules)
        if reason is not None:
            record.note(reason)
            return None
        tags, notes = plan_tags(facts, _releases(ctx, facts, http), settings.compose_rules)
        for note in notes:
            record.note(note)
        if tags is None:
            return None
    except SyncError as error:
        record.fail(error)
        return None
    record.release = tags.release
    _log.info(
        "compose %s: %d container images; index tags %s, per-arch tags %s-<arch>",
        ctx.compose_id,
        len(artifacts),
        ", ".join(tags.index_tags),
        tags.release,
    )
    return artifacts, tags


def _releases(ctx: RunContext, facts: ComposeFacts, http: httpx.Client) -> Releases:
    """``[releases]``, completed from Bodhi when it lacks a number this compose needs."""
    settings = ctx.settings
    static = settings.releases
    if not needs_lookup(facts.release_version, static, compose_id=ctx.compose_id):
        return static
    looked_up = bodhi.current_releases(
        http, settings.bodhi, retry=settings.retry, deadline=settings.http_deadline
    )
    return merge_releases(static, looked_up)


def connect(
    ctx: RunContext,
    pool: WorkPool,
    stack: contextlib.ExitStack,
    record: Record,
    tls: TlsContexts,
    repositories: Sequence[str] = (),
) -> list[Registry]:
    """A client and an auth file per registry that answers; the others are skipped. The
    clients share ``tls``: one context per TLS setting. ``repositories``: those this run
    publishes to; the first is where a registry's upload host is checked (a push-scope token
    there creates the repository on quay.io, so never one the run does not publish to)."""
    candidates: list[Registry] = []
    for settings in ctx.settings.registries:
        try:
            credentials = registry_credentials(settings)
        except SyncError as error:
            record.fail(error)
            continue
        auth = RegistryAuth(
            credentials,
            registry=settings.url,
            allow_http_realm=not settings.tls_verify,
            claim_push=not ctx.dry_run,
        )
        client = stack.enter_context(
            RegistryClient(
                settings,
                timeout=ctx.settings.http_timeout,
                deadline=ctx.settings.http_deadline,
                retry=ctx.settings.retry,
                auth=auth,
                log_prefix=f"compose {ctx.compose_id}: ",
                tls=tls,
            )
        )
        if ctx.dry_run:  # skopeo does not run: no auth file, nothing written
            candidates.append(Registry(settings, client, None))
            continue
        try:
            authfile = stack.enter_context(
                skopeo.auth_file(settings.host, credentials, ctx.work / "auth")
            )
        except OSError as error:
            doing = f"writing the auth file for {settings.url}"
            about = f"{ctx.compose_id}: "
            record.fail(work_dir_error(error, ctx.settings.work_dir, doing, about=about))
            continue
        candidates.append(Registry(settings, client, authfile, credentials is not None))
    answering: list[Registry] = []

    def pinged(registry: Registry, done: Future[None]) -> None:
        try:
            done.result()
        except SyncError as error:
            # One line naming the registry; the other registries still get the compose.
            record.fail(
                type(error)(
                    f"registry {registry.url} not usable, nothing was changed there: {error}"
                )
            )
            return
        answering.append(registry)

    probe = None if ctx.dry_run else next(iter(repositories), None)
    for registry in candidates:
        check = functools.partial(_usable, registry, probe if registry.has_credentials else None)
        pool.submit(check, functools.partial(pinged, registry))
    pool.run()
    return [r for r in candidates if r in answering]


def _usable(registry: Registry, repository: str | None) -> None:
    """The registry answers; and, when skopeo will get credentials for it (``repository`` to
    push to), its blob uploads stay on its own host: skopeo would send the credentials to
    whatever host an upload's ``Location`` names, so another host fails the registry."""
    registry.client.ping()
    if repository is None:
        return
    host = registry.client.upload_host(repository)
    if host != registry.settings.host:
        raise RegistryError(
            f"blob uploads go to another host ({shown(host)}); skopeo would send it the "
            "registry's credentials, so nothing is pushed there"
        )


def read_registries(
    pool: WorkPool,
    registries: Sequence[Registry],
    artifacts: Sequence[ImageArtifact],
    tags: ReleaseTags,
    record: Record,
) -> list[RegistryState]:
    """Every per-arch tag of every image and every index tag of every repository, in every
    registry, read once. A per-arch tag that cannot be read is an error, recorded now."""
    read: dict[str, dict[tuple[str, str], TagState]] = {r.url: {} for r in registries}

    def done(
        registry: Registry, key: tuple[str, str], per_arch: bool, result: Future[TagState]
    ) -> None:
        try:
            read[registry.url][key] = result.result()
        except SyncError as error:
            if per_arch:
                record.fail(error)
            read[registry.url][key] = Unreadable(str(error))

    for registry in registries:
        for artifact in artifacts:
            key = (artifact.repository, tags.arch_tag(artifact.arch))
            read_one = functools.partial(_read_arch_tag, registry, *key)
            pool.submit(read_one, functools.partial(done, registry, key, True))
    for registry in registries:
        for repository in dict.fromkeys(artifact.repository for artifact in artifacts):
            for tag in tags.index_tags:
                key = (repository, tag)
                read_one = functools.partial(read_tag, registry.client, *key)
                pool.submit(read_one, functools.partial(done, registry, key, False))
    pool.run()
    return [RegistryState(registry.url, read[registry.url]) for registry in registries]


def read_tag(client: RegistryClient, repository: str, tag: str) -> CurrentTag | None:
    """What ``tag`` holds, as the gate sees it (None: no such tag)."""
    found = client.manifest_get(repository, tag)
    return None if found is None else _named_current(client, repository, tag, found)


def _named_current(
    client: RegistryClient, repository: str, tag: str, found: Manifest
) -> CurrentTag:
    """:func:`_current`, its errors naming the registry, repository and tag."""
    try:
        return _current(client, repository, found)
    except RegistryError as error:
        # What the manifest itself lacks names only its digest: say where it was read.
        text = str(error)
        name = f"{client.registry.host}/{client.registry.repository_path(repository)}:{tag}"
        if text.startswith(name) or text.startswith(client.registry.host):
            raise
        raise RegistryError(f"{name}: {text}") from None


def _read_arch_tag(registry: Registry, repository: str, tag: str) -> CurrentTag | None:
    """:func:`read_tag`, noting the blobs of the image the tag holds (for mounts)."""
    found = registry.client.manifest_get(repository, tag)
    if found is None:
        return None
    if found.is_image:
        registry.blobs.add(repository, manifest_blobs(found.body))
    return _named_current(registry.client, repository, tag, found)


def holds_after_write(
    ctx: RunContext,
    client: RegistryClient,
    repository: str,
    tag: str,
    digest: str,
    attempt: int,
    *,
    then: str,
) -> bool:
    """Read ``tag`` back right after writing ``digest`` to it: True when it holds it. When
    another writer moved it meanwhile: a warning (``then`` says what the run does next), or,
    at the last of ``retry.attempts``, :class:`TagRaceError`."""
    readback = client.manifest_get(repository, tag)
    if readback is not None and readback.digest == digest:
        return True
    holds = readback.digest if readback else "nothing"
    name = f"{client.registry.url}/{repository}:{tag}"
    if attempt >= ctx.settings.retry.attempts:
        raise TagRaceError(
            f"{name}: lost a race {attempt} times: right after writing {digest} "
            f"the tag held {holds} (another writer moved it)"
        )
    _log.warning(
        "compose %s: lost a race on %s: right after writing %s the tag held %s "
        "(another writer moved it); %s",
        ctx.compose_id,
        name,
        digest,
        holds,
        then,
    )
    return False


def _current(client: RegistryClient, repository: str, found: Manifest) -> CurrentTag:
    """What a tag holds, as the gate sees it: its arches, the composes it names, and what
    cannot be read. A single image's arch is its annotation (this project's), else its
    config's; before an index is written, :func:`contradicted` checks every entry against
    its image's config."""
    arch: str | UnknownEntry | None = None
    if not found.is_index:
        arch = found.annotations.get(ARCH)
        if arch not in FEDORA_PLATFORMS:
            arch = image_arch(found, client.blob_get(repository, found.config_digest()))
    return CurrentTag.of(found, arch)


def contradicted(
    registry: Registry, repository: str, entries: Iterable[IndexEntry]
) -> list[UnknownEntry]:
    """The index ``entries`` whose image is not what the entry says: each image's manifest and
    config are read (once per run and registry), its platform taken from the config
    (:func:`entry_contradiction`)."""
    found: list[UnknownEntry] = []
    for entry in entries:
        key = (repository, entry.digest, entry.arch)
        if key not in registry.checked:
            client = registry.client
            child = client.manifest_get(repository, entry.digest)
            config = None
            if child is not None and not child.is_index:
                config = client.blob_get(repository, child.config_digest())
            registry.checked[key] = entry_contradiction(entry, child, config)
        problem = registry.checked[key]
        if problem is not None:
            found.append(problem)
    return found
