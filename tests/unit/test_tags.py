import pytest

from fedora_container_sync.errors import ComposeError
from fedora_container_sync.settings import Releases
from fedora_container_sync.tags import tags_for

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
    with pytest.raises(ComposeError, match="neither a number nor Rawhide"):
        tags_for(version, RELEASES, compose_id="c")
