"""Reading how many CPUs this process may use (:mod:`.cpus` decides): its affinity,
``/proc/self/cgroup`` and the CPU quota files under ``/sys/fs/cgroup``. Any file it cannot
read counts as no limit."""

from __future__ import annotations

import os
from pathlib import Path

from .cpus import cgroup_paths, levels, parse_cfs, parse_cpu_max, usable_cpus


def _read(path: Path) -> str | None:
    try:
        return path.read_text()
    except (OSError, UnicodeDecodeError):
        return None


def cgroup_quotas(root: Path = Path("/")) -> list[float | None]:
    """The CPU quotas of this process's control groups, from the files under ``root``."""
    text = _read(root / "proc/self/cgroup")
    if text is None:
        return []
    unified, v1 = cgroup_paths(text)
    mount = root / "sys/fs/cgroup"
    quotas: list[float | None] = []
    if unified is not None:
        # Inside a cgroup namespace (a container) the path is "/" and the group is the mount.
        for level in levels(unified):
            found = _read(mount / level / "cpu.max")
            quotas.append(None if found is None else parse_cpu_max(found))
    if v1 is not None:
        for controller in ("cpu,cpuacct", "cpu"):
            base = mount / controller
            for level in levels(v1):
                quota = _read(base / level / "cpu.cfs_quota_us")
                period = _read(base / level / "cpu.cfs_period_us")
                if quota is not None and period is not None:
                    quotas.append(parse_cfs(quota, period))
            # A container sees its own group at the mount's top, whatever the host's path.
            quota, period = _read(base / "cpu.cfs_quota_us"), _read(base / "cpu.cfs_period_us")
            if quota is not None and period is not None:
                quotas.append(parse_cfs(quota, period))
    return quotas


def allowed_cpus() -> int:
    """The CPUs this process may use (see :mod:`.cpus`)."""
    try:
        affinity: int | None = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        affinity = None
    return usable_cpus(affinity, cgroup_quotas(), os.cpu_count())
