"""What a terminal shows while a run works: rich's live display, every other line above it.

:class:`Terminal` is the CLI's log handler when stderr is a terminal, and the runs'
:class:`~.progress.View`. The display has a row for the run - the compose and ``[7/30]``, the
steps done of the steps the run takes (:class:`~.progress.Progress` has them from the plan and
the outcomes), with a bar - and a row for each image being worked on, with what is being done
to it: ``downloading`` with the bytes received, the file's size and the rate, ``converting``,
``pushing to REGISTRY (1 of 2)``; between two of them, what was done last. An image leaves the
display once every per-arch tag of it has its outcome, the display itself when the run ends.
Warnings, errors, held tags (and with ``-v`` every other line) are printed above it, whole; the
INFO step lines are not printed: the count shows them.

rich draws the display from a thread of its own ten times a second, and at once when a row
comes, changes or goes. A download only stores its byte count as it grows (one assignment per
chunk, on the worker's thread); the count is read when the display is drawn.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Iterable, Iterator
from typing import Any, TextIO

from rich import filesize
from rich.console import Console, RenderableType
from rich.constrain import Constrain
from rich.progress import BarColumn, DownloadColumn, ProgressColumn, Task, TaskID, TextColumn
from rich.progress import Progress as Display
from rich.progress_bar import ProgressBar
from rich.table import Column
from rich.text import Text

from .progress import STEPS, Activity, OnBytes

#: The rate shown is over the download's last seconds (since its start, in the first of them).
_RATE_PERIOD = 10.0
_BINARY = ["bytes", "KiB", "MiB", "GiB", "TiB"]
#: Columns the display leaves free at the right (for the terminal's ``^C``).
_ECHO_ROOM = 2


class Terminal(logging.Handler):
    """Lines above, and while a run works, a live display of it below."""

    def __init__(self, stream: TextIO, *, console: Console | None = None) -> None:
        super().__init__()
        self.console = console if console is not None else Console(file=stream)
        self._display: _LiveDisplay | None = None
        self._run: TaskID | None = None
        self._compose_id = ""
        #: the images on the display, by name; changed under the lock (rich has its own)
        self._rows: dict[str, _Row] = {}
        self._lock = threading.Lock()

    # -- lines -----------------------------------------------------------------------------

    def emit(self, record: logging.LogRecord) -> None:
        if record.name == STEPS and record.levelno == logging.INFO:
            return  # the display counts it
        try:
            self.console.print(Text(self.format(record)), soft_wrap=True, highlight=False)
        except Exception:
            self.handleError(record)

    # -- the display (progress.View) -----------------------------------------------------------

    def begin(self, compose_id: str) -> None:
        self.end()
        display = _LiveDisplay(
            TextColumn("{task.description}", markup=False),
            _Doing(),
            _Bar(),
            _Bytes(binary_units=True, table_column=Column(no_wrap=True)),
            _Rate(table_column=Column(no_wrap=True)),
            console=self.console,
            transient=True,
            # The summary goes to stdout, which may be no terminal; stray writes to stderr
            # go above the display.
            redirect_stdout=False,
            speed_estimate_period=_RATE_PERIOD,
        )
        self._run = display.add_task(
            f"compose {compose_id}", total=None, doing="reading", measured=False, receiving=None
        )
        self._compose_id = compose_id
        self._display = display
        display.start()

    def count(self, done: int, total: int) -> None:
        display, run = self._display, self._run
        if display is not None and run is not None:
            display.update(
                run,
                description=f"compose {self._compose_id} [{done}/{total}]",
                total=total,
                completed=done,
                doing="",
                measured=True,
            )
            display.refresh()

    @contextlib.contextmanager
    def working(self, image: str, activity: Activity) -> Iterator[OnBytes]:
        display = self._display
        if display is None:
            yield _ignore
            return
        with self._lock:
            row = self._rows.get(image)
            if row is None:
                row = self._rows[image] = _Row()
                row.doing.append(activity)
                row.task = display.add_task(f"  {image}", total=activity.size, **row.fields())
            else:
                row.doing.append(activity)
                self._show(display, row)
        ended = activity.failed
        try:
            yield row.receive
            ended = activity.done
        finally:
            with self._lock:
                if activity.size is not None:
                    display.refresh()  # the download's last count
                row.doing.remove(activity)
                row.ended = ended
                self._show(display, row)

    def finished(self, image: str) -> None:
        display = self._display
        with self._lock:
            row = self._rows.pop(image, None)
        if display is not None and row is not None:
            display.remove_task(row.task)
            display.refresh()

    def end(self) -> None:
        """Stop the display, if one runs; the cursor shows again (also after a signal
        interrupted the stop)."""
        display, self._display, self._run = self._display, None, None
        with self._lock:
            self._rows.clear()
        if display is None:
            return
        try:
            display.stop()
        finally:
            self.console.show_cursor(True)

    def _show(self, display: Display, row: _Row) -> None:
        display.update(row.task, **row.fields())
        display.refresh()


class _Row:
    """One image on the display: what is being done to it now, how what was done last ended,
    and the bytes its download has received."""

    def __init__(self) -> None:
        self.task = TaskID(-1)
        self.doing: list[Activity] = []
        #: what was done last, as it ended
        self.ended = ""
        self.received = 0

    def receive(self, size: int) -> None:
        self.received = size

    def fields(self) -> dict[str, Any]:
        """Its task's fields: what it says, whether its bar measures, the download it shows."""
        downloading = any(activity.size is not None for activity in self.doing)
        text = ", ".join(activity.doing for activity in self.doing) or self.ended
        return {"doing": text, "measured": downloading, "receiving": self if downloading else None}


