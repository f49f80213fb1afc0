"""Archive members that would land outside skopeo's extraction directory are refused."""

from __future__ import annotations

import tarfile

import pytest

from fedora_container_sync.archive import check_member
from fedora_container_sync.errors import ComposeError


def member(name: str, kind: bytes = tarfile.REGTYPE, link: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = link
    return info


@pytest.mark.parametrize(
    "info",
    [
        member("manifest.json"),
        member("./index.json"),
        member("blobs/sha256", tarfile.DIRTYPE),
        member("blobs/sha256/ab"),
        member("a/../b"),
        # docker save links identical layers to each other: inside the archive
        member("0f3c/layer.tar", tarfile.SYMTYPE, "../9e1d/layer.tar"),
        member("0f3c/layer.tar", tarfile.LNKTYPE, "9e1d/layer.tar"),
    ],
    ids=lambda info: f"{info.name}->{info.linkname}" if info.linkname else info.name,
)
def test_members_inside_the_archive(info):
    check_member(info, where="x")


@pytest.mark.parametrize(
    ("info", "reason"),
    [
        (member("/etc/passwd"), "escapes the archive"),
        (member("../x"), "escapes the archive"),
        (member("a/../../x"), "escapes the archive"),
        (member(".."), "escapes the archive"),
        (member("x", tarfile.SYMTYPE, "/etc/shadow"), "outside the archive"),
        (member("a/x", tarfile.SYMTYPE, "../../etc/shadow"), "outside the archive"),
        (member("x", tarfile.LNKTYPE, "../outside"), "outside the archive"),
        (member("x", tarfile.LNKTYPE, "/etc/shadow"), "outside the archive"),
        (member("dev", tarfile.CHRTYPE), "device or special file"),
        (member("disk", tarfile.BLKTYPE), "device or special file"),
        (member("pipe", tarfile.FIFOTYPE), "device or special file"),
    ],
    ids=lambda value: value.name if isinstance(value, tarfile.TarInfo) else "",
)
def test_members_that_escape(info, reason):
    with pytest.raises(ComposeError, match=reason):
        check_member(info, where="Container/x86_64/images/a.tar.xz")
