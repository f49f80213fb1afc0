"""What people see: on a terminal, a live display of the run (rich, on a terminal console
writing to memory here) with every other line above it, whole; without one, nothing but the
lines, and nothing for the workers to report."""

from __future__ import annotations

import io
import logging
import re

import pytest
from rich.console import Console

from fedora_container_sync import activity
from fedora_container_sync.compose.selection import ImageArtifact
from fedora_container_sync.publish.progress import STEPS, Activity, Progress
from fedora_container_sync.publish.terminal import Terminal

_ESCAPE = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
#: what rich writes before each frame but the first: back to the frame's first line
_BACK = re.compile(r"\r\x1b\[2K(?:\x1b\[1A\x1b\[2K)*")
#: the end of a row whose bar pulses: nothing but the bar after the text
BAR = r"(?: [━╸╺ ]*)?$"


def artifact(repository: str, arch: str, size: int = 2048) -> ImageArtifact:
    path = f"Container/{arch}/images/{repository}.{arch}.tar.xz"
    return ImageArtifact(repository, "Container_Base", "Container", arch, path, size, "0" * 64,
                         "docker", "tar.xz")  # fmt: skip


def record(name: str, level: int, message: str) -> logging.LogRecord:
    return logging.LogRecord(name, level, __file__, 1, message, None, None)


@pytest.fixture
def stream() -> io.StringIO:
    return io.StringIO()


@pytest.fixture
def terminal(stream: io.StringIO) -> Terminal:
    console = Console(file=stream, force_terminal=True, width=160, color_system=None)
    handler = Terminal(stream, console=console)
    handler.setFormatter(logging.Formatter("fcs: %(levelname)s: %(message)s"))
    yield handler
    handler.end()


def last_frame(stream: io.StringIO) -> list[str]:
    """The lines of the display as it was last drawn."""
    frame = _BACK.split(stream.getvalue())[-1]
    return [line.rstrip() for line in _ESCAPE.sub("", frame).split("\n")]


def text(stream: io.StringIO) -> list[str]:
    return [line.rstrip() for line in re.split(r"[\r\n]+", _ESCAPE.sub("", stream.getvalue()))]


def test_each_image_shows_what_is_done_to_it_and_goes_when_done(terminal, stream):
    progress = Progress("C", terminal)
    toolbox, base = artifact("fedora-toolbox", "x86_64"), artifact("fedora", "s390x")
    progress.started("FINISHED", "http://compose", dry_run=False)
    progress.count(0, 8)
    with progress.downloading(toolbox) as on_bytes:
        assert on_bytes is not None
        on_bytes(1024)
        # Another image starting draws the display at once: the bytes so far, size and rate.
        with progress.downloading(base) as other:
            assert other is not None
            frame = last_frame(stream)
            assert re.fullmatch(r"compose C +\[0/8\].*", frame[0]), frame
            assert re.fullmatch(
                r"  fedora-toolbox/x86_64 +downloading .* 1\.0/2\.0 KiB [\d.]+ \S+/s", frame[1]
            ), frame
            assert re.fullmatch(r"  fedora/s390x +downloading .* 0\.0/2\.0 KiB .*/s", frame[2])
            other(2048)
        on_bytes(2048)
    with progress.converting(toolbox):
        assert re.match(r"  fedora-toolbox/x86_64 +converting", last_frame(stream)[1])
    # Two pushes at once, which of how many; then how the last one ended.
    with progress.pushing(toolbox, "quay.io/fedora", 1, 2):
        with progress.pushing(toolbox, "registry.example/f", 2, 2):
            assert re.match(
                r"  fedora-toolbox/x86_64 +pushing to quay.io/fedora \(1 of 2\), "
                r"pushing to registry.example/f \(2 of 2\)" + BAR,
                last_frame(stream)[1],
            )
        assert re.match(r"  \S+ +pushing to quay.io/fedora \(1 of 2\)" + BAR, last_frame(stream)[1])
    assert re.match(r"  \S+ +pushed to quay.io/fedora \(1 of 2\)" + BAR, last_frame(stream)[1])
    with pytest.raises(OSError), progress.converting(base):
        raise OSError("no space left on device")
    assert re.match(r"  fedora/s390x +conversion failed", last_frame(stream)[2])

    terminal.finished(toolbox.name)
    assert [line.split()[0] for line in last_frame(stream)] == ["compose", "fedora/s390x"]
    progress.ended()
    assert stream.getvalue().endswith("\x1b[?25h")  # the cursor shown again


def test_lines_go_above_the_display_whole_and_info_steps_only_count(terminal, stream):
    terminal.begin("C")
    terminal.count(1, 3)
    terminal.handle(record(STEPS, logging.INFO, "compose C: [1/3] downloaded a"))
    held = "compose C: [2/3] gate: held " + "x" * 150
    terminal.handle(record(STEPS, logging.WARNING, held))
    terminal.handle(record("fedora_container_sync.retry", logging.WARNING, "retrying"))
    terminal.end()
    lines = text(stream)
    assert f"fcs: WARNING: {held}" in lines  # longer than the terminal, still one line
    assert "fcs: WARNING: retrying" in lines
    assert not [line for line in lines if "downloaded a" in line]
    assert [line for line in lines if line.startswith("compose C [1/3]")]


def test_lines_without_a_run_are_lines(terminal, stream):
    terminal.handle(record("fedora_container_sync.cli", logging.WARNING, "--force: careful"))
    terminal.end()
    assert stream.getvalue() == "fcs: WARNING: --force: careful\n"


def test_without_a_view_the_workers_report_nothing_but_signs_of_life():
    progress = Progress("C")
    with progress.downloading(artifact("fedora", "x86_64")) as on_bytes:
        # A download's bytes are a sign of life for /live (bus/health.py), view or not.
        before = activity.moves()
        on_bytes(4096)
        assert activity.moves() == before + 1
    with progress.converting(artifact("fedora", "x86_64")) as converting:
        assert converting is None
    progress.count(1, 2)
    progress.ended()


def test_on_a_narrow_terminal_what_is_done_gives_way_not_the_numbers(stream):
    console = Console(file=stream, force_terminal=True, width=80, color_system=None)
    terminal = Terminal(stream, console=console)
    terminal.begin("Fedora-41-20241026.0")
    terminal.count(13, 30)
    download = Activity("downloading", "downloaded", "download failed", 1484 << 20)
    push = Activity("pushing to registry.fedoraproject.org/fedora (2 of 2)", "", "")
    try:
        with terminal.working("fedora-toolbox/x86_64", download) as on_bytes:
            on_bytes(742 << 20)
            with terminal.working("fedora/s390x", push):
                frame = last_frame(stream)
    finally:
        terminal.end()
    assert frame[0].startswith("compose Fedora-41-20241026.0 [13/30] ")
    assert re.fullmatch(
        r"  fedora-toolbox/x86_64 +downloading .* 0\.7/1\.4 GiB [\d.,]+ \S+/s", frame[1]
    )
    assert re.match(r"  fedora/s390x +pushing to \S*…", frame[2])
    assert max(len(line) for line in frame) <= 80
