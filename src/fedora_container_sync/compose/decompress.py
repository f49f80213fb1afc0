"""Streaming decompression of image files, bounded. Pure.

A compose ships ``.tar.xz`` (sometimes ``.tar.gz``) docker-archives or OCI archives, and
uncompressed ``.ociarchive`` files. The compressed bytes are decompressed while they are
downloaded (skopeo then reads a plain tar in place instead of making its own temporary copy),
up to a limit: a decoder refuses to produce more than it was allowed, in pieces of bounded size,
whatever the compression ratio.
"""

from __future__ import annotations

import lzma
import zlib
from collections.abc import Iterator
from typing import Protocol

XZ_MAGIC = b"\xfd7zXZ\x00"
GZIP_MAGIC = b"\x1f\x8b"
MAGIC_LENGTH = len(XZ_MAGIC)


#: The most decompressed bytes one step produces: memory stays flat whatever the ratio.
PIECE = 4 << 20

#: Defaults of the settings ``max_decompressed_ratio`` and ``max_decompressed_size``: real
#: xz container tars decompress 3-5 times; bootable container archives are 1-2 GB.
DEFAULT_MAX_RATIO = 20.0
DEFAULT_MAX_SIZE = 32 << 30
#: Every image may decompress to at least this much, whatever its ratio: a tar pads itself to
#: 10 KiB records, so a tiny archive compresses far better than any real image.
MIN_DECOMPRESSED_LIMIT = 1 << 20


def decompressed_limit(size: int, *, ratio: float, maximum: int) -> int:
    """The most bytes an image file of ``size`` bytes may decompress to."""
    return min(maximum, max(int(size * ratio), MIN_DECOMPRESSED_LIMIT))


class LimitExceeded(ValueError):
    """The decompressed data would be larger than the limit the decoder was given."""


class Decoder(Protocol):
    name: str

    def feed(self, data: bytes) -> Iterator[bytes]: ...

    def finish(self) -> bytes: ...


class _Plain:
    name = "tar"

    def __init__(self, limit: int | None) -> None:
        self._left = limit

    def feed(self, data: bytes) -> Iterator[bytes]:
        if self._left is not None:
            self._left -= len(data)
            if self._left < 0:
                raise LimitExceeded("larger than the limit")
        yield data

    def finish(self) -> bytes:
        return b""


class _Streams:
    """Decompresses concatenated xz or gzip streams; raises ValueError on bad or short data,
    :class:`LimitExceeded` before its output would pass ``limit`` bytes.

    Output comes in pieces of at most :data:`PIECE` bytes, so a highly compressed chunk never
    turns into one huge buffer.
    """

    def __init__(self, name: str, limit: int | None) -> None:
        self.name = name
        self._decoder = self._new()
        self._left = limit

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
                if self._left is not None:
                    self._left -= len(piece)
                    if self._left < 0:
                        raise LimitExceeded(f"decompresses to more than the limit ({self.name})")
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


def decoder_for(head: bytes, *, limit: int | None = None) -> Decoder:
    """Choose by magic bytes: xz, gzip, or a plain tar. Its output may total ``limit`` bytes."""
    if head.startswith(XZ_MAGIC):
        return _Streams("xz", limit)
    if head.startswith(GZIP_MAGIC):
        return _Streams("gzip", limit)
    return _Plain(limit)
