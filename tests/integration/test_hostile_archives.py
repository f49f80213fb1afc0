"""Hostile archives, decompression bombs and a full work dir, end to end: real compose trees
over HTTP, real skopeo, a real registry, and a real small file system (tmpfs) as work_dir.

Every hostile archive here is a valid image that skopeo would publish, with members appended
that are each harmless as text and lead outside together (or write through a link, or come
twice). None may be published, nothing may land outside, and the other arches go on.
"""

from __future__ import annotations

import json
import lzma
import os
import resource
import signal
import subprocess
import sys
import tarfile
from collections.abc import Callable
from pathlib import Path

import pytest

from support.filesystems import small_file_system
from support.harness import REPOS, Harness, report_rows
from support.images import build_image_archive, build_image_archive_with, sha256_file

pytestmark = pytest.mark.integration

TOOLBOX = "fedora-toolbox"
COMPOSE = "Fedora-41-20241025.0"

Member = tuple[tarfile.TarInfo, bytes]


def _info(name: str, kind: bytes, link: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = link
    info.mode = 0o644
    return info


def sym(name: str, target: str) -> Member:
    return _info(name, tarfile.SYMTYPE, target), b""


def hard(name: str, target: str) -> Member:
    return _info(name, tarfile.LNKTYPE, target), b""


def reg(name: str, data: bytes = b"loot\n") -> Member:
    return _info(name, tarfile.REGTYPE), data


def climb(levels: int) -> list[Member]:
    """Links that lead ``levels`` directories above the extraction directory, each one inside
    as text: ``up1`` goes through ``p -> q`` and ``q/r -> ..``; ``upN`` is ``up(N-1)/..``."""
    members = [sym("p", "q"), sym("q/r", ".."), sym("up1", "p/r/..")]
    members += [sym(f"up{n}", f"up{n - 1}/..") for n in range(2, levels + 1)]
    return members


def replace_image(
    harness: Harness,
    body: dict,
    arch: str,
    build: Callable[[Path], object],
    *,
    listed_as: str | None = None,
) -> Path:
    """Rebuild the toolbox image file of ``arch`` with ``build(path)``; images.json follows
    (its ``format`` becomes ``listed_as``, if given)."""
    compose_dir = harness.compose_dir(body)
    metadata = compose_dir / "metadata" / "images.json"
    document = json.loads(metadata.read_text())
    (entry,) = [
        image
        for image in document["payload"]["images"]["Container"][arch]
        if image["subvariant"] == "Container_Toolbox"
    ]
    path = compose_dir / entry["path"]
    build(path)
    entry["size"] = path.stat().st_size
    entry["checksums"] = {"sha256": sha256_file(path)}
    if listed_as is not None:
        entry["format"] = listed_as
    metadata.write_text(json.dumps(document, indent=4))
    return path


def error_lines(err: str) -> list[str]:
    return [line for line in err.splitlines() if ": ERROR: " in line]


def assert_refused_with_nothing_outside(harness, result, error: str) -> None:
    """The run failed with one line naming ``error`` and the x86_64 image, no traceback,
    nothing written outside the work dir (no ``loot``), no tag pushed to any repository."""
    assert result.code == 1, result.err
    (line,) = error_lines(result.err)
    assert error in line and "Container/x86_64/images/" in line
    assert "Traceback" not in result.err + result.out
    assert list(harness.tmp.rglob("loot")) == []
    for repository in REPOS.values():
        assert harness.registries[0].tags(harness.repo(repository)) == []


# -- class: members judged by where they lead --------------------------------------------------

HOSTILE = {
    # The extraction directory skopeo would use is <work>/<run>/tmp/oci*: four levels up is
    # this test's own directory, where the loot would land.
    "a-climbing-chain-written-through": (
        "oci",
        [*climb(4), reg("up4/loot")],
        "archive member 'up1' links to 'p/r/..', outside the archive",
    ),
    "a-link-that-leads-out-once-later-links-exist": (
        "oci",
        [sym("l", "m/.."), sym("m", "n/n"), sym("n", ".")],
        "archive member 'l' links to 'm/..', outside the archive",
    ),
    "a-hard-link-to-a-symlink": (
        "oci",
        [sym("s/t", ".."), hard("v", "s/t"), reg("v/loot")],
        "archive member 'v' is a hard link to 's/t', which is not a regular file",
    ),
    "a-write-through-a-link-that-stays-inside": (
        "oci",
        [sym("store", "blobs"), reg("store/extra")],
        "archive member 'store/extra' goes through the link 'store'",
    ),
    "a-name-that-comes-twice": (
        "oci",
        [reg("./oci-layout", b'{"imageLayoutVersion":"1.0.0"}')],
        "archive member './oci-layout' comes twice in the archive",
    ),
    "a-climbing-chain-in-a-docker-archive": (
        "docker",
        [*climb(2), reg("up2/loot")],
        "archive member 'up1' links to 'p/r/..', outside the archive",
    ),
}


@pytest.mark.parametrize("case", HOSTILE, ids=list(HOSTILE))
def test_a_hostile_archive_is_refused_and_nothing_lands_outside(harness, case):
    fmt, extra, error = HOSTILE[case]
    body = harness.compose(COMPOSE, arches=("x86_64",), fmt=fmt)
    replace_image(
        harness,
        body,
        "x86_64",
        lambda path: build_image_archive_with(
            path, extra, arch="x86_64", fmt=fmt, build_id="hostile"
        ),
    )

    result = harness.replay(body)

    assert_refused_with_nothing_outside(harness, result, error)


def test_a_hostile_oci_archive_unpacked_as_it_arrives_is_refused_and_nothing_lands_outside(
    harness,
):
    """An OCI archive listed as ``ociarchive`` is unpacked as it is downloaded (issue 21), each
    member judged before it is written: the same refusal, nothing written through the chain."""
    _, extra, error = HOSTILE["a-climbing-chain-written-through"]
    body = harness.compose(COMPOSE, arches=("x86_64",), fmt="oci")
    replace_image(
        harness,
        body,
        "x86_64",
        lambda path: build_image_archive_with(
            path, extra, arch="x86_64", fmt="oci", build_id="hostile", compression="none"
        ),
        listed_as="ociarchive",
    )

    result = harness.replay(body)

    assert_refused_with_nothing_outside(harness, result, error)


def test_the_other_arches_go_on_and_the_index_is_held(harness):
    arches = ("x86_64", "aarch64", "s390x")
    body = harness.compose(COMPOSE, arches=arches, fmt="oci")
    replace_image(
        harness,
        body,
        "aarch64",
        lambda path: build_image_archive_with(
            path, [*climb(4), reg("up4/loot")], arch="aarch64", fmt="oci", build_id="hostile"
        ),
    )

    result = harness.replay(body)

    assert result.code == 1, result.err
    (line,) = error_lines(result.err)
    assert "'up1' links to 'p/r/..', outside the archive" in line
    assert harness.digest(TOOLBOX, "41-aarch64") is None
    assert harness.digest(TOOLBOX, "41-x86_64") and harness.digest(TOOLBOX, "41-s390x")
    assert harness.digest(TOOLBOX, "41") is None
    assert harness.digest(TOOLBOX, "latest") is None
    assert list(harness.tmp.rglob("loot")) == []


def test_links_that_stay_inside_are_published(harness):
    """What real archives do (``docker save`` links identical files; a layout may alias a
    blob) still works: skopeo reads through the links of the directory we unpacked."""
    body = harness.compose(COMPOSE, arches=("x86_64", "aarch64"), fmt="oci")
    replace_image(
        harness,
        body,
        "x86_64",
        lambda path: build_image_archive_with(
            path,
            [sym("alias/index.json", "../index.json"), hard("oci-layout.copy", "oci-layout")],
            arch="x86_64",
            fmt="oci",
            build_id="links",
        ),
    )
    replace_image(
        harness,
        body,
        "aarch64",
        lambda path: build_image_archive_with(
            path,
            [sym("alias/manifest.json", "../manifest.json"), hard("copy.json", "manifest.json")],
            arch="aarch64",
            fmt="docker",
            build_id="links",
        ),
    )

    result = harness.replay(body)

    assert result.code == 0, result.err
    assert harness.arches(TOOLBOX, "41") == {"x86_64", "aarch64"}


# -- a real, small work dir ------------------------------------------------------------------


BIG = 8 << 20


@pytest.mark.parametrize(
    ("fmt", "size", "step", "other"),
    [
        ("docker", "4m", "downloading", 0),  # the download itself does not fit
        # The download fits, skopeo's copy of it (or our unpacking) does not; the other image
        # (5 MiB, twice while it is converted) still fits after that failure.
        ("docker", "12m", "converting", 5 << 20),
        # An OCI archive is unpacked while the tar's space is given back, and not converted a
        # second time: on disk about once, plus at most a few MiB; so it fails a work dir just
        # larger than its download. The other image (2 MiB) fits.
        ("oci", "8500k", "converting", 2 << 20),
    ],
)
def test_a_full_work_dir_fails_that_image_and_the_other_arches_go_on(
    harness, fmt, size, step, other
):
    body = harness.compose(COMPOSE, arches=("x86_64", "aarch64"), fmt=fmt)
    big = replace_image(
        harness,
        body,
        "x86_64",
        lambda path: build_image_archive(
            path, arch="x86_64", fmt=fmt, build_id="big", payload_size=BIG
        ),
    )
    if other:
        replace_image(
            harness,
            body,
            "aarch64",
            lambda path: build_image_archive(
                path, arch="aarch64", fmt=fmt, build_id="other", payload_size=other
            ),
        )
    harness.extra_config = "max_parallel = 1\n"
    work = small_file_system(harness.tmp / "work", size)

    with work as work_dir:
        result = harness.replay(body)
        left = list(work_dir.iterdir())

    assert result.code == 1, result.err
    assert "Traceback" not in result.err and "internal error" not in result.err
    (line,) = error_lines(result.err)
    assert big.name in line
    assert f"work_dir {work_dir} is full while {step}" in line
    assert "no space left on device" in line.lower()
    assert harness.digest(TOOLBOX, "41-aarch64") is not None
    assert harness.digest(TOOLBOX, "41-x86_64") is None
    assert harness.digest(TOOLBOX, "41") is None  # held: an arch failed
    assert report_rows(result.out)["41"][0] == "hold"
    assert left == []  # the run cleaned up after itself


def test_a_file_size_limit_is_a_full_work_dir_too(harness):
    """EFBIG, for real: the run in a process whose RLIMIT_FSIZE is smaller than one image."""
    body = harness.compose(COMPOSE, arches=("x86_64", "aarch64"))
    big = replace_image(
        harness,
        body,
        "x86_64",
        lambda path: build_image_archive(
            path, arch="x86_64", fmt="docker", build_id="big", payload_size=BIG
        ),
    )
    harness.extra_config = "max_parallel = 1\n"
    config, messages = harness.config(), harness.message_file(body)

    def limit_file_size() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # EFBIG instead of a core dump
        resource.setrlimit(resource.RLIMIT_FSIZE, (BIG // 2, BIG // 2))

    argv = [sys.executable, "-m", "fedora_container_sync", "replay", "--config", str(config)]
    result = subprocess.run(
        [*argv, str(messages)],
        capture_output=True,
        text=True,
        preexec_fn=limit_file_size,
        env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"},
        timeout=300,
        check=False,
    )

    assert result.returncode == 1, result.stderr
    (line,) = error_lines(result.stderr)
    assert big.name in line and "is full while downloading: File too large" in line
    assert harness.digest(TOOLBOX, "41-aarch64") is not None
    assert harness.digest(TOOLBOX, "41") is None


def test_a_decompression_bomb_on_a_small_work_dir_is_refused_before_it_fills_it(harness):
    body = harness.compose(COMPOSE, arches=("x86_64", "aarch64"))
    zeros = 64 << 20
    bomb = replace_image(
        harness,
        body,
        "x86_64",
        lambda path: build_image_archive_with(
            path, [reg("padding", b"\0" * zeros)], arch="x86_64", fmt="docker", build_id="bomb"
        ),
    )
    assert bomb.stat().st_size < 64 << 10  # it checks out, and it is tiny
    assert len(lzma.decompress(bomb.read_bytes())) > zeros
    harness.extra_config = "max_parallel = 1\n"

    with small_file_system(harness.tmp / "work", "8m") as work_dir:
        result = harness.replay(body)
        left = list(work_dir.iterdir())

    assert result.code == 1, result.err
    assert "Traceback" not in result.err and "internal error" not in result.err
    (line,) = error_lines(result.err)
    assert bomb.name in line
    assert "decompresses to more than 1048576 bytes" in line
    assert "max_decompressed_ratio = 20" in line
    assert harness.digest(TOOLBOX, "41-aarch64") is not None
    assert harness.digest(TOOLBOX, "41") is None
    assert left == []


def test_an_oci_image_needs_a_work_dir_about_its_own_size(harness):
    """Unpacked while the tar's space is given back, and pushed from the unpacked files: an 8
    MiB OCI image goes through a 10 MiB work dir (converted a second time, it needed 16)."""
    body = harness.compose(COMPOSE, arches=("x86_64",), fmt="oci")
    replace_image(
        harness,
        body,
        "x86_64",
        lambda path: build_image_archive(
            path, arch="x86_64", fmt="oci", build_id="big", payload_size=BIG
        ),
    )
    with small_file_system(harness.tmp / "work", "10m"):
        result = harness.replay(body)

    assert result.code == 0, result.err
    assert harness.digest(TOOLBOX, "41-x86_64") is not None
