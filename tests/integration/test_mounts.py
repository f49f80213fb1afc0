"""Layers a sibling repository holds are mounted, not uploaded again - whatever skopeo's
blob-info cache knows - and bootable-container-like images are pushed from the unpacked
archive, without a second copy.

Each run talks to the registry through its own proxy (another host:port): skopeo's blob-info
cache files what it learns under the host it talked to, so what the first run taught it is of
no use to the second - as after a pod restart, on the other replica, on another host.
"""

from __future__ import annotations

import hashlib
import json
import re
import tarfile

import pytest

from fedora_container_sync.publish.mounts import BlobLocations, manifest_blobs, mount_shared
from fedora_container_sync.registry.client import RegistryClient
from support.harness import Harness
from support.layered import Layers, build_layered_compose
from support.proxy import FaultProxy, ProxyRequest
from support.servers import Registry

pytestmark = pytest.mark.integration

COMPOSE = "Fedora-41-20241026.0"
ARCHES = ("x86_64", "aarch64")
SILVERBLUE, KINOITE = "fedora-silverblue", "fedora-kinoite"


class Uploads:
    """What went up through a proxy: blob digests uploaded per repository, mounts."""

    def __init__(self) -> None:
        self.uploaded: list[tuple[str, str, int]] = []
        self.mounted: list[tuple[str, str]] = []
        self.declined: list[str] = []
        self.bytes = 0

    def __call__(self, request: ProxyRequest, status: int) -> None:
        path = request.path
        if request.method in ("PATCH", "PUT") and "/blobs/uploads/" in path:
            self.bytes += len(request.body)
            found = re.search(r"/v2/.*/([^/]+)/blobs/uploads/.*[?&]digest=([^&]+)", path)
            if request.method == "PUT" and found:
                digest = found.group(2).replace("%3A", ":")
                self.uploaded.append((found.group(1), digest, status))
        if request.method == "POST" and "mount=" in path:
            repository = re.search(r"/v2/.*/([^/]+)/blobs/uploads/", path)
            digest = re.search(r"mount=([^&]+)", path)
            assert repository and digest
            if status == 201:
                self.mounted.append((repository.group(1), digest.group(1).replace("%3A", ":")))
            else:
                self.declined.append(path)


def through(harness: Harness, registry: Registry, proxy: FaultProxy) -> None:
    harness.registry_entries[registry.host] = (
        f'url = "{proxy.host}/{harness.namespace}"\ntls_verify = false\n'
    )


def image_blobs(registry: Registry, repository: str, tag: str) -> list[str]:
    found = registry.get_manifest(repository, tag)
    assert found is not None
    return manifest_blobs(found[2])


def test_a_new_repository_mounts_the_base_its_sibling_holds_with_skopeo_knowing_nothing(
    harness, registry
):
    shape = Layers(layers=6, layer_size=64 << 10, shared=4, changed=(), salt=harness.tmp.name)
    harness.repos.update({"Silverblue": SILVERBLUE, "Kinoite": KINOITE})
    compose_dir = build_layered_compose(
        harness.served_root / harness.namespace, compose_id=COMPOSE, release_version="41",
        subvariants=("Silverblue", "Kinoite"), arches=ARCHES, shape=shape, generation=1,
    )  # fmt: skip
    body = harness.message_for(compose_dir)
    with FaultProxy(registry.url) as first, FaultProxy(registry.url) as second:
        # The sibling first, alone (the new repository is not configured yet).
        harness.repos.pop("Kinoite")
        through(harness, registry, first)
        result = harness.replay(body)
        assert result.code == 0, result.err
        # Then the new repository, from a process whose skopeo has no use for what it cached.
        harness.repos["Kinoite"] = KINOITE
        uploads = Uploads()
        second.on_response = uploads
        through(harness, registry, second)
        result = harness.replay(body)
        assert result.code == 0, result.err

    for arch in ARCHES:
        tag = f"41-{arch}"
        sibling = image_blobs(registry, harness.repo(SILVERBLUE), tag)
        new = image_blobs(registry, harness.repo(KINOITE), tag)
        shared = set(sibling) & set(new)
        assert len(shared) == shape.shared  # the base layers (configs differ)
        with registry.client() as client:  # the new repository serves every blob
            for digest in new:
                answer = client.head(f"/v2/{harness.repo(KINOITE)}/blobs/{digest}")
                assert answer.status_code == 200, digest
        assert {d for repo, d in uploads.mounted if repo == KINOITE} >= shared
        assert not shared & {d for _, d, _ in uploads.uploaded}, "a shared layer went up again"
    # Only what the sibling does not hold went up: per arch 2 own layers and a config.
    own = sum(_sizes(registry, harness.repo(KINOITE), uploads))
    assert uploads.bytes <= own * 1.10 + 4096, (uploads.bytes, own)
    assert not uploads.declined


