"""A bounded pool of worker threads whose follow-ups run on the orchestrator's thread.

Each piece of work is one blocking step (a download, a skopeo run, a few registry requests).
What happens after it - record the outcome, start the steps that were waiting for it - runs on
the thread that called :meth:`WorkPool.run`, one follow-up at a time, in the order the work was
submitted when several finish together. The orchestrator's state therefore needs no locks, and
a follow-up may submit more work.

At most ``workers`` steps run at once; the others wait, and the waiting step with the highest
``priority`` starts first (then the oldest). Giving later stages of a pipeline a higher
priority makes it run depth-first: an image is pushed as soon as it is converted, instead of
after every other image has been downloaded.

A stop of the process (:mod:`..shutdown`: SIGTERM, the consumer's shutdown) stops every pool:
no more work starts, and :meth:`WorkPool.run` raises :class:`Interrupted` once the follow-ups
of the work that finished have run - and of the work submitted with ``finish=True`` that was
running (an index tag's gate: a write in flight completes, and the run must know it moved
the tag, to announce it).
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import Any, TypeVar

from .. import shutdown
from ..errors import Interrupted

T = TypeVar("T")

_FollowUp = Callable[[Future[Any]], None]


class WorkPool:
    def __init__(self, workers: int) -> None:
        if workers < 1:
            raise ValueError("a work pool needs at least one worker")
        self._workers = workers
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="worker")
        self._queued: list[tuple[int, int, Callable[[], Any], _FollowUp, bool]] = []
        self._running: dict[Future[Any], tuple[int, _FollowUp]] = {}
        self._sequence = itertools.count()
        #: running work that a stop waits for (``finish=True``)
        self._finishing: set[Future[Any]] = set()

    def submit(
        self,
        work: Callable[[], T],
        then: Callable[[Future[T]], None],
        *,
        priority: int = 0,
        finish: bool = False,
    ) -> None:
        """Queue ``work`` for a worker; :meth:`run` later calls ``then`` with its future.
        ``finish``: once started, a stop waits for it and runs ``then`` (see the module)."""
        heapq.heappush(self._queued, (-priority, next(self._sequence), work, then, finish))
        self._start()

    def run(self) -> None:
        """Call each follow-up as its work finishes, until no work is left.

        An exception a follow-up raises ends the run; work already running finishes, work not
        yet started is dropped (see :meth:`close`). So does a stop of the process, and then
        this raises :class:`Interrupted`.
        """
        self._start()
        while self._running:
            done, _ = wait(self._running, return_when=FIRST_COMPLETED)
            for future in sorted(done, key=lambda f: self._running[f][0]):
                _, then = self._running.pop(future)
                self._finishing.discard(future)
                then(future)
            self._start()
            if shutdown.requested():
                break
        if shutdown.requested():
            finishing = [f for f in self._running if f in self._finishing]
            wait(finishing)
            for future in sorted(finishing, key=lambda f: self._running[f][0]):
                _, then = self._running.pop(future)
                self._finishing.discard(future)
                then(future)
            raise Interrupted("stopped before its work was done: the process is stopping")

    def _start(self) -> None:
        while self._queued and len(self._running) < self._workers and not shutdown.requested():
            _, sequence, work, then, finish = heapq.heappop(self._queued)
            future = self._executor.submit(work)
            self._running[future] = (sequence, then)
            if finish:
                self._finishing.add(future)

    def close(self) -> None:
        """Drop the work not started; wait for the running work, unless the process is
        stopping: then a step blocked on the network (it cannot be interrupted) is left to
        end on its own, and the caller goes on to clean up."""
        self._queued.clear()
        self._executor.shutdown(wait=not shutdown.requested(), cancel_futures=True)
        self._running.clear()
        self._finishing.clear()

    def __enter__(self) -> WorkPool:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
