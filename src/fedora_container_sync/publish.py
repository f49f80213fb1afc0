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
import shutil
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import httpx

from . import gate, skopeo
from .compose import ComposeFetcher, LocalImage
from .errors import ConfigError, PermanentError, SkopeoError, SyncError, TagRaceError
from .layout import LocalManifest, annotate_layout, read_layout
from .manifests import (
    ARCH,
    COMPOSE_ID,
    IMAGE_SHA256,
    IndexEntry,
    Manifest,
    build_index,
    digest_of,
    platform_of_config,
)
from .messages import ComposeMessage, Envelope, needs_work, parse_compose_message
from .platforms import fedora_arch
from .registry import mediatype
from .registry.auth import RegistryAuth
from .registry.client import RegistryClient
from .report import ArchPush, ComposeReport, TagAction, TagOutcome
from .retry import call_with_retry
from .selection import ImageArtifact, select_images
from .settings import RegistrySettings, Settings
from .tags import ReleaseTags, tags_for

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


def handle_envelope(
    envelope: Envelope, settings: Settings, *, dry_run: bool = False
) -> ComposeReport | None:
    """Do what one bus message asks for; None when it asks for nothing."""
    if not needs_work(envelope):
        _log.info(
            "ignoring %s: topic %s, status %s", envelope.label, envelope.topic, envelope.status
        )
        return None
    message = parse_compose_message(envelope.body, settings.compose_url_allowlist)
    return publish_compose(message, settings, dry_run=dry_run)


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
    message: ComposeMessage, settings: Settings, *, dry_run: bool = False
) -> ComposeReport:
    """Publish one finished compose to every configured registry."""
    return _Run(message, settings, dry_run=dry_run).execute()


