"""The audit's decisions and its output, as tables over plain values: no registry, no mocks."""

from __future__ import annotations

import hashlib
import json
from dataclasses import replace
from datetime import UTC, date, datetime

import jsonschema
import pytest

from fedora_container_sync.audit.findings import Kind, audit, find_diverged, find_in_repository
from fedora_container_sync.audit.report import (
    DOCUMENT_SCHEMA,
    FINDING_SCHEMA,
    as_document,
    format_age,
    render_json,
    render_table,
)
from fedora_container_sync.audit.state import (
    Build,
    IndexState,
    IndexTag,
    ReadFailure,
    RepositoryState,
    age_hours,
    compose_date,
    compose_order,
    index_tags,
    tags_to_read,
)
from fedora_container_sync.config.settings import Releases
from fedora_container_sync.oci.index import UnknownEntry

NOW = datetime(2024, 10, 28, 6, 0, tzinfo=UTC)
OLD = "Fedora-41-20241025.0"
NEW = "Fedora-41-20241026.0"
NEWER = "Fedora-41-20241027.0"
RELEASES = Releases(latest=41, rawhide=43)
ALL = ("x86_64", "aarch64", "ppc64le", "s390x")
A, B, C = "registry.example", "quay.example/fedora", "mirror.example"


def digest(*parts: object) -> str:
    return "sha256:" + hashlib.sha256(repr(parts).encode()).hexdigest()


def build(compose: str | None, arch: str, *, encoding: int = 0) -> Build:
    """The image of ``arch`` from ``compose``; ``encoding`` changes the digest, not the build."""
    if compose is None:
        return Build(digest("foreign", arch, encoding))
    return Build(
        digest(compose, arch, encoding), compose, hashlib.sha256(arch.encode()).hexdigest()
    )


def index(compose: str | None, entries: dict[str, Build]) -> IndexState:
    return IndexState(
        digest(compose, sorted((a, b.digest) for a, b in entries.items())), compose, entries
    )


def full(compose: str, arches=ALL, **carried: str) -> IndexState:
    return index(compose, {arch: build(carried.get(arch, compose), arch) for arch in arches})


def per_arch(compose: str, arches=ALL, release: int = 41) -> dict[str, Build]:
    return {f"{release}-{arch}": build(compose, arch) for arch in arches}


def repo(contents, registry: str = A, repository: str = "fedora-toolbox") -> RepositoryState:
    return RepositoryState(registry, repository, frozenset(contents), dict(contents))


def found(findings) -> set[tuple[str, str, str | None]]:
    return {(f.kind.value, f.tag, f.arch) for f in findings}


# -- which tags ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("tags", "releases", "expected"),
    [
        (
            {"41", "41-x86_64", "40-aarch64", "latest"},
            RELEASES,
            [
                IndexTag("40", 40),
                IndexTag("41", 41),
                IndexTag("latest", 41),
                IndexTag("rawhide", 43),
            ],
        ),
        ({"41-x86_64"}, Releases(), [IndexTag("41", 41)]),
        ({"latest", "rawhide"}, Releases(), [IndexTag("latest", None), IndexTag("rawhide", None)]),
        # Not release tags: leading zero, no known arch, arbitrary names.
        ({"041", "41-1.3", "41-sparc", "41-x86_64-old", "devel"}, Releases(), []),
        (set(), Releases(latest=41), [IndexTag("latest", 41)]),
        ({"9", "10-s390x"}, Releases(), [IndexTag("9", 9), IndexTag("10", 10)]),
    ],
)
def test_index_tags(tags, releases, expected):
    assert index_tags(tags, releases) == expected


def test_tags_to_read_are_the_present_index_and_per_arch_tags():
    tags = {"41", "41-x86_64", "41-aarch64", "40-s390x", "latest", "41-1.3", "devel"}
    assert tags_to_read(tags, RELEASES) == ["41", "latest", "40-s390x", "41-aarch64", "41-x86_64"]


