"""Which of two composes is newer. Pure.

A compose ID is ``<release>-<date><type suffix>.<respin>``: ``Fedora-41-20241025.0``,
``Fedora-Rawhide-20230502.n.0``, ``Fedora-IoT-41-20250101.0``. Two composes are comparable
only when they belong to the same release (the part before the date: ``Fedora-41``,
``Fedora-Rawhide``, ``Fedora-IoT-41``); then the newer one has the later date, then the
higher compose type in productmd's order (test < ci < nightly < production < development),
then the higher respin - exactly productmd's own comparison of composes.

Numbers are ASCII digits only: ``\\d`` (productmd's ``get_date_type_respin`` uses it) also
matches Arabic-Indic, Devanagari or fullwidth digits, and ``int()`` reads those as numbers. An
ID with any other digit, a respin of more than four digits or an unknown type suffix is not a
compose ID.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from productmd.composeinfo import COMPOSE_TYPE_SUFFIXES, COMPOSE_TYPES

_COMPOSE_ID = re.compile(
    r"(?P<release>.+?)-(?P<date>[0-9]{8})(?:\.(?P<suffix>[a-z]+))?(?:\.(?P<respin>[0-9]{1,4}))?",
    re.ASCII,
)


@dataclass(frozen=True, order=True)
class ComposeKey:
    """The comparable parts of a compose ID."""

    release: str
    date: str
    type_rank: int
    respin: int


def compose_key(compose_id: str | None) -> ComposeKey | None:
    """The key of ``compose_id``, or None when it is not a parseable Pungi compose ID."""
    parsed = _parse(compose_id)
    if parsed is None:
        return None
    release, date, compose_type, respin = parsed
    return ComposeKey(release, date, COMPOSE_TYPES.index(compose_type), respin)


def date_type_respin(compose_id: str | None) -> tuple[str, str, int] | None:
    """``(date, compose type, respin)`` of a compose ID (``("20241025", "nightly", 0)`` for
    ``Fedora-41-20241025.n.0``), or None when it is not a Pungi compose ID."""
    parsed = _parse(compose_id)
    return None if parsed is None else parsed[1:]


def _parse(compose_id: str | None) -> tuple[str, str, str, int] | None:
    if not compose_id:
        return None
    match = _COMPOSE_ID.fullmatch(compose_id)
    if match is None:
        return None
    suffix = match["suffix"]
    compose_type = "production" if suffix is None else COMPOSE_TYPE_SUFFIXES.get(suffix)
    if compose_type not in COMPOSE_TYPES:
        return None
    return match["release"], match["date"], compose_type, int(match["respin"] or 0)


def is_newer(candidate: str | None, than: str | None) -> bool:
    """True when ``candidate`` is a newer compose of the same release as ``than``.

    Composes that cannot be parsed, or that belong to different releases, are never newer
    than each other: there is nothing to compare.
    """
    a, b = compose_key(candidate), compose_key(than)
    if a is None or b is None or a.release != b.release:
        return False
    return (a.date, a.type_rank, a.respin) > (b.date, b.type_rank, b.respin)


def newest(compose_ids: set[str], *, release_of: str) -> str | None:
    """The newest of ``compose_ids`` that belongs to the release of ``release_of``."""
    own = compose_key(release_of)
    if own is None:
        return None
    keyed = [
        (key, compose_id)
        for compose_id in compose_ids
        if (key := compose_key(compose_id)) is not None and key.release == own.release
    ]
    return max(keyed)[1] if keyed else None
