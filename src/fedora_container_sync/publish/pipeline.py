"""The orchestrator: one compose message in, one :class:`ComposeReport` out.

Sequence: fetch and parse the compose metadata → select images and tags (pure) → download,
verify and convert each image once → per registry: push every per-arch tag, then for each
index tag read what the registry serves, let the gate decide (pure), and only then write the
index. Tags move last; a failure anywhere leaves index tags as they were.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import logging
import shutil
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import Future
from dataclasses import dataclass, replace
from pathlib import Path

import httpx

from ..compose import bodhi
from ..compose.archive import OCI_ARCHIVE, unpack_oci_archive
from ..compose.fetch import ComposeFetcher, LocalImage
from ..compose.message import ComposeMessage, Envelope, needs_work, parse_compose_message
from ..compose.metadata import ComposeFacts, compose_facts
from ..compose.selection import ImageArtifact, select_images
from ..config.load import registry_credentials
from ..config.settings import RegistrySettings, Releases, Settings
from ..errors import (
    ConfigError,
    PermanentError,
    RegistryError,
    SkopeoError,
    SyncError,
    TagRaceError,
    WorkDirFull,
    about_compose,
)
from ..gate import verdicts as gate
from ..gate.ordering import is_newer
from ..gate.tags import ReleaseTags, excluded, merge_releases, needs_lookup, plan_tags
from ..net.httpclient import new_client
from ..net.retry import call_with_retry
from ..oci import mediatype
from ..oci.index import IndexEntry, UnknownEntry, image_arch
from ..oci.manifest import ARCH, COMPOSE_ID, IMAGE_SHA256, Manifest, digest_of
from ..oci.platforms import FEDORA_PLATFORMS, fedora_arch
from ..registry import skopeo
from ..registry.auth import RegistryAuth
from ..registry.client import RegistryClient
from ..registry.layout import LocalManifest, annotate_layout, manifest_blob, read_layout
from .progress import RUN, STEPS
from .report import ArchPush, ComposeReport, TagAction, TagOutcome
from .workdir import run_directory, safe_name, sweep_stale_runs, work_dir_error
from .workpool import WorkPool

_log = logging.getLogger(RUN)
#: One line per finished step (see :mod:`.progress`).
_steps = logging.getLogger(STEPS)

#: Which waiting step starts first when a worker is free: the later in an image's way, the
#: sooner. Images go through depth-first and index tags move as soon as they may.
_DOWNLOAD, _CONVERT, _PUSH, _GATE = range(4)


@dataclass(frozen=True)
class PreparedImage:
    """An image downloaded, verified and converted into a local OCI layout, ready to push."""

    local: LocalImage
    layout: Path
    manifest: LocalManifest

    @property
    def artifact(self) -> ImageArtifact:
        return self.local.artifact


@dataclass(frozen=True)
class PublishOptions:
    """An operator's one-off overrides (``replay --allow-drop ARCH``, ``replay --force``)."""

    #: Arches an index may lose in this run, on purpose.
    allow_drop: frozenset[str] = frozenset()
    #: Move tags even when they hold a newer compose (the rollback guard is off).
    force: bool = False


@dataclass(frozen=True)
class _ArchResult:
    """How one per-arch push went: its index entry (None in a dry run), or the newer compose
    the tag holds when the rollback guard kept it, or a failure (already reported)."""

    entry: IndexEntry | None = None
    newer: str | None = None
    failed: bool = False


def handle_envelope(
    envelope: Envelope,
    settings: Settings,
    *,
    dry_run: bool = False,
    options: PublishOptions | None = None,
) -> ComposeReport | None:
    """Do what one bus message asks for; None when it asks for nothing."""
    if not needs_work(envelope):
        _log.info(
            "ignoring %s: topic %s, status %s", envelope.label, envelope.topic, envelope.status
        )
        return None
    message = parse_compose_message(envelope.body, settings.compose_url_allowlist)
    return publish_compose(message, settings, dry_run=dry_run, options=options)


def prepare_work_dir(settings: Settings) -> None:
    """Create the work dir and check it is writable, or raise a ConfigError naming it; remove
    what runs killed outright (SIGKILL) left there, auth files included."""
    work_dir = settings.work_dir
    try:
        work_dir.mkdir(parents=True, exist_ok=True)
        # A probe of its own: two processes starting at once must not remove each other's.
        with tempfile.NamedTemporaryFile(dir=work_dir, prefix=".write-test."):
            pass
    except OSError as error:
        raise ConfigError(f"work_dir {work_dir}: not usable: {error.strerror or error}") from None
    sweep_stale_runs(work_dir)


def publish_compose(
    message: ComposeMessage,
    settings: Settings,
    *,
    dry_run: bool = False,
    options: PublishOptions | None = None,
) -> ComposeReport:
    """Publish one finished compose to every configured registry."""
    return _Run(message, settings, dry_run=dry_run, options=options).execute()