# -- ages ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("compose_id", "day", "hours"),
    [
        (OLD, date(2024, 10, 25), 78),
        ("Fedora-41-20241028.n.3", date(2024, 10, 28), 6),
        ("Fedora-Rawhide-20230502.n.0", date(2023, 5, 2), 13086),
        ("Fedora-41-20241030.0", date(2024, 10, 30), 0),  # a clock behind the compose host
        ("not-a-compose", None, None),
        ("", None, None),
        (None, None, None),
        # Written by another tool: other digits, an unknown type, a huge respin.
        ("Fedora-41-\u0662\u0660\u0662\u0664\u0661\u0660\u0662\u0665.0", None, None),
        ("Fedora-41-20241025.zz.0", None, None),
        ("Fedora-41-20241025." + "9" * 5000, None, None),
    ],
)
def test_ages_come_from_the_compose_date(compose_id, day, hours):
    assert compose_date(compose_id) == day
    assert age_hours(compose_date(compose_id), NOW) == hours


@pytest.mark.parametrize(
    ("earlier", "later"),
    [
        (OLD, NEW),
        (OLD, "Fedora-41-20241025.1"),
        ("Fedora-41-20241025.9", NEW),
        ("Fedora-41-20241025.n.0", "Fedora-41-20241025.n.1"),
        (None, OLD),
        ("garbage", OLD),
    ],
)
def test_compose_order(earlier, later):
    assert compose_order(earlier) < compose_order(later)


@pytest.mark.parametrize(
    ("hours", "text"), [(None, "?"), (0, "0h"), (23, "23h"), (24, "1d00h"), (54, "2d06h")]
)
def test_format_age(hours, text):
    assert format_age(hours) == text


# -- builds ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("a", "b", "same"),
    [
        (build(OLD, "x86_64"), build(OLD, "x86_64"), True),
        # the same file of the same compose, pushed twice with different digests
        (build(OLD, "x86_64"), build(OLD, "x86_64", encoding=1), True),
        (build(OLD, "x86_64"), build(NEW, "x86_64"), False),
        (build(OLD, "x86_64"), build(OLD, "aarch64"), False),
        # without annotations only the digest tells
        (build(None, "x86_64"), build(None, "x86_64"), True),
        (build(None, "x86_64"), build(None, "x86_64", encoding=1), False),
        (build(OLD, "x86_64"), Build(build(OLD, "x86_64").digest), True),
        (build(OLD, "x86_64"), Build(build(OLD, "x86_64", encoding=1).digest), False),
    ],
)
def test_builds_compare_by_compose_and_image_checksum(a, b, same):
    assert a.same_as(b) is same
    assert b.same_as(a) is same


# -- one registry: held, missing, carried ------------------------------------------------------


@pytest.mark.parametrize(
    ("contents", "expected"),
    [
        pytest.param({"41": full(OLD), "latest": full(OLD), **per_arch(OLD)}, set(), id="clean"),
        pytest.param(
            {"41": full(OLD), "latest": full(OLD), **per_arch(OLD), **per_arch(NEW, ["x86_64"])},
            {("held", "41", "x86_64"), ("held", "latest", "x86_64")},
            id="held",
        ),
        pytest.param(
            {"41": full(NEW), "latest": full(NEW), **per_arch(NEW), **per_arch(OLD, ["s390x"])},
            set(),
            id="per-arch tag older than the index: not held",
        ),
        pytest.param(
            {"41": full(OLD, ALL[:3]), **per_arch(OLD, ALL[:3]), **per_arch(NEW, ["s390x"])},
            {("missing", "41", "s390x")} | {("missing", "latest", arch) for arch in ALL},
            id="missing, and no latest index at all",
        ),
        pytest.param(
            {**per_arch(OLD, ["x86_64"])},
            {("missing", "41", "x86_64"), ("missing", "latest", "x86_64")},
            id="no index tag at all",
        ),
        pytest.param(
            {"41": full(NEW, aarch64=OLD), **per_arch(NEW), **per_arch(OLD, ["aarch64"])},
            {("carried", "41", "aarch64"), ("missing", "latest", "x86_64")}
            | {("missing", "latest", arch) for arch in ALL},
            id="carried",
        ),
        pytest.param(
            {"41": full(NEW, aarch64=OLD), "latest": full(NEW, aarch64=OLD), **per_arch(NEWER)}
            | {"41-x86_64": build(NEW, "x86_64")},
            {("carried", t, "aarch64") for t in ("41", "latest")}
            | {("held", t, a) for t in ("41", "latest") for a in ALL[1:]},
            id="carried and held",
        ),
        pytest.param(
            {"41": full(OLD), "latest": full(OLD), **per_arch(OLD)}
            | {"41-x86_64": build(OLD, "x86_64", encoding=1)},
            set(),
            id="per-arch tag re-encoded: same build",
        ),
        pytest.param(
            {"41": index(None, {"x86_64": build(None, "x86_64")}), **per_arch(OLD, ["x86_64"])},
            {("held", "41", "x86_64"), ("missing", "latest", "x86_64")},
            id="foreign index: a different digest is held (order unknown)",
        ),
    ],
)
def test_find_in_repository(contents, expected):
    assert found(find_in_repository(repo(contents), RELEASES, NOW)) == expected


