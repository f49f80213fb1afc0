"""The gate and the rollback guard, as tables: what the tag holds x what the compose brings."""

import hashlib
import json

import pytest

from fedora_container_sync.gate.verdicts import CurrentTag, Verdict, decide, decide_arch_tag, guard
from fedora_container_sync.oci.index import IndexEntry, UnknownEntry, build_index, image_arch
from fedora_container_sync.oci.manifest import COMPOSE_ID, Manifest, digest_of

ALL = frozenset({"x86_64", "aarch64", "ppc64le", "s390x"})
OLD = "Fedora-41-20241025.0"
NEW = "Fedora-41-20241026.0"
NEWER = "Fedora-41-20241027.0"
OCI = "application/vnd.oci.image.manifest.v1+json"
SCHEMA2 = "application/vnd.docker.distribution.manifest.v2+json"


def entry(arch, compose=NEW, media_type=OCI):
    digest = "sha256:" + hashlib.sha256(f"{compose}/{arch}".encode()).hexdigest()
    return IndexEntry(arch, media_type, digest, 500, compose)


def current(arches, compose=OLD, *, digest="sha256:current"):
    """A tag holding an index of this tool, written by ``compose`` (None: unannotated)."""
    return CurrentTag(digest, compose, {arch: entry(arch, compose) for arch in arches})


def built(arches, compose=NEW):
    return {arch: entry(arch, compose) for arch in arches}


def gate(now, arches, **kwargs):
    kwargs.setdefault("compose_id", NEW)
    return decide(None if now is None else current(now), built(arches), **kwargs)


# -- strict (upstream's rule) ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("now", "compose", "verdict", "missing"),
    [
        (None, ALL, Verdict.PUBLISH, set()),
        (None, {"x86_64"}, Verdict.PUBLISH, set()),
        (ALL, ALL, Verdict.PUBLISH, set()),
        (ALL, ALL - {"aarch64"}, Verdict.HOLD, {"aarch64"}),
        (ALL, {"x86_64"}, Verdict.HOLD, {"aarch64", "ppc64le", "s390x"}),
        ({"x86_64", "aarch64"}, ALL, Verdict.PUBLISH, set()),
        (ALL, set(), Verdict.HOLD, ALL),
        (None, set(), Verdict.HOLD, set()),
        (set(), {"x86_64"}, Verdict.PUBLISH, set()),
    ],
)
def test_strict_gate(now, compose, verdict, missing):
    decision = gate(now, compose)
    assert decision.verdict is verdict
    assert decision.missing == frozenset(missing)
    assert decision.moves_tag == (verdict is Verdict.PUBLISH)
    if decision.moves_tag:
        assert decision.index_arches == frozenset(compose)


def test_hold_reason_names_the_missing_arch():
    decision = gate(ALL, ALL - {"aarch64"})
    assert "aarch64" in decision.reason
    assert "x86_64" not in decision.reason


def test_same_bytes_are_unchanged_not_republished():
    entries = tuple(built(ALL).values())
    digest = digest_of(build_index(entries, compose_id=NEW))
    now = CurrentTag(digest, NEW, {e.arch: e for e in entries})
    decision = decide(now, built(ALL), compose_id=NEW)
    assert decision.verdict is Verdict.UNCHANGED
    assert not decision.moves_tag


def test_same_bytes_never_override_a_hold():
    entries = tuple(built(ALL).values())
    digest = digest_of(build_index(entries, compose_id=NEW))
    now = CurrentTag(digest, NEW, {e.arch: e for e in entries})
    assert decide(now, built({"x86_64"}), compose_id=NEW).verdict is Verdict.HOLD


def test_added_arch_is_named():
    decision = gate({"x86_64"}, {"x86_64", "s390x"})
    assert decision.verdict is Verdict.PUBLISH
    assert "adds s390x" in decision.reason


def test_unknown_policy_is_refused():
    with pytest.raises(ValueError, match="policy"):
        gate(ALL, ALL, policy="yolo")


