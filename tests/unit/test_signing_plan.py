"""What a run signs, as its plan and summary show it (issue 22): a dry run lists, per tag, the
signatures a real run would make sure of - identity and digest - and nothing for a tag that
does not move; a real run counts the signatures it wrote and those already there. Pure."""

from __future__ import annotations

from fedora_container_sync.compose.selection import ImageArtifact
from fedora_container_sync.config.settings import Settings
from fedora_container_sync.gate.tags import ReleaseTags
from fedora_container_sync.gate.verdicts import CurrentTag, Verdict
from fedora_container_sync.oci import mediatype
from fedora_container_sync.oci.index import IndexEntry
from fedora_container_sync.oci.manifest import digest_of
from fedora_container_sync.publish.context import PublishOptions
from fedora_container_sync.publish.plan import (
    PlannedSignature,
    RegistryState,
    TagSignatures,
    make_plan,
)
from fedora_container_sync.publish.report import WIDTH, ComposeReport, render
from fedora_container_sync.signing.tally import Tally

CID = "Fedora-41-20241026.0"
OLD = "Fedora-41-20241025.0"
REGISTRY = "registry.fedoraproject.org"
D_AARCH64 = "sha256:" + "2ea8a54f8f04" + "2" * 52
D_S390X = "sha256:" + "3" * 64
D_X86 = "sha256:" + "4" * 64
SHA = {"x86_64": "a" * 64, "aarch64": "b" * 64}
TAGS = ReleaseTags(41, ("41", "latest"))


def settings(*, signing: bool = True) -> Settings:
    config: dict[str, object] = {
        "repos": {"Container_Toolbox": "fedora-toolbox"},
        "registries": [{"url": REGISTRY}],
        "compose_url_allowlist": ["https://kojipkgs.example/compose/"],
    }
    if signing:
        config["signing"] = {"enabled": True, "public_key": "/etc/pki/containers/f.pub"}
    return Settings.model_validate(config)


def artifact(arch: str) -> ImageArtifact:
    path = f"Container/{arch}/images/fedora-toolbox.{arch}.oci.tar.xz"
    return ImageArtifact("fedora-toolbox", "Container_Toolbox", "Container", arch, path, 1024,
                         SHA[arch], "docker", "tar.xz")  # fmt: skip


def held(arch: str, digest: str) -> CurrentTag:
    """A per-arch tag holding this compose's build of ``arch``."""
    entry = IndexEntry(arch, mediatype.OCI_MANIFEST, digest, 500, CID, SHA[arch])
    return CurrentTag(digest, CID, {arch: entry})


def old_index(*arches: str) -> CurrentTag:
    digests = {"x86_64": D_X86, "aarch64": D_AARCH64, "s390x": D_S390X}
    entries = {
        arch: IndexEntry(arch, mediatype.OCI_MANIFEST, digests[arch], 500, OLD) for arch in arches
    }
    return CurrentTag("sha256:" + "9" * 64, OLD, entries)


def plan_for(tags: dict[tuple[str, str], CurrentTag | None], *, signing: bool = True):
    state = RegistryState(REGISTRY, tags)
    return make_plan(
        CID,
        TAGS,
        [artifact("x86_64"), artifact("aarch64")],
        [state],
        settings=settings(signing=signing),
        options=PublishOptions(),
    )


def by_identity(signing: tuple[TagSignatures, ...] | None) -> dict[str, TagSignatures]:
    assert signing is not None
    return {tag.identity: tag for tag in signing}


def name(tag: str) -> str:
    return f"{REGISTRY}/fedora-toolbox:{tag}"


def test_each_tag_gets_its_identity_for_its_digest_and_a_held_tag_nothing():
    plan = plan_for(
        {
            ("fedora-toolbox", "41-aarch64"): held("aarch64", D_AARCH64),
            # latest serves s390x, which this compose lacks: the strict gate holds it.
            ("fedora-toolbox", "latest"): old_index("x86_64", "aarch64", "s390x"),
        }
    )
    tags = by_identity(plan.signing)
    assert set(tags) == {name(t) for t in ("41-x86_64", "41-aarch64", "41", "latest")}
    # A push: the build, whose digest is known once converted.
    assert tags[name("41-x86_64")].signatures == (PlannedSignature(None, "x86_64"),)
    assert tags[name("41-x86_64")].moves
    # A tag holding this compose's build already: the same signature, written if missing.
    arm = tags[name("41-aarch64")]
    assert arm.signatures == (PlannedSignature(D_AARCH64, "aarch64"),)
    assert not arm.moves
    # A new index tag: the index and each entry, all for the index tag's identity.
    assert tags[name("41")].signatures == (
        PlannedSignature(None, "index"),
        PlannedSignature(None, "x86_64"),
        PlannedSignature(D_AARCH64, "aarch64"),
    )
    # Held: nothing signed.
    assert tags[name("latest")].signatures == ()
    assert tags[name("latest")].unsigned == "held"


