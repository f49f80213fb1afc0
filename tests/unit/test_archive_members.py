"""Archive members are judged by where they lead, as extraction meets them in order.

The tables hold hand-made lists; the property test generates lists and compares the checker
with a real extraction into a directory on disk: a naive one that follows links as Go's
archive extraction (and Python's tarfile without a filter) would, and our own unpacking.
"""

from __future__ import annotations

import io
import os
import posixpath
import tarfile
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from fedora_container_sync.compose.archive import detect_transport, unpack_oci_archive
from fedora_container_sync.compose.members import MAX_LINKS, MAX_MEMBERS, check_members
from fedora_container_sync.errors import ComposeError

DIR, FILE, SYM, HARD = tarfile.DIRTYPE, tarfile.REGTYPE, tarfile.SYMTYPE, tarfile.LNKTYPE


def member(name: str, kind: bytes = FILE, link: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = link
    return info


def d(name):
    return member(name, DIR)


def f(name):
    return member(name)


def sym(name, target):
    return member(name, SYM, target)


def hard(name, target):
    return member(name, HARD, target)


def show(members) -> str:
    return " ".join(
        f"{m.name}->{m.linkname}"
        if m.issym()
        else f"{m.name}=>{m.linkname}"
        if m.islnk()
        else m.name
        for m in members
    )


INSIDE = [
    [f("manifest.json"), f("./index.json"), f("oci-layout")],
    [d("./"), d("blobs/"), d("blobs/sha256"), f("blobs/sha256/ab")],
    [d("."), f("x")],
    [f("a/b"), d("a"), d("a/")],  # a directory again merges, as extraction does
    # docker save links identical layers to each other: inside the archive
    [f("9e1d/layer.tar"), sym("0f3c/layer.tar", "../9e1d/layer.tar")],
    [f("9e1d/layer.tar"), hard("0f3c/layer.tar", "9e1d/layer.tar")],
    [f("9e1d/layer.tar"), hard("0f3c/layer.tar", "./9e1d/layer.tar")],
    # a link to something that comes later, or never (dangling but inside)
    [sym("current", "blobs/x"), f("blobs/x")],
    [sym("nowhere", "not/there")],
    # links among links, all inside
    [d("s"), sym("s/up", ".."), sym("top", "s/up/s/up"), sym("deep", "top/s")],
    [sym("self", "."), sym("again", "self/self/self")],
    [f("x"), sym("s/t/u", "../../x")],
]


@pytest.mark.parametrize("members", INSIDE, ids=show)
def test_members_inside_the_archive(members):
    check_members(members, where="x")


OUTSIDE = [
    # names
    ([f("/etc/passwd")], "escapes the archive"),
    ([f("../x")], "escapes the archive"),
    ([f("a/../../x")], "escapes the archive"),
    ([d("..")], "escapes the archive"),
    ([f("a/../b")], "has '..' in its path"),
    ([f("")], "has an empty name"),
    ([f(".")], "names the archive's root"),
    ([f("x/")], "ends in '/'"),
    ([sym("l/", "x")], "ends in '/'"),
    ([f("a\0b")], "NUL byte"),
    # link targets, each on its own
    ([sym("x", "/etc/shadow")], "outside the archive"),
    ([sym("a/x", "../../etc/shadow")], "outside the archive"),
    ([sym("x", "")], "a link to nothing"),
    ([hard("x", "../outside")], "outside the archive"),
    ([hard("x", "/etc/shadow")], "outside the archive"),
    # lexically inside, physically outside: each link is fine as text, together they lead out
    ([sym("here", "."), sym("gone", "here/..")], "'gone' links to 'here/..', outside"),
    (
        [sym("p", "q"), sym("q/r", ".."), sym("s", "p/r/.."), f("s/loot")],
        "'s' links to 'p/r/..', outside",
    ),
    ([d("k"), sym("k/k", ".."), sym("w", "k/k/k/k/..")], "'w' links to 'k/k/k/k/..', outside"),
    # ... or only once a later member exists: judged again at the end
    ([sym("l", "m/.."), sym("m", "n/n"), sym("n", ".")], "'l' links to 'm/..', outside"),
    # a hard link to a symbolic link is that link again, in another directory
    ([sym("s/t", "../u"), hard("v", "s/t")], "which is not a regular file"),
    ([f("x"), hard("y", "a/../x")], "not a plain path"),
    ([hard("y", "x"), f("x")], "not an earlier file"),
    ([d("x"), hard("y", "x")], "which is not a regular file"),
    ([sym("l", "."), f("l/x"), hard("y", "l/x")], "goes through the link 'l'"),
    # writing through a link, even one that stays inside: extraction would follow it
    ([sym("blobs", "store"), f("blobs/sha256/x")], "goes through the link 'blobs'"),
    ([d("a"), sym("a/b", "."), d("a/b/c")], "goes through the link 'a/b'"),
    ([f("x"), f("x/y")], "goes through the file 'x'"),
    # a directory, a file or a link replaced by something else
    ([d("d"), sym("d", ".")], "comes twice"),
    ([f("a/b"), sym("a", "c")], "comes twice"),
    ([f("index.json"), sym("index.json", "blobs/x")], "comes twice"),
    ([sym("x", "y"), f("x")], "comes twice"),
    ([f("manifest.json"), f("./manifest.json")], "comes twice"),
    ([f("x"), d("x")], "comes twice"),
    # loops and chains longer than the kernel follows
    ([sym("a", "b"), sym("b", "a")], f"more than {MAX_LINKS} links"),
    ([sym("a", "a/x")], f"more than {MAX_LINKS} links"),
    # types
    ([member("dev", tarfile.CHRTYPE)], "device or special file"),
    ([member("disk", tarfile.BLKTYPE)], "device or special file"),
    ([member("pipe", tarfile.FIFOTYPE)], "device or special file"),
    ([member("sparse", tarfile.GNUTYPE_SPARSE)], "is a sparse file"),
    ([member("cont", tarfile.CONTTYPE)], "unsupported tar type"),
    ([member("vendor", b"X")], "unsupported tar type"),
]


@pytest.mark.parametrize(("members", "reason"), OUTSIDE, ids=[show(m) for m, _ in OUTSIDE])
def test_members_that_escape_or_are_ambiguous(members, reason):
    with pytest.raises(ComposeError, match=reason) as caught:
        check_members(members, where="Container/x86_64/images/a.tar.xz")
    assert str(caught.value).startswith("Container/x86_64/images/a.tar.xz: archive member ")


# -- real tars: what tarfile would skip ------------------------------------------------------


def tar_bytes(members, *, fmt=tarfile.PAX_FORMAT, pax_headers=None) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=fmt, pax_headers=pax_headers) as tar:
        for info in members:
            data = f"{info.name}\n".encode() if info.type == FILE else b""
            info.size = len(data)
            info.mode = 0o755 if info.isdir() else 0o644
            tar.addfile(info, io.BytesIO(data) if data else None)
    return buffer.getvalue()


