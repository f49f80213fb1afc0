import json

import pytest

from fedora_container_sync.errors import RegistryError
from fedora_container_sync.oci import mediatype
from fedora_container_sync.oci.index import (
    IndexEntry,
    UnknownEntry,
    build_index,
    describe_unknown,
    image_arch,
    read_index,
)
from fedora_container_sync.oci.manifest import COMPOSE_ID, Manifest, digest_of

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


def test_entries_round_trip():
    body = build_index([entry("x86_64", 1), entry("aarch64", 2)], compose_id="c")
    content = read_index(Manifest(mediatype.OCI_INDEX, digest_of(body), body))
    assert list(content.images) == ["x86_64", "aarch64"]
    assert content.images["aarch64"].digest == entry("aarch64", 2).digest
    assert (content.attestations, content.unknown) == ((), ())


# -- reading foreign indexes: every entry is an image, an attestation, or cannot be read -------

AMD64 = "sha256:" + "a" * 64
ARM64 = "sha256:" + "b" * 64
OTHER = "sha256:" + "c" * 64
NESTED = "sha256:" + "d" * 64


def image(digest=AMD64, platform=None, media_type=OM, **more):
    raw = {"mediaType": media_type, "digest": digest, "size": 500, **more}
    raw["platform"] = {"architecture": "amd64", "os": "linux"} if platform is None else platform
    return raw


def attestation(subject, digest=OTHER, **changes):
    """An entry as buildx writes it for the attestation manifest of ``subject``."""
    raw = {
        "mediaType": OM,
        "digest": digest,
        "size": 300,
        "platform": {"architecture": "unknown", "os": "unknown"},
        "annotations": {
            "vnd.docker.reference.type": "attestation-manifest",
            "vnd.docker.reference.digest": subject,
        },
    }
    raw.update(changes)
    return {k: v for k, v in raw.items() if v is not None}


def read(*manifests, media_type=mediatype.OCI_INDEX):
    raw = json.dumps({"schemaVersion": 2, "mediaType": media_type, "manifests": list(manifests)})
    return read_index(Manifest(media_type, digest_of(raw.encode()), raw.encode()))


def arm64(**platform):
    return {"architecture": "arm64", "os": "linux", **platform}


def test_a_buildx_index_with_attestations():
    content = read(
        image(AMD64),
        image(ARM64, arm64()),
        attestation(AMD64, OTHER),
        attestation(ARM64, NESTED),
    )
    assert set(content.images) == {"x86_64", "aarch64"}
    assert [a.digest for a in content.attestations] == [OTHER, NESTED]
    assert content.unknown == ()


def test_a_legacy_docker_list():
    content = read(
        image(AMD64, media_type=mediatype.DOCKER_MANIFEST),
        image(ARM64, arm64(variant="v8"), media_type=mediatype.DOCKER_MANIFEST),
        media_type=mediatype.DOCKER_LIST,
    )
    assert {a: d.media_type for a, d in content.images.items()} == {
        "x86_64": mediatype.DOCKER_MANIFEST,
        "aarch64": mediatype.DOCKER_MANIFEST,
    }


@pytest.mark.parametrize(
    ("platform", "arch"),
    [
        (arm64(), "aarch64"),
        (arm64(variant="v8"), "aarch64"),
        (arm64(variant=""), "aarch64"),
        (arm64(**{"os.features": [], "os.version": ""}), "aarch64"),  # set, but empty
        ({"architecture": "ppc64le", "os": "linux"}, "ppc64le"),
        ({"architecture": "arm", "os": "linux", "variant": "v7"}, "armhfp"),
        ({"architecture": "386", "os": "linux"}, "i686"),
    ],
)
def test_entries_that_map_to_a_fedora_arch(platform, arch):
    assert list(read(image(ARM64, platform)).images) == [arch]


