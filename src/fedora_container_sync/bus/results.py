"""What a finished run announces on the bus, decided from its report. Pure.

* For every repository of which this run moved an index tag: one ``ContainerPublishedV1`` body
  (:class:`PublishedRepository`) listing the registries and tags this run moved; registries
  where the same tags and arches moved share one message. Every move is announced by the run
  that made it - also a run that then failed and is requeued, or was cut short (the consumer) -
  and a tag an earlier delivery moved is not listed again, so downstream acts once per move.
  A run that moved nothing (a redelivery after the work was done, a no-op replay) announces
  nothing - unless ``unchanged`` asks for every tag that already serves the compose too (``replay
  --announce``, or the next delivery in a consumer whose send failed; see the consumer).
* For every index tag a guard did not move: a ``TagHeldV1`` body, ``verdict`` "held" (the
  gate: an arch would have been lost, or failed in this run) or "stale" (the rollback guard:
  the tag serves a newer compose).

Sending them is :mod:`.notify`'s.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..oci.platforms import sorted_arches
from ..publish.report import ComposeReport, TagAction, TagOutcome
from ..shown import redacted

#: the index tag now serves this compose's index
_SERVES_COMPOSE = frozenset({TagAction.PUBLISHED, TagAction.UNCHANGED})
#: ``TagHeldV1`` verdicts: the gate held the tag, or the rollback guard kept a newer compose
HELD = "held"
STALE = "stale"


@dataclass(frozen=True)
class PublishedRepository:
    """The body of one ``ContainerPublishedV1``: every registry x every tag holds the index."""

    compose_id: str
    release: int
    repository: str
    tags: tuple[str, ...]
    registries: tuple[str, ...]
    architectures: tuple[str, ...]

    def body(self) -> dict[str, Any]:
        return {
            "architectures": list(self.architectures),
            "compose_id": self.compose_id,
            "registries": list(self.registries),
            "release": self.release,
            "repository": self.repository,
            "tags": list(self.tags),
        }


def published_repositories(
    report: ComposeReport, *, unchanged: bool = False
) -> list[PublishedRepository]:
    """One entry per repository and distinct (tags, arches) set, in the order of the run:
    the index tags this run moved (``unchanged``: also those that already served the
    compose)."""
    if report.dry_run or report.release is None:
        return []
    announced = _SERVES_COMPOSE if unchanged else frozenset({TagAction.PUBLISHED})
    served: dict[tuple[str, str], tuple[list[str], set[str]]] = {}
    for outcome in report.tags:
        if outcome.action not in announced or outcome.decision is None:
            continue
        tags, arches = served.setdefault((outcome.repository, outcome.registry), ([], set()))
        tags.append(outcome.tag)
        arches.update(outcome.decision.compose_arches)
    grouped: dict[tuple[str, tuple[str, ...], tuple[str, ...]], list[str]] = {}
    for (repository, registry), (tags, arches) in served.items():
        key = (repository, tuple(tags), tuple(sorted_arches(arches)))
        grouped.setdefault(key, []).append(registry)
    return [
        PublishedRepository(
            report.compose_id, report.release, repository, tags, tuple(registries), arches
        )
        for (repository, tags, arches), registries in grouped.items()
    ]


def held_tags(report: ComposeReport) -> list[TagOutcome]:
    """Index tags a guard did not move in this (real) run: held or stale."""
    return [outcome for outcome in report.tags if outcome.action is TagAction.HELD]


def held_body(report: ComposeReport, outcome: TagOutcome) -> dict[str, Any]:
    """The body of one ``TagHeldV1``."""
    decision = outcome.decision
    body: dict[str, Any] = {
        "compose_id": report.compose_id,
        "release": report.release,
        "registry": outcome.registry,
        "repository": outcome.repository,
        "tag": outcome.tag,
        "verdict": STALE if outcome.stale else HELD,
        "reason": outcome.reason,
        "missing_arches": sorted_arches(decision.missing) if decision else [],
        "current_arches": sorted_arches(decision.current_arches or ()) if decision else [],
        "compose_arches": sorted_arches(decision.compose_arches) if decision else [],
    }
    if outcome.stale and decision is not None and decision.holder:
        body["newer_compose"] = decision.holder
    return redacted(body)  # a reason may quote a server's words, a URL with them
