"""`make bench` at a tiny size, so it cannot rot: it runs, checks its runs, writes its report."""

from __future__ import annotations

import importlib
import re
import subprocess
import sys
from pathlib import Path

import pytest

from support.servers import FileServer

pytestmark = pytest.mark.integration

BENCH = Path(__file__).resolve().parents[2] / "bench" / "bench.py"
NUMBER = r"-?\d+\.\d\d"
SPREAD = rf"{NUMBER} \({NUMBER}-{NUMBER}\)"
VERDICT = r"(met|\*\*missed\*\*)"


def test_the_benchmark_runs_and_writes_its_report(tmp_path):
    output = tmp_path / "benchmarks.md"
    output.write_text("old numbers\n<!-- notes -->\nWhat the numbers mean.\n")
    tiny = ["--repos", "1", "--arches", "1", "--registries", "1", "--size-mib", "1"]
    # one image size and two registry counts: the table, not the fit (tests/unit/test_bench_fit.py)
    scaling = ["--scale-sizes", "1", "--scale-registries", "1,2", "--scale-repos", "1",
               "--scale-arches", "1", "--scale-rounds", "1"]  # fmt: skip
    layered = ["--layers", "3", "--layer-mib", "0.05", "--shared-layers", "2",
               "--layered-rounds", "1"]  # fmt: skip
    result = subprocess.run(
        [sys.executable, str(BENCH), *tiny, *scaling, *layered, "--rounds", "2", "--big-mib", "2",
         "--output", str(output)],
        capture_output=True, text=True, check=False, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    report = output.read_text()
    assert result.stdout.strip() == report.strip()  # printed as written
    # both floors, each timed and its CPU counted
    for floor in ("d disk floor", "e fetch floor"):
        assert re.search(rf"^\| {floor} \|( {NUMBER} \|){{6}}$", report, re.MULTILINE), report
    # every ratio with its spread over the two rounds
    for ratio in ("b/e", "b/a", "c/b", "b/d", "e/d", "e/a"):
        assert re.search(rf"^\| {ratio} \| {SPREAD} \|", report, re.MULTILINE), report
    # a verdict per target
    for target in (r"\(b/e\) ≤ 1\.10", r"\(b/a\) ≤ 0\.70", r"\(c/b\) ≤ 0\.10"):
        assert re.search(rf"^- .* {target}: {SPREAD}: {VERDICT}$", report, re.MULTILINE), report
    assert re.search(rf"^- peak RSS ≤ 150 MB: \d+ MB: {VERDICT}$", report, re.MULTILINE)
    assert re.search(rf"^- peak RSS ≤ 150 MB with one 2 MiB image: \d+ MB: {VERDICT}$", report,
                     re.MULTILINE)  # fmt: skip
    # the rounds, in rotating order
    assert re.search(rf"^\| 1 \| a, d, e, bc \|( {NUMBER} \|){{11}}$", report, re.MULTILINE)
    assert re.search(rf"^\| 2 \| d, e, bc, a \|( {NUMBER} \|){{11}}$", report, re.MULTILINE)
    # the scaling table: each cell, and what one more registry cost
    for registries, extra in ((1, "-"), (2, NUMBER)):
        assert re.search(
            rf"^\| 1 \| {registries} \|( {NUMBER} \|){{6}} {extra} \| \d+ \|$", report, re.MULTILINE
        ), report
    assert "No fit: it needs at least two image sizes and two registry counts." in report
    assert "- CPU: " in report and "load average" in report
    # bootable containers: a verdict per goal, the daemon path, the counts of what went up
    for goal in (r"\(g/f\) ≤ 1\.50", r"\(h\) ≤ 1\.10", r"\(g\) ≤ 1\.20"):
        assert re.search(rf"^- .* {goal}: {SPREAD}: {VERDICT}$", report, re.MULTILINE), report
    assert re.search(rf"^- daemon path: .* \(w/e\).*: {SPREAD}", report, re.MULTILINE), report
    row = re.search(r"^\| 1 \| [fghiw, ]+ \|(.*)$", report, re.MULTILINE)
    assert row is not None, report
    cells = [cell.strip() for cell in row.group(1).split("|")[:-1]]
    assert len(cells) == 17 and all(re.fullmatch(r"\d+(\.\d+)?", cell) for cell in cells), cells
    mounts = int(cells[11])
    assert mounts == 2 * 2  # the new repository's 2 base layers, for 2 arches
    assert "old numbers" not in report
    assert report.endswith("<!-- notes -->\nWhat the numbers mean.\n")  # kept


@pytest.fixture
def scenarios(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCH.parent))
    return importlib.import_module("scenarios")


def test_the_fetch_floor_checks_what_it_fetched(scenarios, tmp_path, registry):
    """The fetch floor is charged for checking each archive's sha256: it does check it."""
    compose = scenarios.build(tmp_path, repos=1, arches=1, size_mib=1)
    (image,) = compose.images
    image.path.write_bytes(image.path.read_bytes()[:-1] + b"\0")  # images.json now disagrees
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    with FileServer(compose.served_root) as server:
        with pytest.raises(scenarios.ChecksumMismatch, match=re.escape(image.url_path)):
            scenarios.fetch_floor(compose, server, [registry], scratch)
        assert [path for _, path, _ in server.requests] == [image.url_path]  # fetched, once
    assert registry.get_manifest(f"bench/{image.repository}", image.per_arch_tag) is None
