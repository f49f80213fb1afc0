import pytest

from fedora_container_sync.oci.platforms import Platform, fedora_arch, platform_for, sorted_arches


@pytest.mark.parametrize(
    ("arch", "platform"),
    [
        ("x86_64", Platform("amd64")),
        ("aarch64", Platform("arm64", variant="v8")),
        ("ppc64le", Platform("ppc64le")),
        ("s390x", Platform("s390x")),
    ],
)
def test_round_trip(arch, platform):
    assert platform_for(arch) == platform
    assert fedora_arch(platform.architecture, platform.os, platform.variant) == arch


def test_arm64_without_variant_is_aarch64():
    assert fedora_arch("arm64", "linux", None) == "aarch64"


@pytest.mark.parametrize(
    ("args", "name"),
    [(("arm", "linux", "v5"), "linux/arm/v5"), (("amd64", "windows", None), "windows/amd64")],
)
def test_unknown_platforms_never_look_like_fedora_arches(args, name):
    assert fedora_arch(*args) == name


def test_conventional_order():
    assert sorted_arches({"s390x", "x86_64", "ppc64le", "aarch64", "zz"}) == [
        "x86_64",
        "aarch64",
        "ppc64le",
        "s390x",
        "zz",
    ]
