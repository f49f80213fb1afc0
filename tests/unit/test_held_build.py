"""When a per-arch tag already holds this compose's build: the registry as the record."""

import pytest

from fedora_container_sync.gate.verdicts import CurrentTag, Verdict, decide_arch_tag, held_build
from fedora_container_sync.oci.index import IndexEntry, UnknownEntry

COMPOSE = "Fedora-41-20241026.0"
OTHER = "Fedora-41-20241025.0"
SHA = "a" * 64
OCI = "application/vnd.oci.image.manifest.v1+json"
SCHEMA2 = "application/vnd.docker.distribution.manifest.v2+json"


def tag(arch="x86_64", compose=COMPOSE, sha=SHA, *, digest="sha256:one", more=(), media=OCI):
    """A per-arch tag as _current reads it: one entry, from the manifest's annotations."""
    entries = {arch: IndexEntry(arch, media, digest, 900, compose, sha)}
    entries.update({a: IndexEntry(a, OCI, f"sha256:{a}", 900, compose, sha) for a in more})
    return CurrentTag(digest, compose, entries)


@pytest.mark.parametrize(
    ("current", "held"),
    [
        (tag(), True),
        (None, False),  # no tag yet
        (tag(compose=OTHER), False),  # another compose's build
        (tag(compose=None), False),  # not written by this tool
        (tag(sha="b" * 64), False),  # built from another file
        (tag(sha=None), False),  # no checksum recorded
        (tag(arch="aarch64"), False),  # another arch's image under this tag
        (tag(more=("aarch64",)), False),  # an index, not one image
        (CurrentTag("sha256:index", COMPOSE, tag().entries), False),  # digest is not the image's
        (tag(media=SCHEMA2), False),  # annotations on a schema2 image: not what we push
        (CurrentTag("sha256:one", COMPOSE, tag().entries, (UnknownEntry("x", "y"),)), False),
    ],
)
def test_held_build(current, held):
    found = held_build(current, "x86_64", image_sha256=SHA, compose_id=COMPOSE)
    assert (found is not None) == held
    if held:
        assert found == current.entries["x86_64"]


def test_a_held_build_is_unchanged_for_the_rollback_guard():
    current = tag()
    held = held_build(current, "x86_64", image_sha256=SHA, compose_id=COMPOSE)
    decision = decide_arch_tag(current, "x86_64", held.digest, compose_id=COMPOSE)
    assert decision.verdict is Verdict.UNCHANGED


def test_a_newer_compose_is_stale_without_any_build():
    decision = decide_arch_tag(
        tag(compose="Fedora-41-20241027.0"), "x86_64", None, compose_id=COMPOSE
    )
    assert decision.verdict is Verdict.STALE
