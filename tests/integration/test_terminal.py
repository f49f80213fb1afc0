"""What a person sees: on a terminal (a real pseudo-terminal), a live display of the run - each
image in flight with its stage and its download's bytes, total and rate, and the run's count -
with warnings and errors printed above it as whole lines; off a terminal, one line per step.

Image archives come from a server that sends the first half of each and then waits until the
test has seen that half on the display: a mid-download frame is observed, not raced for.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import pty
import re
import signal
import subprocess
import sys
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from support.harness import Harness
from support.servers import BackgroundServer

pytestmark = pytest.mark.integration

OLD = "Fedora-41-20241025.0"
NEW = "Fedora-41-20241026.0"
PROG = "fedora-container-sync"
_ESCAPE = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
#: An image row while its download waits for its second half: bytes received < size, a rate.
_MID_DOWNLOAD = re.compile(
    r"^  (?P<image>fedora\S*/\w+) +downloading .*? (?P<got>[1-9]\d*)/(?P<size>\d+) bytes +"
    r"(?P<rate>[\d.,]+ (?:bytes|KiB|MiB|GiB)/s) *$",
    re.MULTILINE,
)
#: How long a test waits for the display before it fails (a guard against hanging, not a
#: measurement: every wait ends as soon as what it waits for is there).
_PATIENCE = 120.0


class _Halves(SimpleHTTPRequestHandler):
    """Files as they are; image archives in two halves, the second once ``release`` is set."""

    server: _HalvesHTTPServer

    def copyfile(self, source: Any, outputfile: Any) -> None:
        if not self.path.endswith(".tar.xz"):
            super().copyfile(source, outputfile)
            return
        data = source.read()
        outputfile.write(data[: len(data) // 2])
        outputfile.flush()
        self.server.release.wait(_PATIENCE)
        outputfile.write(data[len(data) // 2 :])

    def log_message(self, format: str, *args: Any) -> None:
        pass


class _HalvesHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    release: threading.Event

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client stopped mid-download


class HalvesServer(BackgroundServer):
    """Serves ``directory`` like the compose server, each image archive in two halves."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.release = threading.Event()

    def _make_server(self) -> ThreadingHTTPServer:
        handler = functools.partial(_Halves, directory=str(self.directory))
        server = _HalvesHTTPServer(("127.0.0.1", 0), handler)
        server.release = self.release
        return server

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        self.release.set()
        super().stop()


class Terminal:
    """``replay`` in a new process whose stderr is a pseudo-terminal of 200 columns."""

    def __init__(self, harness: Harness, body: dict[str, Any]) -> None:
        primary, secondary = pty.openpty()
        self._primary = primary
        self._raw = bytearray()
        self._changed = threading.Condition()
        env = {
            key: value
            for key, value in os.environ.items()
            if key not in ("NO_COLOR", "FORCE_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE")
        }
        self.process = subprocess.Popen(
            [sys.executable, "-m", "fedora_container_sync", "replay", "--config",
             str(harness.config()), str(harness.message_file(body))],
            stdout=subprocess.PIPE, stderr=secondary, stdin=subprocess.DEVNULL, text=True,
            env={**env, "TERM": "xterm-256color", "COLUMNS": "200", "LINES": "40"},
        )  # fmt: skip
        os.close(secondary)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        while True:
            try:
                data = os.read(self._primary, 4096)
            except OSError:  # the other end closed
                data = b""
            with self._changed:
                self._raw.extend(data)
                self._changed.notify_all()
            if not data:
                return

    @property
    def raw(self) -> str:
        with self._changed:
            return self._raw.decode(errors="replace")

    @property
    def text(self) -> str:
        """What was written, without escape sequences, one line per frame line or line."""
        return "\n".join(re.split(r"[\r\n]+", _ESCAPE.sub("", self.raw)))

    def wait_for(self, pattern: re.Pattern[str]) -> re.Match[str]:
        with self._changed:
            self._changed.wait_for(lambda: pattern.search(self.text), timeout=_PATIENCE)
        found = pattern.search(self.text)
        assert found, f"never shown: {pattern.pattern}\n{self.text}"
        return found

    def finish(self) -> tuple[int, str]:
        """Wait for the process; its exit code and stdout."""
        out, _ = self.process.communicate(timeout=_PATIENCE)
        self._reader.join(timeout=_PATIENCE)
        os.close(self._primary)
        return self.process.returncode, out


