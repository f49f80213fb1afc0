"""What the registries serve, read for the audit. Reads only: every request is a GET.

Per configured registry and repository: the tag list, then the manifest of each tag the audit
needs (the implied index tags and the per-arch tags), and the config blob of an index tag that
holds a single image instead of an index (to learn its arch). What the audit decides from
that is in :mod:`.findings`.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from cryptography.hazmat.primitives.asymmetric import ec

from ..config.load import registry_credentials
from ..config.settings import Releases, Settings
from ..errors import SyncError
from ..oci.index import UnknownEntry, image_arch
from ..oci.manifest import ARCH, Manifest
from ..oci.platforms import FEDORA_PLATFORMS
from ..registry.auth import RegistryAuth
from ..registry.client import RegistryClient
from ..signing.payload import is_attachment_tag
from ..signing.status import Checked
from .state import (
    Content,
    IndexState,
    ReadFailure,
    RepositoryState,
    build_of,
    index_of,
    index_tags,
    tags_to_read,
)

_log = logging.getLogger(__name__)


def read_registries(settings: Settings) -> tuple[list[RepositoryState], list[ReadFailure]]:
    """Every configured repository in every configured registry, and what could not be read.

    A registry that does not answer is one failure; a repository that cannot be read (an
    error answer, a malformed manifest) is one failure and the others are still read.
    """
    states: list[RepositoryState] = []
    failures: list[ReadFailure] = []
    public_key = None
    if settings.signing.public_key is not None:
        from ..signing.setup import public_key_of

        public_key = public_key_of(settings.signing)
    for registry in settings.registries:
        credentials = registry_credentials(registry)
        auth = RegistryAuth(
            credentials, registry=registry.url, allow_http_realm=not registry.tls_verify
        )
        with RegistryClient(
            registry,
            timeout=settings.http_timeout,
            deadline=settings.http_deadline,
            retry=settings.retry,
            auth=auth,
        ) as client:
            try:
                client.ping()
            except SyncError as error:
                _log.error("audit: registry %s could not be read: %s", registry.url, error)
                failures.append(ReadFailure(registry.url, None, str(error)))
                continue
            for repository in repositories(settings):
                try:
                    state = read_repository(
                        client,
                        registry.url,
                        repository,
                        settings.releases,
                        public_key=public_key,
                    )
                except SyncError as error:
                    _log.error(
                        "audit: %s/%s could not be read: %s", registry.url, repository, error
                    )
                    failures.append(ReadFailure(registry.url, repository, str(error)))
                    continue
                _log.info(
                    "audit: read %s: %d tags, %d audited",
                    state.name,
                    len(state.tags),
                    len(state.contents),
                )
                states.append(state)
    return states, failures


def repositories(settings: Settings) -> list[str]:
    """The configured repositories, each once, in configuration order."""
    return list(dict.fromkeys(settings.repos.values()))


def read_repository(
    client: RegistryClient,
    registry_url: str,
    repository: str,
    releases: Releases,
    *,
    public_key: ec.EllipticCurvePublicKey | None = None,
) -> RepositoryState:
    """The tag list of ``repository`` and the content of every tag the audit looks at (with
    ``public_key``: and the signatures of every digest they serve, checked with it). cosign's
    attachment tags
    (``sha256-<hex>.sig``) are never images: they are left out of the tag list."""
    tags = {tag for tag in client.tags_list(repository) if not is_attachment_tag(tag)}
    index_names = {index_tag.tag for index_tag in index_tags(tags, releases)}
    contents: dict[str, Content] = {}
    for tag in tags_to_read(tags, releases):
        manifest = client.manifest_get(repository, tag)
        if manifest is None:  # deleted between the tag list and now
            tags.discard(tag)
            continue
        if tag in index_names:
            single_arch = None if manifest.is_index else _arch_of(client, repository, manifest)
            contents[tag] = index_of(manifest, single_arch=single_arch)
        else:
            contents[tag] = build_of(manifest)
    found = None
    if public_key is not None:
        found = _signatures(client, repository, contents.values(), public_key)
    return RepositoryState(registry_url, repository, frozenset(tags), contents, found)


def _signatures(
    client: RegistryClient,
    repository: str,
    contents: Iterable[Content],
    public_key: ec.EllipticCurvePublicKey,
) -> dict[str, tuple[Checked, ...]]:
    """The signatures of every digest ``contents`` serve: the tags', and the index entries'."""
    from ..signing.store import read_signatures

    digests: set[str] = set()
    for content in contents:
        digests.add(content.digest)
        if isinstance(content, IndexState):
            digests.update(build.digest for build in content.entries.values())
    return {
        digest: read_signatures(client, repository, digest).checked(public_key)
        for digest in sorted(digests)
    }


def _arch_of(client: RegistryClient, repository: str, manifest: Manifest) -> str | UnknownEntry:
    """The arch of a single image, read as the gate reads it (annotation, else config)."""
    arch = manifest.annotations.get(ARCH)
    if arch in FEDORA_PLATFORMS:
        return arch
    return image_arch(manifest, client.blob_get(repository, manifest.config_digest()))