def test_held_finding_names_both_composes_and_the_index_age():
    contents = {"41": full(OLD), **per_arch(OLD), **per_arch(NEW, ["ppc64le"])}
    (held,) = find_in_repository(repo(contents), Releases(), NOW)
    assert held.kind is Kind.HELD
    assert (held.compose_id, held.newer_compose_id, held.index_compose_id) == (OLD, NEW, OLD)
    assert (held.since, held.age_hours) == (date(2024, 10, 25), 78)
    assert held.digest == contents["41"].digest
    assert held.summary == f"41-ppc64le has {NEW}; the index still serves {OLD} for ppc64le"


def test_missing_finding_ages_from_the_index():
    contents = {"41": full(OLD, ["x86_64"]), **per_arch(NEW, ["aarch64"])}
    contents["41-x86_64"] = build(OLD, "x86_64")
    (missing,) = find_in_repository(repo(contents), Releases(), NOW)
    assert (missing.kind, missing.arch, missing.compose_id) == (Kind.MISSING, "aarch64", None)
    assert missing.newer_compose_id == NEW
    assert missing.since == date(2024, 10, 25)
    assert "has no aarch64 entry" in missing.summary


def test_carried_finding_ages_from_the_carried_entry():
    contents = {"41": full(NEWER, aarch64=OLD), **per_arch(NEWER), **per_arch(OLD, ["aarch64"])}
    (carried,) = find_in_repository(repo(contents), Releases(), NOW)
    assert (carried.kind, carried.compose_id, carried.index_compose_id) == (
        Kind.CARRIED,
        OLD,
        NEWER,
    )
    assert carried.age_hours == 78


def test_an_entry_the_gate_cannot_read_is_a_finding_naming_it():
    odd = UnknownEntry("index entry 2 (sha256:0123456789ab, ?/arm64)", "has no platform os")
    index = replace(full(OLD, ["x86_64"]), unknown=(odd,))
    contents = {"41": index, **per_arch(OLD, ["x86_64"])}
    (finding,) = find_in_repository(repo(contents), Releases(), NOW)
    assert (finding.kind, finding.severity.value, finding.arch) == (
        Kind.UNRECOGNIZED,
        "error",
        None,
    )
    assert finding.summary == (
        "index entry 2 (sha256:0123456789ab, ?/arm64) has no platform os; "
        "the gate holds this tag until that is fixed by hand"
    )
    assert (finding.index_compose_id, finding.since) == (OLD, date(2024, 10, 25))
    assert finding.digest == index.digest


def test_indexes_with_unreadable_entries_are_never_the_same_content():
    odd = UnknownEntry("index entry 2", "has no platform")
    a = replace(full(OLD, ["x86_64"]), unknown=(odd,))
    b = replace(a, digest=digest("another"))
    assert not a.same_as(b)
    assert a.same_as(a)


def test_rawhide_and_unconfigured_latest():
    contents = {
        "rawhide": full("Fedora-Rawhide-20241025.n.0", ["x86_64"]),
        "43-x86_64": build("Fedora-Rawhide-20241026.n.0", "x86_64"),
        # latest is present but no release is configured for it: nothing to compare it with.
        "latest": full(OLD, ["x86_64"]),
    }
    findings = find_in_repository(repo(contents), Releases(rawhide=43), NOW)
    assert found(findings) == {("held", "rawhide", "x86_64"), ("missing", "43", "x86_64")}


# -- across registries: diverged ---------------------------------------------------------------


def states(*contents_by_registry):
    return [repo(contents, registry) for registry, contents in contents_by_registry]


