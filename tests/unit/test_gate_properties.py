"""Properties of the gate and the rollback guard over random histories (hypothesis).

An in-memory model of one registry repository - per-arch tags and index tags, each holding
what the real registry would hold - is driven by random sequences of composes with random
arch failures (an arch missing from the compose, or its push failing) and random replays of
old composes, through the same decisions, in the same order, as ``publish.py``: per-arch tags
first (rollback guard only), then every index tag (guard, then gate). The oracle knows the
order of composes by construction, not from ``ordering.py``.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass, field

from hypothesis import given, settings
from hypothesis import strategies as st

from fedora_container_sync.gate import CurrentTag, Verdict, decide, decide_arch_tag
from fedora_container_sync.manifests import IndexEntry, digest_of

ARCHES = ("x86_64", "aarch64", "ppc64le", "s390x")
INDEX_TAGS = ("41", "latest")
OCI = "application/vnd.oci.image.manifest.v1+json"
START = datetime.date(2024, 10, 1)


@dataclass(frozen=True)
class Compose:
    seq: int  # the oracle's order: a higher seq is a newer compose
    compose_id: str
    arches: frozenset[str]  # what the compose built (the rest failed in the compose)


@dataclass
class Repository:
    """The registry, as far as one repository goes: tag → what it holds."""

    arch_tags: dict[str, CurrentTag] = field(default_factory=dict)
    index_tags: dict[str, CurrentTag] = field(default_factory=dict)


def image(compose: Compose, arch: str) -> IndexEntry:
    digest = digest_of(f"{compose.compose_id}/{arch}".encode())
    return IndexEntry(arch, OCI, digest, 1000, compose.compose_id)


def run(
    repo: Repository,
    compose: Compose,
    push_failures: frozenset[str],
    *,
    policy: str,
    expected: frozenset[str] | None = None,
    allow_drop: frozenset[str] = frozenset(),
) -> None:
    """One compose through the decisions publish.py makes, applied to the model."""
    entries: dict[str, IndexEntry | None] = {}
    stale: dict[str, str] = {}
    for arch in sorted(compose.arches):
        if arch in push_failures:
            continue  # skopeo failed: the tag is untouched, the arch is "failed"
        built = image(compose, arch)
        tag = f"41-{arch}"
        decision = decide_arch_tag(
            repo.arch_tags.get(tag), arch, built.digest, compose_id=compose.compose_id
        )
        if decision.verdict is Verdict.STALE:
            stale[arch] = decision.holder or ""
            continue
        repo.arch_tags[tag] = CurrentTag(built.digest, compose.compose_id, {arch: built})
        entries[arch] = built
    failed = set(compose.arches) - entries.keys() - stale.keys()
    for tag in INDEX_TAGS:
        decision = decide(
            repo.index_tags.get(tag),
            entries,
            compose_id=compose.compose_id,
            policy=policy,
            expected=expected,
            failed=failed,
            stale=stale,
            allow_drop=allow_drop,
        )
        if decision.moves_tag:
            body = decision.index_body(compose.compose_id)
            held = {entry.arch: entry for entry in decision.entries}
            repo.index_tags[tag] = CurrentTag(digest_of(body), compose.compose_id, held)


arch_sets = st.frozensets(st.sampled_from(ARCHES))
new_compose = st.tuples(
    st.just("new"),
    st.booleans(),  # a respin of the previous day rather than a new day
    arch_sets.filter(bool),  # what the compose built
    arch_sets,  # pushes that fail in this run
    st.one_of(*[st.just(frozenset())] * 5, arch_sets),  # --allow-drop, now and then
)
replay = st.tuples(st.just("replay"), st.integers(min_value=0), arch_sets)
histories = st.lists(st.one_of(new_compose, new_compose, replay), min_size=1, max_size=30)


def composes(steps):
    """Turn generated steps into (compose, push failures, allow_drop) runs."""
    made: list[Compose] = []
    day, respin = 0, 0
    for step in steps:
        if step[0] == "replay" and made:
            yield made[step[1] % len(made)], step[2], frozenset()
            continue
        if step[0] == "replay":
            continue
        _, is_respin, arches, failures, allow_drop = step
        if is_respin and made:
            respin += 1
        else:
            day, respin = day + 1, 0
        date = (START + datetime.timedelta(days=day)).strftime("%Y%m%d")
        compose = Compose(len(made), f"Fedora-41-{date}.{respin}", arches)
        made.append(compose)
        yield compose, failures, allow_drop


def seq_of(held: CurrentTag, by_id: dict[str, int]) -> int:
    return by_id[held.compose_id or ""]


def check_history(steps, policy, expected=None):
    repo = Repository()
    by_id: dict[str, int] = {}
    must_list: dict[str, frozenset[str]] = {}  # index tag → arches published and not retired
    for compose, failures, allow_drop in composes(steps):
        by_id[compose.compose_id] = compose.seq
        before_index = dict(repo.index_tags)
        before_arch = dict(repo.arch_tags)
        newest = max(by_id.values())
        run(repo, compose, failures, policy=policy, expected=expected, allow_drop=allow_drop)

        # No tag ever moves to an older compose.
        for tag, held in [*repo.index_tags.items(), *repo.arch_tags.items()]:
            previous = before_index.get(tag) or before_arch.get(tag)
            if previous is not None and previous.digest != held.digest:
                assert seq_of(held, by_id) >= seq_of(previous, by_id), (tag, compose)
        for tag, held in repo.index_tags.items():
            for entry in held.entries.values():  # every entry is the image its compose built
                assert entry == image(Compose(0, entry.compose_id or "", frozenset()), entry.arch)

            if expected is not None:
                # The configured list is the authority: nothing else, nothing less.
                if held.digest != (before_index.get(tag) or held).digest or tag not in before_index:
                    assert held.arches <= expected
                    assert expected - allow_drop <= held.arches
                continue
            # No index tag loses an arch that was not retired (--allow-drop) on purpose.
            retired_now = allow_drop
            assert must_list.get(tag, frozenset()) - retired_now <= held.arches, (tag, compose)
            must_list[tag] = held.arches
            if policy == "carry-forward" and compose.seq == newest and not failures:
                # ...and a complete, newest run always moves the tag (carrying what is missing).
                assert held.compose_id == compose.compose_id, (tag, compose)


@settings(max_examples=300, deadline=None)
@given(histories)
def test_strict_never_loses_an_arch_and_never_rolls_back(steps):
    check_history(steps, "strict")


@settings(max_examples=300, deadline=None)
@given(histories)
def test_carry_forward_keeps_every_arch_ever_published(steps):
    check_history(steps, "carry-forward")


@settings(max_examples=150, deadline=None)
@given(histories, st.sampled_from(["strict", "carry-forward"]), arch_sets.filter(bool))
def test_expected_arches_are_the_authority(steps, policy, expected):
    check_history(steps, policy, expected)
