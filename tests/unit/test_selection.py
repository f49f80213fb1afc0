"""Image selection against the real images.json of Fedora-Rawhide-20230502.n.0."""

from types import SimpleNamespace

import pytest
from productmd.images import Images

from fedora_container_sync.compose.selection import check_relative_path, select_images
from fedora_container_sync.errors import ComposeError
from support.compose import RAWHIDE_METADATA

REAL_IMAGES = RAWHIDE_METADATA / "images.json"
REPOS = {
    "Container_Base": "fedora",
    "Container_Minimal_Base": "fedora-minimal",
    "Container_Toolbox": "fedora-toolbox",
}


@pytest.fixture(scope="module")
def real_images():
    if not REAL_IMAGES.exists():
        pytest.fail(f"real compose metadata missing at {REAL_IMAGES}")
    images = Images()
    images.load(str(REAL_IMAGES))
    return images.images


def test_selects_the_twelve_container_images_of_the_real_compose(real_images):
    chosen = select_images(real_images, REPOS, compose_id="Fedora-Rawhide-20230502.n.0")
    assert len(chosen) == 12
    assert {(a.repository, a.arch) for a in chosen} == {
        (repo, arch)
        for repo in REPOS.values()
        for arch in ("x86_64", "aarch64", "ppc64le", "s390x")
    }
    base_x86 = next(a for a in chosen if a.repository == "fedora" and a.arch == "x86_64")
    assert base_x86.path == (
        "Container/x86_64/images/Fedora-Container-Base-Rawhide-20230502.n.0.x86_64.tar.xz"
    )
    assert base_x86.type == "docker"
    assert base_x86.format == "tar.xz"
    assert len(base_x86.sha256) == 64
    # Sorted by repository, then the conventional arch order.
    assert [a.arch for a in chosen[:4]] == ["x86_64", "aarch64", "ppc64le", "s390x"]


def test_only_configured_subvariants(real_images):
    chosen = select_images(real_images, {"Container_Toolbox": "fedora-toolbox"}, compose_id="c")
    assert {a.repository for a in chosen} == {"fedora-toolbox"}
    assert len(chosen) == 4


def image(**overrides):
    values = {
        "path": "Container/x86_64/images/x.tar.xz",
        "size": 10,
        "checksums": {"sha256": "a" * 64},
        "type": "docker",
        "format": "tar.xz",
        "arch": "x86_64",
        "subvariant": "Container_Base",
    }
    values.update(overrides)
    return SimpleNamespace(**values)


@pytest.mark.parametrize("kind", ["docker", "container", "ociarchive", "bootable-container"])
def test_all_container_types_are_selected(kind):
    chosen = select_images({"Container": {"x86_64": [image(type=kind)]}}, REPOS, compose_id="c")
    assert [a.type for a in chosen] == [kind]


@pytest.mark.parametrize("kind", ["qcow2", "raw-xz", "iso", "vagrant-libvirt"])
def test_other_types_are_ignored(kind):
    assert select_images({"Cloud": {"x86_64": [image(type=kind)]}}, REPOS, compose_id="c") == []


def test_same_file_in_two_variants_is_one_image():
    images = {"Container": {"x86_64": [image()]}, "Labs": {"x86_64": [image()]}}
    assert len(select_images(images, REPOS, compose_id="c")) == 1


def test_two_different_files_for_one_repository_arch_are_refused():
    images = {
        "Container": {"x86_64": [image()]},
        "Labs": {
            "x86_64": [image(path="Labs/x86_64/images/y.tar.xz", checksums={"sha256": "b" * 64})]
        },
    }
    with pytest.raises(ComposeError, match="two different fedora images for x86_64"):
        select_images(images, REPOS, compose_id="c")


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"checksums": {}}, "sha256"),
        ({"checksums": {"sha256": "xyz"}}, "sha256"),
        ({"size": 0}, "size"),
        ({"path": "../../etc/passwd"}, "escapes"),
        ({"path": "/etc/passwd"}, "escapes"),
        ({"path": "https://evil.example/x.tar.xz"}, "escapes"),
    ],
)
def test_bad_image_entries_are_compose_errors(overrides, message):
    with pytest.raises(ComposeError, match=message):
        select_images({"Container": {"x86_64": [image(**overrides)]}}, REPOS, compose_id="c")


@pytest.mark.parametrize(
    "path",
    [
        "a/../b",
        "a//b",
        "./a",
        "a/./b",
        "a\\b",
        "",
        "a/b/\x00",
        "a/",
        # encoded, as the compose server decodes them
        "Container/%2e%2e/%2e%2e/%2e%2e/elsewhere/x.tar.xz",
        "Container/.%2E/x.tar.xz",
        "Container/%252e%252e/x.tar.xz",
        "Container%2f..%2f..%2fx.tar.xz",
        "Container%5c..%5cx.tar.xz",
        "Container/..;/x.tar.xz",
        "Container/x.tar.xz;.json",
        "Container/x.tar.xz?y",
        "Container/x.tar.xz#y",
        "Container/%00.tar.xz",
        "Container/\uff0e\uff0e/x.tar.xz",
        "Container/.../x.tar.xz",
    ],
)
def test_path_checks(path):
    with pytest.raises(ComposeError, match=r"^x: path (is empty|escapes the compose directory)"):
        check_relative_path(path, where="x")
