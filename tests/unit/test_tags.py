import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fedora_container_sync.compose.metadata import ComposeFacts
from fedora_container_sync.config.settings import ComposeRules, Releases
from fedora_container_sync.errors import ComposeError, ReleaseLookupError
from fedora_container_sync.gate.tags import (
    merge_releases,
    needs_lookup,
    plan_tags,
    release_number,
    releases_from_bodhi,
    tags_for,
)

RELEASES = Releases(latest=41, rawhide=43)


@pytest.mark.parametrize(
    ("version", "release", "index_tags"),
    [
        ("41", 41, ("41", "latest")),
        ("40", 40, ("40",)),
        ("42", 42, ("42",)),  # Branched: not latest yet
        ("Rawhide", 43, ("43", "rawhide")),
        ("rawhide", 43, ("43", "rawhide")),
    ],
)
def test_index_tags(version, release, index_tags):
    tags = tags_for(version, RELEASES, compose_id="c")
    assert tags.release == release
    assert tags.index_tags == index_tags


@pytest.mark.parametrize(
    ("arch", "tag"),
    [
        ("x86_64", "41-x86_64"),
        ("aarch64", "41-aarch64"),
        ("ppc64le", "41-ppc64le"),
        ("s390x", "41-s390x"),
    ],
)
def test_per_arch_tags_use_fedora_arch_names(arch, tag):
    assert tags_for("41", RELEASES, compose_id="c").arch_tag(arch) == tag


def test_rawhide_without_configured_number_is_an_error():
    with pytest.raises(ComposeError, match=r"releases\.rawhide"):
        tags_for("Rawhide", Releases(latest=41), compose_id="Fedora-Rawhide-20230502.n.0")


def test_no_latest_configured_means_no_latest_tag():
    assert tags_for("41", Releases(), compose_id="c").index_tags == ("41",)


@pytest.mark.parametrize("version", ["Bikeshed", "", "41.1", "-1"])
def test_unknown_release_version(version):
    with pytest.raises(ComposeError, match=r"neither a release number .* nor Rawhide"):
        tags_for(version, RELEASES, compose_id="c")


# -- release versions that look like numbers ----------------------------------------------------

#: What "a release number" means here, written without regular expressions.
ASCII_DIGITS = "0123456789"


def is_release_number(version: str) -> bool:
    return (
        1 <= len(version) <= 4
        and all(character in ASCII_DIGITS for character in version)
        and version[0] != "0"
    )


def is_rawhide(version: str) -> bool:
    return version.isascii() and version.lower() == "rawhide"


def _variants_of_41() -> st.SearchStrategy[str]:
    """Strings int() or isdigit() take for a number, around the real ones."""
    unicode_digits = st.characters(categories=["Nd", "No"])
    return st.one_of(
        st.text(unicode_digits, min_size=1, max_size=6),
        st.from_regex(r"\A[ \t\n+\-_0]{0,2}[0-9]{1,6}[ \t\n_]{0,2}\Z", fullmatch=True),
        st.builds(lambda n: "9" * n, st.integers(min_value=5, max_value=6000)),
        st.sampled_from(["RAWHIDE", "Rawhide ", "raw\u0131de", "Rawhide\n", "\u0661\u0664"]),
    )


@given(st.one_of(st.text(max_size=12), _variants_of_41()))
@settings(max_examples=400)
def test_only_short_ascii_numbers_and_rawhide_are_release_versions(version):
    if is_release_number(version):
        assert release_number(version, compose_id="c") == int(version)
        assert tags_for(version, RELEASES, compose_id="c").release == int(version)
    elif is_rawhide(version):
        assert release_number(version, compose_id="c") is None
        assert tags_for(version, RELEASES, compose_id="c").release == RELEASES.rawhide
    else:
        for refuse in (
            lambda: release_number(version, compose_id="Fedora-41-20241025.0"),
            lambda: tags_for(version, RELEASES, compose_id="Fedora-41-20241025.0"),
            lambda: needs_lookup(version, Releases(), compose_id="Fedora-41-20241025.0"),
        ):
            with pytest.raises(ComposeError) as refused:
                refuse()
            line = str(refused.value)
            assert line.startswith("Fedora-41-20241025.0: release version ")
            assert "\n" not in line and len(line) < 200


@pytest.mark.parametrize(
    "version",
    [
        "²",
        "\u0664\u0661",
        "\uff14\uff11",
        "\u096a\u0967",
        "041",
        "0",
        "1_0",
        " 41",
        "41\n",
        "+41",
        "10000",
    ],
)
def test_numbers_python_would_read_are_refused(version):
    with pytest.raises(ComposeError, match="neither a release number"):
        tags_for(version, RELEASES, compose_id="c")