@dataclass
class _Registry:
    """A configured registry this run talks to: its API client and skopeo's auth file."""

    settings: RegistrySettings
    client: RegistryClient
    authfile: Path | None

    @property
    def url(self) -> str:
        return self.settings.url


@dataclass
class _ArchTag:
    """One per-arch tag (``41-x86_64``) in one registry, from its one read to its outcome."""

    registry: _Registry
    artifact: ImageArtifact
    tag: str
    #: What the tag holds now (None: it does not exist).
    current: gate.CurrentTag | None = None
    #: The entry of the build the tag holds, when it is this compose's build of this file.
    held: IndexEntry | None = None
    #: The rollback guard's verdict before any build: unchanged when the tag already holds
    #: this compose's build of this image file, stale when it holds a newer compose.
    decision: gate.GateDecision | None = None
    #: How it ended; None while it waits for its image or its push.
    result: _ArchResult | None = None


#: What one repository's index tags in one registry are gated with: the registry, the entry of
#: each arch this run settled, the arches that failed, the arches a newer compose holds.
_GateInputs = tuple["_Registry", dict[str, IndexEntry | None], set[str], dict[str, str]]


class _Run:
    """One compose, start to end.

    1. Plan (compose metadata, selection, tags).
    2. Read every per-arch tag in every registry, once. A tag whose manifest names this compose
       and this image file's checksum already holds the build; an image every registry holds
       is neither downloaded nor converted (the registry is the record, so this holds for a
       fresh process too), and its index entries come from what the registries hold.
    3. Download and convert each remaining image once, then push it to each registry that
       needs it, digest preserved.
    4. When every per-arch tag of a repository in a registry is settled, gate its index tags.

    Steps 3-4 run in a pool of ``max_parallel`` workers, across images, arches and registries;
    all decisions and bookkeeping happen on the calling thread, in the pool's follow-ups.
    """

    tags: ReleaseTags
    fetcher: ComposeFetcher

    def __init__(
        self,
        message: ComposeMessage,
        settings: Settings,
        *,
        dry_run: bool,
        options: PublishOptions | None = None,
    ) -> None:
        self.message = message
        self.settings = settings
        self.dry_run = dry_run
        self.options = options or PublishOptions()
        self.compose_id = message.compose_id
        self.report = ComposeReport(message.compose_id, dry_run=dry_run)
        self.work = Path()  # set by execute(): a private, locked directory for this run
        # skopeo reads credentials from its auth file only, never from our environment.
        self._secret_env = [
            f"{registry.credential_prefix}{suffix}"
            for registry in settings.registries
            if registry.credential_prefix
            for suffix in ("USER", "PASSWORD")
        ]
        self.artifacts: list[ImageArtifact] = []
        self._arch_tags: list[_ArchTag] = []
        #: (registry url, repository) -> per-arch tags not settled yet
        self._unsettled: dict[tuple[str, str], int] = {}
        #: image file checksum -> pushes of its converted image not finished yet
        self._pushing: dict[str, int] = {}
        self._steps_done = 0
        #: (registry url, repository) -> what its index tags were gated with
        self._gate_inputs: dict[
            tuple[str, str],
            tuple[_Registry, dict[str, IndexEntry | None], set[str], dict[str, str]],
        ] = {}
        self._steps_total = 0

    def execute(self) -> ComposeReport:
        started = time.monotonic()
        _log.info(
            "compose %s: %s %s from %s",
            self.compose_id,
            "planning" if self.dry_run else "publishing",
            self.message.status,
            self.message.location,
        )
        # A private directory per run: two runs (a redelivery and a manual replay, say) never
        # share files, and what a killed run left behind is swept, never built upon.
        with run_directory(self.settings.work_dir, self.compose_id) as self.work:
            self._execute()
        self.report.seconds = time.monotonic() - started
        self._sort_report()
        self._log_result()
        return self.report

    def _execute(self) -> None:
        with (
            new_client(
                timeout=self.settings.http_timeout,
                headers={"User-Agent": "fedora-container-sync"},
            ) as http,
            contextlib.ExitStack() as stack,
            WorkPool(self.settings.max_parallel) as pool,
        ):
            fetcher = ComposeFetcher(
                http,
                self.message.location,
                compose_id=self.compose_id,
                allowlist=self.settings.compose_url_allowlist,
                retry=self.settings.retry,
                max_decompressed_ratio=self.settings.max_decompressed_ratio,
                max_decompressed_size=self.settings.max_decompressed_size,
                deadline=self.settings.http_deadline,
                max_metadata_bytes=self.settings.max_metadata_bytes,
                min_download_rate=self.settings.min_download_rate,
            )
            planned = self._plan(fetcher, http)
            if planned is None:
                return
            self.artifacts, self.tags = planned
            self.fetcher = fetcher
            registries = self._connect(pool, stack)
            self._registries = {registry.url: registry for registry in registries}
            self._read_arch_tags(pool, registries)
            builds = [a for a in self.artifacts if self._needs_build(a)]
            self._steps_total += len(builds) * (1 if self.dry_run else 2)
            for artifact in self.artifacts:
                self._start(pool, artifact, build=artifact in builds)
            pool.run()
            if not self.dry_run:
                self._verify_moved_tags()

    # -- compose side ------------------------------------------------------------------------

    def _plan(
        self, fetcher: ComposeFetcher, http: httpx.Client
    ) -> tuple[list[ImageArtifact], ReleaseTags] | None:
        try:
            metadata = fetcher.metadata()
            artifacts = select_images(
                metadata.images.images, self.settings.repos, compose_id=self.compose_id
            )
            if not artifacts:
                self._note("no container images for the configured subvariants")
                return None
            facts = compose_facts(metadata)
            reason = excluded(facts, self.settings.compose_rules)
            if reason is not None:
                self._note(reason)
                return None
            releases = self._releases(facts, http)
            tags, notes = plan_tags(facts, releases, self.settings.compose_rules)
            for note in notes:
                self._note(note)
            if tags is None:
                return None
        except SyncError as error:
            self._fail(error)
            return None
        self.report.release = tags.release
        _log.info(
            "compose %s: %d container images; index tags %s, per-arch tags %s-<arch>",
            self.compose_id,
            len(artifacts),
            ", ".join(tags.index_tags),
            tags.release,
        )
        return artifacts, tags

    def _releases(self, facts: ComposeFacts, http: httpx.Client) -> Releases:
        """``[releases]``, completed from Bodhi when it lacks a number this compose needs."""
        static = self.settings.releases
        if not needs_lookup(facts.release_version, static, compose_id=self.compose_id):
            return static
        looked_up = bodhi.current_releases(
            http,
            self.settings.bodhi,
            retry=self.settings.retry,
            deadline=self.settings.http_deadline,
        )
        return merge_releases(static, looked_up)

    def _needs_build(self, artifact: ImageArtifact) -> bool:
        """Does a registry lack this build (and may it get it)?"""
        return any(d.verdict is gate.Verdict.PUBLISH for _, d in self._waiting(artifact))

    def _start(self, pool: WorkPool, artifact: ImageArtifact, *, build: bool) -> None:
        """Settle the tags that keep what they hold; download the image if a registry needs it."""
        for target, decision in self._waiting(artifact):
            if decision.verdict is gate.Verdict.STALE or not build:
                self._keep(pool, target, decision)
        if not build:
            return
        pool.submit(
            functools.partial(self._download, artifact),
            functools.partial(self._downloaded, pool, artifact),
            priority=_DOWNLOAD,
        )

    def _download(self, artifact: ImageArtifact) -> LocalImage:
        with self._space_for(artifact, "downloading"):
            return self.fetcher.download(artifact, self.work / "downloads")

    @contextlib.contextmanager
    def _space_for(self, artifact: ImageArtifact, step: str) -> Iterator[None]:
        """A work dir that cannot be written (full: no space, no quota, a file size limit; or
        read-only, an I/O error) fails this image only, in one line."""
        about = f"{self.compose_id}: {artifact.path}: "
        try:
            yield
        except OSError as error:
            raise work_dir_error(error, self.settings.work_dir, step, about=about) from None
        except SkopeoError as error:
            words = skopeo.full_disk(str(error))
            if words is None:
                raise
            full = f"{about}work_dir {self.settings.work_dir} is full"
            raise WorkDirFull(f"{full} while {step}: skopeo: {words}") from None

    def _downloaded(
        self, pool: WorkPool, artifact: ImageArtifact, done: Future[LocalImage]
    ) -> None:
        try:
            local = done.result()
        except SyncError as error:
            self._fail(error)
            self._steps_total -= 1 if self.dry_run else 2
            self._abandon(pool, artifact)
            return
        self.report.downloads += 1
        self.report.download_bytes += artifact.size
        self._step(
            "downloaded and verified %s (%s, %d bytes, sha256 %s)",
            artifact.path,
            local.transport,
            artifact.size,
            artifact.sha256,
        )
        if self.dry_run:
            local.path.unlink(missing_ok=True)
            self._built(pool, artifact, None)
            return
        pool.submit(
            functools.partial(self._convert, local),
            functools.partial(self._converted, pool, artifact),
            priority=_CONVERT,
        )

    def _converted(
        self, pool: WorkPool, artifact: ImageArtifact, done: Future[PreparedImage]
    ) -> None:
        try:
            image = done.result()
        except SyncError as error:
            self._fail(error)
            self._steps_total -= 1
            self._abandon(pool, artifact)
            return
        self.report.conversions += 1
        self._step("converted %s to %s", artifact.path, image.manifest.digest)
        self._built(pool, artifact, image)

    def _convert(self, local: LocalImage) -> PreparedImage:
        artifact = local.artifact
        layout = self.work / "layouts" / artifact.sha256
        where = f"{self.compose_id}: {artifact.path}"
        # skopeo would extract an OCI archive with its own tar reader; it gets the directory
        # unpacked here instead, where nothing can be written through a link.
        unpacked = self.work / "unpacked" / artifact.sha256
        source = local.reference
        with self._space_for(artifact, "converting"):
            try:
                layout.parent.mkdir(parents=True, exist_ok=True)
                (self.work / "tmp").mkdir(parents=True, exist_ok=True)
                if local.transport == OCI_ARCHIVE:
                    unpacked.parent.mkdir(parents=True, exist_ok=True)
                    unpack_oci_archive(local.path, unpacked, where=where)
                    local.path.unlink()
                    source = f"oci:{unpacked}"
                skopeo.run(
                    skopeo.convert_argv(
                        self.settings.skopeo, source, layout, tmpdir=self.work / "tmp"
                    ),
                    timeout=self.settings.skopeo_timeout,
                    what=f"conversion of {artifact.path}",
                    hide_env=self._secret_env,
                )
                annotate_layout(
                    layout,
                    {
                        COMPOSE_ID: self.compose_id,
                        ARCH: artifact.arch,
                        IMAGE_SHA256: artifact.sha256,
                    },
                    where=where,
                )
            except BaseException:
                # What a failed conversion wrote goes at once: the other images need the space.
                shutil.rmtree(layout, ignore_errors=True)
                raise
            finally:
                # The work dir holds only what is still needed: at most a few images at a time.
                local.path.unlink(missing_ok=True)
                shutil.rmtree(unpacked, ignore_errors=True)
        manifest = read_layout(layout, where=where)
        built_for = fedora_arch(
            manifest.platform.architecture, manifest.platform.os, manifest.platform.variant
        )
        if built_for != artifact.arch:
            raise PermanentError(
                f"{where}: listed as {artifact.arch} but the image is built for {built_for}"
            )
        return PreparedImage(local, layout, manifest)

    # -- registry side -----------------------------------------------------------------------

    def _connect(self, pool: WorkPool, stack: contextlib.ExitStack) -> list[_Registry]:
        """A client and an auth file per registry that answers; the others are skipped."""
        candidates: list[_Registry] = []
        for settings in self.settings.registries:
            try:
                credentials = registry_credentials(settings)
            except SyncError as error:
                self._fail(error)
                continue
            auth = RegistryAuth(
                credentials, registry=settings.url, allow_http_realm=not settings.tls_verify
            )
            client = stack.enter_context(
                RegistryClient(
                    settings,
                    timeout=self.settings.http_timeout,
                    deadline=self.settings.http_deadline,
                    retry=self.settings.retry,
                    auth=auth,
                    log_prefix=f"compose {self.compose_id}: ",
                )
            )
            try:
                authfile = stack.enter_context(
                    skopeo.auth_file(settings.host, credentials, self.work / "auth")
                )
            except OSError as error:
                doing = f"writing the auth file for {settings.url}"
                about = f"{self.compose_id}: "
                self._fail(work_dir_error(error, self.settings.work_dir, doing, about=about))
                continue
            candidates.append(_Registry(settings, client, authfile))
        answering: list[_Registry] = []

        def pinged(registry: _Registry, done: Future[None]) -> None:
            try:
                done.result()
            except SyncError as error:
                # One line naming the registry; the other registries still get the compose.
                self._fail(
                    type(error)(
                        f"registry {registry.url} not usable, nothing was changed there: {error}"
                    )
                )
                return
            answering.append(registry)

        for registry in candidates:
            pool.submit(registry.client.ping, functools.partial(pinged, registry))
        pool.run()
        return [r for r in candidates if r in answering]

    def _read_arch_tags(self, pool: WorkPool, registries: list[_Registry]) -> None:
        """Read every per-arch tag once, in every registry; what each holds decides the rest."""
        for registry in registries:
            for artifact in self.artifacts:
                target = _ArchTag(registry, artifact, self.tags.arch_tag(artifact.arch))
                self._arch_tags.append(target)
                key = (registry.url, artifact.repository)
                self._unsettled[key] = self._unsettled.get(key, 0) + 1
                pool.submit(
                    functools.partial(
                        self._read_tag, registry.client, artifact.repository, target.tag
                    ),
                    functools.partial(self._arch_tag_read, pool, target),
                )
        # Steps: each per-arch tag settled, each index tag gated (and, later, each build).
        self._steps_total = len(self._arch_tags) + len(self._unsettled) * len(self.tags.index_tags)
        pool.run()

    def _read_tag(
        self, client: RegistryClient, repository: str, tag: str
    ) -> gate.CurrentTag | None:
        found = client.manifest_get(repository, tag)
        return None if found is None else self._current(client, repository, found)

    def _arch_tag_read(
        self, pool: WorkPool, target: _ArchTag, done: Future[gate.CurrentTag | None]
    ) -> None:
        artifact = target.artifact
        try:
            target.current = done.result()
        except SyncError as error:
            self._arch_failed(target, error)
            self._settle(pool, target, _ArchResult(failed=True))
            return
        target.held = gate.held_build(
            target.current, artifact.arch, image_sha256=artifact.sha256, compose_id=self.compose_id
        )
        target.decision = gate.decide_arch_tag(
            target.current,
            artifact.arch,
            target.held.digest if target.held else None,
            compose_id=self.compose_id,
            force=self.options.force,
        )

    def _keep(self, pool: WorkPool, target: _ArchTag, decision: gate.GateDecision) -> None:
        """Settle a per-arch tag that keeps what it holds: this very build (the index entry
        comes from the registry) or a newer compose's (stale)."""
        push = self._arch_push(target, decision)
        if decision.verdict is gate.Verdict.STALE:
            self._record_push(push)
            self._settle(pool, target, _ArchResult(newer=decision.holder or ""))
            return
        if decision.verdict is not gate.Verdict.UNCHANGED or target.held is None:
            raise ValueError(f"{target.tag}: kept without holding this build")
        self._record_push(replace(push, digest=target.held.digest, skipped=True))
        self._settle(pool, target, _ArchResult(target.held))

    def _built(self, pool: WorkPool, artifact: ImageArtifact, image: PreparedImage | None) -> None:
        """Push a converted image wherever it is needed (``image`` is None in a dry run)."""
        for target, pre_decision in self._waiting(artifact):
            if image is None:  # dry run: what each tag would get
                if pre_decision.verdict is gate.Verdict.UNCHANGED:
                    self._keep(pool, target, pre_decision)
                else:
                    self._record_push(replace(self._arch_push(target, pre_decision), planned=True))
                    self._settle(pool, target, _ArchResult())
                continue
            # Now that the digest is known, decide as for any push: a registry that held this
            # build as another digest gets the same one as the others.
            decision = gate.decide_arch_tag(
                target.current,
                artifact.arch,
                image.manifest.digest,
                compose_id=self.compose_id,
                force=self.options.force,
            )
            push = replace(self._arch_push(target, decision), digest=image.manifest.digest)
            if decision.verdict is gate.Verdict.UNCHANGED:
                self._record_push(replace(push, skipped=True))
                self._settle(pool, target, _ArchResult(self._entry(image)))
                continue
            self._pushing[artifact.sha256] = self._pushing.get(artifact.sha256, 0) + 1
            pool.submit(
                functools.partial(
                    self._copy, target.registry, target.artifact.repository, target.tag, image
                ),
                functools.partial(self._pushed, pool, target, push, image),
                priority=_PUSH,
            )
        if image is not None and not self._pushing.get(artifact.sha256):
            shutil.rmtree(image.layout, ignore_errors=True)

    def _pushed(
        self,
        pool: WorkPool,
        target: _ArchTag,
        push: ArchPush,
        image: PreparedImage,
        done: Future[gate.GateDecision | None],
    ) -> None:
        self._pushing[image.artifact.sha256] -= 1
        if not self._pushing[image.artifact.sha256]:
            shutil.rmtree(image.layout, ignore_errors=True)  # pushed everywhere it goes
        try:
            kept = done.result()
        except SyncError as error:
            self._arch_failed(target, error)
            self._settle(pool, target, _ArchResult(failed=True))
            return
        if kept is not None:  # a newer compose's run moved the tag while we uploaded
            self._record_push(replace(push, decision=kept))
            self._settle(pool, target, _ArchResult(newer=kept.holder or ""))
            return
        self._record_push(push)
        self._settle(pool, target, _ArchResult(self._entry(image)))

    def _abandon(self, pool: WorkPool, artifact: ImageArtifact) -> None:
        """The image could not be downloaded or converted (already reported): its tags stay."""
        for target, _ in self._waiting(artifact):
            self._steps_total -= 1
            self._settle(pool, target, _ArchResult(failed=True))

    def _arch_failed(self, target: _ArchTag, error: SyncError) -> None:
        self._fail(error)
        self._steps_total -= 1
        self.report.pushes.append(
            ArchPush(
                target.registry.url,
                target.artifact.repository,
                target.tag,
                target.artifact.arch,
                error=str(error),
            )
        )

    def _settle(self, pool: WorkPool, target: _ArchTag, result: _ArchResult) -> None:
        """Record how a per-arch tag ended; gate the index tags once the repository's are all
        settled in that registry (index tags move last)."""
        target.result = result
        registry, repository = target.registry, target.artifact.repository
        key = (registry.url, repository)
        self._unsettled[key] -= 1
        if self._unsettled[key]:
            return
        entries: dict[str, IndexEntry | None] = {}
        stale: dict[str, str] = {}
        failed: set[str] = set()
        for done in self._arch_tags:
            if done.registry is not registry or done.artifact.repository != repository:
                continue
            outcome = done.result or _ArchResult(failed=True)
            if outcome.newer is not None:
                stale[done.artifact.arch] = outcome.newer
            elif outcome.failed:
                failed.add(done.artifact.arch)
            else:
                entries[done.artifact.arch] = outcome.entry
        self._gate_inputs[key] = (registry, entries, failed, stale)
        pool.submit(
            functools.partial(self._gate_indexes, registry, repository, entries, failed, stale),
            self._gated,
            priority=_GATE,
        )

    def _waiting(self, artifact: ImageArtifact) -> list[tuple[_ArchTag, gate.GateDecision]]:
        """The per-arch tags of ``artifact`` still to settle, with their first verdict."""
        waiting = []
        for target in self._arch_tags:
            if (
                target.artifact is artifact
                and target.result is None
                and target.decision is not None
            ):
                waiting.append((target, target.decision))
        return waiting

    def _arch_push(self, target: _ArchTag, decision: gate.GateDecision) -> ArchPush:
        artifact = target.artifact
        return ArchPush(
            target.registry.url, artifact.repository, target.tag, artifact.arch, decision=decision
        )

    def _entry(self, image: PreparedImage) -> IndexEntry:
        artifact, manifest = image.artifact, image.manifest
        return IndexEntry(
            artifact.arch,
            manifest.media_type,
            manifest.digest,
            manifest.size,
            self.compose_id,
            artifact.sha256,
        )

    def _record_push(self, push: ArchPush) -> None:
        """Report one per-arch tag's outcome, and log it as one step line (the report row)."""
        self.report.pushes.append(push)
        name, verdict, current, compose, reason = push.row()
        kept_or_forced = push.stale or (push.decision is not None and push.decision.forced)
        self._step(
            "tag %s, verdict %s: current [%s], compose [%s]: %s%s",
            name,
            verdict,
            current,
            compose,
            reason,
            "; not moved" if push.stale else "",
            level=logging.WARNING if kept_or_forced else logging.INFO,
        )

    def _copy(
        self,
        registry: _Registry,
        repository: str,
        tag: str,
        image: PreparedImage,
    ) -> gate.GateDecision | None:
        """Push the converted image, then move ``tag`` to it; None when it moved.

        skopeo uploads the blobs and the manifest by digest (untagged, digest preserved and
        checked): that is the slow part, and no tag changes meanwhile. The tag then moves with
        one manifest PUT, right after the rollback guard looked at what it holds *now*, and is
        read back; so a run for another compose has only milliseconds, not a whole upload, to
        slip in between. A tag that turned out to hold a newer compose is not moved: the
        guard's decision comes back.
        """
        layout, manifest = image.layout, image.manifest
        client = registry.client
        name = f"{registry.url}/{repository}:{tag}"
        digest_file = self.work / "digests" / safe_name(f"{registry.url}-{repository}-{tag}")
        try:
            digest_file.parent.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            about = f"{self.compose_id}: {name}: "
            raise work_dir_error(error, self.settings.work_dir, "pushing", about=about) from None
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
                    self.settings.skopeo,
                    f"oci:{layout}:image",
                    destination,
                    digest_file=digest_file,
                    tmpdir=self.work / "tmp",
                    preserve_digests=True,
                ),
                timeout=self.settings.skopeo_timeout,
                what=f"push of {name}",
                hide_env=self._secret_env,
            ),
            what=f"compose {self.compose_id}: push of {name}",
            policy=self.settings.retry,
        )
        landed = skopeo.read_digest(digest_file, what=f"push of {name}")
        if landed != manifest.digest:
            raise SkopeoError(f"push of {name}: landed as {landed}, expected {manifest.digest}")
        body = manifest_blob(layout, manifest.digest, where=name)
        return self._move_arch_tag(
            client, repository, tag, image.artifact.arch, manifest.media_type, body
        )

    def _move_arch_tag(
        self,
        client: RegistryClient,
        repository: str,
        tag: str,
        arch: str,
        media_type: str,
        body: bytes,
    ) -> gate.GateDecision | None:
        """Guard, PUT and read back one per-arch tag (again after a lost race)."""
        name = f"{client.registry.url}/{repository}:{tag}"
        digest = digest_of(body)
        for attempt in itertools.count(1):
            current = self._read_tag(client, repository, tag)
            decision = gate.decide_arch_tag(
                current, arch, digest, compose_id=self.compose_id, force=self.options.force
            )
            if decision.verdict is gate.Verdict.STALE:
                return decision
            if decision.verdict is not gate.Verdict.UNCHANGED:
                client.manifest_put(repository, tag, media_type, body)
            readback = client.manifest_get(repository, tag)
            if readback is not None and readback.digest == digest:
                return None
            holds = readback.digest if readback else "nothing"
            if attempt >= self.settings.retry.attempts:
                raise TagRaceError(
                    f"{name}: lost a race {attempt} times: right after writing "
                    f"{digest} the tag held {holds} (another writer moved it)"
                )
            _log.warning(
                "compose %s: lost a race on %s: right after writing %s the tag held %s "
                "(another writer moved it); checking again",
                self.compose_id,
                name,
                digest,
                holds,
            )
        raise AssertionError("unreachable")  # pragma: no cover

    def _verify_arch_tag(self, push: ArchPush) -> None:
        """The per-arch part of :meth:`_verify_moved_tags`: put this compose's image back on
        a tag that a run for an older compose moved after ours (it is still in the registry
        by digest)."""
        client = self._registries[push.registry].client
        name = f"{push.registry}/{push.repository}:{push.tag}"
        try:
            found = client.manifest_get(push.repository, push.tag)
            holder = None if found is None else found.annotations.get(COMPOSE_ID)
            if found is not None and (
                found.digest == push.digest or not is_newer(self.compose_id, holder)
            ):
                return
            _log.warning(
                "compose %s: %s was overwritten by %s after this run wrote it; moving it back",
                self.compose_id,
                name,
                holder,
            )
            ours = client.manifest_get(push.repository, str(push.digest))
            if ours is None:
                raise RegistryError(f"{name}: {push.digest} is gone from the registry")
            self._move_arch_tag(
                client, push.repository, push.tag, push.arch, ours.media_type, ours.body
            )
        except SyncError as error:
            self._fail(error)

    def _verify_moved_tags(self) -> None:
        """Re-read every index tag this run moved, once all its work is done.

        distribution has no conditional PUT, and the read-back after each PUT cannot see a
        writer whose PUT lands later: a run for an older compose that read the tag before our
        write may overwrite it afterwards. If one did, gate the tag again: the rollback guard
        lets it move forward to this compose, so the newer compose ends up on the tag.
        """
        for push in self.report.pushes:
            if push.digest and push.ok and not (push.skipped or push.planned or push.stale):
                self._verify_arch_tag(push)
        for number, outcome in enumerate(self.report.tags):
            if outcome.action is not TagAction.PUBLISHED:
                continue
            registry, entries, failed, stale = self._gate_inputs[
                (outcome.registry, outcome.repository)
            ]
            name = f"{outcome.registry}/{outcome.repository}:{outcome.tag}"
            try:
                found = registry.client.manifest_get(outcome.repository, outcome.tag)
            except SyncError as read_error:
                self._fail(read_error)
                continue
            holder = None if found is None else found.annotations.get(COMPOSE_ID)
            if found is not None and (
                found.digest == outcome.digest or not is_newer(self.compose_id, holder)
            ):
                continue  # still ours, or a newer compose's: as it should be
            _log.warning(
                "compose %s: %s was overwritten by %s after this run wrote it; gating again",
                self.compose_id,
                name,
                holder,
            )
            again, gate_error = self._gate_index(
                registry, outcome.repository, outcome.tag, entries, failed, stale
            )
            if gate_error is not None:
                self._fail(gate_error)
            self.report.tags[number] = again

    def _gate_indexes(
        self,
        registry: _Registry,
        repository: str,
        entries: dict[str, IndexEntry | None],
        failed: set[str],
        stale: dict[str, str],
    ) -> list[tuple[TagOutcome, SyncError | None]]:
        """Gate every index tag of ``repository`` in ``registry``, in order (a worker)."""
        return [
            self._gate_index(registry, repository, tag, entries, failed, stale)
            for tag in self.tags.index_tags
        ]

    def _gated(self, done: Future[list[tuple[TagOutcome, SyncError | None]]]) -> None:
        for outcome, error in done.result():
            if error is not None:
                self._fail(error)
                self._steps_total -= 1
                self.report.tags.append(outcome)
                continue
            self._record_tag(outcome)

    def _gate_index(
        self,
        registry: _Registry,
        repository: str,
        tag: str,
        entries: dict[str, IndexEntry | None],
        failed: set[str],
        stale: dict[str, str],
    ) -> tuple[TagOutcome, SyncError | None]:
        """Gate one index tag. ``entries`` maps each pushed arch to its entry (None: dry run);
        ``stale`` each arch whose per-arch tag the guard kept to the newer compose there."""
        client = registry.client
        name = f"{registry.url}/{repository}:{tag}"
        try:
            # Gate, write, read back. distribution has no conditional PUT, so another writer can
            # move the tag between our read and our write: the read-back catches that, and the
            # gate runs again on what the tag holds now.
            for attempt in itertools.count(1):
                found = client.manifest_get(repository, tag)
                current = None if found is None else self._current(client, repository, found)
                decision = gate.decide(
                    current,
                    entries,
                    compose_id=self.compose_id,
                    policy=self.settings.gate_policy,
                    expected=self.settings.expected_for(repository),
                    failed=failed,
                    stale=stale,
                    allow_drop=self.options.allow_drop,
                    force=self.options.force,
                )
                digest = current.digest if current else None
                if decision.verdict in (gate.Verdict.HOLD, gate.Verdict.STALE):
                    action = TagAction.WOULD_HOLD if self.dry_run else TagAction.HELD
                    break
                if decision.verdict is gate.Verdict.UNCHANGED:
                    action = TagAction.UNCHANGED
                    break
                if self.dry_run or not decision.entries:
                    action, digest = TagAction.WOULD_PUBLISH, None
                    break
                body = decision.index_body(self.compose_id)
                digest = client.manifest_put(repository, tag, mediatype.OCI_INDEX, body)
                readback = client.manifest_get(repository, tag)
                if readback is not None and readback.digest == digest:
                    action = TagAction.PUBLISHED
                    break
                holds = readback.digest if readback else "nothing"
                if attempt >= self.settings.retry.attempts:
                    raise TagRaceError(
                        f"{name}: lost a race {attempt} times: right after writing {digest} "
                        f"the tag held {holds} (another writer moved it)"
                    )
                _log.warning(
                    "compose %s: lost a race on %s: right after writing %s the tag held %s "
                    "(another writer moved it); gating again",
                    self.compose_id,
                    name,
                    digest,
                    holds,
                )
        except SyncError as error:
            failure = TagOutcome(registry.url, repository, tag, TagAction.FAILED, error=str(error))
            return failure, error
        return TagOutcome(registry.url, repository, tag, action, decision, digest), None

    def _record_tag(self, outcome: TagOutcome) -> None:
        """Report one index tag's outcome, and log it as one step line."""
        self.report.tags.append(outcome)
        decision, action = outcome.decision, outcome.action
        # A tag kept only because an arch failed in this run follows from that failure, which
        # was already reported as an error: one line per problem, not three.
        kept = action in (TagAction.HELD, TagAction.WOULD_HOLD) and not (
            decision is not None and decision.after_failure
        )
        forced = decision is not None and decision.forced
        self._step(
            "gate: %s %s, verdict %s: current [%s], compose [%s]: %s%s",
            "stale" if outcome.stale else action.value,
            f"{outcome.registry}/{outcome.repository}:{outcome.tag}",
            decision.verdict.value if decision else "failed",
            outcome.arches("current_arches"),
            outcome.arches("compose_arches"),
            outcome.reason,
            f" ({outcome.digest})" if outcome.digest and action is TagAction.PUBLISHED else "",
            level=logging.WARNING if kept or forced else logging.INFO,
        )

    def _current(self, client: RegistryClient, repository: str, found: Manifest) -> gate.CurrentTag:
        """What a tag holds, as the gate sees it: its arches, the composes it names, and what
        cannot be read. A single image's arch is its annotation (this project's), else its
        config's."""
        arch: str | UnknownEntry | None = None
        if not found.is_index:
            arch = found.annotations.get(ARCH)
            if arch not in FEDORA_PLATFORMS:
                arch = image_arch(found, client.blob_get(repository, found.config_digest()))
        return gate.CurrentTag.of(found, arch)

    # -- bookkeeping -------------------------------------------------------------------------

    def _step(self, text: str, *args: object, level: int = logging.INFO) -> None:
        """Log one finished step, counted."""
        self._steps_done += 1
        _steps.log(
            level,
            "compose %s: [%d/%d] " + text,
            self.compose_id,
            self._steps_done,
            max(self._steps_total, self._steps_done),
            *args,
        )

    def _sort_report(self) -> None:
        """Rows in a fixed order, however the parallel work finished: registries as
        configured, then images as the compose lists them, then index tags."""
        registries = {r.url: n for n, r in enumerate(self.settings.registries)}
        images = {(a.repository, a.arch): n for n, a in enumerate(self.artifacts)}
        repositories: dict[str, int] = {}
        for artifact in self.artifacts:
            repositories.setdefault(artifact.repository, len(repositories))
        self.report.pushes.sort(
            key=lambda p: (registries.get(p.registry, 0), images.get((p.repository, p.arch), 0))
        )
        # Stable: each repository's index tags were added together, in their planned order.
        self.report.tags.sort(
            key=lambda t: (registries.get(t.registry, 0), repositories.get(t.repository, 0))
        )
        self.report.errors.sort(key=str)

    def _note(self, note: str) -> None:
        _log.info("compose %s: %s", self.compose_id, note)
        self.report.notes.append(note)

    def _fail(self, error: SyncError) -> None:
        _log.error("compose %s: %s", self.compose_id, about_compose(self.compose_id, error))
        self.report.errors.append(error)

    def _log_result(self) -> None:
        report = self.report
        _log.info(
            "compose %s: done: %s; %d index tags published, %d held, %d stale; "
            "%d stale per-arch tags; %d errors",
            self.compose_id,
            report.work(),
            sum(1 for t in report.tags if t.action is TagAction.PUBLISHED),
            len(report.held),
            len(report.stale_tags),
            len(report.stale_pushes),
            len(report.errors),
        )
