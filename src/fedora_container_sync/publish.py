"""The orchestrator: one compose message in, one :class:`ComposeReport` out.

Sequence: fetch and parse the compose metadata → select images and tags (pure) → download,
verify and convert each image once → per registry: push every per-arch tag, then for each
index tag read what the registry serves, let the gate decide (pure), and only then write the
index. Tags move last; a failure anywhere leaves index tags as they were.
"""

from __future__ import annotations

import itertools
import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass, replace
from pathlib import Path

import httpx

from . import bodhi, gate, skopeo
from .compose import ComposeFetcher, ComposeMetadata, LocalImage
from .errors import (
    ConfigError,
    PermanentError,
    SkopeoError,
    SyncError,
    TagRaceError,
)
from .layout import LocalManifest, annotate_layout, read_layout
from .manifests import (
    ARCH,
    COMPOSE_ID,
    IMAGE_SHA256,
    IndexEntry,
    Manifest,
    entry_of,
    platform_of_config,
)
from .messages import ComposeMessage, Envelope, needs_work, parse_compose_message
from .platforms import FEDORA_PLATFORMS, fedora_arch
from .registry import mediatype
from .registry.auth import RegistryAuth
from .registry.client import RegistryClient
from .report import ArchPush, ComposeReport, TagAction, TagOutcome
from .retry import call_with_retry
from .selection import ImageArtifact, select_images
from .settings import RegistrySettings, Releases, Settings
from .tags import (
    ComposeFacts,
    ReleaseTags,
    excluded,
    merge_releases,
    needs_lookup,
    plan_tags,
)
from .workdir import run_directory

_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PreparedImage:
    """An image downloaded and verified (and, unless dry-running, converted)."""

    local: LocalImage
    layout: Path | None = None
    manifest: LocalManifest | None = None

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
    """Create the work dir and check it is writable, or raise a ConfigError naming it."""
    work_dir = settings.work_dir
    try:
        work_dir.mkdir(parents=True, exist_ok=True)
        probe = work_dir / ".write-test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as error:
        raise ConfigError(f"work_dir {work_dir}: not usable: {error.strerror or error}") from None


def publish_compose(
    message: ComposeMessage,
    settings: Settings,
    *,
    dry_run: bool = False,
    options: PublishOptions | None = None,
) -> ComposeReport:
    """Publish one finished compose to every configured registry."""
    return _Run(message, settings, dry_run=dry_run, options=options).execute()


