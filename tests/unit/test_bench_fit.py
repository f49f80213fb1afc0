"""`make bench`'s scaling section (bench/scaling.py) on cells of known cost: the fit recovers
the costs that made them, the per-registry column reads them back, and the estimate for
Fedora's workload is the fit evaluated there."""

from __future__ import annotations

import importlib
from pathlib import Path
from types import ModuleType

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"

#: cost = fixed + per GiB x GiB + (registries - 1) x (per registry + per GiB per registry x GiB)
FIXED, PER_GIB, PER_REGISTRY, PER_GIB_REGISTRY = 2.0, 30.0, 0.5, 20.0


@pytest.fixture
def scaling(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    monkeypatch.syspath_prepend(str(BENCH))
    return importlib.import_module("scaling")


def cell(scaling: ModuleType, size_mib: int, registries: int, images: int = 4) -> object:
    gib = size_mib * images / 1024
    cost = FIXED + PER_GIB * gib + (registries - 1) * (PER_REGISTRY + PER_GIB_REGISTRY * gib)
    scenarios = importlib.import_module("scenarios")
    cpu = scenarios.Cpu(tools=cost / 2, registries=0.0, server=0.0)
    seconds = {"a": cost * 1.5, "b": cost, "c": 0.1, "d": cost * 0.8, "e": cost * 0.9}
    rounds = [scenarios.Round(seconds=seconds, cpu=dict.fromkeys(seconds, cpu), rss_mb=60.0)]
    return scaling.Cell(size_mib, registries, images, rounds)


def grid(scaling: ModuleType) -> list[object]:
    return [cell(scaling, size, regs) for size in (4, 16, 64) for regs in (1, 2, 4)]


def test_the_fit_recovers_the_costs_that_made_the_cells(scaling):
    fit = scaling.fit(grid(scaling), lambda r: r.seconds["b"])
    assert (fit.fixed, fit.per_gib, fit.per_registry, fit.per_gib_registry) == pytest.approx(
        (FIXED, PER_GIB, PER_REGISTRY, PER_GIB_REGISTRY)
    )
    assert fit.residual == pytest.approx(0, abs=1e-9)
    # at 1 GiB in 8 images and 2 registries: the fixed terms count per 4 images
    assert fit.at(1.0, 2, 8) == pytest.approx(
        2 * FIXED + PER_GIB + 2 * PER_REGISTRY + PER_GIB_REGISTRY
    )


@pytest.mark.parametrize(
    ("sizes", "registries"), [((4,), (1, 2, 4)), ((4, 16, 64), (2,)), ((4, 16), (1,))]
)
def test_no_fit_without_two_sizes_and_two_registry_counts(scaling, sizes, registries):
    cells = [cell(scaling, size, regs) for size in sizes for regs in registries]
    assert scaling.fit(cells, lambda r: r.seconds["b"]) is None


def test_no_fit_across_cells_of_different_image_counts(scaling):
    cells = [*grid(scaling)[:-1], cell(scaling, 64, 4, images=8)]
    assert scaling.fit(cells, lambda r: r.seconds["b"]) is None


@pytest.mark.parametrize(
    ("values", "shown"), [([1.08, 1.04, 1.12], "1.08 (1.04-1.12)"), ([0.5], "0.50")]
)
def test_a_ratio_is_shown_with_its_spread_over_rounds(scaling, values, shown):
    assert scaling.spread(values) == shown


def test_the_section_shows_each_cell_the_fit_and_the_estimate(scaling):
    lines = scaling.section(grid(scaling))
    text = "\n".join(lines)
    # one more registry for 64 MiB x 4 images (0.25 GiB): 0.5 + 20 x 0.25 s, linear in registries
    assert "| 64 | 2 | 15.00 | 13.50 | 1.11 | 0.67 | 1.25 | 0.01 | 5.50 | 60 |" in lines
    assert "| 64 | 4 | 26.00 | 23.40 | 1.11 | 0.67 | 1.25 | 0.00 | 5.50 | 60 |" in lines
    assert "| b cold publish, wall s | 2.00 | 30.0 | 0.50 | 20.0 | 0.00 (0%) |" in lines
    low, high = scaling.FEDORA
    b = scaling.fit(grid(scaling), lambda r: r.seconds["b"])
    expected = f"{b.at(low.gib, 2, 24) / 60:.1f}-{b.at(high.gib, 2, 24) / 60:.1f} min"
    assert f"- Cold publish: {expected}; the fetch floor" in text
    per_gb = (PER_GIB + PER_GIB_REGISTRY) * 10**9 / 2**30
    assert f"- Each further GB with 2 registries: {per_gb:.0f} s of cold publish" in text


def test_without_cells_the_section_says_so(scaling):
    assert "Not measured in this run (`--scale-rounds 0`)." in scaling.section([])