@pytest.mark.parametrize(
    ("registries", "expected"),
    [
        pytest.param(
            states(
                (A, {"41": full(OLD), **per_arch(OLD)}), (B, {"41": full(OLD), **per_arch(OLD)})
            ),
            set(),
            id="same",
        ),
        pytest.param(
            states(
                (A, {"41": full(OLD), **per_arch(OLD)}),
                (
                    B,
                    {
                        "41": index(OLD, {a: build(OLD, a, encoding=1) for a in ALL}),
                        **{f"41-{a}": build(OLD, a, encoding=1) for a in ALL},
                    },
                ),
            ),
            set(),
            id="same builds, other digests",
        ),
        pytest.param(
            states(
                (A, {"41": full(NEW), **per_arch(NEW)}), (B, {"41": full(OLD), **per_arch(OLD)})
            ),
            {(B, "41", None, OLD, NEW)} | {(B, f"41-{a}", a, OLD, NEW) for a in ALL},
            id="second registry missed a publish",
        ),
        pytest.param(
            states((A, {"41": full(OLD)}), (B, {"41": full(NEW)})),
            {(A, "41", None, OLD, NEW)},
            id="first registry lags",
        ),
        pytest.param(
            states((A, {"41": full(OLD), "41-x86_64": build(OLD, "x86_64")}), (B, {})),
            {(B, "41", None, None, OLD), (B, "41-x86_64", "x86_64", None, OLD)},
            id="absent from one registry",
        ),
        pytest.param(
            states((A, {"41": full(NEW)}), (B, {"41": full(NEW)}), (C, {"41": full(OLD)})),
            {(C, "41", None, OLD, NEW)},
            id="three registries, one lags",
        ),
        pytest.param(
            states((A, {"41": full(NEW)})),
            set(),
            id="one registry",
        ),
        pytest.param(
            states((A, {"latest": full(NEW)}), (B, {"latest": full(OLD)})),
            {(B, "latest", None, OLD, NEW)},
            id="latest",
        ),
    ],
)
def test_find_diverged(registries, expected):
    findings = find_diverged(registries, RELEASES, NOW)
    assert {
        (f.registry, f.tag, f.arch, f.compose_id, f.newer_compose_id) for f in findings
    } == expected
    assert all(f.kind is Kind.DIVERGED for f in findings)


def test_diverged_indexes_of_the_same_compose_name_the_differing_arches():
    carried = full(NEW, aarch64=OLD)
    (finding,) = find_diverged(states((A, {"41": full(NEW)}), (B, {"41": carried})), RELEASES, NOW)
    assert finding.registry in (A, B)
    assert finding.summary.endswith("; they differ in aarch64")


def test_diverged_age_counts_from_the_lagging_build():
    findings = find_diverged(
        states((A, {"41": full(NEW), "41-x86_64": build(NEW, "x86_64")}), (B, {"41": full(OLD)})),
        RELEASES,
        NOW,
    )
    by_tag = {f.tag: f for f in findings}
    assert by_tag["41"].since == date(2024, 10, 25)  # B still serves OLD
    assert by_tag["41-x86_64"].since == date(2024, 10, 26)  # B never had it: since NEW
    assert by_tag["41-x86_64"].summary == f"does not exist here; {A} serves {NEW}"


# -- the whole audit ---------------------------------------------------------------------------


def scenario(**kwargs):
    """A held tag (OLD index), a missing arch and a lagging registry."""
    registry_a = {"41": full(OLD, ALL[:3]), **per_arch(OLD, ALL[:3])}
    registry_a |= {"41-x86_64": build(NEW, "x86_64"), "41-s390x": build(NEW, "s390x")}
    registry_a |= {"41-s390x": build(NEW, "s390x")}
    registry_b = {"41": full(OLD, ALL[:3]), **per_arch(OLD, ALL[:3])}
    return audit(
        states((A, registry_a), (B, registry_b)),
        Releases(),
        now=NOW,
        registries=[A, B],
        repositories=["fedora-toolbox"],
        **kwargs,
    )


def test_audit_sorts_by_severity_then_age():
    result = scenario()
    assert [(f.kind.value, f.registry, f.tag) for f in result.findings] == [
        ("missing", A, "41"),
        ("diverged", B, "41-x86_64"),
        ("diverged", B, "41-s390x"),
        ("held", A, "41"),
    ]
    # missing and held count from the index (OLD); diverged from what B serves (OLD) or,
    # where B lacks the tag, from the build it lacks (NEW).
    assert [f.age_hours for f in result.findings] == [78, 78, 54, 78]
    assert result.exit_code == 3


