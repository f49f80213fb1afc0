"""What people see: step lines as a status line on a terminal, as log lines elsewhere."""

import io
import logging

import pytest

from fedora_container_sync.publish.progress import STEPS, Console

CLEAR = "\r\x1b[K"


def record(name, level, message):
    return logging.LogRecord(name, level, __file__, 1, message, None, None)


@pytest.fixture
def console():
    stream = io.StringIO()
    handler = Console(stream, status=True)
    handler.setFormatter(logging.Formatter("fcs: %(levelname)s: %(message)s"))
    return handler, stream


def test_on_a_terminal_steps_rewrite_one_status_line(console, monkeypatch):
    handler, stream = console
    monkeypatch.setenv("COLUMNS", "200")
    handler.emit(record(STEPS, logging.INFO, "compose C: [1/3] downloaded a"))
    handler.emit(record(STEPS, logging.INFO, "compose C: [2/3] converted a"))
    assert stream.getvalue() == (
        f"{CLEAR}compose C: [1/3] downloaded a{CLEAR}compose C: [2/3] converted a"
    )


def test_other_lines_go_above_the_status_line(console, monkeypatch):
    handler, stream = console
    monkeypatch.setenv("COLUMNS", "200")
    handler.emit(record(STEPS, logging.INFO, "[1/3] downloaded a"))
    handler.emit(record(STEPS, logging.WARNING, "[2/3] gate: held 41"))
    handler.emit(record("fedora_container_sync.retry", logging.WARNING, "retrying"))
    handler.done()
    screen = stream.getvalue()
    assert screen == (
        f"{CLEAR}[1/3] downloaded a"
        f"{CLEAR}fcs: WARNING: [2/3] gate: held 41\n{CLEAR}[1/3] downloaded a"
        f"{CLEAR}fcs: WARNING: retrying\n{CLEAR}[1/3] downloaded a"
        f"{CLEAR}"
    )


def test_the_status_line_fits_the_terminal(console, monkeypatch):
    handler, stream = console
    monkeypatch.setenv("COLUMNS", "20")
    handler.emit(record(STEPS, logging.INFO, "x" * 50))
    assert stream.getvalue() == CLEAR + "x" * 18 + "…"


def test_without_a_terminal_every_step_is_a_line():
    stream = io.StringIO()
    handler = Console(stream, status=False)
    handler.emit(record(STEPS, logging.INFO, "[1/2] downloaded a"))
    handler.emit(record(STEPS, logging.INFO, "[2/2] converted a"))
    handler.done()
    assert stream.getvalue() == "[1/2] downloaded a\n[2/2] converted a\n"
