"""Streaming decompression: any chunking, concatenated streams, bounded output pieces."""

import gzip
import lzma
import os

import pytest

from fedora_container_sync.archive import PIECE, decoder_for

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