class _Run:
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

    def execute(self) -> ComposeReport:
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
        self._log_result()
        return self.report

    def _execute(self) -> None:
        with httpx.Client(
            timeout=httpx.Timeout(self.settings.http_timeout, connect=15.0),
            headers={"User-Agent": "fedora-container-sync"},
        ) as http:
            fetcher = ComposeFetcher(
                http,
                self.message.location,
                compose_id=self.compose_id,
                allowlist=self.settings.compose_url_allowlist,
                retry=self.settings.retry,
            )
            planned = self._plan(fetcher, http)
            if planned is None:
                return
            artifacts, tags = planned
            prepared = self._prepare(fetcher, artifacts)
        for registry in self.settings.registries:
            self._publish_to(registry, artifacts, prepared, tags)

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
            facts = _facts(metadata)
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
        if not needs_lookup(facts.release_version, static):
            return static
        looked_up = bodhi.current_releases(http, self.settings.bodhi, retry=self.settings.retry)
        return merge_releases(static, looked_up)

    def _prepare(
        self, fetcher: ComposeFetcher, artifacts: list[ImageArtifact]
    ) -> dict[tuple[str, str], PreparedImage]:
        prepared = {}
        for artifact in artifacts:
            try:
                local = fetcher.download(artifact, self.work / "downloads")
                _log.info(
                    "compose %s: verified %s (%s, %d bytes, sha256 %s)",
                    self.compose_id,
                    artifact.path,
                    local.transport,
                    artifact.size,
                    artifact.sha256,
                )
                image = PreparedImage(local)
                if not self.dry_run:
                    image = self._convert(image)
            except SyncError as error:
                self._fail(error)
                continue
            prepared[(artifact.repository, artifact.arch)] = image
        return prepared

    def _convert(self, image: PreparedImage) -> PreparedImage:
        artifact = image.artifact
        layout = self.work / "layouts" / artifact.sha256
        where = f"{self.compose_id}: {artifact.path}"
        layout.parent.mkdir(parents=True, exist_ok=True)
        (self.work / "tmp").mkdir(parents=True, exist_ok=True)
        skopeo.run(
            skopeo.convert_argv(
                self.settings.skopeo, image.local.reference, layout, tmpdir=self.work / "tmp"
            ),
            timeout=self.settings.skopeo_timeout,
            what=f"conversion of {artifact.path}",
            hide_env=self._secret_env,
        )
        annotate_layout(
            layout,
            {COMPOSE_ID: self.compose_id, ARCH: artifact.arch, IMAGE_SHA256: artifact.sha256},
            where=where,
        )
        manifest = read_layout(layout, where=where)
        built_for = fedora_arch(
            manifest.platform.architecture, manifest.platform.os, manifest.platform.variant
        )
        if built_for != artifact.arch:
            raise PermanentError(
                f"{where}: listed as {artifact.arch} but the image is built for {built_for}"
            )
        return PreparedImage(image.local, layout, manifest)

    # -- registry side -----------------------------------------------------------------------

    def _publish_to(
        self,
        registry: RegistrySettings,
        artifacts: list[ImageArtifact],
        prepared: dict[tuple[str, str], PreparedImage],
        tags: ReleaseTags,
    ) -> None:
        try:
            credentials = registry.credentials()
        except SyncError as error:
            self._fail(error)
            return
        auth = RegistryAuth(
            credentials, registry=registry.url, allow_http_realm=not registry.tls_verify
        )
        client = RegistryClient(
            registry,
            timeout=self.settings.http_timeout,
            retry=self.settings.retry,
            auth=auth,
            log_prefix=f"compose {self.compose_id}: ",
        )
        with client, skopeo.auth_file(registry.host, credentials, self.work / "auth") as authfile:
            try:
                client.ping()
            except SyncError as error:
                # One line naming the registry; the other registries still get the compose.
                self._fail(
                    type(error)(
                        f"registry {registry.url} not usable, nothing was changed there: {error}"
                    )
                )
                return
            for repository in _unique(a.repository for a in artifacts):
                entries: dict[str, IndexEntry | None] = {}
                stale: dict[str, str] = {}
                for artifact in (a for a in artifacts if a.repository == repository):
                    image = prepared.get((repository, artifact.arch))
                    if image is None:
                        continue  # download or verification failed; already reported
                    pushed = self._push_arch(client, registry, image, tags, authfile)
                    if pushed.newer is not None:
                        stale[artifact.arch] = pushed.newer
                    elif not pushed.failed:
                        entries[artifact.arch] = pushed.entry
                failed = {a.arch for a in artifacts if a.repository == repository}
                failed -= entries.keys() | stale.keys()
                for tag in tags.index_tags:
                    self._gate_index(client, registry, repository, tag, entries, failed, stale)

    def _push_arch(
        self,
        client: RegistryClient,
        registry: RegistrySettings,
        image: PreparedImage,
        tags: ReleaseTags,
        authfile: Path | None,
    ) -> _ArchResult:
        """Move one per-arch tag, unless the rollback guard keeps it."""
        artifact = image.artifact
        tag = tags.arch_tag(artifact.arch)
        manifest, layout = image.manifest, image.layout
        if not self.dry_run and (manifest is None or layout is None):
            raise ValueError(f"{artifact.path} was not converted before its push")
        try:
            found = client.manifest_get(artifact.repository, tag)
            current = None if found is None else self._current(client, artifact.repository, found)
            decision = gate.decide_arch_tag(
                current,
                artifact.arch,
                manifest.digest if manifest else None,
                compose_id=self.compose_id,
                force=self.options.force,
            )
            push = ArchPush(
                registry.url, artifact.repository, tag, artifact.arch, decision=decision
            )
            if decision.verdict is gate.Verdict.STALE:
                self._record_push(push)
                return _ArchResult(newer=decision.holder or "")
            if self.dry_run or manifest is None or layout is None:
                self._record_push(replace(push, planned=True))
                return _ArchResult()
            skipped = decision.verdict is gate.Verdict.UNCHANGED
            if not skipped:
                self._copy(registry, artifact.repository, tag, layout, manifest, authfile)
        except SyncError as error:
            self._fail(error)
            self.report.pushes.append(
                ArchPush(registry.url, artifact.repository, tag, artifact.arch, error=str(error))
            )
            return _ArchResult(failed=True)
        self._record_push(replace(push, digest=manifest.digest, skipped=skipped))
        entry = IndexEntry(
            artifact.arch,
            manifest.media_type,
            manifest.digest,
            manifest.size,
            self.compose_id,
            artifact.sha256,
        )
        return _ArchResult(entry)

    def _record_push(self, push: ArchPush) -> None:
        """Report one per-arch tag's outcome, and log it as one line (the report row)."""
        self.report.pushes.append(push)
        name, verdict, current, compose, reason = push.row()
        kept_or_forced = push.stale or (push.decision is not None and push.decision.forced)
        (_log.warning if kept_or_forced else _log.info)(
            "compose %s: tag %s, verdict %s: current [%s], compose [%s]: %s%s",
            self.compose_id,
            name,
            verdict,
            current,
            compose,
            reason,
            "; not moved" if push.stale else "",
        )

    def _copy(
        self,
        registry: RegistrySettings,
        repository: str,
        tag: str,
        layout: Path,
        manifest: LocalManifest,
        authfile: Path | None,
    ) -> None:
        """``skopeo copy`` the converted image to ``tag``, digest preserved and checked."""
        name = f"{registry.url}/{repository}:{tag}"
        digest_file = self.work / "digests" / _safe_name(f"{registry.url}-{repository}-{tag}")
        digest_file.parent.mkdir(parents=True, exist_ok=True)
        destination = skopeo.Destination(
            f"docker://{registry.host}/{registry.repository_path(repository)}:{tag}",
            tls_verify=registry.tls_verify,
            cert_dir=registry.cert_dir,
            auth_file=authfile,
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

    def _gate_index(
        self,
        client: RegistryClient,
        registry: RegistrySettings,
        repository: str,
        tag: str,
        entries: dict[str, IndexEntry | None],
        failed: set[str],
        stale: dict[str, str],
    ) -> None:
        """Gate one index tag. ``entries`` maps each pushed arch to its entry (None: dry run);
        ``stale`` each arch whose per-arch tag the guard kept to the newer compose there."""
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
            self._fail(error)
            self.report.tags.append(
                TagOutcome(registry.url, repository, tag, TagAction.FAILED, error=str(error))
            )
            return
        outcome = TagOutcome(registry.url, repository, tag, action, decision, digest)
        self.report.tags.append(outcome)
        kept = decision.verdict in (gate.Verdict.HOLD, gate.Verdict.STALE)
        # A tag kept only because an arch failed in this run follows from that failure, which
        # was already reported as an error: one line per problem, not three.
        follows_failure = kept and bool(failed) and decision.missing <= failed
        log = _log.warning if (kept and not follows_failure) or decision.forced else _log.info
        log(
            "compose %s: gate: %s %s, verdict %s: current [%s], compose [%s]: %s%s",
            self.compose_id,
            action.value,
            name,
            decision.verdict.value,
            outcome.arches("current_arches"),
            outcome.arches("compose_arches"),
            decision.reason,
            f" ({digest})" if digest and action is TagAction.PUBLISHED else "",
        )

    def _current(self, client: RegistryClient, repository: str, found: Manifest) -> gate.CurrentTag:
        """What a tag holds, as the gate sees it: its arches and the composes it names."""
        annotations = found.annotations
        compose_id = annotations.get(COMPOSE_ID)
        if found.is_index:
            entries = {d.arch: entry_of(d) for d in found.entries()}
            return gate.CurrentTag(found.digest, compose_id, entries)
        arch = annotations.get(ARCH)
        platform = None
        if arch not in FEDORA_PLATFORMS:
            config = client.blob_get(repository, found.config_digest())
            platform = platform_of_config(config, f"{repository}@{found.digest}")
            arch = fedora_arch(platform.architecture, platform.os, platform.variant)
        entry = IndexEntry(
            arch,
            found.media_type,
            found.digest,
            len(found.body),
            compose_id,
            annotations.get(IMAGE_SHA256),
            None if arch in FEDORA_PLATFORMS else platform,
        )
        return gate.CurrentTag(found.digest, compose_id, {arch: entry})

    # -- bookkeeping -------------------------------------------------------------------------

    def _note(self, note: str) -> None:
        _log.info("compose %s: %s", self.compose_id, note)
        self.report.notes.append(note)

    def _fail(self, error: SyncError) -> None:
        _log.error("compose %s: %s", self.compose_id, error)
        self.report.errors.append(error)

    def _log_result(self) -> None:
        report = self.report
        _log.info(
            "compose %s: done: %d per-arch tags pushed, %d index tags published, %d held, "
            "%d stale per-arch tags, %d errors",
            self.compose_id,
            sum(1 for p in report.pushes if p.ok and p.digest and not p.skipped),
            sum(1 for t in report.tags if t.action is TagAction.PUBLISHED),
            len(report.held),
            len(report.stale_pushes),
            len(report.errors),
        )


def _facts(metadata: ComposeMetadata) -> ComposeFacts:
    info = metadata.info
    return ComposeFacts(
        metadata.compose_id,
        str(info.release.short),
        metadata.release_version,
        str(info.compose.type),
        str(info.compose.label) if info.compose.label else None,
    )


def _unique(values: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(values))


def _safe_name(value: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "_", value)