OCI = [f("oci-layout"), f("index.json"), d("blobs"), d("blobs/sha256")]


def test_a_global_pax_header_that_renames_members_is_refused(tmp_path):
    path = tmp_path / "a.tar"
    # tarfile applies a global "path" to every later member; Go's archive/tar does not.
    path.write_bytes(tar_bytes([f("../../etc/cron.d/x")], pax_headers={"path": "index.json"}))
    with pytest.raises(ComposeError, match="global pax header"):
        detect_transport(path, where="x")


def test_members_hidden_behind_a_broken_header_are_refused(tmp_path):
    # tarfile stops at a bad header as if the archive ended there; Go's reader does not.
    data = bytearray(tar_bytes([*OCI, f("x"), f("hidden")]))
    second_to_last = data.rfind(b"hidden") - 512 * 3  # the header of "x" (pax + ustar + data)
    offset = data.find(b"x", second_to_last)
    data[offset + 148 : offset + 156] = b"0000000\0"  # its checksum
    path = tmp_path / "a.tar"
    path.write_bytes(bytes(data))
    with pytest.raises(ComposeError, match="unreadable header"):
        detect_transport(path, where="x")


def test_an_oversized_extended_header_is_refused_before_it_is_read(tmp_path):
    path = tmp_path / "a.tar"
    path.write_bytes(tar_bytes([*OCI, f("x" * (2 << 20))]))
    with pytest.raises(ComposeError, match="extended header"):
        detect_transport(path, where="x")


# -- the property ----------------------------------------------------------------------------

COMPONENTS = st.sampled_from(["a", "b", "c", ".", ".."])


def paths(max_size: int) -> st.SearchStrategy[str]:
    return st.builds(
        lambda prefix, parts, slash: prefix + "/".join(parts) + slash,
        st.sampled_from(["", "", "./"]),
        st.lists(COMPONENTS, min_size=1, max_size=max_size),
        st.sampled_from(["", "", "/"]),
    )


MEMBERS = st.one_of(
    st.builds(d, paths(3)),
    st.builds(f, paths(3)),
    st.builds(sym, paths(3), paths(4)),
    st.builds(hard, paths(3), paths(3)),
)


def read_back(data: bytes) -> list[tarfile.TarInfo]:
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as tar:
        return tar.getmembers()


def inside(path: str, root: str) -> bool:
    return os.path.commonpath([path, root]) == root