def _ignore(_size: int) -> None:
    pass


class _LiveDisplay(Display):
    """rich's progress display, which reads each download's byte count as it is drawn, and
    lays out the run's row (the first) apart from the images' rows below it.

    The bars take the room the text and the numbers leave, 10 to 40 columns; on a terminal too
    narrow even for that, what is being done is cut short (…), the numbers never. The last
    :data:`_ECHO_ROOM` columns stay free: the terminal echoes Ctrl-C as ``^C`` after the last
    row, and on a full row that would wrap onto a new line, which the display, erasing its own
    lines when it stops, would leave behind.
    """

    def get_renderables(self) -> Iterable[RenderableType]:
        tasks = self.tasks
        for task in tasks:
            row = task.fields.get("receiving")
            if isinstance(row, _Row):
                with contextlib.suppress(KeyError):  # the image went meanwhile
                    self.update(task.id, completed=row.received)
        for rows in (tasks[:1], tasks[1:]):
            if rows:
                width = max(1, self.console.width - _ECHO_ROOM)
                self._fit_bars(rows, width)
                yield Constrain(self.make_tasks_table(rows), width)

    def _fit_bars(self, tasks: list[Task], width: int) -> None:
        bars = [column for column in self.columns if isinstance(column, BarColumn)]
        taken = len(self.columns) - 1  # the spaces between the columns
        for column in self.columns:
            if isinstance(column, ProgressColumn) and column not in bars:
                cells = [column(task) for task in tasks]
                taken += max(cell.cell_len if isinstance(cell, Text) else 0 for cell in cells)
        for bar in bars:
            bar.bar_width = min(40, max(10, width - taken))


class _Doing(ProgressColumn):
    """What is being done: one line, cut short (…) where the terminal is too narrow (its
    column is the one that may give way)."""

    def render(self, task: Task) -> Text:
        return Text(task.fields["doing"], no_wrap=True, overflow="ellipsis")


class _Bar(BarColumn):
    """The run's steps or a download's bytes as a bar; a pulse for work of unknown length."""

    def render(self, task: Task) -> ProgressBar:
        bar = super().render(task)
        bar.pulse = bar.pulse or not task.fields.get("measured")
        return bar


class _Bytes(DownloadColumn):
    """A download's bytes received and its size."""

    def render(self, task: Task) -> Text:
        return super().render(task) if task.fields.get("receiving") else Text("")


class _Rate(ProgressColumn):
    """A download's rate, in binary units as the bytes are."""

    def render(self, task: Task) -> Text:
        if not task.fields.get("receiving"):
            return Text("")
        rate = task.speed
        if rate is None and task.elapsed:
            rate = task.completed / task.elapsed
        if rate is None or rate < 1:  # nothing received yet: no rate to show
            return Text("-", style="progress.data.speed")
        unit, suffix = filesize.pick_unit_and_suffix(int(rate), _BINARY, 1024)
        if unit == 1:  # whole bytes: "512 bytes/s", never "0.0 bytes/s"
            return Text(f"{int(rate)} {suffix}/s", style="progress.data.speed")
        return Text(f"{rate / unit:,.1f} {suffix}/s", style="progress.data.speed")
