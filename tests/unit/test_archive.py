"""Streaming decompression: any chunking, concatenated streams, bounded output pieces, a cap
on the total."""

import gzip
import lzma
import os

import pytest

from fedora_container_sync.compose.decompress import (
    MIN_DECOMPRESSED_LIMIT,
    PIECE,
    LimitExceeded,
    decoder_for,
    decompressed_limit,
)

PLAIN = os.urandom(300_000) + b"\0" * 700_000
COMPRESS = {"xz": lzma.compress, "gzip": gzip.compress}


def decode(data, chunk):
    decoder = decoder_for(data[:6])
    pieces = []
    for start in range(0, len(data), chunk):
        pieces.extend(decoder.feed(data[start : start + chunk]))
    pieces.append(decoder.finish())
    return decoder.name, pieces


@pytest.mark.parametrize("kind", ["xz", "gzip"])
@pytest.mark.parametrize("chunk", [7, 4096, 1 << 20, 1 << 30])
def test_any_chunking_gives_the_same_bytes(kind, chunk):
    name, pieces = decode(COMPRESS[kind](PLAIN), chunk)
    assert name == kind
    assert b"".join(pieces) == PLAIN


@pytest.mark.parametrize("kind", ["xz", "gzip"])
def test_concatenated_streams(kind):
    data = COMPRESS[kind](b"first ") + COMPRESS[kind](b"second")
    assert b"".join(decode(data, 7)[1]) == b"first second"


@pytest.mark.parametrize("kind", ["xz", "gzip"])
def test_a_small_chunk_of_a_huge_ratio_comes_out_in_bounded_pieces(kind):
    zeros = 64 << 20
    data = COMPRESS[kind](b"\0" * zeros)
    assert len(data) < 1 << 20  # one download chunk ...
    decoder = decoder_for(data[:6])
    sizes = [len(piece) for piece in decoder.feed(data)]
    decoder.finish()
    assert sum(sizes) == zeros  # ... is 64 MiB of output, never all at once
    assert max(sizes) <= PIECE


@pytest.mark.parametrize("kind", ["xz", "gzip"])
def test_truncated_and_corrupt_data(kind):
    data = COMPRESS[kind](PLAIN)
    decoder = decoder_for(data)
    list(decoder.feed(data[: len(data) // 2]))
    with pytest.raises(ValueError, match=f"truncated {kind} data"):
        decoder.finish()
    broken = bytearray(data)
    broken[len(broken) // 2] ^= 0xFF
    with pytest.raises(ValueError, match=f"corrupt {kind} data"):
        list(decoder_for(data).feed(bytes(broken)))


def test_a_plain_tar_passes_through():
    decoder = decoder_for(b"ustar")
    assert decoder.name == "tar"
    assert list(decoder.feed(b"abc")) == [b"abc"]
    assert decoder.finish() == b""


@pytest.mark.parametrize("kind", ["xz", "gzip", "tar"])
def test_output_stops_at_the_limit(kind):
    raw = b"ustar\0" + PLAIN  # no magic bytes by chance
    data = raw if kind == "tar" else COMPRESS[kind](raw)
    exact = decoder_for(data[:6], limit=len(raw))
    assert exact.name == kind
    assert b"".join([*exact.feed(data), exact.finish()]) == raw
    over = decoder_for(data[:6], limit=len(raw) - 1)
    written = 0
    with pytest.raises(LimitExceeded):
        for start in range(0, len(data), 4096):
            for piece in over.feed(data[start : start + 4096]):
                written += len(piece)
    assert written <= len(raw) - 1  # nothing past the limit was handed out


def test_a_bomb_is_stopped_after_the_limit_not_after_its_size():
    bomb = lzma.compress(bytes(64 << 20), preset=1)
    assert len(bomb) < 16 << 10
    decoder = decoder_for(bomb[:6], limit=1 << 20)
    written = 0
    with pytest.raises(LimitExceeded):
        for piece in decoder.feed(bomb):
            written += len(piece)
    assert written <= 1 << 20


@pytest.mark.parametrize(
    ("size", "ratio", "maximum", "limit"),
    [
        (200 << 20, 20.0, 32 << 30, 4000 << 20),  # a toolbox .tar.xz
        (2 << 30, 20.0, 32 << 30, 32 << 30),  # a bootc .ociarchive: the size cap
        (744, 20.0, 32 << 30, MIN_DECOMPRESSED_LIMIT),  # a tiny archive: tar padding
        (30_000, 1.0, 32 << 30, MIN_DECOMPRESSED_LIMIT),
        (100 << 20, 2.5, 1 << 30, 250 << 20),
        (100 << 20, 20.0, 100, 100),  # the size cap wins even over the floor
    ],
)
def test_decompressed_limit(size, ratio, maximum, limit):
    assert decompressed_limit(size, ratio=ratio, maximum=maximum) == limit
