"""The strict gate, as a table: current arches x compose arches → verdict."""

import pytest

from fedora_container_sync.gate import Verdict, decide

ALL = {"x86_64", "aarch64", "ppc64le", "s390x"}


@pytest.mark.parametrize(
    ("current", "compose", "verdict", "missing"),
    [
        (None, ALL, Verdict.PUBLISH, set()),
        (None, {"x86_64"}, Verdict.PUBLISH, set()),
        (ALL, ALL, Verdict.PUBLISH, set()),
        (ALL, ALL - {"aarch64"}, Verdict.HOLD, {"aarch64"}),
        (ALL, {"x86_64"}, Verdict.HOLD, {"aarch64", "ppc64le", "s390x"}),
        ({"x86_64", "aarch64"}, ALL, Verdict.PUBLISH, set()),
        ({"x86_64", "linux/arm/v5"}, ALL, Verdict.HOLD, {"linux/arm/v5"}),
        (ALL, set(), Verdict.HOLD, ALL),
        (None, set(), Verdict.HOLD, set()),
        (set(), {"x86_64"}, Verdict.PUBLISH, set()),
    ],
)
def test_strict_gate(current, compose, verdict, missing):
    decision = decide(current, compose)
    assert decision.verdict is verdict
    assert decision.missing == frozenset(missing)
    assert decision.moves_tag == (verdict is Verdict.PUBLISH)


def test_hold_reason_names_the_missing_arch():
    decision = decide(ALL, ALL - {"aarch64"})
    assert "aarch64" in decision.reason
    assert "x86_64" not in decision.reason


def test_same_digest_is_unchanged_not_republished():
    decision = decide(ALL, ALL, current_digest="sha256:a", new_digest="sha256:a")
    assert decision.verdict is Verdict.UNCHANGED
    assert not decision.moves_tag


def test_same_digest_never_overrides_a_hold():
    decision = decide(ALL, {"x86_64"}, current_digest="sha256:a", new_digest="sha256:a")
    assert decision.verdict is Verdict.HOLD


def test_added_arch_is_named():
    decision = decide({"x86_64"}, {"x86_64", "s390x"})
    assert decision.verdict is Verdict.PUBLISH
    assert "adds s390x" in decision.reason


def test_unknown_policy_is_refused():
    with pytest.raises(ValueError, match="policy"):
        decide(ALL, ALL, policy="yolo")


@pytest.mark.parametrize("current", [None, ALL, {"x86_64"}])
def test_an_arch_that_failed_in_this_run_always_holds(current):
    decision = decide(current, ALL - {"aarch64"}, failed_arches={"aarch64"})
    assert decision.verdict is Verdict.HOLD
    assert decision.missing == {"aarch64"}
    assert "aarch64 failed" in decision.reason