@pytest.mark.parametrize("policy", ["strict", "carry-forward"])
@pytest.mark.parametrize("now", [None, ALL, {"x86_64"}])
def test_an_arch_that_failed_in_this_run_always_holds(now, policy):
    decision = gate(now, ALL - {"aarch64"}, failed={"aarch64"}, policy=policy)
    assert decision.verdict is Verdict.HOLD
    assert decision.missing == {"aarch64"}
    assert "aarch64 failed" in decision.reason


def test_a_dry_run_decides_without_entries():
    decision = decide(current(ALL), dict.fromkeys(ALL), compose_id=NEW)
    assert decision.verdict is Verdict.PUBLISH
    assert decision.entries == ()


# -- carry-forward (the hybrid manifest) -------------------------------------------------------


@pytest.mark.parametrize(
    ("now", "compose", "verdict", "carried"),
    [
        (None, {"x86_64"}, Verdict.PUBLISH, set()),
        (ALL, ALL, Verdict.PUBLISH, set()),
        (ALL, ALL - {"aarch64"}, Verdict.CARRY, {"aarch64"}),
        (ALL, {"x86_64"}, Verdict.CARRY, {"aarch64", "ppc64le", "s390x"}),
        ({"x86_64"}, {"x86_64", "s390x"}, Verdict.PUBLISH, set()),
        (ALL, set(), Verdict.HOLD, set()),
    ],
)
def test_carry_forward_gate(now, compose, verdict, carried):
    decision = gate(now, compose, policy="carry-forward")
    assert decision.verdict is verdict
    assert decision.carried == frozenset(carried)
    if decision.moves_tag:
        assert decision.index_arches == frozenset(compose) | frozenset(carried)


def test_carried_entries_keep_their_digest_and_compose():
    decision = gate(ALL, ALL - {"aarch64"}, policy="carry-forward")
    index = json.loads(decision.index_body(NEW))
    assert index["annotations"][COMPOSE_ID] == NEW
    by_arch = {e["annotations"]["org.fedoraproject.arch"]: e for e in index["manifests"]}
    assert by_arch["aarch64"]["digest"] == entry("aarch64", OLD).digest
    assert by_arch["aarch64"]["annotations"][COMPOSE_ID] == OLD
    assert by_arch["x86_64"]["annotations"][COMPOSE_ID] == NEW
    assert f"keeps aarch64 from {OLD}" in decision.reason


def test_carrying_an_oci_entry_of_a_foreign_index():
    now = CurrentTag("sha256:foreign", None, {a: entry(a, None) for a in ("x86_64", "s390x")})
    decision = decide(now, built({"x86_64"}), compose_id=NEW, policy="carry-forward")
    assert decision.verdict is Verdict.CARRY
    manifests = json.loads(decision.index_body(NEW))["manifests"]
    carried = next(m for m in manifests if m["digest"] == entry("s390x", None).digest)
    assert carried["platform"] == {"architecture": "s390x", "os": "linux"}
    assert COMPOSE_ID not in carried["annotations"]
    assert "an index this tool did not write" in decision.reason


# -- what the tag serves cannot be read ---------------------------------------------------------

ODD = UnknownEntry("index entry 2 (sha256:0123456789ab, ?/arm64)", "has no platform os")
EXPECT_X86 = frozenset({"x86_64"})


@pytest.mark.parametrize(
    ("policy", "expected", "allow_drop", "force"),
    [
        ("strict", None, set(), False),
        ("carry-forward", None, set(), False),
        ("strict", EXPECT_X86, set(), False),
        ("carry-forward", ALL, set(), False),
        ("strict", None, ALL, True),
        ("carry-forward", None, ALL, True),
    ],
)
def test_an_entry_the_gate_cannot_read_holds_under_every_policy(
    policy, expected, allow_drop, force
):
    now = CurrentTag("sha256:foreign", None, {"x86_64": entry("x86_64", None)}, (ODD,))
    decision = decide(
        now,
        built(ALL),  # even a complete compose
        compose_id=NEW,
        policy=policy,
        expected=expected,
        allow_drop=allow_drop,
        force=force,
    )
    assert decision.verdict is Verdict.HOLD
    assert not decision.moves_tag and decision.entries == ()
    assert decision.reason == (
        "index entry 2 (sha256:0123456789ab, ?/arm64) has no platform os; "
        "the tag stays until that is fixed by hand"
    )
    assert not decision.after_failure  # a finding of its own, logged as a warning


