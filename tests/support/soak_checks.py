"""The soak's invariants (tests/soak/soak.py), as pure functions of what it recorded: the
watcher's reads of the index tags, the consumers' timed logs, the result messages, the tags'
histories, the published and dead-lettered message ids, RSS samples. Each returns the list of
what broke it (empty: it held), so a failure names every instance at once.
"""

from __future__ import annotations

import re
import statistics
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Final

from productmd.composeinfo import get_date_type_respin

__all__ = [
    "Read",
    "Run",
    "compose_order",
    "concurrent_runs",
    "killed_before_announcing",
    "logged_moves",
    "lost_messages",
    "move_problems",
    "parse_runs",
    "rss_growth",
    "tag_regressions",
    "work_after_channel_loss",
]


def compose_order(compose_id: str) -> tuple[str, int]:
    """Where a compose id sorts among its release's composes: (date, respin)."""
    date, _type, respin = get_date_type_respin(compose_id)
    return str(date), int(respin)


@dataclass(frozen=True)
class Read:
    """One read of an index tag by the watcher."""

    at: float
    repository: str
    tag: str
    compose: str
    arches: frozenset[str]


def tag_regressions(reads: Iterable[Read]) -> list[str]:
    """Every read in which an index tag served fewer arches than the read before, or an
    older compose."""
    problems = []
    last: dict[tuple[str, str], Read] = {}
    for read in sorted(reads, key=lambda r: r.at):
        key = (read.repository, read.tag)
        before = last.get(key)
        last[key] = read
        if before is None:
            continue
        if before.arches - read.arches:
            problems.append(
                f"{read.repository}:{read.tag} lost {sorted(before.arches - read.arches)} "
                f"({before.compose} -> {read.compose}) at {read.at:.3f}"
            )
        if compose_order(read.compose) < compose_order(before.compose):
            problems.append(
                f"{read.repository}:{read.tag} moved back {before.compose} -> {read.compose} "
                f"at {read.at:.3f}"
            )
    return problems


@dataclass(frozen=True)
class Run:
    """One delivery handled by one consumer process: from fedora-messaging's "Consuming
    message" to its answer, the process's death or the loss of its channel."""

    consumer: str
    message_id: str
    compose: str | None
    start: float
    end: float
    #: it ended because its process lost its channel
    lost: bool = False
    #: when it wrote a tag, sent a result or acknowledged its message (after ``end`` too, when
    #: it lost its channel: writes in flight then, or a run that did not stop)
    writes: tuple[float, ...] = ()


_LINE = re.compile(r"^(\d+\.\d+) \S+ \S+: (.*)$")
_CONSUMING = re.compile(r"^Consuming message from topic \S+ \(message id (\S+)\)")
_ANSWERED = re.compile(
    r"^(?:Successfully consumed message from topic \S+ \(message id (\S+)\)"
    r"|Returning message id (\S+) to the queue"
    r"|Consumer requested message id (\S+) be dropped)"
)
#: lines after which no delivery of the process is open any more
_ALL_ANSWERED = re.compile(
    r"^(?:Received unexpected exception from consumer"
    r"|Consumer indicated it wishes consumption to halt)"
)
_PUBLISHING = re.compile(r"^compose (\S+): publishing ")

#: pika's, fedora-messaging's and the consumer's lines when its connection or channel is gone
CHANNEL_LOST: Final = (
    r"^connection_lost: ",
    r"^compose \S+: the channel to the broker was lost",
    r"^Disconnect requested, but AMQP connection already gone",
    r"^Re-registering the ",
    r"^The connection to the broker was lost",
    r"^The channel was closed by the server",
)
#: a run's lines that change something outside: a tag written, a result sent, the message acked
_WRITES = re.compile(
    r"^compose (\S+): "
    r"(?:\[\d+/\d+\] (?:tag .*, verdict publish|gate: published)|sent |acknowledged)"
)


_SENT = re.compile(r"^compose \S+: sent ")