@pytest.mark.parametrize(
    ("raw", "problem"),
    [
        # the platform
        (image(ARM64, {"architecture": "arm64"}),
         "(sha256:bbbbbbbbbbbb, ?/arm64) has no platform os"),
        (image(ARM64, {"os": "linux"}), "has no platform architecture"),
        (image(ARM64, {"architecture": "arm64", "os": ""}), "has no platform os"),
        (image(ARM64, {"architecture": 64, "os": "linux"}), "has no platform architecture"),
        (image(ARM64, "linux/arm64"), "(sha256:bbbbbbbbbbbb, malformed platform) has a malformed"),
        ({"mediaType": OM, "digest": ARM64, "size": 5},
         "(sha256:bbbbbbbbbbbb, no platform) has no platform"),
        (image(ARM64, arm64(variant="v9")),
         "(sha256:bbbbbbbbbbbb, linux/arm64/v9) has no Fedora arch"),
        (image(ARM64, {"architecture": "arm", "os": "linux", "variant": "v6"}),
         "has no Fedora arch"),
        (image(ARM64, {"architecture": "arm", "os": "linux"}), "has no Fedora arch"),
        (image(ARM64, {"architecture": "amd64", "os": "linux", "variant": "v3"}),
         "has no Fedora arch"),
        (image(ARM64, {"architecture": "AMD64", "os": "linux"}), "has no Fedora arch"),
        (image(ARM64, {"architecture": "amd64", "os": "windows"}),
         "windows/amd64) has no Fedora arch"),
        (image(ARM64, {"architecture": "mips64le", "os": "linux"}), "has no Fedora arch"),
        (image(ARM64, arm64(variant=8)), "has a malformed platform variant"),
        (image(ARM64, arm64(**{"os.version": "10.0.17763"})), "sets platform field os.version"),
        (image(ARM64, arm64(**{"os.features": ["win32k"]})), "sets platform field os.features"),
        (image(ARM64, arm64(features=["sse4"])), "sets platform field features"),
        # what it is
        (image(ARM64, arm64(), mediatype.OCI_INDEX), "is a nested index"),
        (image(ARM64, arm64(), mediatype.DOCKER_LIST), "is a nested index"),
        (image(ARM64, arm64(), "application/vnd.oci.artifact.manifest.v1+json"),
         "has media type application/vnd.oci.artifact.manifest.v1+json, not an image manifest"),
        (image(ARM64, arm64(), "application/vnd.docker.distribution.manifest.v1+prettyjws"),
         "not an image manifest"),
        (image(ARM64, arm64(), artifactType="application/vnd.dev.sigstore.bundle+json"),
         "is an artifact (application/vnd.dev.sigstore.bundle+json), not an image"),
        # attestation-style annotations on a runnable entry
        (image(ARM64, arm64(), annotations={"vnd.docker.reference.type": "attestation-manifest",
                                             "vnd.docker.reference.digest": AMD64}),
         "(sha256:bbbbbbbbbbbb, linux/arm64) has a runnable platform but buildkit's attestation"),
        (image(ARM64, arm64(), annotations={"vnd.docker.reference.digest": AMD64}),
         "has a runnable platform but buildkit's attestation annotations"),
        # attestations that are not positively buildkit's
        (attestation(OTHER), "is an attestation of sha256:cccccccccccc, which this index lacks"),
        (attestation(NESTED), "is an attestation of sha256:dddddddddddd, which this index lacks"),
        (attestation(AMD64, annotations=None),
         "has platform unknown/unknown but is not a buildkit attestation"),
        (attestation(AMD64, annotations={"vnd.docker.reference.type": "attestation-manifest"}),
         "is not a buildkit attestation"),
        (attestation(AMD64, annotations={"vnd.docker.reference.type": "signature",
                                          "vnd.docker.reference.digest": AMD64}),
         "is not a buildkit attestation"),
        (attestation(AMD64, mediaType=mediatype.DOCKER_MANIFEST), "is not a buildkit attestation"),
        (attestation(AMD64, platform={"architecture": "unknown", "os": "unknown", "variant": "v1"}),
         "is not a buildkit attestation"),
        # malformed
        ("linux/arm64", "index entry 2 is a string, not an object"),  # its text is not shown
        (None, "index entry 2 is null, not an object"),
        (image("sha256:xyz", arm64()),
         "(no valid digest, linux/arm64) has no valid digest (got sha256:xyz)"),
        (image(ARM64.upper(), arm64()), "has no valid digest"),
        ({"mediaType": OM, "size": 5, "platform": arm64()}, "has no valid digest (got null)"),
        ({"digest": ARM64, "size": 5, "platform": arm64()}, "has no media type"),
        (image(ARM64, arm64(), size="500"), "has no valid size (got 500)"),
        (image(ARM64, arm64(), size=True), "has no valid size (got a boolean)"),
        (image(ARM64, arm64(), size=-1), "has no valid size"),
        (image(ARM64, arm64(), size=1.5), "has no valid size (got a number)"),
        (image(ARM64, arm64(), annotations=["x"]), "has malformed annotations"),
        (image(ARM64, arm64(), annotations={"org.fedoraproject.arch": 1}),
         "has malformed annotations"),
        # two entries for one arch
        (image(ARM64),
         "(sha256:bbbbbbbbbbbb, linux/amd64) is a second x86_64 entry (after index entry 1)"),
    ],
)  # fmt: skip
def test_entries_that_cannot_be_read_are_never_skipped(raw, problem):
    content = read(image(AMD64), raw)
    assert list(content.images) == ["x86_64"]
    assert content.attestations == ()
    assert len(content.unknown) == 1
    assert problem in str(content.unknown[0])
    assert str(content.unknown[0]).startswith("index entry 2")


