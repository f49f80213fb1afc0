"""Ctrl-C on a real terminal: the pseudo-terminal is the run's controlling terminal, so typing
Ctrl-C makes the kernel echo ``^C`` and send SIGINT, exactly as in a shell. Afterwards the
screen (replayed through a small terminal model: wrapping, cursor up, erase line) holds the
one line that says so, and nothing of the live display."""

from __future__ import annotations

import dataclasses
import os
import pty
import re
import subprocess
import sys
import threading
import time

import pytest
from test_terminal import OLD, PROG, HalvesServer

pytestmark = pytest.mark.integration

WIDTH = 60
_SEQUENCE = re.compile(r"\x1b\[([0-9;?]*)([A-Za-z])|([\r\n])|(.)", re.DOTALL)
_PATIENCE = 120.0
#: A row mid-download, on a narrow terminal ("downloading" may be cut short).
_MID_DOWNLOAD = re.compile(r"^  fedora\S*/\w+ .* [1-9]\d*/\d+ bytes", re.MULTILINE)


def screen(output: str, width: int = WIDTH) -> list[str]:
    """The lines a terminal of ``width`` columns shows after ``output`` (no scrolling limit):
    characters wrap after the last column (as xterm: only when the next one comes), ``\\r``,
    ``\\n``, cursor up (``ESC[nA``) and erase line (``ESC[2K``); colours and the rest are no-ops."""
    lines: list[list[str]] = [[]]
    row = col = 0
    for match in _SEQUENCE.finditer(output):
        argument, command, control, char = match.groups()
        if command == "A":
            row, col = max(0, row - int(argument or 1)), min(col, width - 1)
        elif command == "K" and argument == "2":
            lines[row] = []
        elif control == "\r":
            col = 0
        elif control == "\n":
            row += 1
        elif char is not None:
            if col >= width:
                row, col = row + 1, 0
            while len(lines) <= row:
                lines.append([])
            line = lines[row]
            line.extend(" " * (col + 1 - len(line)))
            line[col] = char
            col += 1
        while len(lines) <= row:
            lines.append([])
    return [text for text in ("".join(line).rstrip() for line in lines) if text]


def test_the_screen_model():
    assert screen("ab\r\ncd\r\x1b[1A\x1b[2Kx") == ["x", "cd"]
    assert screen("x" * WIDTH + "^C\r\n") == ["x" * WIDTH, "^C"]


def test_ctrl_c_leaves_one_line_and_no_display(harness):
    primary, secondary = pty.openpty()
    output = bytearray()
    changed = threading.Condition()

    def read() -> None:
        while True:
            try:
                data = os.read(primary, 4096)
            except OSError:
                data = b""
            with changed:
                output.extend(data)
                changed.notify_all()
            if not data:
                return

    with HalvesServer(harness.served_root) as server:
        run = dataclasses.replace(harness, server=server)
        body = run.compose(OLD, arches=("x86_64",))
        # The terminal becomes the controlling terminal of the run's own session.
        argv = [sys.executable, "-m", "fedora_container_sync", "replay", "--config",
                str(run.config()), str(run.message_file(body))]  # fmt: skip
        start = (
            "import fcntl, os, sys, termios; fcntl.ioctl(2, termios.TIOCSCTTY, 0); "
            "os.execv(sys.argv[1], sys.argv[1:])"
        )
        env = {k: v for k, v in os.environ.items() if k not in ("NO_COLOR", "FORCE_COLOR")}
        process = subprocess.Popen(
            [sys.executable, "-c", start, *argv],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=secondary, text=True,
            start_new_session=True,
            env={**env, "TERM": "xterm-256color", "COLUMNS": str(WIDTH), "LINES": "40"},
        )  # fmt: skip
        os.close(secondary)
        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        try:
            with changed:
                changed.wait_for(
                    lambda: _MID_DOWNLOAD.search(
                        "\n".join(screen(output.decode(errors="replace"), 10**6))
                    ),
                    timeout=_PATIENCE,
                )
            time.sleep(0.3)  # a frame or two more
            os.write(primary, b"\x03")  # Ctrl-C
            process.communicate(timeout=_PATIENCE)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
        reader.join(timeout=_PATIENCE)
        os.close(primary)
    shown = output.decode(errors="replace")
    assert "^C" in shown  # the kernel echoed it, as in a shell
    assert process.returncode == 130
    assert screen(shown) == [f"{PROG}: interrupted"], repr(shown[-600:])