def parse_runs(consumer: str, log: str, *, ended_at: float) -> list[Run]:
    """The deliveries in one consumer process's timed log (format ``%(created).6f
    %(levelname)s %(name)s: %(message)s``). A delivery still open when the log ends ends at
    ``ended_at`` (the kill, or the exit); one open when the process loses its channel ends
    there: the broker hands its message to another (:func:`work_after_channel_loss` checks that
    the run stopped)."""
    lost = [re.compile(pattern) for pattern in CHANNEL_LOST]
    open_runs: dict[str, tuple[float, str | None, list[float]]] = {}
    order: list[str] = []

    #: compose -> (message id, writes) of runs that lost their channel: an index PUT in
    #: flight then still completes, and a run that did not stop goes on writing
    orphans: dict[str, tuple[str, list[float]]] = {}
    closed: list[tuple[str, str | None, float, float, bool, list[float]]] = []

    def close(message_id: str, at: float, *, channel_lost: bool = False) -> None:
        start, compose, writes = open_runs.pop(message_id)
        order.remove(message_id)
        closed.append((message_id, compose, start, at, channel_lost, writes))
        if channel_lost and compose is not None:
            orphans[compose] = (message_id, writes)

    for line in log.splitlines():
        parsed = _LINE.match(line)
        if not parsed:
            continue
        at, text = float(parsed[1]), parsed[2]
        if found := _CONSUMING.match(text):
            if found[1] in open_runs:  # the same message id again: the earlier one is over
                close(found[1], at)
            orphans = {c: o for c, o in orphans.items() if o[0] != found[1]}
            open_runs[found[1]] = (at, None, [])
            order.append(found[1])
        elif found := _PUBLISHING.match(text):
            for message_id in reversed(order):
                start, compose, writes = open_runs[message_id]
                if compose is None:
                    open_runs[message_id] = (start, found[1], writes)
                    break
        elif found := _ANSWERED.match(text):
            message_id = next(group for group in found.groups() if group)
            if message_id in open_runs:
                close(message_id, at)
        elif _ALL_ANSWERED.match(text):
            for message_id in list(order):
                close(message_id, at)
        elif any(pattern.search(text) for pattern in lost):
            for message_id in list(order):
                close(message_id, at, channel_lost=True)
        elif found := _WRITES.match(text):
            owners = [m for m in order if open_runs[m][1] == found[1]]
            if owners:
                open_runs[owners[0]][2].append(at)
            elif found[1] in orphans and not _SENT.match(text):
                # A run cut off announces the moves it made (no write of the registry's, no
                # answer to the broker): it does not run beside the redelivery by that.
                orphans[found[1]][1].append(at)
    for message_id in list(order):
        close(message_id, ended_at)
    return [
        Run(consumer, message_id, compose, start, end, channel_lost, tuple(writes))
        for message_id, compose, start, end, channel_lost, writes in closed
    ]


_DECIDES = re.compile(r"^compose (\S+): acknowledged")


def work_after_channel_loss(consumer: str, log: str) -> list[str]:
    """Every acknowledgement by a run after its process lost its channel (its message is back
    on the queue, another replica may be running it): the run in progress must stop when the
    channel is lost. It announces the moves it made before (the result messages go through
    the publisher, not the lost channel), and leaves the rest to the delivery that finishes
    the work. (Its tag writes count in :func:`concurrent_runs`: one in flight at the loss may
    complete.) Lines of a later delivery of the same message (after the reconnect) are that
    delivery's, not the lost one's."""
    lost = [re.compile(pattern) for pattern in CHANNEL_LOST]
    problems = []
    running: dict[str, str | None] = {}  # message id -> compose, of deliveries not answered
    orphaned: dict[str, str] = {}  # compose -> message id, of runs whose channel was lost
    for line in log.splitlines():
        parsed = _LINE.match(line)
        if not parsed:
            continue
        text = parsed[2]
        if found := _CONSUMING.match(text):
            running[found[1]] = None
            orphaned = {c: m for c, m in orphaned.items() if m != found[1]}
        elif found := _PUBLISHING.match(text):
            for message_id, compose in reversed(running.items()):
                if compose is None:
                    running[message_id] = found[1]
                    break
        elif found := _ANSWERED.match(text):
            running.pop(next(group for group in found.groups() if group), None)
        elif any(pattern.search(text) for pattern in lost):
            orphaned.update({c: m for m, c in running.items() if c is not None})
            running.clear()
        elif (found := _DECIDES.match(text)) and found[1] in orphaned:
            problems.append(f"{consumer} went on after losing its channel: {line[:160]}")
    return problems


def concurrent_runs(runs: Iterable[Run], *, same_compose: bool) -> list[str]:
    """Every pair of runs that overlapped in time: of one compose (``same_compose``), or of
    any two messages. A run that lost its channel counts by its writes: the broker hands its
    message on when the channel goes, before its process logs the loss, and a write in flight
    then completes after it."""
    ordered = sorted(runs, key=lambda run: run.start)
    problems = []
    for index, one in enumerate(ordered):
        for other in ordered[index + 1 :]:
            if same_compose and (one.compose is None or one.compose != other.compose):
                continue
            if one.lost:
                # The broker hands the message on as the channel goes, a moment before the
                # process logs it: the run overlaps another only by what it wrote after that
                # one began (a write in flight at the loss may complete while nobody runs).
                if not any(at >= other.start for at in one.writes):
                    continue
            elif other.start >= one.end:
                continue
            problems.append(
                f"{one.consumer} ran {one.compose or one.message_id} "
                f"{one.start:.3f}-{one.end:.3f} while {other.consumer} ran "
                f"{other.compose or other.message_id} {other.start:.3f}-{other.end:.3f}"
            )
    return problems