def _sizes(registry: Registry, repository: str, uploads: Uploads) -> list[int]:
    """Sizes of the blobs of the new repository that were not mounted."""
    mounted = {d for _, d in uploads.mounted}
    sizes = []
    for arch in ARCHES:
        found = registry.get_manifest(repository, f"41-{arch}")
        assert found is not None
        document = json.loads(found[2])
        for blob in [document["config"], *document["layers"]]:
            if blob["digest"] not in mounted:
                sizes.append(blob["size"])
    return sizes


def test_a_mount_the_registry_declines_leaves_the_blob_to_the_normal_upload(harness, registry):
    """A registry that answers 202 (it opened an upload instead) gets that upload cancelled;
    nothing is mounted and nothing fails."""
    settings_url = f"{registry.host}/{harness.namespace}"
    from fedora_container_sync.config.settings import RegistrySettings, RetrySettings

    client = RegistryClient(
        RegistrySettings(url=settings_url, tls_verify=False),
        timeout=10,
        retry=RetrySettings(attempts=1, initial_delay=0.1, max_delay=0.1),
    )
    known = BlobLocations()
    missing = "sha256:" + "0" * 64
    known.add("elsewhere", [missing])
    with client:
        assert mount_shared(client, known, "target", [missing]) == 0
    assert known.holders(missing) == ["elsewhere"]
    assert "mount=" in registry.log_text()
    assert re.search(r'"DELETE /v2/[^"]*/target/blobs/uploads/', registry.log_text())


def test_a_layered_oci_archive_is_pushed_from_its_unpacked_files_without_a_conversion(harness):
    """skopeo runs only to push: an OCI archive of compressed layers is not copied into a
    second layout first; the per-arch tags hold the archive's layers, byte for byte."""
    shape = Layers(layers=5, layer_size=32 << 10, shared=3, changed=(), salt=harness.tmp.name)
    harness.repos.update({"Silverblue": SILVERBLUE})
    compose_dir = build_layered_compose(
        harness.served_root / harness.namespace, compose_id=COMPOSE, release_version="41",
        subvariants=("Silverblue",), arches=ARCHES, shape=shape, generation=1,
    )  # fmt: skip
    runs = harness.tmp / "skopeo-runs"
    shim = harness.tmp / "skopeo"
    shim.write_text(f'#!/bin/sh\necho "$*" >> {runs}\nexec skopeo "$@"\n')
    shim.chmod(0o755)
    harness.extra_config += f'skopeo = "{shim}"\n'

    result = harness.replay(harness.message_for(compose_dir))

    assert result.code == 0, result.err
    argvs = runs.read_text().splitlines()
    assert len(argvs) == len(ARCHES) and all(" docker://" in argv for argv in argvs), argvs
    registry = harness.registries[0]
    for arch in ARCHES:
        pushed = json.loads(registry.get_manifest(harness.repo(SILVERBLUE), f"41-{arch}")[2])
        assert len(pushed["layers"]) == shape.layers
        assert pushed["annotations"]["org.fedoraproject.arch"] == arch
    assert harness.arches(SILVERBLUE, "41") == set(ARCHES)


def test_a_layer_whose_bytes_do_not_match_its_digest_is_never_published(harness):
    """Layers are not hashed when unpacked; skopeo checks each blob it uploads (and the registry
    again), so a layer that does not match its name fails the push and the tag stays."""
    shape = Layers(layers=3, layer_size=32 << 10, shared=3, changed=(), salt=harness.tmp.name)
    harness.repos.update({"Silverblue": SILVERBLUE})
    compose_dir = build_layered_compose(
        harness.served_root / harness.namespace, compose_id=COMPOSE, release_version="41",
        subvariants=("Silverblue",), arches=("x86_64",), shape=shape, generation=1,
    )  # fmt: skip
    metadata_file = compose_dir / "metadata" / "images.json"
    metadata = json.loads(metadata_file.read_text())
    entry = metadata["payload"]["images"]["Silverblue"]["x86_64"][0]
    path = compose_dir / entry["path"]
    with tarfile.open(path) as tar:
        layer = max(tar.getmembers(), key=lambda member: member.size)
    data = bytearray(path.read_bytes())
    data[layer.offset_data + layer.size // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    entry["checksums"] = {"sha256": hashlib.sha256(data).hexdigest()}
    metadata_file.write_text(json.dumps(metadata))

    result = harness.replay(harness.message_for(compose_dir))

    assert result.code != 0
    assert harness.digest(SILVERBLUE, "41-x86_64") is None
    assert harness.digest(SILVERBLUE, "41") is None
