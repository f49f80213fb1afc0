"""Image archive files: streaming decompression, member checks, transport detection, unpacking.

A compose ships ``.tar.xz`` (sometimes ``.tar.gz``) docker-archives or OCI archives, and
uncompressed ``.ociarchive`` files. The compressed bytes are decompressed while they are
downloaded (skopeo then reads a plain tar in place instead of making its own temporary copy),
up to a limit, and the transport is detected from the tar's members, never from the file name.

Members are judged by where they lead, not by their text: :class:`MemberCheck` replays the
member list the way extraction would meet it (links created by earlier members included) and
refuses any archive in which something could land, or point, outside it. skopeo reads a
docker-archive in place and never extracts it; an OCI archive it would extract with its own
tar reader, so :func:`unpack_oci_archive` unpacks it instead, without ever following a link,
and skopeo gets the directory.
"""

from __future__ import annotations

import contextlib
import lzma
import os
import posixpath
import shutil
import tarfile
import zlib
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import NoReturn, Protocol

from .errors import ComposeError

XZ_MAGIC = b"\xfd7zXZ\x00"
GZIP_MAGIC = b"\x1f\x8b"
MAGIC_LENGTH = len(XZ_MAGIC)

DOCKER_ARCHIVE = "docker-archive"
OCI_ARCHIVE = "oci-archive"


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


# -- members ---------------------------------------------------------------------------------

#: Linux follows at most 40 symbolic links while it resolves one path (MAXSYMLINKS).
MAX_LINKS = 40
#: More members than this refuse the archive: tarfile keeps every member it has read in memory.
#: An image archive holds a handful per layer or blob (``docker save``: a directory, ``json``,
#: ``VERSION``, ``layer.tar``); a bootable container has some 60 layers.
MAX_MEMBERS = 10_000
#: A pax extended header or GNU long name larger than this is refused before it is read: real
#: ones hold a path and a few numbers, and tarfile would read the whole of it into memory.
MAX_EXTENDED_HEADER = 1 << 20

_DIR, _FILE, _LINK = "directory", "file", "link"
#: Regular files: ``0`` and the old ``\0``; tarfile turns an old-style ``\0`` name ending in
#: ``/`` into a directory, as Go's archive/tar does.
_REGULAR = (tarfile.REGTYPE, tarfile.AREGTYPE)
_SPECIAL = (tarfile.CHRTYPE, tarfile.BLKTYPE, tarfile.FIFOTYPE)
_EXTENDED = (
    tarfile.XHDTYPE,
    tarfile.XGLTYPE,
    tarfile.SOLARIS_XHDTYPE,
    tarfile.GNUTYPE_LONGNAME,
    tarfile.GNUTYPE_LONGLINK,
)


class _Outside(Exception):
    """A path resolves above the archive's root."""


class _TooManyLinks(Exception):
    """Resolving a path follows more than :data:`MAX_LINKS` links (a loop, or a long chain)."""


