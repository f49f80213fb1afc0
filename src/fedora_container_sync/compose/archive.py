"""Image archive files on disk (filesystem): transport detection and unpacking.

The transport is detected from the tar's members, never from the file name, and every member
is judged first by :class:`~.members.MemberCheck`. skopeo reads a docker-archive in place and
never extracts it; an OCI archive it would extract with its own tar reader, so
:func:`unpack_oci_archive` unpacks it instead, without ever following a link, and skopeo gets
the directory. :func:`unpack_oci_stream` does the same from a stream, as the archive is
downloaded: the archive is then never written whole.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import functools
import os
import tarfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Protocol

from ..errors import ComposeError
from .decompress import PIECE
from .members import MemberCheck

DOCKER_ARCHIVE = "docker-archive"
OCI_ARCHIVE = "oci-archive"

#: A pax extended header or GNU long name larger than this is refused before it is read: real
#: ones hold a path and a few numbers, and tarfile would read the whole of it into memory.
MAX_EXTENDED_HEADER = 1 << 20

_EXTENDED = (
    tarfile.XHDTYPE,
    tarfile.XGLTYPE,
    tarfile.SOLARIS_XHDTYPE,
    tarfile.GNUTYPE_LONGNAME,
    tarfile.GNUTYPE_LONGLINK,
)


class Stream(Protocol):
    """A tar read once, in order (a download as it arrives); ``seek`` goes forward, or back
    within the last tar block."""

    def read(self, size: int = -1, /) -> bytes: ...

    def seek(self, offset: int, whence: int = os.SEEK_SET, /) -> int: ...

    def tell(self) -> int: ...


class _BoundedTarInfo(tarfile.TarInfo):
    """Refuses an oversized pax header or GNU long name before tarfile reads it into memory."""

    def _proc_member(self, archive: tarfile.TarFile) -> tarfile.TarInfo:
        if self.type in _EXTENDED and self.size > MAX_EXTENDED_HEADER:
            raise _HeaderTooLarge(
                f"a {self.size}-byte extended header (more than {MAX_EXTENDED_HEADER})"
            )
        member: tarfile.TarInfo = super()._proc_member(archive)  # type: ignore[misc]
        return member


class _HeaderTooLarge(Exception):
    pass


@contextlib.contextmanager
def _members(source: Path | Stream, *, where: str) -> Iterator[tuple[tarfile.TarFile, MemberCheck]]:
    """Open the tar ``source`` (a file, or a stream read once in order) for reading its members
    in order, each judged by a fresh check."""
    try:
        if isinstance(source, Path):
            opened = tarfile.open(source, mode="r:", tarinfo=_BoundedTarInfo)
        else:  # reading, tarfile only reads, seeks and tells (the stubs ask for a whole file)
            opened = tarfile.open(fileobj=source, mode="r:", tarinfo=_BoundedTarInfo)  # type: ignore[call-overload]
        with opened as archive:
            yield archive, MemberCheck(where=where)
            _check_end(archive, where)
    except _HeaderTooLarge as error:
        raise ComposeError(f"{where}: archive has {error}") from None
    except (tarfile.TarError, UnicodeError) as error:
        raise ComposeError(f"{where}: not a tar archive ({error})") from None


def _check_end(archive: tarfile.TarFile, where: str) -> None:
    """Refuse what tarfile would silently skip: a bad header after the last member (tarfile
    stops there as if the archive ended, other readers do not) and global pax headers (they
    rename every later member for tarfile, for Go's archive/tar they do not)."""
    if set(archive.pax_headers) - {"comment"}:
        raise ComposeError(f"{where}: archive has a global pax header that changes its members")
    fileobj = archive.fileobj
    if fileobj is None:  # pragma: no cover - an open archive has one
        raise ComposeError(f"{where}: not a tar archive")
    fileobj.seek(archive.offset)
    if fileobj.read(tarfile.BLOCKSIZE).strip(b"\0"):
        raise ComposeError(
            f"{where}: not a tar archive (an unreadable header at byte {archive.offset})"
        )


def detect_transport(tar_path: Path, *, where: str) -> str:
    """``docker-archive`` or ``oci-archive`` for an uncompressed tar, from its members.

    Every member is judged first (:class:`MemberCheck`). An OCI layout (``oci-layout`` +
    ``index.json``) wins over ``manifest.json``: the "hybrid" archives newer ``docker save``
    writes carry both and work with either transport.
    """
    try:
        with _members(tar_path, where=where) as (archive, check):
            for member in archive:
                check.add(member)
            check.finish()
    except OSError as error:
        raise ComposeError(f"{where}: not a tar archive ({error})") from None
    if {"oci-layout", "index.json"} <= check.names:
        return OCI_ARCHIVE
    if "manifest.json" in check.names:
        return DOCKER_ARCHIVE
    raise ComposeError(f"{where}: neither a docker-archive nor an OCI archive")


# -- unpacking -------------------------------------------------------------------------------

_NOFOLLOW_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_NEW_FILE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


def unpack_oci_archive(tar_path: Path, dest: Path, *, where: str, consume: bool = False) -> None:
    """Unpack an OCI archive into ``dest`` (created here), for skopeo's ``oci:`` transport.

    The members are judged again as they are unpacked, and the kernel makes sure nothing is
    written through a link: every directory on the way is opened with ``O_NOFOLLOW`` relative
    to its parent, every file is created with ``O_EXCL | O_NOFOLLOW``. Hard links are linked,
    not copied, so unpacking writes no more than the tar holds. An OSError (a full disk)
    propagates; the caller removes ``dest``.

    A regular file's bytes are copied by the kernel (``copy_file_range``: the tar is plain,
    each file's bytes lie in one piece). With ``consume``, the tar's space is given back as it
    is read (the tar is a temporary copy the caller deletes next): the work dir then holds the
    image about once, not twice, while it is unpacked.
    """
    dest.mkdir(mode=0o700)
    root = os.open(dest, _NOFOLLOW_DIR)
    try:
        with contextlib.ExitStack() as stack:
            release = _Release(tar_path) if consume else None
            if release is not None:
                stack.callback(release.close)
            archive, check = stack.enter_context(_members(tar_path, where=where))
            fileobj = archive.fileobj
            if fileobj is None:  # pragma: no cover - an open archive has one
                raise ComposeError(f"{where}: not a tar archive")
            source = fileobj.fileno()  # type: ignore[attr-defined]
            copy = functools.partial(_copy_member, source, release)
            for member in archive:
                parts = check.add(member)
                if parts:
                    _unpack(member, parts, root, copy)
                if release is not None:
                    release.upto(member.offset_data + member.size)
            check.finish()
    finally:
        os.close(root)


def unpack_oci_stream(stream: Stream, dest: Path, *, where: str) -> None:
    """Unpack the OCI archive read from ``stream`` into ``dest`` (created here), as it comes.

    ``stream`` is read once, in order (it may step back within the last tar block, as tarfile
    does at the end): a download as it arrives, so the archive is never written whole and its
    bytes are written once, into the files they belong to. Each member is judged before it is
    written, as :func:`unpack_oci_archive` does, with the same kernel guarantees (nothing is ever
    written through a link); once every member is known, every symbolic link is judged again,
    and the archive must hold an OCI layout (``oci-layout`` and ``index.json``). A
    :class:`ComposeError` or an OSError propagates; the caller removes ``dest`` (and, since the
    archive's checksum is known only at its end, whatever came from an archive that does not
    match it).
    """
    dest.mkdir(mode=0o700)
    root = os.open(dest, _NOFOLLOW_DIR)
    try:
        with _members(stream, where=where) as (archive, check):
            copy = functools.partial(_write_member, stream)
            for member in archive:
                parts = check.add(member)
                if parts:
                    _unpack(member, parts, root, copy)
            check.finish()
    finally:
        os.close(root)
    if not {"oci-layout", "index.json"} <= check.names:
        raise ComposeError(f"{where}: not an OCI archive (no oci-layout and index.json in it)")


#: The bytes :func:`_write_member` reads and writes at a time: about what the network gives at
#: a time, still in the CPU's cache (pieces of megabytes are copied from memory again, slower).
_WRITE = 1 << 16


def _write_member(stream: Stream, target: int, member: tarfile.TarInfo) -> None:
    """A regular member's bytes, read from ``stream`` in pieces, written to ``target``."""
    stream.seek(member.offset_data)
    left = member.size
    while left:
        data = stream.read(min(left, _WRITE))
        if not data:
            raise tarfile.ReadError("unexpected end of data")
        view = memoryview(data)
        while view:
            view = view[os.write(target, view) :]
        left -= len(data)


def _copy_member(
    source: int, release: _Release | None, target: int, member: tarfile.TarInfo
) -> None:
    _copy_range(source, target, member.offset_data, member.size, release)


class _Release:
    """Gives back the space of a file's bytes already read (``fallocate`` punching a hole; the
    file keeps its size and reads zeros there). Where the file system cannot, nothing happens."""

    _PUNCH_HOLE_KEEP_SIZE = 0x02 | 0x01  # FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE
    _STEP = 1 << 20

    def __init__(self, path: Path) -> None:
        self._fd = os.open(path, os.O_WRONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        self._done = 0
        self._fallocate = _fallocate()

    def close(self) -> None:
        os.close(self._fd)

    def upto(self, offset: int) -> None:
        start, end = self._done, offset - offset % self._STEP
        if self._fallocate is None or end - start < self._STEP:
            return
        if self._fallocate(self._fd, self._PUNCH_HOLE_KEEP_SIZE, start, end - start) != 0:
            self._fallocate = None  # not supported here: keep the file as it is
            return
        self._done = end


def _fallocate() -> Callable[[int, int, int, int], int] | None:
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name, use_errno=True)
        function = libc.fallocate64
    except (OSError, AttributeError, TypeError):
        return None
    function.argtypes = (ctypes.c_int, ctypes.c_int, ctypes.c_int64, ctypes.c_int64)
    function.restype = ctypes.c_int
    fallocate: Callable[[int, int, int, int], int] = function
    return fallocate


def _unpack(
    member: tarfile.TarInfo,
    parts: list[str],
    root: int,
    copy: Callable[[int, tarfile.TarInfo], None],
) -> None:
    """Create one judged member under ``root``; ``copy`` writes a regular file's bytes."""
    if member.isdir():
        os.close(_open_dir(root, parts))
        return
    parent = _open_dir(root, parts[:-1])
    try:
        if member.issym():
            os.symlink(member.linkname, parts[-1], dir_fd=parent)
        elif member.islnk():
            target = [p for p in member.linkname.split("/") if p not in ("", ".")]
            source = _open_dir(root, target[:-1])
            try:
                os.link(
                    target[-1],
                    parts[-1],
                    src_dir_fd=source,
                    dst_dir_fd=parent,
                    follow_symlinks=False,
                )
            finally:
                os.close(source)
        else:
            out = os.open(parts[-1], _NEW_FILE, 0o600, dir_fd=parent)
            try:
                copy(out, member)
            finally:
                os.close(out)
    finally:
        os.close(parent)


def _copy_range(source: int, target: int, offset: int, size: int, release: _Release | None) -> None:
    """``size`` bytes of ``source`` from ``offset`` to ``target``, copied by the kernel, in
    pieces; ``release`` gives each piece's space back once it is copied."""
    done = 0
    while done < size:
        copied = os.copy_file_range(source, target, min(size - done, PIECE), offset + done)
        if copied == 0:
            raise tarfile.ReadError("unexpected end of data")
        done += copied
        if release is not None:
            release.upto(offset + done)


def _open_dir(root: int, parts: list[str]) -> int:
    """A descriptor of directory ``parts`` under ``root``, created as needed, never through a
    link (ELOOP or ENOTDIR instead)."""
    fd = os.open(".", _NOFOLLOW_DIR, dir_fd=root)
    try:
        for part in parts:
            with contextlib.suppress(FileExistsError):
                os.mkdir(part, 0o700, dir_fd=fd)
            child = os.open(part, _NOFOLLOW_DIR, dir_fd=fd)
            os.close(fd)
            fd = child
    except BaseException:
        os.close(fd)
        raise
    return fd
