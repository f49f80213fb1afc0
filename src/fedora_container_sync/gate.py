"""The manifest gate: may this compose move an index tag? Pure.

Upstream chose the strict rule (cloud-image-uploader issue 16): publish an index only when
every arch the tag currently serves is in this compose; otherwise hold the tag, so that
``podman pull fedora-toolbox:41`` never silently loses an arch. Per-arch tags are not gated.
"""

from __future__ import annotations

from collections.abc import Set
from dataclasses import dataclass
from enum import StrEnum

from .platforms import sorted_arches


class Verdict(StrEnum):
    PUBLISH = "publish"
    UNCHANGED = "unchanged"
    HOLD = "hold"


@dataclass(frozen=True)
class GateDecision:
    verdict: Verdict
    current_arches: frozenset[str] | None
    compose_arches: frozenset[str]
    missing: frozenset[str]
    reason: str

    @property
    def moves_tag(self) -> bool:
        return self.verdict is Verdict.PUBLISH


def decide(
    current_arches: Set[str] | None,
    compose_arches: Set[str],
    *,
    failed_arches: Set[str] = frozenset(),
    current_digest: str | None = None,
    new_digest: str | None = None,
    policy: str = "strict",
) -> GateDecision:
    """Decide for one index tag in one registry.

    ``current_arches`` is None when the tag does not exist. ``compose_arches`` are the arches
    this compose published to the registry; ``failed_arches`` those the compose has but this
    run failed to download, verify or push - an index is never written without them, even
    for a new tag. When both digests are given and equal, the tag already holds exactly the
    index we would write.
    """
    if policy != "strict":
        raise ValueError(f"unknown gate policy {policy!r}")
    compose = frozenset(compose_arches)
    current = None if current_arches is None else frozenset(current_arches)
    failed = frozenset(failed_arches) - compose
    if failed:
        reason = f"publishing {', '.join(sorted_arches(failed))} failed in this run"
        return GateDecision(Verdict.HOLD, current, compose, failed, reason)
    if not compose:
        return GateDecision(
            Verdict.HOLD,
            current,
            compose,
            current or frozenset(),
            "no arch of this image published",
        )
    if current is None:
        return GateDecision(Verdict.PUBLISH, None, compose, frozenset(), "new tag")
    missing = current - compose
    if missing:
        return GateDecision(
            Verdict.HOLD,
            current,
            compose,
            missing,
            f"compose lacks {', '.join(sorted_arches(missing))}, which the tag serves now",
        )
    if current_digest is not None and current_digest == new_digest:
        return GateDecision(Verdict.UNCHANGED, current, compose, frozenset(), "already published")
    added = compose - current
    reason = (
        f"all current arches present; adds {', '.join(sorted_arches(added))}"
        if added
        else "all current arches present"
    )
    return GateDecision(Verdict.PUBLISH, current, compose, frozenset(), reason)