def test_many_unreadable_entries_are_counted_not_all_named():
    odd = tuple(UnknownEntry(f"index entry {n}", "has no platform") for n in range(1, 7))
    decision = decide(CurrentTag("sha256:x", None, {}, odd), built(ALL), compose_id=NEW)
    assert decision.verdict is Verdict.HOLD
    assert decision.reason.startswith(
        "index entry 1 has no platform; index entry 2 has no platform; "
        "index entry 3 has no platform (and 3 more);"
    )


def test_a_single_image_at_an_index_tag_with_no_fedora_arch_holds():
    body = json.dumps({"schemaVersion": 2, "mediaType": OCI, "config": {}}).encode()
    found = Manifest(OCI, digest_of(body), body)
    config = json.dumps({"architecture": "mips64le", "os": "linux"}).encode()
    now = CurrentTag.of(found, image_arch(found, config))
    assert (now.entries, len(now.unknown)) == ({}, 1)
    decision = decide(now, built(ALL), compose_id=NEW, policy="carry-forward")
    assert decision.verdict is Verdict.HOLD
    assert "(linux/mips64le) has no Fedora arch" in decision.reason
    assert CurrentTag.of(found, "x86_64").arches == {"x86_64"}
    with pytest.raises(ValueError, match="arch"):
        CurrentTag.of(found)


def test_the_guard_reads_unreadable_entries_too():
    newer = UnknownEntry("index entry 1", "has no platform", "sha256:" + "1" * 64, NEWER)
    now = CurrentTag("sha256:x", None, {}, (newer,))
    assert decide(now, built(ALL), compose_id=NEW).verdict is Verdict.STALE


def test_unreadable_entries_do_not_keep_a_per_arch_tag():
    now = CurrentTag("sha256:x", None, {}, (ODD,))
    assert decide_arch_tag(now, "x86_64", "sha256:n", compose_id=NEW).verdict is Verdict.PUBLISH


# -- carrying never mixes Docker schema2 and OCI manifests ---------------------------------------


def legacy(arches):
    """A Docker manifest list pushed by the old releng script: schema2 images, no annotations."""
    return CurrentTag("sha256:legacy", None, {a: entry(a, None, SCHEMA2) for a in arches})


def test_carry_forward_does_not_carry_a_schema2_image_into_an_oci_index():
    decision = decide(legacy(ALL), built(ALL - {"aarch64"}), compose_id=NEW, policy="carry-forward")
    assert decision.verdict is Verdict.HOLD
    assert decision.missing == {"aarch64"}
    assert decision.reason == (
        "cannot carry the schema2 aarch64 image into an OCI index "
        "(it would mix Docker and OCI manifests)"
    )


def test_several_schema2_images_are_named():
    decision = decide(legacy(ALL), built({"x86_64"}), compose_id=NEW, policy="carry-forward")
    assert decision.verdict is Verdict.HOLD
    assert "the schema2 aarch64, ppc64le, s390x images" in decision.reason


def test_a_dry_run_holds_too():
    decision = decide(legacy(ALL), dict.fromkeys(ALL - {"s390x"}), compose_id=NEW,
                      policy="carry-forward")  # fmt: skip
    assert decision.verdict is Verdict.HOLD
    assert "schema2 s390x" in decision.reason


@pytest.mark.parametrize("policy", ["strict", "carry-forward"])
def test_nothing_carried_means_a_fresh_oci_index_over_a_docker_list(policy):
    decision = decide(legacy({"x86_64", "aarch64"}), built(ALL), compose_id=NEW, policy=policy)
    assert decision.verdict is Verdict.PUBLISH
    document = json.loads(decision.index_body(NEW))
    assert {m["mediaType"] for m in document["manifests"]} == {OCI}
    assert {m["digest"] for m in document["manifests"]} == {e.digest for e in built(ALL).values()}