@pytest.mark.parametrize("version", ["\u0664\u0661", "\u00b2", "0041", "1" * 5000])
def test_bodhi_numbers_that_are_not_ascii_are_refused(version):
    releases = [
        {"id_prefix": "FEDORA", "version": "41", "state": "current"},
        {"id_prefix": "FEDORA", "version": version, "state": "pending"},
    ]
    with pytest.raises(ReleaseLookupError, match="is not a release number"):
        releases_from_bodhi(releases, source="bodhi")


# -- release numbers from Bodhi ----------------------------------------------------------------

RECORDED = Path(__file__).parents[1] / "fixtures" / "bodhi" / "releases-f42-branched.json"


def test_releases_from_the_recorded_bodhi_answer():
    releases = json.loads(RECORDED.read_text())["releases"]
    assert releases_from_bodhi(releases, source="bodhi") == Releases(latest=41, rawhide=43)


def test_rawhide_is_the_highest_release_even_when_branch_names_lag():
    releases = [
        {"id_prefix": "FEDORA", "version": "40", "state": "current", "branch": "f40"},
        {"id_prefix": "FEDORA", "version": "41", "state": "pending", "branch": "rawhide"},
        {"id_prefix": "FEDORA", "version": "42", "state": "pending", "branch": "f42"},
        {"id_prefix": "FEDORA-EPEL", "version": "10", "state": "current", "branch": "epel10"},
        {"id_prefix": "FEDORA", "version": "39", "state": "archived", "branch": "f39"},
    ]
    assert releases_from_bodhi(releases, source="b") == Releases(latest=40, rawhide=42)


@pytest.mark.parametrize(
    "releases",
    [
        [],
        [{"id_prefix": "FEDORA", "version": "43", "state": "pending"}],
        [{"id_prefix": "FEDORA", "version": "41", "state": "current"}],
        [{"id_prefix": "FEDORA-EPEL", "version": "9", "state": "current"}],
    ],
)
def test_unusable_bodhi_answers(releases):
    with pytest.raises(ReleaseLookupError, match=r"^bodhi x: lists no"):
        releases_from_bodhi(releases, source="bodhi x")


@pytest.mark.parametrize(
    ("version", "static", "needed"),
    [
        ("41", Releases(latest=41, rawhide=43), False),
        ("41", Releases(rawhide=43), True),
        ("Rawhide", Releases(latest=41), True),
        ("Rawhide", Releases(rawhide=43), False),
        ("41", Releases(latest=40), False),
    ],
)
def test_lookup_only_when_a_needed_number_is_missing(version, static, needed):
    assert needs_lookup(version, static, compose_id="c") is needed


def test_static_numbers_win_over_the_lookup():
    merged = merge_releases(Releases(latest=40), Releases(latest=41, rawhide=43))
    assert merged == Releases(latest=40, rawhide=43)


# -- which composes may move which tags --------------------------------------------------------

RULES = ComposeRules()


def facts(compose_id="Fedora-41-20241025.0", *, short="Fedora", version="41",
          type_="production", label=None):  # fmt: skip
    return ComposeFacts(compose_id, short, version, type_, label)


@pytest.mark.parametrize(
    ("compose", "index_tags", "note"),
    [
        (facts(), ("41", "latest"), None),
        (facts(type_="nightly"), ("41", "latest"), None),
        (facts(version="Rawhide", type_="nightly"), ("43", "rawhide"), None),
        (facts(version="42", type_="nightly"), ("42",), None),
        # pre-release candidates: never latest
        (facts(label="RC-1.2"), ("41",), "latest not moved: pre-release candidate (label RC-1.2)"),
        (facts(label="Beta-1.1"), ("41",), "latest not moved"),
        (facts(version="42", label="Beta-1.3"), ("42",), None),
        # IoT's routine production composes carry RC-<date> labels: not candidates
        (facts(short="Fedora-IoT", label="RC-20250101.0"), ("41", "latest"), None),
        # composes that publish nothing
        (facts(short="Fedora-Cloud"), None, "release Fedora-Cloud is not in"),
        (facts(type_="test"), None, "compose type test is not in"),
        (facts(type_="ci"), None, "compose type ci is not in"),
    ],
)
def test_plan_tags(compose, index_tags, note):
    tags, notes = plan_tags(compose, RELEASES, RULES)
    assert (tags.index_tags if tags else None) == index_tags
    if note is None:
        assert notes == []
    else:
        assert len(notes) == 1 and notes[0].startswith(note)


def test_candidates_can_be_kept_off_every_tag():
    rules = ComposeRules(candidates_move_version=False)
    tags, notes = plan_tags(facts(version="42", label="Beta-1.3"), RELEASES, rules)
    assert tags is None
    assert "candidates_move_version is false" in notes[0]


def test_candidate_pattern_is_configurable():
    rules = ComposeRules(candidate_label=r"^RC-")
    tags, _ = plan_tags(facts(short="Fedora", label="RC-20250101.0"), RELEASES, rules)
    assert tags is not None and tags.index_tags == ("41",)
    tags, _ = plan_tags(facts(label="Beta-1.1"), RELEASES, rules)
    assert tags is not None and tags.index_tags == ("41", "latest")
