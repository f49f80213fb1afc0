"""Indexes other tools left in the registry, met by a real ``replay`` and ``audit``: entries
the gate cannot read hold the tag under every policy, buildkit attestations are not arches,
and a legacy Docker manifest list of schema2 images is never mixed into an OCI index. Every
foreign index is built from scratch: real images pushed with skopeo, the index PUT over the
registry HTTP API (more variants, one per kind of entry, are data in tests/data/bad/)."""

from __future__ import annotations

import json
import subprocess

import jsonschema
import pytest

from fedora_container_sync.audit.report import DOCUMENT_SCHEMA
from support.foreign import ForeignChildren, platform, put_manifest
from support.harness import Harness, report_rows
from support.servers import DOCKER_MANIFEST, DOCKER_MANIFEST_LIST, OCI_INDEX, OCI_MANIFEST

pytestmark = pytest.mark.integration

TOOLBOX = "fedora-toolbox"
OLD = "Fedora-41-20241025.0"
NEW = "Fedora-41-20241026.0"
INDEX_TAGS = ("41", "latest")
ATTESTATION = "attestation-manifest"


@pytest.fixture
def children(harness: Harness) -> ForeignChildren:
    return ForeignChildren(harness.registries[0], harness.repo(TOOLBOX), harness.tmp)


def put_index(harness: Harness, media_type: str, manifests: list[dict]) -> str:
    """PUT an index of ``manifests`` at every index tag; its digest."""
    body = json.dumps({"schemaVersion": 2, "mediaType": media_type, "manifests": manifests})
    digests = {
        put_manifest(harness.registries[0], harness.repo(TOOLBOX), tag, media_type, body.encode())
        for tag in INDEX_TAGS
    }
    (digest,) = digests
    return digest


def held_lines(err: str) -> list[str]:
    return [line for line in err.splitlines() if ": WARNING: " in line and "gate: held" in line]


POLICIES = {
    "strict": "",
    "carry-forward": 'gate_policy = "carry-forward"',
    "expected-arches": '[consumer_config.container.expected_arches]\nfedora-toolbox = ["x86_64"]',
}


@pytest.mark.parametrize("policy", POLICIES)
@pytest.mark.parametrize("odd", ["arm64 without os", "linux/arm64 marked as an attestation"])
def test_an_entry_the_gate_cannot_read_holds_the_tag(harness, children, odd, policy):
    arm64 = children["arm64"]
    if odd == "arm64 without os":
        entry = arm64.entry({"architecture": "arm64"})
        named = f"index entry 2 ({arm64.digest[:19]}, ?/arm64) has no platform os"
    else:  # a real image whose descriptor carries what buildx puts on attestations
        annotations = {
            "vnd.docker.reference.type": ATTESTATION,
            "vnd.docker.reference.digest": children["amd64"].digest,
        }
        entry = arm64.entry(platform("aarch64"), annotations=annotations)
        named = (
            f"index entry 2 ({arm64.digest[:19]}, linux/arm64) has a runnable platform but "
            "buildkit's attestation annotations"
        )
    foreign = put_index(harness, OCI_INDEX, [children["amd64"].entry(platform("x86_64")), entry])
    harness.extra_config = POLICIES[policy]

    result = harness.replay(harness.compose(NEW, arches=("x86_64",)))

    assert result.code == 3, result.err
    rows = report_rows(result.out)
    for tag in INDEX_TAGS:
        verdict, current, compose, reason = rows[tag]
        assert (verdict, current, compose) == ("hold", "x86_64", "x86_64")
        assert reason == f"{named}; the tag stays until that is fixed by hand"
        # The tag still serves what it served, arm64 entry included.
        assert harness.digest(TOOLBOX, tag) == foreign
        assert harness.index(TOOLBOX, tag)["manifests"][1] == entry
    assert len(held_lines(result.err)) == 2
    assert all(named in line for line in held_lines(result.err))
    assert harness.digest(TOOLBOX, "41-x86_64") is not None  # per-arch tags still move


