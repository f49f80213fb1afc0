"""Every log record of a CLI run, down to DEBUG (httpx and httpcore included), for tests that
search what a run logged for something that must not be there (a password, a token)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from fedora_container_sync import cli

__all__ = ["Capture", "capture_logs"]

_LOGGERS = ("fedora_container_sync", "httpx", "httpcore")


class Capture(logging.Handler):
    """Formatted records of our package, httpx and httpcore, at DEBUG."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))

    @property
    def text(self) -> str:
        return "\n".join(self.lines)


@contextmanager
def capture_logs(monkeypatch: pytest.MonkeyPatch) -> Iterator[Capture]:
    """Attach a :class:`Capture` after the CLI has set logging up (it resets the handlers)."""
    handler = Capture()
    original = cli._setup_logging
    #: the levels the CLI set, put back afterwards (as if nothing had been captured)
    levels = {name: logging.getLogger(name).level for name in _LOGGERS}

    def setup(*, verbose: bool) -> cli.Terminal | None:
        console = original(verbose=verbose)
        for name in _LOGGERS:
            logger = logging.getLogger(name)
            if handler not in logger.handlers:
                levels[name] = logger.level
            logger.setLevel(logging.DEBUG)
            if handler not in logger.handlers:
                logger.addHandler(handler)
        return console

    monkeypatch.setattr(cli, "_setup_logging", setup)
    try:
        yield handler
    finally:
        for name, level in levels.items():
            logging.getLogger(name).removeHandler(handler)
            logging.getLogger(name).setLevel(level)