def test_dropping_the_schema2_arch_on_purpose_publishes_a_uniform_index():
    decision = decide(legacy(ALL), built(ALL - {"aarch64"}), compose_id=NEW,
                      policy="carry-forward", allow_drop={"aarch64"})  # fmt: skip
    assert decision.verdict is Verdict.RETIRE
    assert {e.media_type for e in decision.entries} == {OCI}


def test_only_a_schema2_image_that_would_be_carried_holds():
    mixed = CurrentTag(
        "sha256:mixed", None,
        {"x86_64": entry("x86_64", None, SCHEMA2), "aarch64": entry("aarch64", OLD)},
    )  # fmt: skip
    carry = decide(mixed, built({"x86_64"}), compose_id=NEW, policy="carry-forward")
    assert carry.verdict is Verdict.CARRY  # the schema2 x86_64 is replaced, not carried
    assert {e.media_type for e in carry.entries} == {OCI}
    held = decide(mixed, built({"aarch64"}), compose_id=NEW, policy="carry-forward")
    assert held.verdict is Verdict.HOLD
    assert "schema2 x86_64" in held.reason


def test_an_index_never_lists_a_schema2_image():
    with pytest.raises(ValueError, match="OCI"):
        build_index([entry("x86_64"), entry("aarch64", OLD, SCHEMA2)], compose_id=NEW)


# -- expected arches (the configured authority) ------------------------------------------------

THREE = frozenset({"x86_64", "aarch64", "ppc64le"})


@pytest.mark.parametrize("policy", ["strict", "carry-forward"])
@pytest.mark.parametrize(
    ("now", "compose", "drop", "verdict", "index", "missing", "retired"),
    [
        # first publish: held when an expected arch is missing
        (None, THREE - {"aarch64"}, set(), Verdict.HOLD, set(), {"aarch64"}, set()),
        (None, ALL, set(), Verdict.PUBLISH, THREE, set(), set()),
        # arches outside the list are dropped on purpose
        (ALL, ALL, set(), Verdict.RETIRE, THREE, set(), {"s390x"}),
        (THREE, ALL, set(), Verdict.PUBLISH, THREE, set(), set()),
        (THREE, THREE - {"ppc64le"}, set(), Verdict.HOLD, set(), {"ppc64le"}, set()),
        # --allow-drop lets an expected arch go once
        (THREE, THREE - {"ppc64le"}, {"ppc64le"}, Verdict.RETIRE, {"x86_64", "aarch64"}, set(),
         {"ppc64le"}),
        (None, {"x86_64"}, {"aarch64", "ppc64le"}, Verdict.PUBLISH, {"x86_64"}, set(), set()),
        # ... but an index never ends up empty
        (THREE, {"s390x"}, THREE, Verdict.HOLD, set(), THREE, set()),
    ],
)  # fmt: skip
def test_expected_arches(policy, now, compose, drop, verdict, index, missing, retired):
    decision = gate(now, compose, expected=THREE, allow_drop=drop, policy=policy)
    assert decision.verdict is verdict
    assert decision.missing == frozenset(missing)
    assert decision.retired == frozenset(retired)
    assert decision.index_arches == frozenset(index)
    assert decision.carried == frozenset()


def test_expected_reasons_name_the_arches():
    held = gate(None, {"x86_64"}, expected=THREE).reason
    assert held == "compose lacks aarch64, ppc64le, which expected_arches lists"
    assert "drops s390x (not in expected_arches)" in gate(ALL, ALL, expected=THREE).reason
    leaves = gate(None, ALL, expected=THREE).reason
    assert "leaves out s390x (not in expected_arches)" in leaves


# -- --allow-drop without expected arches -------------------------------------------------------


@pytest.mark.parametrize("policy", ["strict", "carry-forward"])
def test_allow_drop_retires_a_missing_arch_once(policy):
    decision = gate(ALL, ALL - {"aarch64"}, allow_drop={"aarch64"}, policy=policy)
    assert decision.verdict is Verdict.RETIRE
    assert decision.retired == {"aarch64"}
    assert decision.index_arches == ALL - {"aarch64"}
    assert "drops aarch64 (--allow-drop)" in decision.reason


