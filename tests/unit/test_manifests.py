import json

import pytest

from fedora_container_sync.errors import RegistryError
from fedora_container_sync.manifests import (
    COMPOSE_ID,
    IndexEntry,
    Manifest,
    build_index,
    digest_of,
)
from fedora_container_sync.registry import mediatype

OM = mediatype.OCI_MANIFEST


def entry(arch, n):
    return IndexEntry(arch, OM, f"sha256:{n:064x}", 400 + n, "Fedora-41-20241025.0")


def test_index_bytes_are_deterministic_and_ordered():
    entries = [entry("s390x", 4), entry("x86_64", 1), entry("aarch64", 2), entry("ppc64le", 3)]
    body = build_index(entries, compose_id="Fedora-41-20241025.0")
    assert body == build_index(list(reversed(entries)), compose_id="Fedora-41-20241025.0")
    document = json.loads(body)
    assert document["mediaType"] == mediatype.OCI_INDEX
    assert document["schemaVersion"] == 2
    assert document["annotations"][COMPOSE_ID] == "Fedora-41-20241025.0"
    platforms = [m["platform"] for m in document["manifests"]]
    assert platforms == [
        {"architecture": "amd64", "os": "linux"},
        {"architecture": "arm64", "os": "linux", "variant": "v8"},
        {"architecture": "ppc64le", "os": "linux"},
        {"architecture": "s390x", "os": "linux"},
    ]
    assert [m["size"] for m in document["manifests"]] == [401, 402, 403, 404]
    assert all(
        m["annotations"][COMPOSE_ID] == "Fedora-41-20241025.0" for m in document["manifests"]
    )


def test_duplicate_arch_is_a_bug():
    with pytest.raises(ValueError, match="duplicate"):
        build_index([entry("x86_64", 1), entry("x86_64", 2)], compose_id="c")


def test_entries_round_trip_and_skip_attestations():
    body = json.loads(build_index([entry("x86_64", 1), entry("aarch64", 2)], compose_id="c"))
    body["manifests"].append(
        {
            "mediaType": OM,
            "digest": "sha256:" + "f" * 64,
            "size": 1,
            "platform": {"architecture": "unknown", "os": "unknown"},
            "annotations": {"vnd.docker.reference.type": "attestation-manifest"},
        }
    )
    raw = json.dumps(body).encode()
    manifest = Manifest(mediatype.OCI_INDEX, digest_of(raw), raw)
    assert [e.arch for e in manifest.entries()] == ["x86_64", "aarch64"]


def test_docker_list_entries():
    raw = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": mediatype.DOCKER_LIST,
            "manifests": [
                {
                    "mediaType": mediatype.DOCKER_MANIFEST,
                    "digest": "sha256:" + "a" * 64,
                    "size": 5,
                    "platform": {"architecture": "arm64", "os": "linux"},
                },
                {
                    "mediaType": mediatype.DOCKER_MANIFEST,
                    "digest": "sha256:" + "b" * 64,
                    "size": 5,
                },
            ],
        }
    ).encode()
    manifest = Manifest(mediatype.DOCKER_LIST, digest_of(raw), raw)
    assert [e.arch for e in manifest.entries()] == ["aarch64", "unknown"]


@pytest.mark.parametrize(
    "raw",
    [b"not json", b"[]", b'{"manifests": "x"}', b'{"manifests": [{"digest": "x"}]}'],
)
def test_malformed_index_fails_closed(raw):
    manifest = Manifest(mediatype.OCI_INDEX, digest_of(raw), raw)
    with pytest.raises(RegistryError):
        manifest.entries()


def test_annotate_manifest_adds_and_keeps_annotations():
    from fedora_container_sync.manifests import annotate_manifest

    raw = json.dumps(
        {"schemaVersion": 2, "mediaType": OM, "config": {}, "layers": [], "annotations": {"a": "1"}}
    ).encode()
    body = annotate_manifest(raw, {COMPOSE_ID: "Fedora-41-20241025.0"})
    assert json.loads(body)["annotations"] == {"a": "1", COMPOSE_ID: "Fedora-41-20241025.0"}
    assert body == annotate_manifest(raw, {COMPOSE_ID: "Fedora-41-20241025.0"})


def test_docker_manifests_cannot_carry_annotations():
    from fedora_container_sync.manifests import annotate_manifest

    raw = json.dumps({"schemaVersion": 2, "mediaType": mediatype.DOCKER_MANIFEST}).encode()
    with pytest.raises(ValueError, match="OCI"):
        annotate_manifest(raw, {"k": "v"})


def test_index_entries_name_the_source_file_checksum():
    from fedora_container_sync.manifests import IMAGE_SHA256

    with_sum = IndexEntry("x86_64", OM, "sha256:" + "1" * 64, 5, "c", "ab" * 32)
    document = json.loads(build_index([with_sum], compose_id="c"))
    assert document["manifests"][0]["annotations"][IMAGE_SHA256] == "ab" * 32