def test_buildkit_attestations_are_not_arches(harness, children):
    amd64, arm64 = children["amd64"], children["arm64"]
    attestations = [
        children.attestation(image.digest).entry(
            {"architecture": "unknown", "os": "unknown"},
            annotations={
                "vnd.docker.reference.type": ATTESTATION,
                "vnd.docker.reference.digest": image.digest,
            },
        )
        for image in (amd64, arm64)
    ]
    buildx = put_index(
        harness,
        OCI_INDEX,
        [amd64.entry(platform("x86_64")), arm64.entry(platform("aarch64")), *attestations],
    )

    # The arm64 image counts, its attestation does not: a compose without aarch64 is held.
    held = harness.replay(harness.compose(OLD, arches=("x86_64",)))
    assert held.code == 3, held.err
    assert report_rows(held.out)["41"][1:] == (
        "x86_64,aarch64",
        "x86_64",
        "compose lacks aarch64, which the tag serves now",
    )
    assert harness.digest(TOOLBOX, "41") == buildx

    # A compose with both arches replaces the images; the attestations of the old ones go.
    result = harness.replay(harness.compose(NEW, arches=("x86_64", "aarch64")))
    assert result.code == 0, result.err
    assert report_rows(result.out)["41"][0] == "publish"
    manifests = harness.index(TOOLBOX, "41")["manifests"]
    assert [m["platform"]["architecture"] for m in manifests] == ["amd64", "arm64"]
    assert {m["mediaType"] for m in manifests} == {OCI_MANIFEST}


# -- a legacy Docker manifest list of schema2 images -------------------------------------------


@pytest.fixture
def legacy_list(harness, children) -> str:
    """What the old releng script left: schema2 images in a Docker manifest list."""
    manifests = [
        children["amd64_v2s2"].entry(platform("x86_64")),
        children["arm64_v2s2"].entry({**platform("aarch64"), "variant": "v8"}),
    ]
    assert {m["mediaType"] for m in manifests} == {DOCKER_MANIFEST}
    return put_index(harness, DOCKER_MANIFEST_LIST, manifests)


@pytest.mark.parametrize(
    ("policy", "reason"),
    [
        (
            "carry-forward",
            "cannot carry the schema2 aarch64 image into an OCI index "
            "(it would mix Docker and OCI manifests)",
        ),
        ("strict", "compose lacks aarch64, which the tag serves now"),
    ],
)
def test_a_legacy_list_is_never_mixed_into_an_oci_index(harness, legacy_list, policy, reason):
    harness.extra_config = POLICIES[policy]

    result = harness.replay(harness.compose(NEW, arches=("x86_64",)))

    assert result.code == 3, result.err
    for tag in INDEX_TAGS:
        assert report_rows(result.out)[tag] == ("hold", "x86_64,aarch64", "x86_64", reason)
        assert harness.digest(TOOLBOX, tag) == legacy_list
        listed = harness.index(TOOLBOX, tag)
        assert listed["mediaType"] == DOCKER_MANIFEST_LIST
        assert {m["mediaType"] for m in listed["manifests"]} == {DOCKER_MANIFEST}


def test_first_publish_over_a_legacy_list_under_strict(harness, legacy_list):
    result = harness.replay(harness.compose(NEW, arches=("x86_64", "aarch64")))

    assert result.code == 0, result.err
    for tag in INDEX_TAGS:
        verdict, current, compose, reason = report_rows(result.out)[tag]
        assert (verdict, current, compose) == ("publish", "x86_64,aarch64", "x86_64,aarch64")
        assert reason.startswith("all current arches present")
        index = harness.index(TOOLBOX, tag)
        assert index["mediaType"] == OCI_INDEX
        assert {m["mediaType"] for m in index["manifests"]} == {OCI_MANIFEST}
        assert len(index["manifests"]) == 2
    # A pull for arm64 gets this compose's build through the new index.
    registry = harness.registries[0]
    inspected = subprocess.run(
        ["skopeo", "--override-arch", "arm64", "inspect", "--tls-verify=false",
         f"docker://{registry.host}/{harness.repo(TOOLBOX)}:41"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    labels = json.loads(inspected.stdout)["Labels"]
    assert (labels["build-id"], labels["fedora-arch"]) == (NEW, "aarch64")


# -- the audit reads indexes the same way ------------------------------------------------------


def test_the_audit_reports_an_entry_it_cannot_read(harness, children):
    arm64 = children["arm64"]
    foreign = put_index(
        harness,
        OCI_INDEX,
        [children["amd64"].entry(platform("x86_64")), arm64.entry({"architecture": "arm64"})],
    )

    result = harness.run("audit", "--config", str(harness.config()), "--json")

    assert result.code == 3, result.err
    document = json.loads(result.out)
    jsonschema.validate(document, DOCUMENT_SCHEMA)
    found = {(f["kind"], f["tag"]) for f in document["findings"]}
    assert found == {("unrecognized", "41"), ("unrecognized", "latest")}
    finding = document["findings"][0]
    assert finding["severity"] == "error"
    assert finding["digest"] == foreign
    assert finding["summary"] == (
        f"index entry 2 ({arm64.digest[:19]}, ?/arm64) has no platform os; "
        "the gate holds this tag until that is fixed by hand"
    )
    assert document["counts"]["unrecognized"] == 2
