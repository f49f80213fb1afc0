"""Cross-repository mounts: a blob another repository of the same registry holds is mounted,
not uploaded again.

skopeo mounts a blob only when its local blob-info cache remembers where it is - and that
cache is empty after every pod restart, on the other replica, on another host. The run knows
better: it reads every per-arch manifest of the compose's repositories before it decides,
and it knows what it pushed. Right before skopeo pushes an image, each of its blobs that the
repository does not hold and another repository here does is mounted from there
(``POST /v2/<name>/blobs/uploads/?mount=<digest>&from=<other>``); skopeo then finds it in place
(its HEAD answers 200) and uploads nothing. A registry that declines (202) or fails leaves the
blob to skopeo's normal upload: a mount is an optimisation, never a condition.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterable
from pathlib import Path

from ..errors import SyncError
from ..registry.client import RegistryClient

_log = logging.getLogger(__name__)


class BlobLocations:
    """Which repositories of one registry hold which blobs, as far as this run knows."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._held: dict[str, set[str]] = {}

    def add(self, repository: str, digests: Iterable[str]) -> None:
        with self._lock:
            for digest in digests:
                self._held.setdefault(digest, set()).add(repository)

    def holders(self, digest: str) -> list[str]:
        with self._lock:
            return sorted(self._held.get(digest, ()))


def manifest_blobs(body: bytes) -> list[str]:
    """The config and layer digests an image manifest names (none for anything else)."""
    try:
        document = json.loads(body)
        descriptors = [document["config"], *document["layers"]]
        return [str(d["digest"]) for d in descriptors if str(d["digest"]).startswith("sha256:")]
    except (ValueError, KeyError, TypeError):
        return []


def layout_blobs(layout: Path, manifest_digest: str) -> list[str]:
    """The blobs of the image ``manifest_digest`` in a local OCI layout."""
    try:
        body = (layout / "blobs" / "sha256" / manifest_digest.removeprefix("sha256:")).read_bytes()
    except OSError:
        return []
    return manifest_blobs(body)


def mount_shared(
    client: RegistryClient, known: BlobLocations, repository: str, blobs: Iterable[str]
) -> int:
    """Mount into ``repository`` each of ``blobs`` it is not known to hold and another
    repository is; return how many were mounted."""
    mounted = 0
    for digest in dict.fromkeys(blobs):
        holders = known.holders(digest)
        if repository in holders:
            continue
        for source in holders:
            try:
                done = client.blob_mount(repository, digest, source)
            except SyncError as error:
                _log.debug("no mount of %s into %s: %s", digest, repository, error)
                return mounted  # the registry is not answering mounts: skopeo uploads
            if done:
                known.add(repository, [digest])
                mounted += 1
                break
    return mounted