class _Run:
    def __init__(self, message: ComposeMessage, settings: Settings, *, dry_run: bool) -> None:
        self.message = message
        self.settings = settings
        self.dry_run = dry_run
        self.compose_id = message.compose_id
        self.report = ComposeReport(message.compose_id, dry_run=dry_run)
        # A private directory per run: two runs (a redelivery and a manual replay, say)
        # never share or delete each other's files.
        self.work = Path(
            tempfile.mkdtemp(prefix=f"{_safe_name(message.compose_id)}.", dir=settings.work_dir)
        )
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
        try:
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
                planned = self._plan(fetcher)
                if planned is None:
                    return self.report
                artifacts, tags = planned
                prepared = self._prepare(fetcher, artifacts)
            for registry in self.settings.registries:
                self._publish_to(registry, artifacts, prepared, tags)
        finally:
            shutil.rmtree(self.work, ignore_errors=True)
        self._log_result()
        return self.report

    # -- compose side ------------------------------------------------------------------------

    def _plan(self, fetcher: ComposeFetcher) -> tuple[list[ImageArtifact], ReleaseTags] | None:
        try:
            metadata = fetcher.metadata()
            artifacts = select_images(
                metadata.images.images, self.settings.repos, compose_id=self.compose_id
            )
            if not artifacts:
                note = "no container images for the configured subvariants"
                _log.info("compose %s: %s", self.compose_id, note)
                self.report.notes.append(note)
                return None
            tags = tags_for(
                metadata.release_version, self.settings.releases, compose_id=self.compose_id
            )
        except SyncError as error:
            self._fail(error)
            return None
        _log.info(
            "compose %s: %d container images; index tags %s, per-arch tags %s-<arch>",
            self.compose_id,
            len(artifacts),
            ", ".join(tags.index_tags),
            tags.release,
        )
        return artifacts, tags

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
                for artifact in (a for a in artifacts if a.repository == repository):
                    image = prepared.get((repository, artifact.arch))
                    if image is None:
                        continue  # download or verification failed; already reported
                    if self.dry_run:
                        self.report.pushes.append(
                            ArchPush(
                                registry.url,
                                repository,
                                tags.arch_tag(artifact.arch),
                                artifact.arch,
                                planned=True,
                            )
                        )
                        entries[artifact.arch] = None
                        continue
                    entry = self._push_arch(client, registry, image, tags, authfile)
                    if entry is not None:
                        entries[artifact.arch] = entry
                failed = {a.arch for a in artifacts if a.repository == repository} - entries.keys()
                for tag in tags.index_tags:
                    self._gate_index(client, registry, repository, tag, entries, failed)

    def _push_arch(
        self,
        client: RegistryClient,
        registry: RegistrySettings,
        image: PreparedImage,
        tags: ReleaseTags,
        authfile: Path | None,
    ) -> IndexEntry | None:
        artifact = image.artifact
        tag = tags.arch_tag(artifact.arch)
        name = f"{registry.url}/{artifact.repository}:{tag}"
        manifest, layout = image.manifest, image.layout
        if manifest is None or layout is None:
            raise ValueError(f"{artifact.path} was not converted before its push")
        try:
            current = client.manifest_get(artifact.repository, tag)
            skipped = current is not None and current.digest == manifest.digest
            if not skipped:
                digest_file = self.work / "digests" / _safe_name(f"{registry.url}-{tag}")
                digest_file.parent.mkdir(parents=True, exist_ok=True)
                destination = skopeo.Destination(
                    f"docker://{registry.host}/{registry.repository_path(artifact.repository)}:{tag}",
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
                    raise SkopeoError(
                        f"push of {name}: landed as {landed}, expected {manifest.digest}"
                    )
        except SyncError as error:
            self._fail(error)
            self.report.pushes.append(
                ArchPush(registry.url, artifact.repository, tag, artifact.arch, error=str(error))
            )
            return None
        _log.info(
            "compose %s: %s %s (%s)",
            self.compose_id,
            "already published" if skipped else "pushed",
            name,
            manifest.digest,
        )
        self.report.pushes.append(
            ArchPush(
                registry.url,
                artifact.repository,
                tag,
                artifact.arch,
                digest=manifest.digest,
                skipped=skipped,
            )
        )
        return IndexEntry(
            artifact.arch,
            manifest.media_type,
            manifest.digest,
            manifest.size,
            self.compose_id,
            artifact.sha256,
        )

    def _gate_index(
        self,
        client: RegistryClient,
        registry: RegistrySettings,
        repository: str,
        tag: str,
        entries: dict[str, IndexEntry | None],
        failed: set[str],
    ) -> None:
        """Gate one index tag. ``entries`` maps each pushed arch to its entry (None: dry run)."""
        name = f"{registry.url}/{repository}:{tag}"
        pushed = [entry for entry in entries.values() if entry is not None]
        body = build_index(pushed, compose_id=self.compose_id) if pushed else b""
        try:
            # Gate, write, read back. distribution has no conditional PUT, so another writer can
            # move the tag between our read and our write: the read-back catches that, and the
            # gate runs again on what the tag holds now.
            for attempt in itertools.count(1):
                current = client.manifest_get(repository, tag)
                current_arches = (
                    None if current is None else self._arches_of(client, repository, current)
                )
                decision = gate.decide(
                    current_arches,
                    set(entries),
                    failed_arches=failed,
                    current_digest=current.digest if current else None,
                    new_digest=digest_of(body) if body else None,
                    policy=self.settings.gate_policy,
                )
                if decision.verdict is gate.Verdict.HOLD:
                    action = TagAction.WOULD_HOLD if self.dry_run else TagAction.HELD
                    digest = current.digest if current else None
                    break
                if decision.verdict is gate.Verdict.UNCHANGED:
                    action, digest = TagAction.UNCHANGED, current.digest if current else None
                    break
                if self.dry_run:
                    action, digest = TagAction.WOULD_PUBLISH, None
                    break
                digest = client.manifest_put(repository, tag, mediatype.OCI_INDEX, body)
                readback = client.manifest_get(repository, tag)
                if readback is not None and readback.digest == digest:
                    action = TagAction.PUBLISHED
                    break
                found = readback.digest if readback else "nothing"
                if attempt >= self.settings.retry.attempts:
                    raise TagRaceError(
                        f"{name}: lost a race {attempt} times: right after writing {digest} "
                        f"the tag held {found} (another writer moved it)"
                    )
                _log.warning(
                    "compose %s: lost a race on %s: right after writing %s the tag held %s "
                    "(another writer moved it); gating again",
                    self.compose_id,
                    name,
                    digest,
                    found,
                )
        except SyncError as error:
            self._fail(error)
            self.report.tags.append(
                TagOutcome(registry.url, repository, tag, TagAction.FAILED, error=str(error))
            )
            return
        outcome = TagOutcome(registry.url, repository, tag, action, decision, digest)
        self.report.tags.append(outcome)
        log = _log.warning if decision.verdict is gate.Verdict.HOLD else _log.info
        log(
            "compose %s: gate %s %s: current [%s], compose [%s]: %s%s",
            self.compose_id,
            action.value,
            name,
            outcome.arches("current_arches"),
            outcome.arches("compose_arches"),
            decision.reason,
            f" ({digest})" if digest and action is TagAction.PUBLISHED else "",
        )

    def _arches_of(self, client: RegistryClient, repository: str, current: Manifest) -> set[str]:
        if current.is_index:
            return {entry.arch for entry in current.entries()}
        config = client.blob_get(repository, current.config_digest())
        platform = platform_of_config(config, f"{repository}@{current.digest}")
        return {fedora_arch(platform.architecture, platform.os, platform.variant)}

    # -- bookkeeping -------------------------------------------------------------------------

    def _fail(self, error: SyncError) -> None:
        _log.error("compose %s: %s", self.compose_id, error)
        self.report.errors.append(error)

    def _log_result(self) -> None:
        report = self.report
        _log.info(
            "compose %s: done: %d per-arch tags pushed, %d index tags published, %d held, "
            "%d errors",
            self.compose_id,
            sum(1 for p in report.pushes if p.ok and not p.planned and not p.skipped),
            sum(1 for t in report.tags if t.action is TagAction.PUBLISHED),
            len(report.held),
            len(report.errors),
        )


def _unique(values: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(values))


def _safe_name(value: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "_", value)
