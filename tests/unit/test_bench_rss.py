"""`make bench`'s peak RSS of fedora-container-sync (bench/scenarios.py USAGE_CODE) is its own:
not the high-water mark of the benchmark process that spawned it, which Linux carries over the
exec into ``ru_maxrss``."""

from __future__ import annotations

import importlib
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"

#: A parent of this many MiB (touched, so resident) spawns the measured child.
PARENT_MIB = 160


@pytest.fixture
def scenarios(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    monkeypatch.syspath_prepend(str(BENCH))
    return importlib.import_module("scenarios")


def measured_from_a_large_parent(scenarios: ModuleType, tmp_path: Path, main: str) -> float:
    """Peak RSS in MB that USAGE_CODE reports for ``main``, run by a parent of PARENT_MIB."""
    child = f"{main}\n{scenarios.USAGE_CODE}"
    parent = (
        "import subprocess, sys\n"
        f"ballast = bytearray({PARENT_MIB} << 20)\n"
        "for i in range(0, len(ballast), 4096): ballast[i] = 1\n"
        "sys.exit(subprocess.run([sys.executable, '-c', sys.argv[1], sys.argv[2]]).returncode)\n"
    )
    usage_file = tmp_path / "usage"
    subprocess.run([sys.executable, "-c", parent, child, str(usage_file)], check=True)
    return float(scenarios.usage(usage_file).rss_mb)


def test_the_peak_rss_is_the_childs_not_its_parents(scenarios, tmp_path):
    # a bare interpreter is about 10 MB; ru_maxrss said PARENT_MIB and more
    rss = measured_from_a_large_parent(scenarios, tmp_path, "def main(argv): return 0")
    assert rss < PARENT_MIB / 2


def test_the_peak_rss_counts_what_the_child_held(scenarios, tmp_path):
    main = (
        "def main(argv):\n"
        "    held = bytearray(80 << 20)\n"
        "    for i in range(0, len(held), 4096): held[i] = 1\n"
        "    del held\n"  # gone before the measurement: a peak, not the current RSS
        "    return 0\n"
    )
    rss = measured_from_a_large_parent(scenarios, tmp_path, main)
    assert 80 <= rss < PARENT_MIB