_INDEX_MOVED = re.compile(r"^compose (\S+): \[\d+/\d+\] gate: published \S+/([^/\s:]+):(\S+),")


def logged_moves(log: str) -> set[tuple[str, str, str]]:
    """The (repository, tag, compose) index moves a process logged."""
    moved = set()
    for line in log.splitlines():
        parsed = _LINE.match(line)
        if parsed and (found := _INDEX_MOVED.match(parsed[2])):
            moved.add((found[2], found[3], found[1]))
    return moved


def killed_before_announcing(
    moves: Iterable[tuple[str, str, str]],
    killed: Iterable[Run],
    runs: Iterable[Run],
    logged_by_survivors: Iterable[tuple[str, str, str]],
) -> set[tuple[str, str, str]]:
    """The moves that a process killed outright (``kill -9``) may have made and that nothing
    announces: of the compose of a run that was ``killed``, whose message never ran again after
    the kill (the kill was its last delivery), and that no surviving process logged making (its
    own log may end before the move's line). A redelivery of the killed message announces every
    tag that already serves the compose (docs/messages.md), so a move whose message ran again
    is owed its announcement like any other."""
    later = [(run.message_id, run.start) for run in runs]
    composes = {
        run.compose
        for run in killed
        if run.compose is not None
        and not any(
            message_id == run.message_id and start >= run.end for message_id, start in later
        )
    }
    survivors = set(logged_by_survivors)
    return {move for move in moves if move[2] in composes and move not in survivors}


def move_problems(
    announced: Iterable[tuple[str, str, str]],
    moves: Iterable[tuple[str, str, str]],
    *,
    killed: Iterable[tuple[str, str, str]] = (),
) -> list[str]:
    """``announced``: one (repository, tag, compose) per tag named in each result message;
    ``moves``: the (repository, tag, compose) each tag served, from the registry's record.
    Every move must be announced exactly once (the caller counts copies with one message id
    once), and nothing that did not move - except that a move in ``killed``
    (:func:`killed_before_announcing`) may go unannounced, never twice."""
    counts = Counter(announced)
    moved = set(moves) - (set(killed) - set(counts))
    problems = [
        f"{repo}:{tag} -> {compose} announced {count} times"
        for (repo, tag, compose), count in sorted(counts.items())
        if count > 1
    ]
    problems += [
        f"{repo}:{tag} -> {compose} moved but never announced"
        for repo, tag, compose in sorted(moved - set(counts))
    ]
    problems += [
        f"{repo}:{tag} -> {compose} announced but the tag never served it"
        for repo, tag, compose in sorted(set(counts) - moved)
    ]
    return problems


def lost_messages(
    published: Mapping[str, int],
    acknowledged: Mapping[str, int],
    dead_lettered: Mapping[str, Sequence[str]],
    *,
    expected_dead: Iterable[str],
) -> list[str]:
    """Every published message must be acknowledged after its work (as often as it was
    published) or dead-lettered with a reason; exactly the ``expected_dead`` ones end as dead
    letters."""
    problems = []
    for message_id, times in sorted(published.items()):
        reasons = dead_lettered.get(message_id, ())
        if acknowledged.get(message_id, 0) + len(reasons) < times:
            problems.append(
                f"message {message_id}: published {times} times, acknowledged "
                f"{acknowledged.get(message_id, 0)}, dead-lettered {len(reasons)}"
            )
        if any(not reason for reason in reasons):
            problems.append(f"message {message_id}: dead-lettered without a reason")
    expected = set(expected_dead)
    for message_id in sorted(set(dead_lettered) - expected):
        problems.append(f"message {message_id}: dead-lettered {list(dead_lettered[message_id])}")
    for message_id in sorted(expected - set(dead_lettered)):
        problems.append(f"message {message_id}: bad, but not in the dead-letter queue")
    for message_id in sorted(set(dead_lettered) - set(published)):
        problems.append(f"message {message_id}: dead-lettered, but never published")
    return problems


def rss_growth(
    samples: Mapping[str, Sequence[int]], *, factor: float, slack: int, minimum: int = 12
) -> list[str]:
    """Every process whose RSS grew: the median of the last third of its samples above
    ``factor`` times the median of the first third plus ``slack`` bytes. Processes with fewer
    than ``minimum`` samples lived too briefly to tell."""
    problems = []
    for name, series in sorted(samples.items()):
        if len(series) < minimum:
            continue
        third = len(series) // 3
        first = statistics.median(series[:third])
        last = statistics.median(series[-third:])
        if last > first * factor + slack:
            problems.append(f"{name}: RSS grew from {first / 2**20:.1f} to {last / 2**20:.1f} MiB")
    return problems
