"""The CPUs a process may use (the default of ``max_parallel``): the pure decisions as
tables, and the reader on file trees shaped like /proc and /sys/fs/cgroup."""

from __future__ import annotations

from pathlib import Path, PurePosixPath

import pytest

from fedora_container_sync.config.cgroups import cgroup_quotas
from fedora_container_sync.config.cpus import cgroup_paths, parse_cfs, parse_cpu_max, usable_cpus


@pytest.mark.parametrize(
    ("text", "cpus"),
    [
        ("max 100000\n", None),
        ("200000 100000\n", 2.0),
        ("150000 100000", 1.5),
        ("50000 100000", 0.5),
        ("100000", 1.0),  # the period left out: the kernel's default
        ("", None),
        ("garbage here", None),
        ("0 100000", None),
    ],
)
def test_cgroup_v2_cpu_max(text, cpus):
    assert parse_cpu_max(text) == cpus


@pytest.mark.parametrize(
    ("quota", "period", "cpus"),
    [("-1\n", "100000\n", None), ("400000\n", "100000\n", 4.0), ("25000", "100000", 0.25)],
)
def test_cgroup_v1_cfs_quota(quota, period, cpus):
    assert parse_cfs(quota, period) == cpus


@pytest.mark.parametrize(
    ("affinity", "quotas", "cpu_count", "expected"),
    [
        (64, [], 64, 64),  # no limit at all: every CPU
        (64, [None, None], 64, 64),  # "max" everywhere
        (64, [1.0], 64, 1),  # a pod limited to one CPU on a 64-core node
        (64, [0.5], 64, 1),  # less than one CPU is still one worker
        (64, [1.5], 64, 2),  # rounded up
        (4, [8.0], 64, 4),  # taskset / CPUAffinity= / a cpuset below the quota
        (64, [None, 3.0, 6.0], 64, 3),  # the smallest of the groups up the tree
        (None, [], 8, 8),  # no affinity (not Linux): the machine's count
        (None, [], None, 1),  # nothing known: one
        (None, [2.0], 8, 2),
    ],
)
def test_usable_cpus(affinity, quotas, cpu_count, expected):
    assert usable_cpus(affinity, quotas, cpu_count) == expected


def test_cgroup_paths_of_v2_v1_and_hybrid():
    assert cgroup_paths("0::/system.slice/fcs.service\n") == (
        PurePosixPath("/system.slice/fcs.service"),
        None,
    )
    hybrid = "9:cpuset:/\n4:cpu,cpuacct:/kubepods/pod1/c1\n1:name=systemd:/x\n0::/\n"
    assert cgroup_paths(hybrid) == (PurePosixPath("/"), PurePosixPath("/kubepods/pod1/c1"))


def _tree(tmp: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = tmp / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return tmp


def test_reader_v2_takes_every_level_of_the_group(tmp_path):
    root = _tree(
        tmp_path,
        {
            "proc/self/cgroup": "0::/system.slice/fcs.service\n",
            "sys/fs/cgroup/system.slice/fcs.service/cpu.max": "max 100000\n",
            "sys/fs/cgroup/system.slice/cpu.max": "250000 100000\n",
        },
    )
    assert usable_cpus(16, cgroup_quotas(root), 16) == 3


def test_reader_v2_in_a_container_reads_the_mount_top(tmp_path):
    root = _tree(
        tmp_path,
        {"proc/self/cgroup": "0::/\n", "sys/fs/cgroup/cpu.max": "100000 100000\n"},
    )
    assert usable_cpus(64, cgroup_quotas(root), 64) == 1


def test_reader_v1_host_path_or_the_mount_top(tmp_path):
    on_host = _tree(
        tmp_path / "host",
        {
            "proc/self/cgroup": "4:cpu,cpuacct:/kubepods/pod1\n",
            "sys/fs/cgroup/cpu,cpuacct/kubepods/pod1/cpu.cfs_quota_us": "200000\n",
            "sys/fs/cgroup/cpu,cpuacct/kubepods/pod1/cpu.cfs_period_us": "100000\n",
        },
    )
    assert usable_cpus(64, cgroup_quotas(on_host), 64) == 2
    in_container = _tree(
        tmp_path / "container",
        {
            "proc/self/cgroup": "4:cpu,cpuacct:/kubepods/pod1\n",
            "sys/fs/cgroup/cpu/cpu.cfs_quota_us": "-1\n",
            "sys/fs/cgroup/cpu/cpu.cfs_period_us": "100000\n",
            "sys/fs/cgroup/cpu,cpuacct/cpu.cfs_quota_us": "300000\n",
            "sys/fs/cgroup/cpu,cpuacct/cpu.cfs_period_us": "100000\n",
        },
    )
    assert usable_cpus(64, cgroup_quotas(in_container), 64) == 3


def test_reader_without_proc_or_cgroups_means_no_limit(tmp_path):
    assert cgroup_quotas(tmp_path) == []
    root = _tree(tmp_path, {"proc/self/cgroup": "0::/a\n"})
    assert usable_cpus(4, cgroup_quotas(root), 4) == 4
