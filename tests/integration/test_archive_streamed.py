"""An OCI archive listed as ``ociarchive`` is unpacked as it is downloaded (issue 21): over real
HTTP, the archive is never written whole, every member lands byte for byte, and nothing of a
file that is not the one images.json lists, or that is hostile, is kept."""

from __future__ import annotations

import hashlib
import tarfile
from pathlib import Path

import httpx
import pytest

from fedora_container_sync.compose.fetch import ComposeFetcher
from fedora_container_sync.compose.selection import ImageArtifact
from fedora_container_sync.config.settings import RetrySettings
from fedora_container_sync.errors import ComposeError
from fedora_container_sync.oci.verify import verify_layout
from support.images import build_image_archive, build_image_archive_with
from support.servers import FileServer

pytestmark = pytest.mark.integration

COMPOSE = "Fedora-41-20241025.0"
PATH = "Kinoite/x86_64/images/Fedora-Kinoite-41.x86_64.ociarchive"


def _link(name: str, target: str) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = tarfile.SYMTYPE, target
    return info, b""


def download(tmp_path: Path, build, *, sha256: str | None = None, size: int | None = None):
    """Serve the archive ``build(path)`` writes, listed as an ociarchive; download it into
    ``tmp_path / "downloads"``."""
    served = tmp_path / "served"
    archive = served / PATH
    archive.parent.mkdir(parents=True)
    build(archive)
    data = archive.read_bytes()
    artifact = ImageArtifact(
        repository="fedora-kinoite",
        subvariant="Kinoite",
        variant="Kinoite",
        arch="x86_64",
        path=PATH,
        size=len(data) if size is None else size,
        sha256=sha256 or hashlib.sha256(data).hexdigest(),
        type="bootable-container",
        format="ociarchive",
    )
    with FileServer(served) as server, httpx.Client() as http:
        url = server.url + "/"
        fetcher = ComposeFetcher(
            http, url, compose_id=COMPOSE, allowlist=[url], retry=RetrySettings(attempts=1)
        )
        return fetcher.download(artifact, tmp_path / "downloads"), archive


def oci(path: Path, payload_size: int = 0) -> None:
    build_image_archive(path, arch="x86_64", fmt="oci", build_id="s", compression="none",
                        payload_size=payload_size)  # fmt: skip


def test_an_oci_archive_is_unpacked_as_it_arrives_byte_for_byte(tmp_path):
    # a layer of several decoded pieces (PIECE): read, written and forgotten a piece at a time
    local, archive = download(tmp_path, lambda path: oci(path, payload_size=9 << 20))

    assert local.unpacked and local.path.is_dir() and local.reference == f"oci:{local.path}"
    assert [p.name for p in (tmp_path / "downloads").iterdir()] == [local.path.name]
    with tarfile.open(archive) as tar:
        files = [m for m in tar if m.isfile()]
        assert len(files) >= 4  # oci-layout, index.json, manifest, config, layer
        for member in files:
            expected = tar.extractfile(member).read()  # type: ignore[union-attr]
            assert (local.path / member.name).read_bytes() == expected, member.name
    verify_layout(local.path, where="x")


def test_nothing_is_kept_of_an_archive_that_is_not_the_one_listed(tmp_path):
    with pytest.raises(ComposeError, match=r"sha256 mismatch: images\.json lists 0+, got"):
        download(tmp_path, oci, sha256="0" * 64)
    assert list((tmp_path / "downloads").iterdir()) == []


def test_a_file_larger_than_listed_is_refused_as_it_comes(tmp_path):
    with pytest.raises(ComposeError, match=r"larger than the 4096 bytes images\.json lists"):
        download(tmp_path, oci, size=4096)
    assert list((tmp_path / "downloads").iterdir()) == []


def hostile(path: Path) -> None:
    build_image_archive_with(
        path, [_link("l", "m/.."), _link("m", "n/n"), _link("n", ".")],
        arch="x86_64", fmt="oci", build_id="h", compression="none",
    )  # fmt: skip


def test_a_hostile_archive_is_refused_and_removed(tmp_path):
    # each link stays inside when it is written; together, once all are known, 'l' leads out
    with pytest.raises(ComposeError, match=r"archive member 'l' links to 'm/\.\.', outside"):
        download(tmp_path, hostile)
    assert list((tmp_path / "downloads").iterdir()) == []


def test_the_checksum_is_told_before_what_the_members_are(tmp_path):
    with pytest.raises(ComposeError, match="sha256 mismatch"):
        download(tmp_path, hostile, sha256="1" * 64)
    assert list((tmp_path / "downloads").iterdir()) == []


def test_a_docker_archive_listed_as_an_oci_archive_is_refused(tmp_path):
    def docker(path: Path) -> None:
        build_image_archive(path, arch="x86_64", fmt="docker", build_id="d", compression="none")

    with pytest.raises(ComposeError, match="not an OCI archive"):
        download(tmp_path, docker)
    assert list((tmp_path / "downloads").iterdir()) == []


def test_a_bad_header_after_the_last_member_is_refused(tmp_path):
    def garbage_after(path: Path) -> None:
        oci(path)
        with tarfile.open(path) as tar:
            tar.getmembers()
            end = tar.offset  # where the blocks of zeros that end the archive begin
        data = path.read_bytes()
        path.write_bytes(data[:end] + b"x" * tarfile.BLOCKSIZE + data[end:])

    with pytest.raises(ComposeError, match="an unreadable header"):
        download(tmp_path, garbage_after)
    assert list((tmp_path / "downloads").iterdir()) == []
