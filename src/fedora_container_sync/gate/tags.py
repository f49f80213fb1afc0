"""Which tags a compose's images go under, and which composes may move them. Pure.

Release N → index tags ``N`` (+ ``latest`` when N is the current stable release) and per-arch
tags ``N-<arch>``; Rawhide → ``<rawhide number>`` and ``rawhide``. The release numbers come
from ``[releases]``, or for each one missing there, from Bodhi's releases list
(:func:`releases_from_bodhi`). ``[compose_rules]`` decides which composes publish at all and
keeps pre-release candidates off ``latest`` (:func:`plan_tags`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from ..compose.metadata import ComposeFacts
from ..config.settings import ComposeRules, Releases
from ..errors import ComposeError, ReleaseLookupError

RAWHIDE = "rawhide"
LATEST = "latest"


@dataclass(frozen=True)
class ReleaseTags:
    """The tags one compose publishes to, in every repository."""

    release: int
    index_tags: tuple[str, ...]

    def arch_tag(self, arch: str) -> str:
        return f"{self.release}-{arch}"


#: A release number as composes write it: 1 to 4 ASCII digits, no leading zero. ``isdigit()``
#: also takes superscripts, ``int()`` Arabic-Indic or fullwidth digits; and productmd accepts
#: any version that does not start with an ASCII digit.
_RELEASE_NUMBER = re.compile(r"[1-9][0-9]{0,3}", re.ASCII)


def release_number(release_version: str, *, compose_id: str) -> int | None:
    """The release number of a compose's ``release.version``: 41 for "41", None for Rawhide.

    Anything else (a sign, a space, a leading zero, other digits, more than four of them, a
    minor version) is not a version this project can tag: :class:`ComposeError`, one line.
    """
    if _RELEASE_NUMBER.fullmatch(release_version):
        return int(release_version)
    if release_version.isascii() and release_version.lower() == RAWHIDE:
        return None
    shown = repr(release_version[:20]) + ("..." if len(release_version) > 20 else "")
    raise ComposeError(
        f"{compose_id}: release version {shown} is neither a release number "
        "(1 to 4 ASCII digits, no leading zero) nor Rawhide"
    )


def tags_for(release_version: str, releases: Releases, *, compose_id: str) -> ReleaseTags:
    """Tags for a compose of ``release_version`` ("41", "Rawhide", ...)."""
    release = release_number(release_version, compose_id=compose_id)
    if release is not None:
        extra = (LATEST,) if releases.latest == release else ()
        return ReleaseTags(release, (str(release), *extra))
    if releases.rawhide is None:
        raise ComposeError(
            f"{compose_id}: a Rawhide compose, but releases.rawhide is not configured"
        )
    return ReleaseTags(releases.rawhide, (str(releases.rawhide), RAWHIDE))


def needs_lookup(release_version: str, releases: Releases, *, compose_id: str) -> bool:
    """True when tagging a compose of ``release_version`` needs a number ``releases`` lacks.

    Raises :class:`ComposeError` for a version that is neither a release number nor Rawhide.
    """
    if release_number(release_version, compose_id=compose_id) is None:
        return releases.rawhide is None
    return releases.latest is None


def merge_releases(static: Releases, looked_up: Releases) -> Releases:
    """Static settings win; each number missing there comes from the lookup."""
    return Releases(
        latest=static.latest if static.latest is not None else looked_up.latest,
        rawhide=static.rawhide if static.rawhide is not None else looked_up.rawhide,
    )


def releases_from_bodhi(releases: Iterable[Mapping[str, Any]], *, source: str) -> Releases:
    """The current stable release and Rawhide's number from Bodhi's ``/releases/`` list.

    Only Fedora releases count (``id_prefix`` FEDORA: not EPEL, Containers, Flatpaks, ELN).
    ``latest`` is the highest release in state ``current``. Rawhide is the highest
    non-archived release: Bodhi lists Rawhide as a ``pending`` release (branch ``rawhide``),
    and around branching its branch names lag, while the numbers do not.
    """
    fedora: list[tuple[int, str]] = []
    for release in releases:
        version = str(release.get("version", ""))
        state = str(release.get("state", ""))
        if release.get("id_prefix") != "FEDORA" or state == "archived":
            continue
        if not version.isdigit():
            continue  # not a numbered release ("eln")
        # isdigit() is also true for "²" or "٤١": what int() would read, only ASCII counts
        if not _RELEASE_NUMBER.fullmatch(version):
            shown = repr(version[:20]) + ("..." if len(version) > 20 else "")
            raise ReleaseLookupError(
                f"{source}: release version {shown} is not a release number (1 to 4 ASCII digits)"
            )
        fedora.append((int(version), state))
    current = [version for version, state in fedora if state == "current"]
    if not current:
        raise ReleaseLookupError(f"{source}: lists no current Fedora release")
    latest = max(current)
    rawhide = max(version for version, _ in fedora)
    if rawhide == latest:
        raise ReleaseLookupError(f"{source}: lists no Fedora release newer than {latest}")
    return Releases(latest=latest, rawhide=rawhide)


def excluded(facts: ComposeFacts, rules: ComposeRules) -> str | None:
    """Why this compose publishes nothing at all, or None."""
    if facts.release_short not in rules.release_shorts:
        return (
            f"release {facts.release_short} is not in compose_rules.release_shorts: "
            "nothing to publish"
        )
    if facts.compose_type not in rules.compose_types:
        return (
            f"compose type {facts.compose_type} is not in compose_rules.compose_types: "
            "nothing to publish"
        )
    return None


def plan_tags(
    facts: ComposeFacts, releases: Releases, rules: ComposeRules
) -> tuple[ReleaseTags | None, list[str]]:
    """The tags this compose may move (None: it publishes nothing), and why any were left out.

    * Composes of a release short name or compose type not in ``rules`` publish nothing
      (IoT, ELN or test composes share the bus topic with the ones we want).
    * A pre-release candidate (label matching ``rules.candidate_label``: ``Beta-1.2``,
      ``RC-1.5``) never moves ``latest``. Before its release is current it would not get
      ``latest`` anyway; from release day on (``latest`` = its release) ``latest`` belongs
      to post-release composes, and a late or replayed candidate must not take it. It moves
      ``<N>`` and the per-arch tags only if ``rules.candidates_move_version``.
    """
    reason = excluded(facts, rules)
    if reason is not None:
        return None, [reason]
    tags = tags_for(facts.release_version, releases, compose_id=facts.compose_id)
    if not (facts.label and re.search(rules.candidate_label, facts.label)):
        return tags, []
    if not rules.candidates_move_version:
        return None, [
            f"pre-release candidate (label {facts.label}) and "
            "compose_rules.candidates_move_version is false: nothing to publish"
        ]
    if LATEST not in tags.index_tags:
        return tags, []
    kept = tuple(tag for tag in tags.index_tags if tag != LATEST)
    return ReleaseTags(tags.release, kept), [
        f"{LATEST} not moved: pre-release candidate (label {facts.label})"
    ]
