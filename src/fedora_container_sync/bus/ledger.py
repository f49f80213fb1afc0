"""Which deliveries announce the tags that already serve their compose: the consumer's memory
of what it announced, per message. Pure.

A delivery announces the moves it made. It announces every tag that already serves the compose
too (under the ids of their moves, see :mod:`.results`) when an earlier delivery may have moved
tags without announcing them:

* a redelivery (``x-delivery-count`` above 0) - unless the delivery just before it was this
  process's and left nothing owed: any other earlier delivery may have been killed (``kill
  -9``, OOM) between an index write and its announcement, and the broker cannot tell such a
  kill from a lost connection;
* a delivery after one here whose send failed, or whose run ended with its moves unknown;
* a delivery after one here that owed that announcement and did not end the message (requeued,
  cut short): a tag that serves the compose is not always seen so - an arch that failed in the
  run holds it - so the debt carries on until a delivery ends the message.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import TypeVar

T = TypeVar("T")

#: how many messages are remembered (the oldest is forgotten first)
REMEMBERED = 1024


def previous_deliveries(headers: object) -> int | None:
    """How often the broker delivered this message before: quorum queues' ``x-delivery-count``
    header (0 when absent: a first delivery, or a queue that does not count). None when the
    header is there but not a count."""
    if not isinstance(headers, dict) or "x-delivery-count" not in headers:
        return 0
    count = headers["x-delivery-count"]
    if isinstance(count, int) and not isinstance(count, bool) and count >= 0:
        return count
    return None


def announce_served(previous: int | None, announced_here: int | None) -> bool:
    """Does a delivery that came with ``previous`` announce the tags that already serve the
    compose? Yes on a redelivery, unless the delivery just before it was this process's and
    left nothing owed (``announced_here``: the count that delivery came with). An unreadable
    count is taken as yes: a duplicate by id costs nothing, a move never announced is lost."""
    if previous is None:
        return True
    return previous > 0 and announced_here != previous - 1


class AnnounceLedger:
    """Per message (its id): the count of its last delivery here that left nothing owed, and
    whether its next delivery here owes the announcement of what serves the compose."""

    def __init__(self, bound: int = REMEMBERED) -> None:
        self._bound = bound
        self._settled: OrderedDict[str, int] = OrderedDict()
        self._owed: OrderedDict[str, None] = OrderedDict()

    def owed(self, key: str) -> bool:
        """A delivery here failed to announce (send failed, moves unknown, debt carried)."""
        return key in self._owed

    def repeat(self, key: str, previous: int | None) -> bool:
        """At the start of a delivery: announce every tag that already serves the compose?"""
        return key in self._owed or announce_served(previous, self._settled.get(key))

    def sent(self, key: str, previous: int | None, *, repeated: bool, ended: bool) -> None:
        """The delivery sent its result messages (the run may have had none). ``repeated``:
        it announced what serves the compose; ``ended``: the message ends with it (not
        requeued, not cut short) - else a tag held in this run may still be owed."""
        self._settle(key, previous, owes=repeated and not ended)

    def not_sent(self, key: str, previous: int | None, *, repeat: bool) -> None:
        """The delivery announced nothing (no work, announcing off, a stop before the run read
        a registry): what it was to repeat stays owed."""
        self._settle(key, previous, owes=repeat)

    def unsure(self, key: str, *, owe: bool) -> None:
        """The delivery ended without its result messages known to be sent: ``owe`` when it
        may have moved tags (a failed send, a run cut short), else as it was owed before."""
        self._settled.pop(key, None)
        if owe:
            self._owed.pop(key, None)
            self._remember(self._owed, key, None)

    def ended(self, key: str) -> None:
        """The message left the queue (acknowledged, dropped): nothing more to remember."""
        self._settled.pop(key, None)
        self._owed.pop(key, None)

    def _settle(self, key: str, previous: int | None, *, owes: bool) -> None:
        self._settled.pop(key, None)
        self._owed.pop(key, None)
        if owes:
            self._remember(self._owed, key, None)
        elif previous is not None:
            self._remember(self._settled, key, previous)

    def _remember(self, memory: OrderedDict[str, T], key: str, value: T) -> None:
        memory[key] = value
        while len(memory) > self._bound:
            memory.popitem(last=False)
