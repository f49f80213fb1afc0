"""What a finished run announces on the bus, decided from its report. Pure.

* For every index tag this run moved: one ``ContainerPublishedV1`` body
  (:class:`PublishedRepository`) naming that one registry, repository and tag, whose message
  id is a pure function of the body (:attr:`PublishedRepository.message_id`, a uuid5). Every
  move is announced by the run that made it - also a run that then failed and is requeued, or
  was cut short (the consumer) - and a tag an earlier delivery moved is not listed again, so
  downstream acts once per move. A run that moved nothing (a redelivery after the work was
  done, a no-op replay) announces nothing - unless ``unchanged`` asks for every tag that
  already serves the compose too (``replay --announce``, or a redelivery that cannot know
  whether the delivery before it announced its moves; see the consumer). Such a tag goes out
  with the very id its move was first announced with: a duplicate by id, which the bus's
  consumers (datanommer keys on the id) take as one message.
* For every index tag a guard did not move: a ``TagHeldV1`` body, ``verdict`` "held" (the
  gate: an arch would have been lost, or failed in this run) or "stale" (the rollback guard:
  the tag serves a newer compose).

Why one message per move, not per repository: the id must come out the same in the delivery
that moved a tag and in a later one that finds it already moved, and a run split across
deliveries (a requeue, a kill -9 after some index writes) groups its moves differently in
each; only a single move is the same in both. See docs/messages.md.

Sending them is :mod:`.notify`'s.
"""

from __future__ import annotations

import json
import uuid
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
#: the namespace of the ``ContainerPublishedV1`` message ids (uuid5 of the body in it): fixed
#: for good - a new one would give every move announced again a new id
ANNOUNCEMENT_IDS = uuid.UUID("35a76382-397d-4431-a8b3-fe3a5bd63780")


@dataclass(frozen=True)
class PublishedRepository:
    """The body of one ``ContainerPublishedV1``: every registry x every tag holds the index
    (one of each: one move)."""

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

    @property
    def message_id(self) -> str:
        """The message's id: a uuid5 of the body, so that announcing the same move again gives
        the same id (and one id never names two different bodies)."""
        canonical = json.dumps(self.body(), sort_keys=True, separators=(",", ":"))
        return str(uuid.uuid5(ANNOUNCEMENT_IDS, canonical))


def published_moves(report: ComposeReport, *, unchanged: bool = False) -> list[PublishedRepository]:
    """One entry per index tag this run moved, in the order of the run (``unchanged``: also
    per tag that already served the compose). Each names one registry, repository and tag, and
    the arches the compose brought to it: what a later delivery that finds the tag unchanged
    computes alike, so that the entry (and its id) come out the same."""
    if report.dry_run or report.release is None:
        return []
    announced = _SERVES_COMPOSE if unchanged else frozenset({TagAction.PUBLISHED})
    entries: dict[str, PublishedRepository] = {}
    for outcome in report.tags:
        if outcome.action not in announced or outcome.decision is None:
            continue
        entry = PublishedRepository(
            report.compose_id,
            report.release,
            outcome.repository,
            (outcome.tag,),
            (outcome.registry,),
            tuple(sorted_arches(outcome.decision.compose_arches)),
        )
        entries.setdefault(entry.message_id, entry)
    return list(entries.values())


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