@pytest.mark.parametrize(
    ("max_age", "counted", "younger"), [(None, 4, 0), (60, 3, 1), (78, 0, 4), (0, 4, 0)]
)
def test_max_age_counts_only_older_findings(max_age, counted, younger):
    result = scenario(max_age_hours=max_age)
    assert (len(result.findings), result.younger) == (counted, younger)
    assert result.exit_code == (3 if counted else 0)


def test_findings_of_unknown_age_always_count():
    contents = {"41": index(None, {"x86_64": build(None, "x86_64")}), **per_arch(OLD, ["x86_64"])}
    result = audit(
        [repo(contents)],
        Releases(),
        now=NOW,
        registries=[A],
        repositories=["fedora-toolbox"],
        max_age_hours=10_000,
    )
    assert [(f.kind, f.age_hours) for f in result.findings] == [(Kind.HELD, None)]


def test_an_unreadable_registry_exits_1_and_is_left_out_of_comparisons():
    failure = ReadFailure(B, None, "registry timed out")
    result = audit(
        states((A, {"41": full(OLD), **per_arch(OLD)})),
        Releases(),
        now=NOW,
        registries=[A, B],
        repositories=["fedora-toolbox"],
        failures=[failure],
    )
    assert result.findings == ()
    assert result.exit_code == 1
    assert result.result == "unreadable"


def test_clean_audit():
    result = audit(
        states((A, {"41": full(OLD), **per_arch(OLD)}), (B, {"41": full(OLD), **per_arch(OLD)})),
        Releases(),
        now=NOW,
        registries=[A, B],
        repositories=["fedora-toolbox", "fedora"],
    )
    assert (result.findings, result.exit_code, result.result) == ((), 0, "clean")


# -- output ------------------------------------------------------------------------------------


def test_json_document_is_valid_and_stable():
    result = scenario(failures=[ReadFailure(C, "fedora", "HTTP 500")])
    document = json.loads(render_json(result))
    jsonschema.validate(document, DOCUMENT_SCHEMA)
    assert document == as_document(result)
    assert document["format"] == "fedora-container-sync-audit/v1"
    assert document["generated_at"] == "2024-10-28T06:00:00Z"
    assert document["counts"] == {
        "missing": 1,
        "diverged": 2,
        "held": 1,
        "carried": 0,
        "unrecognized": 0,
        "unsigned": 0,
    }
    assert document["errors"] == [{"registry": C, "repository": "fedora", "error": "HTTP 500"}]
    assert (document["result"], document["exit_code"]) == ("unreadable", 1)
    first = document["findings"][0]
    assert list(first) == FINDING_SCHEMA["required"]
    assert first == {
        "kind": "missing",
        "severity": "error",
        "registry": A,
        "repository": "fedora-toolbox",
        "tag": "41",
        "arch": "s390x",
        "compose_id": None,
        "newer_compose_id": NEW,
        "index_compose_id": OLD,
        "reference_registry": None,
        "digest": full(OLD, ALL[:3]).digest,
        "since": "2024-10-25",
        "age_hours": 78,
        "summary": f"41-s390x has {NEW}; the index ({OLD}) has no s390x entry",
    }


def test_table_has_one_line_per_finding_sorted():
    text = render_table(scenario(max_age_hours=48))
    lines = text.splitlines()
    assert lines[0] == (
        "audit of 2 registries, 1 repository at 2024-10-28T06:00:00Z; findings older than 48h"
    )
    assert lines[1].split() == ["severity", "kind", "age", "tag", "arch", "detail"]
    assert [line.split()[:3] for line in lines[2:6]] == [
        ["error", "missing", "3d06h"],
        ["error", "diverged", "3d06h"],
        ["error", "diverged", "2d06h"],
        ["warning", "held", "3d06h"],
    ]
    assert f"{A}/fedora-toolbox:41 " in lines[2]
    assert lines[-1] == "result: FINDINGS: 4 findings (3 error, 1 warning)"


def test_table_of_a_clean_but_incomplete_audit():
    result = audit(
        [],
        Releases(),
        now=NOW,
        registries=[A],
        repositories=["fedora"],
        failures=[ReadFailure(A, None, "registry registry.example unreachable")],
    )
    assert render_table(result).splitlines()[1:] == [
        f"  unreadable: {A}: registry registry.example unreachable",
        "result: UNREADABLE (1 registry); 0 findings",
    ]
