"""Which of two composes is newer. Pure.

A compose ID is ``<release>-<date><type suffix>.<respin>``: ``Fedora-41-20241025.0``,
``Fedora-Rawhide-20230502.n.0``, ``Fedora-IoT-41-20250101.0``. Two composes are comparable
only when they belong to the same release (the part before the date: ``Fedora-41``,
``Fedora-Rawhide``, ``Fedora-IoT-41``); then the newer one has the later date, then the
higher compose type in productmd's order (test < ci < nightly < production < development),
then the higher respin - exactly productmd's own comparison of composes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from productmd.composeinfo import COMPOSE_TYPES, get_date_type_respin

_RELEASE = re.compile(r"^(?P<release>.+?)-(?P<date>\d{8})(?:\.[a-z]+)?(?:\.\d+)?$")


@dataclass(frozen=True, order=True)
class ComposeKey:
    """The comparable parts of a compose ID."""

    release: str
    date: str
    type_rank: int
    respin: int


def compose_key(compose_id: str | None) -> ComposeKey | None:
    """The key of ``compose_id``, or None when it is not a parseable Pungi compose ID."""
    if not compose_id:
        return None
    match = _RELEASE.match(compose_id)
    if match is None:
        return None
    try:
        date, compose_type, respin = get_date_type_respin(compose_id)
    except ValueError:  # an unknown type suffix
        return None
    if date != match["date"] or compose_type not in COMPOSE_TYPES:
        return None
    return ComposeKey(match["release"], date, COMPOSE_TYPES.index(compose_type), int(respin))


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
