"""An image's platform is its config's (issue 20, class 2): the pure readers. Pure."""

from __future__ import annotations

import json

import pytest

from fedora_container_sync.oci.index import IndexEntry, entry_contradiction, image_arch
from fedora_container_sync.oci.manifest import ARCH, Manifest, digest_of

OLD = "Fedora-41-20241025.0"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"


def _image(annotations: dict[str, str]) -> Manifest:
    config = {"digest": "sha256:" + "1" * 64, "size": 2, "mediaType": "x"}
    document = {"schemaVersion": 2, "mediaType": OCI_MANIFEST, "annotations": annotations}
    document["config"] = config
    body = json.dumps(document).encode()
    return Manifest(OCI_MANIFEST, digest_of(body), body)


@pytest.mark.parametrize(
    ("annotations", "config", "expected"),
    [
        ({ARCH: "aarch64"}, {"architecture": "amd64", "os": "linux"}, "is annotated aarch64 but"),
        ({}, {"architecture": "amd64", "os": "linux"}, "x86_64"),
        ({ARCH: "x86_64"}, {"architecture": "amd64", "os": "linux"}, "x86_64"),
        ({ARCH: "aarch64"}, {"architecture": "arm64", "os": "linux", "variant": "v7"}, "no Fedora"),
        ({ARCH: "x86_64"}, {"architecture": "amd64", "os": "windows"}, "no Fedora arch"),
        ({ARCH: "x86_64\x1b[2J"}, {"architecture": "amd64", "os": "linux"}, "annotated x86_64?[2J"),
    ],
)
def test_a_single_image_s_arch_is_its_config_s(annotations, config, expected):
    arch = image_arch(_image(annotations), json.dumps(config).encode())
    assert expected in (arch if isinstance(arch, str) else str(arch))


def test_an_entry_is_checked_against_its_image():
    entry = IndexEntry("aarch64", OCI_MANIFEST, "sha256:" + "2" * 64, 10, OLD)
    child = _image({})
    arm = json.dumps({"architecture": "arm64", "os": "linux", "variant": "v8"}).encode()
    amd = json.dumps({"architecture": "amd64", "os": "linux"}).encode()
    assert entry_contradiction(entry, child, arm) is None
    assert "config says x86_64" in str(entry_contradiction(entry, child, amd))
    assert "lacks" in str(entry_contradiction(entry, None, None))
    assert "unreadable config" in str(entry_contradiction(entry, child, b"\xff"))
