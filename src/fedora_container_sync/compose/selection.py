"""Which images of a compose are published, and to which repository. Pure.

Works on productmd's parsed ``images.json`` (``images[variant][arch]`` → set of images).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from ..errors import ComposeError
from ..oci.platforms import arch_sort_key
from .urls import URLRefused, path_segments

#: images.json ``type`` values that are container images: ``docker`` (kiwi/ImageFactory,
#: until about F41), ``container`` and ``bootable-container`` (F42+), ``ociarchive``
#: (ostree_container).
CONTAINER_TYPES = frozenset({"docker", "container", "ociarchive", "bootable-container"})

_SHA256 = re.compile(r"^[0-9a-f]{64}$")


@dataclass(frozen=True)
class ImageArtifact:
    """One container image file of the compose, and where it is published."""

    repository: str
    subvariant: str
    variant: str
    arch: str
    path: str
    size: int
    sha256: str
    type: str
    format: str

    @property
    def name(self) -> str:
        """``repository/arch``: how to name this image in a log line."""
        return f"{self.repository}/{self.arch}"

    @property
    def work_name(self) -> str:
        """The name of this image's files in the work dir: its checksum and a digest of its
        path and repository, so that byte-identical files at different paths (or published
        to different repositories) never share a download, an unpacked archive or a layout."""
        where = hashlib.sha256(f"{self.repository}\0{self.path}".encode()).hexdigest()[:16]
        return f"{self.sha256}-{where}"


def select_images(
    images: Mapping[str, Mapping[str, Iterable[Any]]],
    repos: Mapping[str, str],
    *,
    compose_id: str,
) -> list[ImageArtifact]:
    """The container images whose subvariant is configured, sorted by repository and arch.

    One subvariant can appear in several variants; the same file listed twice is one image,
    but two different files for the same repository and arch make the compose ambiguous.
    """
    chosen: dict[tuple[str, str], ImageArtifact] = {}
    for variant in sorted(images):
        for arch in sorted(images[variant]):
            for image in images[variant][arch]:
                if image.type not in CONTAINER_TYPES or image.subvariant not in repos:
                    continue
                artifact = _artifact(image, variant, repos[image.subvariant], compose_id)
                key = (artifact.repository, artifact.arch)
                previous = chosen.get(key)
                if previous is not None and previous.sha256 != artifact.sha256:
                    raise ComposeError(
                        f"{compose_id}: two different {artifact.repository} images for "
                        f"{artifact.arch}: {previous.path} and {artifact.path}"
                    )
                chosen.setdefault(key, artifact)
    return sorted(chosen.values(), key=lambda a: (a.repository, arch_sort_key(a.arch)))


def _artifact(image: Any, variant: str, repository: str, compose_id: str) -> ImageArtifact:
    path = image.path
    checksums = image.checksums or {}
    sha256 = str(checksums.get("sha256", "")).lower()
    where = f"{compose_id}: image {path!r}"
    check_relative_path(path, where=where)
    if not _SHA256.match(sha256):
        raise ComposeError(f"{where} has no valid sha256 checksum in images.json")
    if not isinstance(image.size, int) or image.size <= 0:
        raise ComposeError(f"{where} has no valid size in images.json")
    return ImageArtifact(
        repository=repository,
        subvariant=image.subvariant,
        variant=variant,
        arch=image.arch,
        path=path,
        size=image.size,
        sha256=sha256,
        type=image.type,
        format=image.format,
    )


def check_relative_path(path: object, *, where: str) -> None:
    """Refuse a path that would leave the compose, read as the compose server will read it.

    Absolute paths and URLs, and everything :func:`~.urls.path_segments` refuses (``..``,
    encoded dots and separators, backslashes, ``;``, ``?``, ``#``, control characters).
    """
    if not isinstance(path, str) or not path:
        raise ComposeError(f"{where}: path is empty")
    if path.startswith("/") or "://" in path or path.endswith("/"):
        raise ComposeError(f"{where}: path escapes the compose directory: not a relative file path")
    try:
        path_segments(path)
    except URLRefused as error:
        raise ComposeError(f"{where}: path escapes the compose directory: it {error}") from None
