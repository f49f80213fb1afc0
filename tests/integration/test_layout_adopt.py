"""An unpacked OCI archive becomes the layout without a second copy when skopeo's conversion
would change nothing - with the very manifest skopeo's conversion gives - and only then."""

from __future__ import annotations

import gzip
import hashlib
import json
import subprocess
from pathlib import Path

import pytest

from fedora_container_sync.compose.archive import unpack_oci_archive
from fedora_container_sync.registry.layout import adopt_unpacked, read_layout
from support.images import build_image_archive

pytestmark = pytest.mark.integration


def archive(tmp_path: Path) -> Path:
    return build_image_archive(
        tmp_path / "image.tar", arch="aarch64", fmt="oci", build_id="adopt", compression="none"
    )


def unpack(tar: Path, dest: Path) -> None:
    unpack_oci_archive(tar, dest, where="x")


def test_the_adopted_layout_is_the_one_skopeo_would_write(tmp_path):
    tar = archive(tmp_path)
    unpacked, layout = tmp_path / "unpacked", tmp_path / "layout"
    unpack(tar, unpacked)
    assert adopt_unpacked(unpacked, layout)
    assert not unpacked.exists()
    converted = tmp_path / "converted"
    subprocess.run(
        ["skopeo", "--insecure-policy", "copy", "--quiet", f"oci-archive:{tar}",
         f"oci:{converted}:image"],
        check=True, capture_output=True,
    )  # fmt: skip
    ours, skopeos = read_layout(layout, where="x"), read_layout(converted, where="x")
    assert ours == skopeos
    # skopeo reads it by the name skopeo would have given it
    inspected = subprocess.run(
        ["skopeo", "inspect", "--raw", f"oci:{layout}:image"],
        check=True, capture_output=True,
    ).stdout  # fmt: skip
    assert "sha256:" + hashlib.sha256(inspected).hexdigest() == ours.digest


def test_a_config_that_does_not_match_its_digest_is_not_adopted(tmp_path):
    unpacked = tmp_path / "unpacked"
    unpack(archive(tmp_path), unpacked)
    manifest = json.loads((unpacked / "index.json").read_text())["manifests"][0]["digest"]
    body = json.loads((unpacked / "blobs/sha256" / manifest.removeprefix("sha256:")).read_text())
    config = unpacked / "blobs/sha256" / body["config"]["digest"].removeprefix("sha256:")
    text = config.read_bytes()
    config.write_bytes(text.replace(b"linux", b"LINUX"))
    assert config.read_bytes() != text and len(config.read_bytes()) == len(text)
    assert adopt_unpacked(unpacked, tmp_path / "ok") is False
    assert unpacked.exists() and not (tmp_path / "ok").exists()


def rewrite_manifest(unpacked: Path, change) -> str:  # type: ignore[no-untyped-def]
    index = json.loads((unpacked / "index.json").read_text())
    old = index["manifests"][0]["digest"]
    body = json.loads((unpacked / "blobs/sha256" / old.removeprefix("sha256:")).read_text())
    change(body)
    data = json.dumps(body).encode()
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    (unpacked / "blobs/sha256" / digest.removeprefix("sha256:")).write_bytes(data)
    index["manifests"][0].update(digest=digest, size=len(data))
    (unpacked / "index.json").write_text(json.dumps(index))
    return digest


@pytest.mark.parametrize(
    "change",
    [
        lambda m: m["layers"][0].update(mediaType="application/vnd.oci.image.layer.v1.tar"),
        lambda m: m["layers"][0].update(urls=["https://example.com/layer"]),
        lambda m: m.update(mediaType="application/vnd.docker.distribution.manifest.v2+json"),
        lambda m: m["config"].update(mediaType="application/vnd.docker.container.image.v1+json"),
        lambda m: m["layers"][0].update(size=m["layers"][0]["size"] + 1),
    ],
    ids=["uncompressed layer", "foreign urls", "docker manifest", "docker config", "wrong size"],
)
def test_what_skopeo_would_change_is_left_to_skopeo(tmp_path, change):
    unpacked = tmp_path / "unpacked"
    unpack(archive(tmp_path), unpacked)
    rewrite_manifest(unpacked, change)
    assert adopt_unpacked(unpacked, tmp_path / "layout") is False
    assert unpacked.exists() and not (tmp_path / "layout").exists()


def test_two_images_in_one_archive_are_left_to_skopeo(tmp_path):
    unpacked = tmp_path / "unpacked"
    unpack(archive(tmp_path), unpacked)
    index = json.loads((unpacked / "index.json").read_text())
    index["manifests"].append(dict(index["manifests"][0]))
    (unpacked / "index.json").write_text(json.dumps(index))
    assert adopt_unpacked(unpacked, tmp_path / "layout") is False


def test_consuming_the_tar_gives_its_space_back_and_unpacks_the_same(tmp_path):
    payload = 48 << 20
    tar = build_image_archive(
        tmp_path / "big.tar", arch="x86_64", fmt="oci", build_id="big", compression="none",
        payload_size=payload,
    )  # fmt: skip
    before = tar.stat().st_blocks * 512
    unpack_oci_archive(tar, tmp_path / "unpacked", where="x", consume=True)
    after = tar.stat().st_blocks * 512
    assert after < before - payload // 2, (before, after)
    layer = max((tmp_path / "unpacked/blobs/sha256").iterdir(), key=lambda p: p.stat().st_size)
    assert hashlib.sha256(layer.read_bytes()).hexdigest() == layer.name
    assert len(gzip.decompress(layer.read_bytes())) > payload
