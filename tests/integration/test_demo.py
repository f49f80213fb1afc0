"""`make demo` prints the example README.md shows: the summary of its second compose, row for
row (only the registry's port and the run's duration differ from run to run)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = "compose Fedora-41-20241026.0\n"


def normalized(text: str) -> str:
    text = re.sub(r"127\.0\.0\.1:\d+", "127.0.0.1:PORT", text)
    return re.sub(r" in \d+\.\ds$", " in N.Ns", text, flags=re.MULTILINE)


def summary(text: str) -> str:
    """From the second compose's first line to its result line."""
    start = text.index(EXAMPLE)
    end = text.index("  result: ", start)
    return text[start : text.index("\n", end) + 1]


def readme_example() -> str:
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("## Example: a compose whose aarch64 failed") :]
    block = section[section.index("```\n") + 4 :]
    return block[: block.index("```\n")]


def test_the_readme_shows_what_the_demo_prints(tmp_path):
    run = subprocess.run(
        [sys.executable, str(ROOT / "demo" / "demo.py"), "--work", str(tmp_path / "demo")],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    printed = summary(run.stdout)
    assert normalized(printed) == normalized(readme_example())
    assert max(len(line) for line in printed.splitlines()) <= 100