class MemberCheck:
    """Judges an archive's members in order, as extraction meets them.

    The archive is extracted into an empty directory. Each member's path is walked through
    the entries that earlier members created (directories created on the way too), and each
    link's target is resolved as the kernel would: component by component, ``..`` going up
    from where the walk *is*, a symbolic link replaced by its own target. Refused:

    * names that are empty, absolute, contain ``..``, or end in ``/`` without being a directory;
    * a member whose path goes through a link or a file (writing it would follow the link);
    * a name that comes twice, except a directory again (readers disagree on which one counts;
      extraction replaces the first, and a link replaced by a file is written through);
    * a symbolic link whose target is absolute or resolves outside, or through more than
      :data:`MAX_LINKS` links, when it is created and again once every member is known (a
      later link can change where an earlier one leads);
    * a hard link that is not a plain path to an earlier regular file (a hard link to a
      symbolic link is a copy of that link in another directory);
    * devices, FIFOs, sparse files and every other type.
    """

    def __init__(self, *, where: str) -> None:
        self._where = where
        #: normalized path ("a/b") -> kind; the root "" is a directory
        self._kinds: dict[str, str] = {"": _DIR}
        #: symbolic link path -> its target, as written
        self._links: dict[str, str] = {}
        self.names: set[str] = set()
        self._count = 0

    def add(self, member: tarfile.TarInfo) -> list[str]:
        """Judge one member; return its normalized path components ([] for the root)."""
        name = member.name
        self._count += 1
        if self._count > MAX_MEMBERS:
            raise ComposeError(f"{self._where}: archive has more than {MAX_MEMBERS} members")
        parts = self._parts(member)
        if not parts:
            if not member.isdir():
                self._refuse(name, "names the archive's root but is not a directory")
            return parts
        self._walk_parents(name, parts)
        path = "/".join(parts)
        if path in self._kinds and not (self._kinds[path] == _DIR and member.isdir()):
            self._refuse(name, "comes twice in the archive")
        if member.isdir():
            kind = _DIR
        elif member.issym():
            self._check_symlink(name, parts, member.linkname)
            self._links[path] = member.linkname
            kind = _LINK
        elif member.islnk():
            self._check_hardlink(name, member.linkname)
            kind = _FILE
        elif member.type in _REGULAR and member.sparse is None:
            kind = _FILE
        elif member.type in _SPECIAL:
            self._refuse(name, "is a device or special file")
        elif member.sparse is not None or member.type == tarfile.GNUTYPE_SPARSE:
            self._refuse(name, "is a sparse file")
        else:
            self._refuse(name, f"has the unsupported tar type {member.type!r}")
        self._kinds[path] = kind
        self.names.add(path)
        return parts

    def finish(self) -> None:
        """Judge every symbolic link again, now that all entries are known."""
        for path, target in self._links.items():
            self._check_symlink(path, path.split("/"), target)

    def _parts(self, member: tarfile.TarInfo) -> list[str]:
        name = member.name
        if not name:
            self._refuse(name, "has an empty name")
        if "\0" in name or "\0" in member.linkname:
            self._refuse(name, "has a NUL byte in its name or link target")
        if name.startswith("/") or _climbs_out(name):
            self._refuse(name, "escapes the archive")
        parts = [part for part in name.split("/") if part not in ("", ".")]
        if ".." in parts:
            self._refuse(name, "has '..' in its path")
        if name.endswith("/") and not member.isdir():
            self._refuse(name, "ends in '/' but is not a directory")
        return parts

    def _walk_parents(self, name: str, parts: list[str]) -> None:
        for end in range(1, len(parts)):
            prefix = "/".join(parts[:end])
            kind = self._kinds.setdefault(prefix, _DIR)  # extraction creates it
            if kind != _DIR:
                self._refuse(name, f"goes through the {kind} {prefix!r}")

    def _check_symlink(self, name: str, parts: list[str], target: str) -> None:
        if not target:
            self._refuse(name, "is a link to nothing")
        outside = f"links to {target!r}, outside the archive"
        if target.startswith("/"):
            self._refuse(name, outside)
        try:
            self._resolve(parts[:-1], target, [MAX_LINKS])
        except _Outside:
            self._refuse(name, outside)
        except _TooManyLinks:
            self._refuse(name, f"links to {target!r} through more than {MAX_LINKS} links")

    def _check_hardlink(self, name: str, target: str) -> None:
        if target.startswith("/") or _climbs_out(target):
            self._refuse(name, f"links to {target!r}, outside the archive")
        parts = [part for part in target.split("/") if part not in ("", ".")]
        if ".." in parts or not parts:
            self._refuse(name, f"is a hard link to {target!r}, not a plain path")
        for end in range(1, len(parts) + 1):
            kind = self._kinds.get("/".join(parts[:end]))
            if kind is None or (end < len(parts) and kind != _DIR):
                self._refuse(name, f"is a hard link to {target!r}, not an earlier file")
        if self._kinds["/".join(parts)] != _FILE:
            self._refuse(name, f"is a hard link to {target!r}, which is not a regular file")

    def _resolve(self, start: list[str], target: str, budget: list[int]) -> list[str]:
        """Where ``target``, read in directory ``start``, leads in the tree as it is now."""
        current = list(start)
        for part in target.split("/"):
            if part in ("", "."):
                continue
            if part == "..":
                if not current:
                    raise _Outside
                current.pop()
                continue
            current.append(part)
            link = self._links.get("/".join(current))
            if link is not None:
                budget[0] -= 1
                if budget[0] < 0:
                    raise _TooManyLinks
                if link.startswith("/"):
                    raise _Outside
                current = self._resolve(current[:-1], link, budget)
        return current

    def _refuse(self, name: str, reason: str) -> NoReturn:
        raise ComposeError(f"{self._where}: archive member {name!r} {reason}")


def _climbs_out(path: str) -> bool:
    normalized = posixpath.normpath(path)
    return normalized == ".." or normalized.startswith("../")


def check_members(members: Iterable[tarfile.TarInfo], *, where: str) -> set[str]:
    """Judge a whole member list (see :class:`MemberCheck`); return the normalized names."""
    check = MemberCheck(where=where)
    for member in members:
        check.add(member)
    check.finish()
    return check.names


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
def _members(tar_path: Path, *, where: str) -> Iterator[tuple[tarfile.TarFile, MemberCheck]]:
    """Open ``tar_path`` for reading its members in order, each judged by a fresh check."""
    try:
        with tarfile.open(tar_path, mode="r:", tarinfo=_BoundedTarInfo) as archive:
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


def unpack_oci_archive(tar_path: Path, dest: Path, *, where: str) -> None:
    """Unpack an OCI archive into ``dest`` (created here), for skopeo's ``oci:`` transport.

    The members are judged again as they are unpacked, and the kernel makes sure nothing is
    written through a link: every directory on the way is opened with ``O_NOFOLLOW`` relative
    to its parent, every file is created with ``O_EXCL | O_NOFOLLOW``. Hard links are linked,
    not copied, so unpacking writes no more than the tar holds. An OSError (a full disk)
    propagates; the caller removes ``dest``.
    """
    dest.mkdir(mode=0o700)
    root = os.open(dest, _NOFOLLOW_DIR)
    try:
        with _members(tar_path, where=where) as (archive, check):
            for member in archive:
                parts = check.add(member)
                if parts:
                    _unpack(archive, member, parts, root)
            check.finish()
    finally:
        os.close(root)


def _unpack(archive: tarfile.TarFile, member: tarfile.TarInfo, parts: list[str], root: int) -> None:
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
            data = archive.extractfile(member)
            if data is None:  # pragma: no cover - MemberCheck let only regular files through
                raise ComposeError(f"archive member {member.name!r} has no data")
            with data, open(os.open(parts[-1], _NEW_FILE, 0o600, dir_fd=parent), "wb") as out:
                shutil.copyfileobj(data, out, PIECE)
    finally:
        os.close(parent)


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
