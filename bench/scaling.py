"""How cost grows: the scaling grid's cells, a least-squares fit of cost against image bytes and
registries, and from the fit an estimate for Fedora's real workload. Pure: numbers in, lines of
the report out."""

from __future__ import annotations

import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from scenarios import Round

MIB_PER_GIB = 1024


@dataclass
class Cell:
    """One point of the grid: ``images`` images of ``size_mib`` MiB, ``registries`` registries."""

    size_mib: int
    registries: int
    images: int
    rounds: list[Round] = field(default_factory=list)

    @property
    def gib(self) -> float:
        return self.size_mib * self.images / MIB_PER_GIB

    def median(self, value: Callable[[Round], float]) -> float:
        return statistics.median(value(r) for r in self.rounds)


def spread(values: Sequence[float]) -> str:
    """``"1.08 (1.04-1.12)"``: the median and, with more than one value, (min-max)."""
    median = statistics.median(values)
    if len(values) < 2:
        return f"{median:.2f}"
    return f"{median:.2f} ({min(values):.2f}-{max(values):.2f})"


# -- the fit -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Fit:
    """cost = fixed + per_gib * GiB + (R - 1) * (per_registry + per_gib_registry * GiB), for a
    compose of ``images`` images of GiB in all and R registries."""

    fixed: float
    per_gib: float
    per_registry: float
    per_gib_registry: float
    images: int
    #: the largest |measured - fitted| over the cells, and the same as a fraction of measured
    residual: float
    relative_residual: float

    def at(self, gib: float, registries: int, images: int) -> float:
        """The fitted cost at ``gib`` GiB in ``images`` images; the fixed terms scaled by the
        number of images (per-image costs: a skopeo run per conversion and per push)."""
        scale = images / self.images
        extra = registries - 1
        return (
            self.fixed * scale
            + self.per_gib * gib
            + extra * (self.per_registry * scale + self.per_gib_registry * gib)
        )


def _solve(matrix: list[list[float]], vector: list[float]) -> list[float] | None:
    """Gaussian elimination with partial pivoting; None if the system is singular."""
    n = len(vector)
    rows = [[*matrix[i], vector[i]] for i in range(n)]
    for col in range(n):
        pivot = max(range(col, n), key=lambda r: abs(rows[r][col]))
        if abs(rows[pivot][col]) < 1e-12:
            return None
        rows[col], rows[pivot] = rows[pivot], rows[col]
        for r in range(n):
            if r != col:
                factor = rows[r][col] / rows[col][col]
                rows[r] = [a - factor * b for a, b in zip(rows[r], rows[col], strict=True)]
    return [rows[i][n] / rows[i][i] for i in range(n)]


def fit(cells: Sequence[Cell], value: Callable[[Round], float]) -> Fit | None:
    """Least squares of ``value`` (per cell: the median over its rounds) against the model of
    :class:`Fit`; None without at least two sizes and two registry counts (of equal image
    counts)."""
    if len({c.size_mib for c in cells}) < 2 or len({c.registries for c in cells}) < 2:
        return None
    if len({c.images for c in cells}) != 1:
        return None
    xs = [[1.0, c.gib, c.registries - 1.0, (c.registries - 1.0) * c.gib] for c in cells]
    ys = [c.median(value) for c in cells]
    normal = [[sum(x[i] * x[j] for x in xs) for j in range(4)] for i in range(4)]
    coefficients = _solve(
        normal, [sum(x[i] * y for x, y in zip(xs, ys, strict=True)) for i in range(4)]
    )
    if coefficients is None:
        return None
    fitted = [sum(k * v for k, v in zip(coefficients, x, strict=True)) for x in xs]
    errors = [abs(y - f) for y, f in zip(ys, fitted, strict=True)]
    worst = max(range(len(errors)), key=lambda i: errors[i])
    fixed, per_gib, per_registry, per_gib_registry = coefficients
    return Fit(
        fixed,
        per_gib,
        per_registry,
        per_gib_registry,
        images=cells[0].images,
        residual=errors[worst],
        relative_residual=errors[worst] / ys[worst],
    )


# -- Fedora's workload -------------------------------------------------------------------------


@dataclass(frozen=True)
class Workload:
    name: str
    #: (count, bytes each) per kind of image
    images: tuple[tuple[int, float], ...]
    registries: int = 2

    @property
    def count(self) -> int:
        return sum(n for n, _ in self.images)

    @property
    def gib(self) -> float:
        return sum(n * size for n, size in self.images) / 2**30


MB, GB = 10**6, 10**9
#: Issue 13: a dozen container images of 100-400 MB plus bootable containers of 1-2 GB, two
#: registries. How many bootable containers is assumed: 6 repositories (Silverblue, Kinoite,
#: Onyx, Sericea, bootc, IoT) x 2 arches.
FEDORA = (
    Workload("low", ((12, 100 * MB), (12, 1 * GB))),
    Workload("high", ((12, 400 * MB), (12, 2 * GB))),
)
#: for the network bound: every push through one 1 Gbit/s link
LINK_BYTES_PER_S = 125 * MB


def _minutes(seconds: float) -> str:
    return f"{seconds / 60:.1f}"


