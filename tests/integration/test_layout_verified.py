"""What skopeo reads and pushes is checked first (issue 20, class 3a/3e and 6c): an OCI archive
whose layer descriptor has external ``urls`` (skopeo would fetch from there, and the pushed
manifest would send pullers there), a non-distributable layer, a blob missing or of another
size than declared, a manifest that is not what ``index.json`` names, an index of several
platforms. Each is refused in one line naming what was wrong; nothing is fetched from the
foreign host, nothing is published. Real skopeo, registry and compose server on 127.0.0.1."""

from __future__ import annotations

import hashlib
import io
import json
import lzma
import tarfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from test_hostile_archives import error_lines, replace_image

from support.harness import REPOS
from support.images import build_image_archive
from support.servers import FileServer

pytestmark = pytest.mark.integration

COMPOSE = "Fedora-41-20241025.0"
NONDIST = "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"

Change = Callable[[dict[str, bytes], dict[str, Any], dict[str, Any]], None]


def doctored(path: Path, change: Change) -> None:
    """A real OCI archive for x86_64, with ``change(blobs, index, manifest)`` applied: blobs by
    member name, index.json and the manifest as JSON; the manifest is stored again under its
    new digest and index.json names it, unless ``change`` set ``index["keep"]``."""
    plain = build_image_archive(
        path.with_suffix(".plain.tar"), arch="x86_64", fmt="oci", build_id="d", compression="none"
    )
    with tarfile.open(plain) as tar:
        members = {m.name: tar.extractfile(m).read() for m in tar if m.isfile()}  # type: ignore[union-attr]
    plain.unlink()
    index = json.loads(members["index.json"])
    name = "blobs/sha256/" + index["manifests"][0]["digest"].removeprefix("sha256:")
    manifest = json.loads(members.pop(name))
    change(members, index, manifest)
    body = json.dumps(manifest).encode()
    digest = hashlib.sha256(body).hexdigest()
    members[f"blobs/sha256/{digest}"] = body
    if not index.pop("keep", False):
        index["manifests"][0].update(digest=f"sha256:{digest}", size=len(body))
    members["index.json"] = json.dumps(index).encode()
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        for member, data in members.items():
            info = tarfile.TarInfo(member)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    path.write_bytes(lzma.compress(raw.getvalue()))


@pytest.fixture
def elsewhere(tmp_path) -> Iterator[FileServer]:
    """A host that serves any blob asked for (and records who asked)."""
    root = tmp_path / "elsewhere"
    root.mkdir()
    with FileServer(root) as server:
        yield server


def layer_of(manifest: dict[str, Any]) -> dict[str, Any]:
    layer: dict[str, Any] = manifest["layers"][0]
    return layer


def with_urls(url: str, *, drop: bool, media_type: str | None = None) -> Change:
    def change(blobs: dict[str, bytes], index: dict[str, Any], manifest: dict[str, Any]) -> None:
        layer = layer_of(manifest)
        layer["urls"] = [url + "/" + layer["digest"]]
        if media_type:
            layer["mediaType"] = media_type
        name = "blobs/sha256/" + layer["digest"].removeprefix("sha256:")
        if drop:  # skopeo would fetch it from the url
            blobs.pop(name)

    return change


def missing_layer(blobs, index, manifest) -> None:
    blobs.pop("blobs/sha256/" + layer_of(manifest)["digest"].removeprefix("sha256:"))


def wrong_size(blobs, index, manifest) -> None:
    layer_of(manifest)["size"] += 1


def manifest_not_as_named(blobs, index, manifest) -> None:
    """index.json keeps naming the old digest and size; its blob holds another manifest."""
    old = index["manifests"][0]["digest"].removeprefix("sha256:")
    manifest["annotations"] = {"changed": "after index.json named it"}
    blobs[f"blobs/sha256/{old}"] = json.dumps(manifest).encode()
    index["keep"] = True


def same_size_other_manifest(blobs, index, manifest) -> None:
    named = index["manifests"][0]
    old = named["digest"].removeprefix("sha256:")
    body = json.dumps(manifest).encode()
    blobs[f"blobs/sha256/{old}"] = body.replace(b'"schemaVersion": 2', b'"schemaVersion": 3')
    named["size"] = len(body)
    index["keep"] = True


def several_platforms(blobs, index, manifest) -> None:
    """index.json names a nested index of two platforms."""
    body = json.dumps(manifest).encode()
    digest = "sha256:" + hashlib.sha256(body).hexdigest()
    entry = {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": digest,
             "size": len(body)}  # fmt: skip
    nested = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [
            {**entry, "platform": {"architecture": "amd64", "os": "linux"}},
            {**entry, "platform": {"architecture": "arm64", "os": "linux", "variant": "v8"}},
        ],
    }
    nested_body = json.dumps(nested).encode()
    nested_hex = hashlib.sha256(nested_body).hexdigest()
    blobs[f"blobs/sha256/{nested_hex}"] = nested_body
    index["manifests"] = [
        {
            "mediaType": nested["mediaType"],
            "digest": f"sha256:{nested_hex}",
            "size": len(nested_body),
        }
    ]
    index["keep"] = True


def two_manifests(blobs, index, manifest) -> None:
    index["manifests"] = [index["manifests"][0], index["manifests"][0]]
    index["keep"] = True


CASES: dict[str, tuple[Callable[[str], Change], str]] = {
    "a layer with urls, its blob absent": (
        lambda url: with_urls(url, drop=True),
        "layer 1 has external urls",
    ),
    "a layer with urls, its blob there too": (
        lambda url: with_urls(url, drop=False),
        "layer 1 has external urls",
    ),
    "a non-distributable layer with urls": (
        lambda url: with_urls(url, drop=True, media_type=NONDIST),
        "layer 1 has external urls",
    ),
    "a non-distributable layer": (
        lambda url: lambda b, i, m: layer_of(m).update(mediaType=NONDIST),
        "layer 1 is a non-distributable layer",
    ),
    "a missing layer blob": (lambda url: missing_layer, "layer 1 is not in the layout"),
    "a layer of another size": (lambda url: wrong_size, "layer 1 is "),
    "a manifest of the same size that is not what index.json names": (
        lambda url: same_size_other_manifest,
        "the manifest index.json names does not match its digest",
    ),
    "a manifest that is not what index.json names": (
        lambda url: manifest_not_as_named,
        "the manifest index.json names is 475 bytes, not the 401 declared",
    ),
    "an index of several platforms": (
        lambda url: several_platforms,
        "index.json names an index (several platforms), not an image",
    ),
    "two manifests": (lambda url: two_manifests, "index.json names 2 manifests, not one image"),
}


@pytest.mark.parametrize("case", list(CASES), ids=list(CASES))
def test_a_layout_skopeo_would_trust_is_refused(harness, elsewhere, case):
    make, expected = CASES[case]
    body = harness.compose(COMPOSE, arches=("x86_64",), fmt="oci")
    replace_image(harness, body, "x86_64", lambda path: doctored(path, make(elsewhere.url)))

    result = harness.replay(body)

    assert result.code == 1, result.err
    (line,) = error_lines(result.err)
    assert expected in line and "Container/x86_64/images/" in line, line
    assert elsewhere.requests == []  # skopeo fetched nothing from the foreign host
    for repository in REPOS.values():
        assert harness.registries[0].tags(harness.repo(repository)) == []
