"""Judging a tar archive's members by where they lead, not by their text. Pure.

:class:`MemberCheck` replays the member list the way extraction would meet it (links created by
earlier members included) and refuses any archive in which something could land, or point,
outside it. It reads only the members' headers (:class:`Member`, which ``Member``
is); reading and unpacking the tar itself is :mod:`.archive`'s.
"""

from __future__ import annotations

import posixpath
from collections.abc import Iterable
from typing import NoReturn, Protocol

from ..errors import ComposeError

#: The POSIX and GNU tar header type flags this module tells apart (``tarfile``'s values).
REGTYPE, AREGTYPE = b"0", b"\0"
CHRTYPE, BLKTYPE, FIFOTYPE = b"3", b"4", b"6"
GNUTYPE_SPARSE = b"S"


class Member(Protocol):
    """The header of one archive member, as ``Member`` reads it."""

    @property
    def name(self) -> str: ...

    @property
    def linkname(self) -> str: ...

    @property
    def type(self) -> bytes: ...

    @property
    def sparse(self) -> object: ...

    def isdir(self) -> bool: ...

    def issym(self) -> bool: ...

    def islnk(self) -> bool: ...


#: Linux follows at most 40 symbolic links while it resolves one path (MAXSYMLINKS).
MAX_LINKS = 40
#: More members than this refuse the archive: tarfile keeps every member it has read in memory.
#: An image archive holds a handful per layer or blob (``docker save``: a directory, ``json``,
#: ``VERSION``, ``layer.tar``); a bootable container has some 60 layers.
MAX_MEMBERS = 10_000

_DIR, _FILE, _LINK = "directory", "file", "link"
#: Regular files: ``0`` and the old ``\0``; tarfile turns an old-style ``\0`` name ending in
#: ``/`` into a directory, as Go's archive/tar does.
_REGULAR = (REGTYPE, AREGTYPE)
_SPECIAL = (CHRTYPE, BLKTYPE, FIFOTYPE)


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

    def add(self, member: Member) -> list[str]:
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
        elif member.sparse is not None or member.type == GNUTYPE_SPARSE:
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

    def _parts(self, member: Member) -> list[str]:
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


def check_members(members: Iterable[Member], *, where: str) -> set[str]:
    """Judge a whole member list (see :class:`MemberCheck`); return the normalized names."""
    check = MemberCheck(where=where)
    for member in members:
        check.add(member)
    check.finish()
    return check.names