def section(cells: Sequence[Cell]) -> list[str]:
    """The report's scaling section: the table, the fit, the estimate."""
    lines = ["## Scaling", ""]
    if not cells:
        return [*lines, "Not measured in this run (`--scale-rounds 0`).", ""]
    rounds = sorted({len(c.rounds) for c in cells})
    lines += [
        f"The same scenarios at {len({c.size_mib for c in cells})} image sizes and "
        f"{len({c.registries for c in cells})} registry counts, {cells[0].images} images per "
        f"cell (not the workload above), {' or '.join(map(str, rounds))} interleaved round(s) "
        "per cell. Ratios are median (min-max) over the cell's rounds. \"+ s per "
        "registry\": (b)'s seconds over those with one registry, per extra registry (constant "
        "if the per-registry cost is linear).",
        "",
        "| MiB per image | registries | b s | e s | b/e | b/a | b/d | c/b | + s per registry "
        "| peak RSS MB |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    ones = {c.size_mib: c for c in cells if c.registries == 1}
    for c in cells:
        one = ones.get(c.size_mib)
        if one is None or c.registries == 1:
            extra = "-"
        else:
            b = c.median(lambda r: r.seconds["b"])
            extra = f"{(b - one.median(lambda r: r.seconds['b'])) / (c.registries - 1):.2f}"
        ratios = " | ".join(spread([r.ratio(k) for r in c.rounds]) for k in RATIO_COLUMNS)
        lines.append(
            f"| {c.size_mib} | {c.registries} | {c.median(lambda r: r.seconds['b']):.2f} "
            f"| {c.median(lambda r: r.seconds['e']):.2f} | {ratios} | {extra} "
            f"| {max(r.rss_mb for r in c.rounds):.0f} |"
        )
    return [*lines, "", *_fits(cells)]


RATIO_COLUMNS = ("b/e", "b/a", "b/d", "c/b")

FITTED: tuple[tuple[str, Callable[[Round], float]], ...] = (
    ("b cold publish, wall s", lambda r: r.seconds["b"]),
    ("e fetch floor, wall s", lambda r: r.seconds["e"]),
    ("b: CPU s of fedora-container-sync and its skopeo runs", lambda r: r.cpu["b"].tools),
)


def _fits(cells: Sequence[Cell]) -> list[str]:
    fits = [(name, fit(cells, value)) for name, value in FITTED]
    if any(f is None for _, f in fits):
        return ["No fit: it needs at least two image sizes and two registry counts.", ""]
    lines = [
        f"Least-squares fit over the {len(cells)} cells (each its median), cost = fixed + "
        "per GiB x GiB + (registries - 1) x (per registry + per GiB per registry x GiB); "
        f"GiB is the compose's image payload, fixed costs are for {cells[0].images} images:",
        "",
        "| cost | fixed | per GiB | per extra registry | per GiB per extra registry "
        "| largest residual |",
        "|---|---|---|---|---|---|",
    ]
    for name, f in fits:
        assert f is not None
        lines.append(
            f"| {name} | {f.fixed:.2f} | {f.per_gib:.1f} | {f.per_registry:.2f} "
            f"| {f.per_gib_registry:.1f} | {f.residual:.2f} ({f.relative_residual:.0%}) |"
        )
    b, e, cpu = (f for _, f in fits)
    assert b is not None and e is not None and cpu is not None
    low, high = FEDORA
    counts = ", ".join(f"{n} of {size / GB:g} GB" for n, size in low.images)
    network = [w.gib * 2**30 * w.registries / LINK_BYTES_PER_S for w in FEDORA]
    lines += [
        "",
        "Estimate for Fedora's real workload, from the fit (low - high):",
        "",
        f"- Assumed: 12 container images of 100-400 MB and 12 bootable containers of 1-2 GB "
        f"(6 repositories: Silverblue, Kinoite, Onyx, Sericea, bootc, IoT; x 2 arches), "
        f"{low.gib:.1f}-{high.gib:.1f} GiB in all ({counts} at the low end), "
        f"{low.registries} registries; the costs per byte of these synthetic images "
        "(one incompressible layer, xz docker-archives) extrapolated linearly from the sizes "
        "above to 1-2 GB; the fixed costs scaled by the number of images; this machine's "
        "cores; registries on loopback, so no network limit.",
        f"- Cold publish: {_minutes(b.at(low.gib, 2, low.count))}-"
        f"{_minutes(b.at(high.gib, 2, high.count))} min; the fetch floor "
        f"{_minutes(e.at(low.gib, 2, low.count))}-{_minutes(e.at(high.gib, 2, high.count))} "
        f"min; fedora-container-sync and skopeo use {_minutes(cpu.at(low.gib, 2, low.count))}-"
        f"{_minutes(cpu.at(high.gib, 2, high.count))} CPU min.",
        f"- Each further GB with {low.registries} registries: "
        f"{b.at(GB / 2**30, 2, 1) - b.at(0, 2, 1):.0f} s of cold publish "
        f"({e.at(GB / 2**30, 2, 1) - e.at(0, 2, 1):.0f} s of the fetch floor).",
        f"- Over a real network the upload bounds it instead: through one 1 Gbit/s link, "
        f"{_minutes(network[0])}-{_minutes(network[1])} min for the pushes alone.",
        "",
    ]
    return lines