def tamper(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF  # same size, different sha256
    path.write_bytes(bytes(data))


def test_on_a_terminal_a_run_shows_each_image_its_stage_and_the_count(harness):
    assert harness.replay(harness.compose(OLD, arches=("x86_64", "aarch64"))).code == 0
    with HalvesServer(harness.served_root) as server:
        run = dataclasses.replace(harness, server=server)
        # fedora-toolbox lacks aarch64 now (its index tags are held: warnings), and fedora's
        # x86_64 archive is corrupt (an error).
        body = run.compose(
            NEW, arches=("x86_64", "s390x"), subvariants=("Container_Toolbox", "Container_Base")
        )
        tamper(next(run.compose_dir(body).glob("Container/x86_64/images/*Base*.tar.xz")))
        terminal = Terminal(run, body)
        mid = terminal.wait_for(_MID_DOWNLOAD)
        server.release.set()
        code, out = terminal.finish()

    assert code == 1, out
    assert 0 < int(mid["got"]) < int(mid["size"])
    screen = terminal.text
    lines = screen.splitlines()
    registry = f"{harness.registries[0].host}/{harness.namespace}"
    # Each image row: its download done (bytes = size, a rate), converting, pushing.
    received = r"downloading .*? (?P<got>\d+)/(?P<size>\d+) bytes +[\d.,]+ \S+/s"
    downloaded = [m for m in _rows(lines, received) if m["got"] == m["size"]]
    assert {m["image"] for m in downloaded} == {
        "fedora-toolbox/x86_64", "fedora-toolbox/s390x", "fedora/s390x", "fedora/x86_64"
    }  # fmt: skip
    assert {m["image"] for m in _rows(lines, r"converting")} == {
        "fedora-toolbox/x86_64", "fedora-toolbox/s390x", "fedora/s390x"
    }  # fmt: skip
    pushing = {m["image"] for m in _rows(lines, re.escape(f"pushing to {registry} (1 of 1)"))}
    assert pushing == {"fedora-toolbox/x86_64", "fedora-toolbox/s390x", "fedora/s390x"}
    # The run's row: the steps done of the steps it takes, up to all of them.
    counts = [
        (int(done), int(total))
        for done, total in re.findall(rf"^compose {NEW} +\[(\d+)/(\d+)\]", screen, re.MULTILINE)
    ]
    assert counts[0][0] == 0 and counts[-1] == (13, 13)
    assert [done for done, _ in counts] == sorted(done for done, _ in counts)
    # Warnings and errors above the display, each a whole line; no step line printed as one.
    held = [line for line in lines if line.startswith(f"{PROG}: WARNING: ")]
    assert len(held) == 2
    for tag, line in zip(("41", "latest"), sorted(held), strict=True):
        assert re.fullmatch(
            rf"{PROG}: WARNING: compose {NEW}: \[\d+/13\] gate: held {registry}/fedora-toolbox:"
            rf"{tag}, verdict hold: current \[.*\], compose \[.*\]: compose lacks aarch64, "
            r"which the tag serves now",
            line,
        ), line
    (error,) = [line for line in lines if line.startswith(f"{PROG}: ERROR: ")]
    assert re.fullmatch(
        rf"{PROG}: ERROR: compose {NEW}: \S+x86_64\.tar\.xz: sha256 mismatch: "
        r"images\.json lists [0-9a-f]{64}, got [0-9a-f]{64}",
        error,
    ), error
    assert not [line for line in lines if line.startswith(f"{PROG}: INFO: ")]
    # The display is gone at the end, and the cursor shown again.
    raw = terminal.raw
    assert raw.endswith("\x1b[?25h") and raw.rfind("\x1b[?25l") < raw.rfind("\x1b[?25h")
    assert "result: FAILED" in out


def _rows(lines: list[str], doing: str) -> list[re.Match[str]]:
    row = re.compile(rf"  (?P<image>fedora\S*/\w+) +{doing}")
    return [m for m in map(row.match, lines) if m]


def test_a_stop_mid_download_leaves_the_terminal_as_it_was(harness):
    with HalvesServer(harness.served_root) as server:
        run = dataclasses.replace(harness, server=server)
        terminal = Terminal(run, run.compose(OLD, arches=("x86_64",)))
        terminal.wait_for(_MID_DOWNLOAD)
        terminal.process.send_signal(signal.SIGTERM)
        code, _ = terminal.finish()

    assert code == 128 + signal.SIGTERM
    raw = terminal.raw
    # The display was stopped (and erased), the cursor shown, and then the one line.
    shown = raw.rfind("\x1b[?25h")
    assert raw.rfind("\x1b[?25l") < shown
    assert _ESCAPE.sub("", raw[shown:]).strip() == f"{PROG}: terminated"


def test_off_a_terminal_every_step_is_one_line(harness):
    body = harness.compose(OLD, arches=("x86_64", "s390x"))
    replay = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "fedora_container_sync", "replay", "--config",
         str(harness.config()), str(harness.message_file(body))],
        capture_output=True, text=True, check=False, env={**os.environ, "TERM": "xterm"},
    )  # fmt: skip

    assert replay.returncode == 0, replay.stderr
    imports = [line for line in replay.stderr.splitlines() if line.startswith("import time:")]
    modules = {line.rsplit("|", 1)[1].strip() for line in imports}
    assert "fedora_container_sync.publish.terminal" not in modules  # not even imported
    lines = [line for line in replay.stderr.splitlines() if line not in imports]
    steps = [re.match(rf"{PROG}: INFO: compose {OLD}: \[(\d+)/8\] \S", line) for line in lines]
    assert all(steps), lines
    assert [int(step[1]) for step in steps if step] == list(range(1, 9))
    assert "\x1b" not in replay.stderr and "\r" not in replay.stderr
    assert "result: OK" in replay.stdout
