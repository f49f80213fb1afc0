"""How many CPUs this process may use: the default of ``max_parallel``.

``os.cpu_count()`` is the machine's (the node's, in a pod): a container limited to one CPU on
a 64-core node would start 64 downloads, conversions and pushes of 1-2 GB images at once.
What the process may use is the smaller of

* its CPU affinity (``os.sched_getaffinity``: ``taskset``, ``CPUAffinity=``, a cpuset), and
* the CPU quota of its control group and of every group above it, rounded up: cgroup v2
  ``cpu.max`` (``"150000 100000"`` is 1.5 CPUs, ``"max 100000"`` no limit), cgroup v1
  ``cpu.cfs_quota_us`` / ``cpu.cfs_period_us`` (a quota of -1 is no limit). A pod's
  ``resources.limits.cpu`` and systemd's ``CPUQuota=`` are such quotas.

Pure: the parsers and :func:`usable_cpus`; :mod:`.cgroups` reads the files.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from pathlib import PurePosixPath


def parse_cpu_max(text: str) -> float | None:
    """CPUs of a cgroup v2 ``cpu.max`` (``"$MAX $PERIOD"``), or None for no (or no readable)
    limit."""
    parts = text.split()
    if not parts or parts[0] == "max":
        return None
    try:
        quota = int(parts[0])
        period = int(parts[1]) if len(parts) > 1 else 100000
    except ValueError:
        return None
    return quota / period if quota > 0 and period > 0 else None


def parse_cfs(quota: str, period: str) -> float | None:
    """CPUs of cgroup v1 ``cpu.cfs_quota_us`` and ``cpu.cfs_period_us``, or None for no limit
    (a quota of -1)."""
    try:
        quota_us, period_us = int(quota.strip()), int(period.strip())
    except ValueError:
        return None
    return quota_us / period_us if quota_us > 0 and period_us > 0 else None


def usable_cpus(affinity: int | None, quotas: Iterable[float | None], cpu_count: int | None) -> int:
    """The CPUs a process may use: its affinity (or, unknown, the machine's count), at most
    each quota rounded up; at least 1."""
    cpus = affinity if affinity else (cpu_count or 1)
    for quota in quotas:
        if quota is not None:
            cpus = min(cpus, math.ceil(quota))
    return max(1, cpus)


def cgroup_paths(proc_self_cgroup: str) -> tuple[PurePosixPath | None, PurePosixPath | None]:
    """This process's cgroup v2 path and cgroup v1 ``cpu`` controller path, from the text of
    ``/proc/self/cgroup`` (``"0::/system.slice/x.service"``, ``"4:cpu,cpuacct:/..."``)."""
    unified = v1 = None
    for line in proc_self_cgroup.splitlines():
        hierarchy, _, rest = line.partition(":")
        controllers, _, path = rest.partition(":")
        if not path.startswith("/"):
            continue
        if hierarchy == "0" and controllers == "":
            unified = PurePosixPath(path)
        elif "cpu" in controllers.split(","):
            v1 = PurePosixPath(path)
    return unified, v1


def levels(path: PurePosixPath) -> list[PurePosixPath]:
    """``/a/b`` -> ``[a/b, a, .]``: the group and each group above it, relative to the root."""
    relative = path.relative_to("/")
    return [relative, *relative.parents] if str(relative) != "." else [relative]
