"""Bootable-container-like composes: OCI archives of many gzip layers, where sibling images
share a base and consecutive composes change a few layers (rpm-ostree "chunked" images).

:func:`build_layered_compose` writes a compose tree (metadata by :func:`.compose.build_compose`)
whose images are OCI archives of ``layers`` layers of ``layer_size`` incompressible bytes each:

* layers ``0 .. shared-1`` are the base: the same bytes for every subvariant of an arch;
* the other layers belong to the subvariant;
* a layer listed in ``changed`` differs from one ``generation`` to the next, the others keep
  their bytes (and digests) across composes; the config changes with every compose.

:func:`push_archive_over_http` puts such an image into a registry with plain HTTP uploads,
without skopeo (so skopeo's blob-info cache learns nothing of it).
"""

from __future__ import annotations

import hashlib
import io
import json
import random
import tarfile
import zlib
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from support.compose import ComposeImage, build_compose
from support.images import FEDORA_TO_OCI_ARCH, OCI_CONFIG, OCI_INDEX, OCI_LAYER_GZIP, OCI_MANIFEST


@dataclass(frozen=True)
class Layers:
    """The shape of every image of a layered compose."""

    layers: int = 20
    layer_size: int = 1 << 20
    #: how many of the first layers are the base all subvariants share
    shared: int = 15
    #: which layers change from one generation (compose) to the next
    changed: Collection[int] = (18, 19)
    #: mixed into every layer's bytes: another salt, other digests (so that skopeo's blob-info
    #: cache, shared by every run on the machine, knows nothing of them)
    salt: str = ""


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _gzip(data: bytes) -> bytes:
    """gzip with stored blocks (the data is random): valid, deterministic, fast."""
    packer = zlib.compressobj(0, zlib.DEFLATED, 31)
    return packer.compress(data) + packer.flush()


def _layer(seed: str, size: int) -> tuple[bytes, str]:
    """A gzip layer holding one file of ``size`` bytes derived from ``seed``, and its diff ID."""
    payload = random.Random(seed).randbytes(size)  # noqa: S311 - test data, not secrets
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo(f"usr/lib/chunk-{hashlib.sha256(seed.encode()).hexdigest()[:16]}")
        info.size, info.mtime, info.mode = size, 0, 0o644
        tar.addfile(info, io.BytesIO(payload))
    plain = raw.getvalue()
    return _gzip(plain), _digest(plain)


def _json(data: Any) -> bytes:
    return json.dumps(data, sort_keys=True, separators=(",", ":")).encode()


def write_layered_archive(
    path: Path, *, subvariant: str, arch: str, build_id: str, shape: Layers, generation: int
) -> None:
    """One OCI archive (uncompressed tar) of a bootable-container-like image."""
    blobs: list[tuple[str, bytes]] = []
    descriptors, diff_ids = [], []
    for number in range(shape.layers):
        scope = "base" if number < shape.shared else subvariant
        version = generation if number in shape.changed else 0
        seed = f"{shape.salt}/{scope}/{arch}/{number}/{version}"
        data, diff_id = _layer(seed, shape.layer_size)
        digest = _digest(data)
        blobs.append((digest, data))
        descriptors.append({"mediaType": OCI_LAYER_GZIP, "digest": digest, "size": len(data)})
        diff_ids.append(diff_id)
    oci_arch, variant = FEDORA_TO_OCI_ARCH[arch]
    config: dict[str, Any] = {
        "architecture": oci_arch,
        "os": "linux",
        "config": {"Labels": {"build-id": build_id, "name": subvariant}},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    }
    if variant:
        config["variant"] = variant
    config_bytes = _json(config)
    manifest = _json(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {
                "mediaType": OCI_CONFIG,
                "digest": _digest(config_bytes),
                "size": len(config_bytes),
            },
            "layers": descriptors,
        }
    )
    blobs += [(_digest(config_bytes), config_bytes), (_digest(manifest), manifest)]
    index = {
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [
            {
                "mediaType": OCI_MANIFEST,
                "digest": _digest(manifest),
                "size": len(manifest),
                "annotations": {"org.opencontainers.image.ref.name": "latest"},
            }
        ],
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, mode="w", format=tarfile.PAX_FORMAT) as tar:

        def add(name: str, data: bytes | None) -> None:
            info = tarfile.TarInfo(name)
            info.mtime = 0
            if data is None:
                info.type, info.mode = tarfile.DIRTYPE, 0o755
                tar.addfile(info)
                return
            info.size, info.mode = len(data), 0o644
            tar.addfile(info, io.BytesIO(data))

        add("oci-layout", _json({"imageLayoutVersion": "1.0.0"}))
        add("index.json", _json(index))
        add("blobs", None)
        add("blobs/sha256", None)
        for digest, data in dict(blobs).items():
            add(f"blobs/sha256/{digest.removeprefix('sha256:')}", data)


def build_layered_compose(
    root: Path,
    *,
    compose_id: str,
    release_version: str,
    subvariants: Iterable[str],
    arches: Iterable[str],
    shape: Layers,
    generation: int,
) -> Path:
    """A compose of bootable-container-like OCI archives; returns its ``compose/`` directory."""
    subvariants, arches = list(subvariants), list(arches)
    images = [
        ComposeImage(s, a, fmt="oci", type="bootable-container", format="ociarchive", variant=s)
        for s in subvariants
        for a in arches
    ]
    compose_dir = build_compose(
        root, compose_id=compose_id, release_version=release_version, images=images,
        extra_images=(),
    )  # fmt: skip
    metadata_file = compose_dir / "metadata" / "images.json"
    metadata = json.loads(metadata_file.read_text())
    for variant in metadata["payload"]["images"].values():
        for entries in variant.values():
            for image in entries:
                path = compose_dir / image["path"]
                write_layered_archive(
                    path, subvariant=image["subvariant"], arch=image["arch"],
                    build_id=compose_id, shape=shape, generation=generation,
                )  # fmt: skip
                image["size"] = path.stat().st_size
                image["checksums"] = {"sha256": hashlib.sha256(path.read_bytes()).hexdigest()}
    metadata_file.write_text(json.dumps(metadata, indent=4, sort_keys=True))
    return compose_dir


def push_archive_over_http(registry_url: str, repository: str, tag: str, archive: Path) -> str:
    """Upload every blob of an OCI archive (POST, then PUT with the digest) and PUT its
    manifest under ``tag``, with plain HTTP and no skopeo; return the manifest digest."""
    with tarfile.open(archive) as tar:
        files = {
            m.name: tar.extractfile(m).read()  # type: ignore[union-attr]
            for m in tar.getmembers()
            if m.isfile()
        }
    index = json.loads(files["index.json"])
    digest = index["manifests"][0]["digest"]
    manifest = files[f"blobs/sha256/{digest.removeprefix('sha256:')}"]
    document = json.loads(manifest)
    with httpx.Client(base_url=registry_url, timeout=60) as client:
        for blob in [document["config"], *document["layers"]]:
            data = files[f"blobs/sha256/{blob['digest'].removeprefix('sha256:')}"]
            started = client.post(f"/v2/{repository}/blobs/uploads/")
            started.raise_for_status()
            location = started.headers["location"]
            joiner = "&" if "?" in location else "?"
            done = client.put(f"{location}{joiner}digest={blob['digest']}", content=data)
            done.raise_for_status()
        client.put(
            f"/v2/{repository}/manifests/{tag}",
            content=manifest,
            headers={"Content-Type": OCI_MANIFEST},
        ).raise_for_status()
    return str(digest)