def test_when_every_entry_is_known_so_is_the_index_digest_and_carried_entries_are_signed():
    plan = plan_for(
        {
            ("fedora-toolbox", "41-x86_64"): held("x86_64", D_X86),
            ("fedora-toolbox", "41-aarch64"): held("aarch64", D_AARCH64),
        }
    )
    (index,) = [i for i in plan.indexes if i.tag == "41"]
    assert index.decision is not None and index.decision.verdict is Verdict.PUBLISH
    expected = digest_of(index.decision.index_body(CID))
    signatures = by_identity(plan.signing)[name("41")].signatures
    assert signatures[0] == PlannedSignature(expected, "index")
    assert {s.digest for s in signatures[1:]} == {D_X86, D_AARCH64}

    # carry-forward: the s390x entry the tag serves is kept, and signed for the tag.
    carrying = settings().model_dump(mode="json")
    carrying["gate_policy"] = "carry-forward"
    state = RegistryState(
        REGISTRY, {("fedora-toolbox", "41"): old_index("x86_64", "aarch64", "s390x")}
    )
    plan = make_plan(
        CID,
        TAGS,
        [artifact("x86_64"), artifact("aarch64")],
        [state],
        settings=Settings.model_validate(carrying),
        options=PublishOptions(),
    )
    signatures = by_identity(plan.signing)[name("41")].signatures
    assert PlannedSignature(D_S390X, "s390x, kept") in signatures


def test_signing_off_plans_no_signature_and_the_summary_says_nothing_of_them():
    plan = plan_for({}, signing=False)
    assert plan.signing is None
    for dry_run in (True, False):
        text = render([ComposeReport(CID, dry_run=dry_run, plan=plan)])
        assert "sign" not in text


def test_a_dry_run_lists_each_signature_with_identity_and_digest_within_the_width():
    plan = plan_for(
        {
            ("fedora-toolbox", "41-aarch64"): held("aarch64", D_AARCH64),
            ("fedora-toolbox", "latest"): old_index("x86_64", "aarch64", "s390x"),
        }
    )
    lines = render([ComposeReport(CID, dry_run=True, plan=plan)]).splitlines()
    assert all(len(line) <= WIDTH for line in lines), max(lines, key=len)
    start = lines.index("  would sign (identity, digest, what; a dry run signs nothing):")
    rows = [line.split() for line in lines[start + 1 :] if line.startswith("    ")]
    # The layout may put what is signed below its row: read identity and digest.
    signed = [(row[0], row[1]) for row in rows if row[0].startswith(REGISTRY)]
    assert signed == [
        (name("41-x86_64"), "(once"),
        (name("41-aarch64"), "sha256:2ea8a54f8f04"),
        (name("41"), "(once"),
        (name("41"), "(once"),
        (name("41"), "sha256:2ea8a54f8f04"),
        (name("latest"), "-"),
    ]
    text = "\n".join(lines)
    assert "nothing: held" in text
    assert "aarch64, if missing" in text
    assert "signed:" not in text


def test_a_real_run_counts_signatures_written_and_those_already_there():
    plan = plan_for({})
    report = ComposeReport(CID, plan=plan, signed=6, already_signed=4)
    lines = render([report]).splitlines()
    assert "  signed: 6 signatures written, 4 already there" in lines
    assert "would sign" not in "\n".join(lines)
    free = render([ComposeReport(CID, plan=plan, signed=0, already_signed=10)])
    assert "  signed: 0 signatures written, 10 already there" in free.splitlines()


def test_the_tally_counts_each_signature_once_and_what_was_there_apart():
    tally = Tally()
    tally.add("r", "fedora", written=[("d1", "r/fedora:41")], present=[("d2", "r/fedora:41")])
    # Asked again (a tag gated again after a lost race): the same signatures, not new ones.
    tally.add("r", "fedora", written=[("d1", "r/fedora:41")], present=[("d1", "r/fedora:41")])
    tally.add("q", "fedora", present=[("d2", "q/fedora:41")])
    assert (tally.written, tally.present) == (1, 2)


def test_the_runs_log_line_counts_signatures_too(caplog):
    """The consumer has no summary on a terminal: its "done" line carries the count."""
    import logging

    from fedora_container_sync.publish.progress import RUN, Progress

    plan = plan_for({})
    with caplog.at_level(logging.INFO, logger=RUN):
        Progress(CID).finished(ComposeReport(CID, plan=plan, signed=6, already_signed=4))
        Progress(CID).finished(ComposeReport(CID, plan=plan_for({}, signing=False)))
    signed, unsigned = (record.getMessage() for record in caplog.records)
    assert signed.endswith("; 0 errors; signed: 6 signatures written, 4 already there")
    assert unsigned.endswith("; 0 errors")
