"""An image's platform comes from its config blob, never from what annotations or an index entry
claim (issue 20, class 2): a per-arch tag whose annotations claim this compose's aarch64 build
but whose config says amd64 is not the aarch64 entry of the new index, and an entry of the index
a tag holds whose image's config contradicts its platform is not carried forward (the tag is
held). Against the real registry, skopeo and compose server on 127.0.0.1."""

from __future__ import annotations

import json
from typing import Any

import pytest

from fedora_container_sync.oci.manifest import ARCH, COMPOSE_ID, IMAGE_SHA256, digest_of
from support.harness import ARCHES, Harness, report_rows

pytestmark = pytest.mark.integration

TOOLBOX = "fedora-toolbox"
OLD = "Fedora-41-20241025.0"
NEW = "Fedora-41-20241026.0"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"


def put(harness: Harness, tag: str, media_type: str, document: dict[str, Any]) -> str:
    body = json.dumps(document).encode()
    with harness.registries[0].client() as client:
        answer = client.put(
            f"/v2/{harness.repo(TOOLBOX)}/manifests/{tag}",
            content=body,
            headers={"Content-Type": media_type},
        )
    assert answer.status_code == 201, answer.text
    return digest_of(body)


def manifest(harness: Harness, ref: str) -> dict[str, Any]:
    found = harness.registries[0].get_manifest(harness.repo(TOOLBOX), ref)
    assert found is not None
    return json.loads(found[2])


def config_arch_at(harness: Harness, ref: str) -> str:
    return harness.registries[0].image_config(harness.repo(TOOLBOX), ref)["architecture"]


def test_an_arch_tag_whose_annotations_lie_is_not_taken_as_that_arch(harness):
    body = harness.compose(OLD)
    assert harness.replay(body).code == 0
    real_aarch64 = manifest(harness, "41-aarch64")
    # 41-aarch64 now holds the x86_64 image, annotated as this compose's aarch64 build.
    lie = manifest(harness, "41-x86_64")
    lie["annotations"] = {**lie["annotations"], **{
        ARCH: "aarch64", IMAGE_SHA256: real_aarch64["annotations"][IMAGE_SHA256],
    }}  # fmt: skip
    lying = put(harness, "41-aarch64", OCI_MANIFEST, lie)
    # ... and the index tags no longer hold this compose, so they are written again.
    held = put(harness, "41", OCI_MANIFEST, manifest(harness, "41-x86_64"))

    result = harness.replay(body)

    # The lying image is the aarch64 entry of no index: 41 is held over it, and says why.
    assert harness.digest(TOOLBOX, "41") == held, result.out
    rows = report_rows(result.out)
    assert rows["41"][0] == "hold", result.out
    assert f"aarch64 entry {lying[:19]}" in rows["41"][3]
    assert "config says x86_64" in rows["41"][3]
    latest = manifest(harness, "latest")
    assert lying not in {entry["digest"] for entry in latest["manifests"]}
    for entry in latest["manifests"]:
        assert config_arch_at(harness, entry["digest"]) == entry["platform"]["architecture"]
    assert result.code == 3, result.err


def test_an_index_entry_whose_image_says_another_arch_is_not_carried(harness):
    harness.extra_config = 'gate_policy = "carry-forward"'
    assert harness.replay(harness.compose(OLD)).code == 0
    index = manifest(harness, "41")
    # The aarch64 entry (platform arm64/v8, annotations and all) now points at x86_64's image.
    found = harness.registries[0].get_manifest(harness.repo(TOOLBOX), "41-x86_64")
    assert found is not None
    (wrong,) = [e for e in index["manifests"] if e["annotations"][ARCH] == "aarch64"]
    wrong["digest"], wrong["size"] = found[1], len(found[2])
    before = put(harness, "41", OCI_INDEX, index)

    without_aarch64 = tuple(a for a in ARCHES if a != "aarch64")
    result = harness.replay(harness.compose(NEW, arches=without_aarch64))

    assert harness.digest(TOOLBOX, "41") == before, result.out
    rows = report_rows(result.out)
    assert rows["41"][0] == "hold", result.out
    assert "aarch64 entry" in rows["41"][3] and "config says x86_64" in rows["41"][3]
    assert result.code == 3, result.err
    # the per-arch tags of the arches that built still move
    assert manifest(harness, "41-x86_64")["annotations"][COMPOSE_ID] == NEW
