"""A real browser for tests: headless Chromium driven over the DevTools protocol, and a small
PNG reader to check what it drew.

Chromium talks the protocol over a pipe (``--remote-debugging-pipe``: commands in on fd 3,
answers and events out on fd 4, each a JSON object ended by a NUL byte), so no port, no
websocket library and no driver binary are needed. One :func:`render` starts the browser, loads
one URL into a viewport of the given size, records every console error, uncaught exception,
browser log error and network request, takes a screenshot and closes the browser.
"""

from __future__ import annotations

import base64
import fcntl
import json
import os
import select
import shutil
import signal
import struct
import tempfile
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: Debian's package `chromium` (installed by `make system-deps` and .ci/run).
CHROMIUM = "/usr/bin/chromium"

_FLAGS = (
    "--headless",
    "--no-sandbox",  # tests run as root in CI
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--hide-scrollbars",
    "--remote-debugging-pipe",
)


def chromium() -> str | None:
    """The Chromium binary, if installed (Fedora's package calls it chromium-browser)."""
    if os.access(CHROMIUM, os.X_OK):
        return CHROMIUM
    return shutil.which("chromium") or shutil.which("chromium-browser")


@dataclass
class Rendering:
    """What the browser did with one page."""

    png: bytes
    #: console.error/assert calls, uncaught exceptions, browser log entries at level error
    #: (failed loads, blocked content), each as one line.
    errors: list[str] = field(default_factory=list)
    #: Every URL the page requested, the page itself first.
    requests: list[str] = field(default_factory=list)
    #: How wide the page is laid out, in CSS pixels: the document's scroll width, or that of
    #: its widest element that scrolls on its own (more than the viewport: a scrollbar).
    width: int = 0


class BrowserError(Exception):
    pass


def render(url: str, *, width: int, height: int, timeout: float = 30.0) -> Rendering:
    """Load ``url`` in a fresh headless Chromium with a ``width`` x ``height`` viewport."""
    binary = chromium()
    if binary is None:
        raise BrowserError("chromium is not installed")
    with tempfile.TemporaryDirectory(prefix="chromium-") as profile:
        session = _Session(binary, Path(profile), deadline=time.monotonic() + timeout)
        try:
            return session.render(url, width, height)
        finally:
            session.close()