def naive_escape(members: list[tarfile.TarInfo], dest: str) -> str | None:
    """Extract ``members`` into ``dest`` following every link, as a naive extractor would;
    return what would land or point outside ``dest`` (nothing is ever written outside: the
    first write that would leave is reported instead of made)."""
    for info in members:
        name = info.name.lstrip("/") or "."
        path = os.path.join(dest, name)
        parent = os.path.realpath(os.path.dirname(path))
        if not inside(parent, dest):
            return f"{info.name} would be written in {parent}"
        target = os.path.join(parent, os.path.basename(path))
        if info.isfile() and not inside(os.path.realpath(target), dest):
            return f"{info.name} would be written through a link to {os.path.realpath(target)}"
        try:
            os.makedirs(parent, exist_ok=True)
            if os.path.lexists(target) and not (info.isdir() and os.path.isdir(target)):
                if os.path.isdir(target) and not os.path.islink(target):
                    continue  # a naive extractor fails here; nothing escapes
                os.unlink(target)
            if info.isdir():
                os.makedirs(target, exist_ok=True)
            elif info.isfile():
                with open(target, "w") as out:  # follows a link at the end, like tarfile
                    out.write("x")
            elif info.issym():
                os.symlink(info.linkname, target)
            elif info.islnk():
                source = os.path.join(dest, info.linkname)
                if not inside(os.path.realpath(os.path.dirname(source)), dest):
                    return f"{info.name} would link to {os.path.realpath(source)}"
                os.link(source, target, follow_symlinks=False)
        except OSError:
            continue  # this member fails to extract; a naive extractor may go on
    for directory, subdirs, files in os.walk(dest):
        for entry in subdirs + files:
            path = os.path.join(directory, entry)
            if os.path.islink(path) and not inside(os.path.realpath(path), dest):
                return f"{path} points to {os.path.realpath(path)}"
    return None


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(MEMBERS, min_size=1, max_size=6))
@example([sym("p", "q"), sym("q/r", ".."), sym("s", "p/r/.."), f("s/loot")])
@example([sym("l", "m/.."), sym("m", "n/n"), sym("n", ".")])
@example([sym("s/t", "../u"), hard("v", "s/t")])
def test_what_is_accepted_never_leaves_and_what_leaves_is_refused(members):
    data = tar_bytes(members)
    read = read_back(data)
    try:
        check_members(read, where="x")
        accepted = True
    except ComposeError:
        accepted = False
    with tempfile.TemporaryDirectory() as tmp:
        sandbox = Path(tmp)
        dest = sandbox / "dest"
        dest.mkdir()
        escape = naive_escape(read, str(dest))
        assert not (accepted and escape), f"accepted, yet {escape}"
        if accepted:
            (sandbox / "a.tar").write_bytes(data)
            unpacked = sandbox / "unpacked"
            unpack_oci_archive(sandbox / "a.tar", unpacked, where="x")
            for path in unpacked.rglob("*"):
                assert inside(os.path.realpath(path), str(unpacked)), path
        assert {p.name for p in sandbox.iterdir()} <= {"dest", "a.tar", "unpacked"}


def test_unpacking_never_writes_through_a_link_even_if_the_check_let_it(tmp_path, monkeypatch):
    """The kernel, not only the check, keeps the unpacking inside: a member whose path goes
    through a link fails with ELOOP instead of being written."""
    from fedora_container_sync.compose import archive

    monkeypatch.setattr(
        archive.MemberCheck,
        "add",
        lambda self, m: [p for p in m.name.split("/") if p not in ("", ".")],
    )
    monkeypatch.setattr(archive.MemberCheck, "finish", lambda self: None)
    outside = tmp_path / "outside"
    outside.mkdir()
    path = tmp_path / "a.tar"
    path.write_bytes(tar_bytes([sym("up", "../outside"), f("up/loot")]))
    with pytest.raises(OSError):
        unpack_oci_archive(path, tmp_path / "dest", where="x")
    assert list(outside.iterdir()) == []


def test_unpacking_gives_the_archive_s_files(tmp_path):
    members = [*OCI, f("blobs/sha256/aa"), hard("blobs/sha256/bb", "blobs/sha256/aa")]
    members.append(sym("blobs/sha256/cc", "aa"))
    path = tmp_path / "a.tar"
    path.write_bytes(tar_bytes(members))
    assert detect_transport(path, where="x") == "oci-archive"
    dest = tmp_path / "dest"
    unpack_oci_archive(path, dest, where="x")
    assert (dest / "index.json").read_text() == "index.json\n"
    assert (dest / "blobs/sha256/bb").read_text() == "blobs/sha256/aa\n"
    assert os.readlink(dest / "blobs/sha256/cc") == "aa"
    assert (dest / "blobs/sha256/aa").stat().st_ino == (dest / "blobs/sha256/bb").stat().st_ino
    assert posixpath.basename(str(dest)) == "dest"


def test_an_archive_with_too_many_members_is_refused_before_it_is_read_whole():
    members = [member(f"m{number}") for number in range(MAX_MEMBERS + 1)]
    with pytest.raises(ComposeError, match=rf"^x: archive has more than {MAX_MEMBERS} members$"):
        check_members(members, where="x")
    check_members(members[:MAX_MEMBERS], where="x")  # the limit itself is fine