def test_allow_drop_of_an_arch_the_compose_has_changes_nothing():
    assert gate(ALL, ALL, allow_drop={"aarch64"}).verdict is Verdict.PUBLISH


def test_allow_drop_does_not_cover_another_missing_arch():
    decision = gate(ALL, {"x86_64", "ppc64le"}, allow_drop={"aarch64"})
    assert decision.verdict is Verdict.HOLD
    assert decision.missing == {"s390x"}


# -- the rollback guard ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("holds", "compose", "stale"),
    [
        (NEWER, NEW, True),
        (OLD, NEW, False),
        (NEW, NEW, False),
        ("Fedora-41-20241026.1", NEW, True),  # respin
        ("Fedora-41-20241026.n.0", NEW, False),  # a nightly of the same day is older
        ("Fedora-40-20241030.0", NEW, False),  # another release: nothing to compare
        ("Fedora-Rawhide-20241030.n.0", "Fedora-Rawhide-20241029.n.0", True),
        (None, NEW, False),  # not written by this tool
        ("something-else", NEW, False),
    ],
)
def test_index_rollback_guard(holds, compose, stale):
    decision = decide(current(ALL, holds), built(ALL, compose), compose_id=compose)
    assert (decision.verdict is Verdict.STALE) == stale
    if stale:
        assert decision.holder == holds
        assert holds in decision.reason
        assert decision.entries == ()


def test_guard_looks_at_every_entry_not_only_the_index_annotation():
    now = CurrentTag("sha256:x", None, {"x86_64": entry("x86_64", NEWER), "s390x": entry("s390x")})
    assert guard(now, NEW) == NEWER
    assert decide(now, built(ALL), compose_id=NEW).verdict is Verdict.STALE


def test_guard_comes_before_the_gate():
    decision = decide(current(ALL, NEWER), built({"x86_64"}), compose_id=NEW)
    assert decision.verdict is Verdict.STALE


def test_force_overrides_the_guard_loudly():
    decision = decide(current(ALL, NEWER), built(ALL), compose_id=NEW, force=True)
    assert decision.verdict is Verdict.PUBLISH
    assert decision.forced
    assert f"--force: replaces {NEWER}" in decision.reason


def test_force_does_not_override_the_gate():
    decision = decide(current(ALL, NEWER), built({"x86_64"}), compose_id=NEW, force=True)
    assert decision.verdict is Verdict.HOLD


def test_a_stale_image_tag_keeps_the_index():
    decision = decide(current(ALL, OLD), built(ALL - {"s390x"}), compose_id=NEW,
                      stale={"s390x": NEWER})  # fmt: skip
    assert decision.verdict is Verdict.STALE
    assert decision.holder == NEWER
    assert "s390x image tag holds" in decision.reason


@pytest.mark.parametrize(
    ("holds", "digest", "verdict"),
    [
        (None, None, Verdict.PUBLISH),  # no tag yet
        (OLD, "sha256:new", Verdict.PUBLISH),
        (NEWER, "sha256:new", Verdict.STALE),
        ("unannotated", "sha256:new", Verdict.PUBLISH),
        (NEWER, "sha256:current", Verdict.UNCHANGED),  # already exactly this image
        (NEWER, None, Verdict.STALE),  # dry run
    ],
)
def test_per_arch_tags_only_see_the_guard(holds, digest, verdict):
    if holds is None:
        now = None
    elif holds == "unannotated":
        now = CurrentTag("sha256:current", None, {"x86_64": entry("x86_64", None)})
    else:
        now = current({"x86_64"}, holds)
    decision = decide_arch_tag(now, "x86_64", digest, compose_id=NEW)
    assert decision.verdict is verdict
    assert decision.compose_arches == {"x86_64"}


def test_per_arch_force():
    decision = decide_arch_tag(current({"x86_64"}, NEWER), "x86_64", "sha256:n", compose_id=NEW,
                               force=True)  # fmt: skip
    assert decision.verdict is Verdict.PUBLISH
    assert decision.forced
    assert NEWER in decision.reason
