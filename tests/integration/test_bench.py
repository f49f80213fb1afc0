"""`make bench` at a tiny size, so it cannot rot: it runs, checks its runs, writes its report."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

BENCH = Path(__file__).resolve().parents[2] / "bench" / "bench.py"


def test_the_benchmark_runs_and_writes_its_report(tmp_path):
    output = tmp_path / "benchmarks.md"
    output.write_text("old numbers\n<!-- notes -->\nWhat the numbers mean.\n")
    tiny = ["--repos", "1", "--arches", "1", "--registries", "1", "--size-mib", "1"]
    result = subprocess.run(
        [sys.executable, str(BENCH), *tiny, "--rounds", "1", "--big-mib", "2",
         "--output", str(output)],
        capture_output=True, text=True, check=False, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    report = output.read_text()
    for ratio in ("b/a", "b/d", "d/a", "c/b"):
        assert re.search(rf"^\| {ratio} \| \d+\.\d\d \|", report, re.MULTILINE), report
    assert re.search(r"Peak RSS of fedora-container-sync during \(b\): \d+ MB", report)
    assert re.search(r"Peak RSS with one 2 MiB image: \d+ MB", report)
    assert re.search(r"^\| 1 \| a, d, bc \|( \d+\.\d\d \|){8}$", report, re.MULTILINE), report
    assert "- CPU: " in report and "load average" in report
    assert "old numbers" not in report
    assert report.endswith("<!-- notes -->\nWhat the numbers mean.\n")  # kept
