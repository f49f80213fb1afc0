"""Replaying an older compose: every tag is stale (the rollback guard), which is news, not a
warning - logged at INFO as its bus message's severity - and the table's compose column says
what the older compose has, not `-`."""

from __future__ import annotations

import pytest

from support.harness import ARCHES, report_rows

pytestmark = pytest.mark.integration

OLD = "Fedora-41-20241025.0"
NEW = "Fedora-41-20241026.0"
ALL = ",".join(ARCHES)


def test_an_older_compose_reads_as_news(harness):
    assert harness.replay(harness.compose(NEW)).code == 0
    result = harness.replay(harness.compose(OLD))
    assert result.code == 3
    rows = report_rows(result.out)
    for tag in ("41", "latest"):
        assert rows[tag] == ("stale", ALL, ALL, f"holds {NEW}, newer than this compose")
    for arch in ARCHES:
        assert rows[f"41-{arch}"][:3] == ("stale", arch, arch)
    lines = [line for line in result.err.splitlines() if f"compose {OLD}: [" in line]
    assert len(lines) == 6
    assert all(line.startswith("fedora-container-sync: INFO: ") for line in lines), lines
    assert "WARNING" not in result.err
    assert f"compose [{ALL}]: holds {NEW}" in lines[-1]
