"""The summary ``replay`` prints: it fits a terminal of 100 columns (rows grouped by registry,
digests shortened, reasons below their rows when a row would be wider), and nothing of a row is
lost on the way. Pure: reports built by hand."""

from __future__ import annotations

from fedora_container_sync.gate.verdicts import GateDecision, Verdict
from fedora_container_sync.publish.report import (
    WIDTH,
    ArchPush,
    ComposeReport,
    TagAction,
    TagOutcome,
    render,
    short_digests,
)
from support.harness import report_rows

CID = "Fedora-41-20241026.0"
OLD = "Fedora-41-20241025.0"
ALL = frozenset({"x86_64", "aarch64", "ppc64le", "s390x"})
REGISTRIES = ("registry.fedoraproject.org", "quay.io/fedora")
DIGEST = "sha256:" + "2ea8a54f8f04" + "a" * 52


def wide_report() -> ComposeReport:
    """Two registries, a repository name as long as Fedora's longest, full digests everywhere."""
    report = ComposeReport(CID, release=41)
    for registry in REGISTRIES:
        for arch in sorted(ALL - {"aarch64"}):
            decision = GateDecision(
                Verdict.PUBLISH, frozenset({arch}), frozenset({arch}), f"replaces {OLD}"
            )
            push = ArchPush(
                registry, "fedora-toolbox", f"41-{arch}", arch, DIGEST, decision=decision
            )
            report.pushes.append(push)
        held = GateDecision(
            Verdict.HOLD,
            ALL,
            ALL - {"aarch64"},
            "compose lacks aarch64, which the tag serves now",
            missing=frozenset({"aarch64"}),
        )
        moved = GateDecision(Verdict.PUBLISH, ALL, ALL, "all current arches present")
        for tag in ("41", "latest"):
            report.tags.append(TagOutcome(registry, "fedora-toolbox", tag, TagAction.HELD, held))
            report.tags.append(
                TagOutcome(registry, "fedora", tag, TagAction.PUBLISHED, moved, digest=DIGEST)
            )
    return report


def test_the_summary_fits_100_columns():
    text = render([wide_report()])
    assert max(len(line) for line in text.splitlines()) <= WIDTH == 100
    assert "a" * 52 not in text  # digests shortened
    assert "sha256:2ea8a54f8f04" in text
    assert text.count(f"  tags in {REGISTRIES[0]}:") == 1
    assert text.count(f"  tags in {REGISTRIES[1]}:") == 1


def test_rows_stay_whole_when_their_reasons_move_below():
    rows = report_rows(render([wide_report()]))
    assert rows["41-x86_64"] == (
        "publish",
        "x86_64",
        "x86_64",
        f"pushed sha256:2ea8a54f8f04; replaces {OLD}",
    )
    assert rows["41"] == (
        "publish",
        "x86_64,aarch64,ppc64le,s390x",
        "x86_64,aarch64,ppc64le,s390x",
        "all current arches present (sha256:2ea8a54f8f04)",
    )


def test_a_narrow_table_keeps_one_line_per_row():
    report = ComposeReport(CID, release=41)
    decision = GateDecision(Verdict.UNCHANGED, frozenset({"x86_64"}), frozenset({"x86_64"}), "")
    report.pushes.append(
        ArchPush(
            "r.example", "fedora", "41-x86_64", "x86_64", DIGEST, skipped=True, decision=decision
        )
    )
    lines = render([report]).splitlines()
    assert lines[1:4] == [
        "  tags in r.example:",
        "    tag               verdict    current  compose  reason",
        "    fedora:41-x86_64  unchanged  x86_64   x86_64   holds sha256:2ea8a54f8f04",
    ]


def test_only_whole_digests_are_shortened():
    assert short_digests(f"pushed {DIGEST}; ok") == "pushed sha256:2ea8a54f8f04; ok"
    assert short_digests("sha256:abc") == "sha256:abc"