class _Session:
    def __init__(self, binary: str, profile: Path, *, deadline: float) -> None:
        self.deadline = deadline
        self._next_id = 0
        self._buffer = b""
        self.events: list[dict[str, Any]] = []
        # Our ends stay above the standard descriptors; the child gets the others as 3 and 4.
        to_child_r, to_child_w = map(_above, os.pipe())
        from_child_r, from_child_w = map(_above, os.pipe())
        self._stderr = open(profile / "stderr.log", "wb")  # closed in close()
        argv = [binary, *_FLAGS, f"--user-data-dir={profile / 'profile'}", "about:blank"]
        try:
            self.pid = os.posix_spawn(
                binary,
                argv,
                {**os.environ, "HOME": str(profile)},
                file_actions=[
                    (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
                    (os.POSIX_SPAWN_OPEN, 1, os.devnull, os.O_WRONLY, 0),
                    (os.POSIX_SPAWN_DUP2, self._stderr.fileno(), 2),
                    (os.POSIX_SPAWN_DUP2, to_child_r, 3),
                    (os.POSIX_SPAWN_DUP2, from_child_w, 4),
                ],
                setsid=True,
            )
        finally:
            os.close(to_child_r)
            os.close(from_child_w)
        self._write_fd = to_child_w
        self._read_fd = from_child_r
        fcntl.fcntl(self._read_fd, fcntl.F_SETFL, os.O_NONBLOCK)

    # -- the protocol --------------------------------------------------------------------------

    def send(self, method: str, session: str | None = None, **params: Any) -> dict[str, Any]:
        """Send one command and wait for its answer (events meanwhile go to ``events``)."""
        self._next_id += 1
        command: dict[str, Any] = {"id": self._next_id, "method": method, "params": params}
        if session is not None:
            command["sessionId"] = session
        os.write(self._write_fd, json.dumps(command).encode() + b"\0")
        while True:
            message = self._receive()
            if message.get("id") == self._next_id:
                if "error" in message:
                    raise BrowserError(f"{method}: {message['error']}")
                return dict(message.get("result", {}))
            if "method" in message:
                self.events.append(message)

    def wait_event(self, method: str) -> dict[str, Any]:
        for event in self.events:
            if event["method"] == method:
                return event
        while True:
            message = self._receive()
            if "method" in message:
                self.events.append(message)
                if message["method"] == method:
                    return message

    def _receive(self) -> dict[str, Any]:
        while b"\0" not in self._buffer:
            left = self.deadline - time.monotonic()
            if left <= 0:
                raise BrowserError("chromium did not answer in time")
            ready, _, _ = select.select([self._read_fd], [], [], left)
            if not ready:
                continue
            chunk = os.read(self._read_fd, 1 << 20)
            if not chunk:
                raise BrowserError(f"chromium exited: {self.stderr_tail()}")
            self._buffer += chunk
        message, _, self._buffer = self._buffer.partition(b"\0")
        return dict(json.loads(message))

    # -- one page --------------------------------------------------------------------------------

    def render(self, url: str, width: int, height: int) -> Rendering:
        target = self.send("Target.createTarget", url="about:blank")["targetId"]
        session = self.send("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
        for domain in ("Runtime", "Log", "Network", "Page"):
            self.send(f"{domain}.enable", session)
        self.send(
            "Emulation.setDeviceMetricsOverride",
            session,
            width=width,
            height=height,
            deviceScaleFactor=1,
            mobile=False,
        )
        self.send("Page.navigate", session, url=url)
        self.wait_event("Page.loadEventFired")
        shot = self.send("Page.captureScreenshot", session, format="png")
        measured = self.send(
            "Runtime.evaluate",
            session,
            expression="Math.max(document.documentElement.scrollWidth, "
            "...Array.from(document.querySelectorAll('*'), e => e.scrollWidth))",
            returnByValue=True,
        )
        rendering = Rendering(
            png=base64.b64decode(shot["data"]), width=int(measured["result"]["value"])
        )
        for event in self.events:
            if event.get("sessionId") != session:
                continue
            params = event.get("params", {})
            if event["method"] == "Runtime.consoleAPICalled" and params["type"] in (
                "error",
                "assert",
            ):
                text = " ".join(
                    str(arg.get("value", arg.get("description"))) for arg in params["args"]
                )
                rendering.errors.append(f"console.{params['type']}: {text}")
            elif event["method"] == "Runtime.exceptionThrown":
                details = params["exceptionDetails"]
                text = details.get("exception", {}).get("description") or details.get("text")
                rendering.errors.append(f"exception: {text}")
            elif event["method"] == "Log.entryAdded" and params["entry"]["level"] == "error":
                entry = params["entry"]
                where = entry.get("url", "")
                rendering.errors.append(f"{entry['source']}: {entry['text']} {where}".strip())
            elif event["method"] == "Network.requestWillBeSent":
                rendering.requests.append(params["request"]["url"])
        return rendering

    def close(self) -> None:
        try:
            if self._poll() is None:
                try:
                    self.send("Browser.close")
                except (BrowserError, OSError):
                    pass
            end = time.monotonic() + 5
            while self._poll() is None and time.monotonic() < end:
                time.sleep(0.05)
            if self._poll() is None:
                os.killpg(self.pid, signal.SIGKILL)
                os.waitpid(self.pid, 0)
        finally:
            os.close(self._write_fd)
            os.close(self._read_fd)
            self._stderr.close()

    def _poll(self) -> int | None:
        if getattr(self, "_status", None) is not None:
            return self._status
        pid, status = os.waitpid(self.pid, os.WNOHANG)
        if pid == 0:
            return None
        self._status: int | None = status
        return status

    def stderr_tail(self) -> str:
        self._stderr.flush()
        text = Path(self._stderr.name).read_text(errors="replace")
        return " | ".join(text.strip().splitlines()[-5:])


def _above(fd: int) -> int:
    """``fd`` moved above 4, so that dup2 onto 3 or 4 never finds source and target equal."""
    if fd > 4:
        return fd
    moved = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10)
    os.close(fd)
    return moved


# -- PNG ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Image:
    width: int
    height: int
    #: bytes per pixel (3: RGB, 4: RGBA)
    channels: int
    #: the unfiltered pixel rows, ``width * channels`` bytes each
    rows: tuple[bytes, ...]

    def colours(self) -> set[bytes]:
        """The distinct pixel values."""
        step = self.channels
        found: set[bytes] = set()
        for row in self.rows:
            found.update(row[i : i + step] for i in range(0, len(row), step))
        return found


_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_CHANNELS = {2: 3, 6: 4}  # colour type → channels, for 8-bit RGB and RGBA


def read_png(data: bytes) -> Image:
    """Decode an 8-bit RGB or RGBA, non-interlaced PNG (what Chromium writes)."""
    if not data.startswith(_SIGNATURE):
        raise ValueError("not a PNG file")
    position = len(_SIGNATURE)
    header = b""
    compressed = bytearray()
    while position < len(data):
        (length,) = struct.unpack(">I", data[position : position + 4])
        kind = data[position + 4 : position + 8]
        body = data[position + 8 : position + 8 + length]
        (crc,) = struct.unpack(">I", data[position + 8 + length : position + 12 + length])
        if zlib.crc32(kind + body) != crc:
            raise ValueError(f"PNG chunk {kind!r} fails its CRC")
        if kind == b"IHDR":
            header = body
        elif kind == b"IDAT":
            compressed += body
        elif kind == b"IEND":
            break
        position += 12 + length
    width, height, depth, colour_type, _, _, interlace = struct.unpack(">IIBBBBB", header)
    if depth != 8 or colour_type not in _CHANNELS or interlace:
        raise ValueError(f"unsupported PNG: depth {depth}, colour type {colour_type}")
    channels = _CHANNELS[colour_type]
    raw = zlib.decompress(bytes(compressed))
    stride = width * channels
    if len(raw) != height * (stride + 1):
        raise ValueError("PNG image data has the wrong size")
    rows: list[bytes] = []
    previous = bytes(stride)
    for y in range(height):
        start = y * (stride + 1)
        row = _unfilter(raw[start], raw[start + 1 : start + 1 + stride], previous, channels)
        rows.append(row)
        previous = row
    return Image(width, height, channels, tuple(rows))


def _unfilter(kind: int, line: bytes, previous: bytes, bpp: int) -> bytes:
    if kind == 0:
        return line
    if kind == 2:
        return bytes((a + b) & 0xFF for a, b in zip(line, previous, strict=True))
    out = bytearray(line)
    if kind == 1:
        for i in range(bpp, len(out)):
            out[i] = (out[i] + out[i - bpp]) & 0xFF
    elif kind == 3:
        for i in range(len(out)):
            left = out[i - bpp] if i >= bpp else 0
            out[i] = (out[i] + ((left + previous[i]) >> 1)) & 0xFF
    elif kind == 4:
        for i in range(len(out)):
            a = out[i - bpp] if i >= bpp else 0
            b = previous[i]
            c = previous[i - bpp] if i >= bpp else 0
            p = a + b - c
            pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
            predictor = a if pa <= pb and pa <= pc else b if pb <= pc else c
            out[i] = (out[i] + predictor) & 0xFF
    else:
        raise ValueError(f"unknown PNG filter type {kind}")
    return bytes(out)