def test_two_arm64_spellings_are_one_arch_twice():
    content = read(image(AMD64, arm64()), image(ARM64, arm64(variant="v8")))
    assert list(content.images) == ["aarch64"]
    assert "is a second aarch64 entry (after index entry 1)" in str(content.unknown[0])


def test_an_attestation_of_an_entry_that_cannot_be_read_is_an_attestation():
    content = read(image(ARM64, {"architecture": "arm64"}), attestation(ARM64))
    assert len(content.attestations) == 1
    assert len(content.unknown) == 1  # the entry itself still holds the tag


def test_an_attestation_of_an_attestation_is_not():
    content = read(image(AMD64), attestation(AMD64, OTHER), attestation(OTHER, NESTED))
    assert len(content.attestations) == 1
    assert "is an attestation of sha256:cccccccccccc" in str(content.unknown[0])


def test_an_unreadable_entry_keeps_its_compose_for_the_rollback_guard():
    raw = image(ARM64, {"architecture": "arm64"}, annotations={COMPOSE_ID: "Fedora-41-20241030.0"})
    (unknown,) = read(image(AMD64), raw).unknown
    assert (unknown.digest, unknown.compose_id) == (ARM64, "Fedora-41-20241030.0")


def test_foreign_text_is_sanitized_and_bounded():
    hostile = "arm64\n\x1b[31mfedora-container-sync: INFO: all fine" + "x" * 5000
    (unknown,) = read(image(AMD64), image(ARM64, {"architecture": hostile})).unknown
    text = str(unknown)
    assert "\n" not in text and "\x1b" not in text
    assert f"?/arm64??[31mfedora-container-sync: INFO: all fine{'x' * 16}...)" in text
    assert len(text) < 200


def test_many_unreadable_entries_are_named_up_to_three():
    content = read(*[image(f"sha256:{n:064x}", {"architecture": "arm64"}) for n in range(5)])
    assert len(content.unknown) == 5
    line = describe_unknown(content.unknown)
    assert line.count("has no platform os") == 3
    assert line.endswith("(and 2 more)")


