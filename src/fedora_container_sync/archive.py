"""Image archive files: streaming decompression and transport detection.

A compose ships ``.tar.xz`` (sometimes ``.tar.gz``) docker-archives or OCI archives, and
uncompressed ``.ociarchive`` files. The compressed bytes are decompressed while they are
downloaded (skopeo then reads a plain tar in place instead of making its own temporary copy)
and the transport is detected from the tar's members, never from the file name.
"""

from __future__ import annotations

import lzma
import posixpath
import tarfile
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Protocol

from .errors import ComposeError

XZ_MAGIC = b"\xfd7zXZ\x00"
GZIP_MAGIC = b"\x1f\x8b"
MAGIC_LENGTH = len(XZ_MAGIC)

DOCKER_ARCHIVE = "docker-archive"
OCI_ARCHIVE = "oci-archive"


#: The most decompressed bytes one step produces: memory stays flat whatever the ratio.
PIECE = 4 << 20


class Decoder(Protocol):
    name: str

    def feed(self, data: bytes) -> Iterator[bytes]: ...

    def finish(self) -> bytes: ...


class _Plain:
    name = "tar"

    def feed(self, data: bytes) -> Iterator[bytes]:
        yield data

    def finish(self) -> bytes:
        return b""


class _Streams:
    """Decompresses concatenated xz or gzip streams; raises ValueError on bad or short data.

    Output comes in pieces of at most :data:`PIECE` bytes, so a highly compressed chunk never
    turns into one huge buffer.
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self._decoder = self._new()

    def _new(self) -> lzma.LZMADecompressor | zlib._Decompress:
        if self.name == "xz":
            return lzma.LZMADecompressor(format=lzma.FORMAT_XZ)
        return zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)

    def feed(self, data: bytes) -> Iterator[bytes]:
        while True:
            decoder = self._decoder
            try:
                piece = decoder.decompress(data, PIECE)
            except (lzma.LZMAError, zlib.error) as error:
                raise ValueError(f"corrupt {self.name} data: {error}") from None
            if piece:
                yield piece
            if decoder.eof:
                data = decoder.unused_data
                if not data:
                    return
                self._decoder = self._new()  # the next of concatenated streams
            elif isinstance(decoder, lzma.LZMADecompressor):
                if decoder.needs_input:
                    return
                data = b""  # more output is buffered inside the decoder
            else:
                data = decoder.unconsumed_tail
                if not data and len(piece) < PIECE:
                    return

    def finish(self) -> bytes:
        if not self._decoder.eof:
            raise ValueError(f"truncated {self.name} data")
        return b""


def decoder_for(head: bytes) -> Decoder:
    """Choose by magic bytes: xz, gzip, or a plain tar."""
    if head.startswith(XZ_MAGIC):
        return _Streams("xz")
    if head.startswith(GZIP_MAGIC):
        return _Streams("gzip")
    return _Plain()


def check_member(member: tarfile.TarInfo, *, where: str) -> None:
    """Refuse a member that would land outside the directory skopeo extracts the archive to.

    Absolute names, ``..`` that climbs out, links pointing out (``docker save`` links identical
    layers as ``../<id>/layer.tar``, which stays inside and is fine) and device files.
    """
    name = member.name
    if _escapes(name):
        raise ComposeError(f"{where}: archive member {name!r} escapes the archive")
    if member.issym() or member.islnk():
        base = posixpath.dirname(name) if member.issym() else ""
        if _escapes(posixpath.join(base, member.linkname)) or member.linkname.startswith("/"):
            raise ComposeError(
                f"{where}: archive member {name!r} links to {member.linkname!r}, "
                "outside the archive"
            )
    elif not (member.isfile() or member.isdir()):
        raise ComposeError(f"{where}: archive member {name!r} is a device or special file")


def _escapes(path: str) -> bool:
    normalized = posixpath.normpath(path)
    return path.startswith("/") or normalized == ".." or normalized.startswith("../")


def detect_transport(tar_path: Path, *, where: str) -> str:
    """``docker-archive`` or ``oci-archive`` for an uncompressed tar, from its members.

    An OCI layout (``oci-layout`` + ``index.json``) wins over ``manifest.json``: the "hybrid"
    archives newer ``docker save`` writes carry both and work with either transport.
    """
    names: set[str] = set()
    try:
        with tarfile.open(tar_path, mode="r:") as archive:
            for member in archive:
                check_member(member, where=where)
                names.add(member.name.removeprefix("./"))
    except (tarfile.TarError, OSError) as error:
        raise ComposeError(f"{where}: not a tar archive ({error})") from None
    if {"oci-layout", "index.json"} <= names:
        return OCI_ARCHIVE
    if "manifest.json" in names:
        return DOCKER_ARCHIVE
    raise ComposeError(f"{where}: neither a docker-archive nor an OCI archive")
