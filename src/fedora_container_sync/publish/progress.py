"""What a run shows while it works.

The orchestrator logs one line per finished step - an image downloaded, an image converted, a
per-arch tag pushed (or found already there), an index tag gated - on the :data:`STEPS` logger,
each counted (``[7/30]``). The CLI always shows that logger's INFO lines; the daemon's log
config decides for itself. On a terminal, :class:`Console` turns the INFO step lines into one
status line rewritten in place, and prints everything else (warnings, errors, held tags) as
lines above it.
"""

from __future__ import annotations

import logging
import shutil
from typing import TextIO

#: The logger of the per-step lines.
STEPS = "fedora_container_sync.steps"
#: The logger of a run's own lines: its start, notes, errors and result. Named for the package,
#: as these lines always were, whichever of its modules writes them.
RUN = "fedora_container_sync.publish"

_CLEAR = "\r\x1b[K"


class Console(logging.StreamHandler):  # type: ignore[type-arg]
    """A stderr handler that, when ``status`` is on, shows INFO step lines as a status line."""

    def __init__(self, stream: TextIO, *, status: bool) -> None:
        super().__init__(stream)
        self.status = status
        self._shown = ""

    def emit(self, record: logging.LogRecord) -> None:
        if not (self.status and record.name == STEPS and record.levelno == logging.INFO):
            self.clear()
            super().emit(record)
            self._draw()
            return
        try:
            width = shutil.get_terminal_size().columns
            text = " ".join(record.getMessage().split())
            self._shown = text if len(text) < width else text[: max(0, width - 2)] + "…"
            self._draw()
        except Exception:
            self.handleError(record)

    def clear(self) -> None:
        """Remove the status line (before other output, and when the run is over)."""
        if self._shown:
            self.stream.write(_CLEAR)
            self.flush()

    def done(self) -> None:
        self.clear()
        self._shown = ""

    def _draw(self) -> None:
        if self._shown:
            self.stream.write(_CLEAR + self._shown)
            self.flush()