def test_an_index_that_says_it_is_another_type_fails_closed():
    raw = json.dumps({"mediaType": mediatype.DOCKER_LIST, "manifests": []}).encode()
    with pytest.raises(RegistryError, match="served as"):
        read_index(Manifest(mediatype.OCI_INDEX, digest_of(raw), raw))


@pytest.mark.parametrize(
    "raw",
    [b"not json", b"[]", b'{"manifests": "x"}', b'{"schemaVersion": 2}', b"\xff\xfe"],
)
def test_malformed_index_fails_closed(raw):
    manifest = Manifest(mediatype.OCI_INDEX, digest_of(raw), raw)
    with pytest.raises(RegistryError):
        read_index(manifest)


def test_reading_an_image_as_an_index_is_a_bug():
    raw = b'{"schemaVersion": 2}'
    with pytest.raises(RegistryError, match="not an index"):
        read_index(Manifest(OM, digest_of(raw), raw))


# -- a single image at a tag: its config names the arch ----------------------------------------


def single(annotations):
    raw = json.dumps({"schemaVersion": 2, "mediaType": OM, "annotations": annotations}).encode()
    return Manifest(OM, digest_of(raw), raw)


@pytest.mark.parametrize(
    ("config", "arch_or_problem"),
    [
        ({"architecture": "amd64", "os": "linux"}, "x86_64"),
        ({"architecture": "arm64", "os": "linux", "variant": "v8"}, "aarch64"),
        ({"architecture": "arm64", "os": "linux", "variant": "v9"},
         "linux/arm64/v9) has no Fedora arch"),
        ({"architecture": "amd64"}, "(?/amd64) has no os or architecture"),
        ({"os": "linux"}, "has no os or architecture"),
        ({"architecture": "amd64", "os": "linux", "variant": 3}, "has a malformed variant"),
        ({"architecture": "amd64", "os": "darwin"}, "has no Fedora arch"),
        ([], "has an unreadable config"),
        ("not json", "has an unreadable config"),
    ],
)  # fmt: skip
def test_the_arch_of_a_single_image(config, arch_or_problem):
    body = config.encode() if isinstance(config, str) else json.dumps(config).encode()
    found = image_arch(single({COMPOSE_ID: "Fedora-41-20241025.0"}), body)
    if isinstance(found, UnknownEntry):
        assert arch_or_problem in str(found)
        assert str(found).startswith("the single image sha256:")
        assert found.compose_id == "Fedora-41-20241025.0"
    else:
        assert found == arch_or_problem


def test_annotate_manifest_adds_and_keeps_annotations():
    from fedora_container_sync.oci.manifest import annotate_manifest

    raw = json.dumps(
        {"schemaVersion": 2, "mediaType": OM, "config": {}, "layers": [], "annotations": {"a": "1"}}
    ).encode()
    body = annotate_manifest(raw, {COMPOSE_ID: "Fedora-41-20241025.0"})
    assert json.loads(body)["annotations"] == {"a": "1", COMPOSE_ID: "Fedora-41-20241025.0"}
    assert body == annotate_manifest(raw, {COMPOSE_ID: "Fedora-41-20241025.0"})


def test_docker_manifests_cannot_carry_annotations():
    from fedora_container_sync.oci.manifest import annotate_manifest

    raw = json.dumps({"schemaVersion": 2, "mediaType": mediatype.DOCKER_MANIFEST}).encode()
    with pytest.raises(ValueError, match="OCI"):
        annotate_manifest(raw, {"k": "v"})


def test_index_entries_name_the_source_file_checksum():
    from fedora_container_sync.oci.manifest import IMAGE_SHA256

    with_sum = IndexEntry("x86_64", OM, "sha256:" + "1" * 64, 5, "c", "ab" * 32)
    document = json.loads(build_index([with_sum], compose_id="c"))
    assert document["manifests"][0]["annotations"][IMAGE_SHA256] == "ab" * 32
