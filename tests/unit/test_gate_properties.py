"""Properties of the gate and the rollback guard over random histories (hypothesis).

An in-memory model of one registry repository - per-arch tags and index tags, each holding
what the real registry would hold - is driven by random sequences of composes with random
arch failures (an arch missing from the compose, or its push failing) and random replays of
old composes, through the same decisions, in the same order, as ``publish/``: per-arch tags
first (rollback guard only), then every index tag (guard, then gate). The oracle knows the
order of composes by construction, not from ``ordering.py``.
"""

from __future__ import annotations

import datetime
import json
from dataclasses import dataclass, field, replace

from hypothesis import given, settings
from hypothesis import strategies as st

from fedora_container_sync.gate.verdicts import CurrentTag, Verdict, decide, decide_arch_tag
from fedora_container_sync.oci.index import IndexEntry, read_index
from fedora_container_sync.oci.manifest import Manifest, digest_of

ARCHES = ("x86_64", "aarch64", "ppc64le", "s390x")
INDEX_TAGS = ("41", "latest")
OCI = "application/vnd.oci.image.manifest.v1+json"
START = datetime.date(2024, 10, 1)


@dataclass(frozen=True)
class Compose:
    seq: int  # the oracle's order: a higher seq is a newer compose
    compose_id: str
    arches: frozenset[str]  # what the compose built (the rest failed in the compose)


@dataclass
class Repository:
    """The registry, as far as one repository goes: tag → what it holds."""

    arch_tags: dict[str, CurrentTag] = field(default_factory=dict)
    index_tags: dict[str, CurrentTag] = field(default_factory=dict)


def image(compose: Compose, arch: str) -> IndexEntry:
    digest = digest_of(f"{compose.compose_id}/{arch}".encode())
    return IndexEntry(arch, OCI, digest, 1000, compose.compose_id)


def run(
    repo: Repository,
    compose: Compose,
    push_failures: frozenset[str],
    *,
    policy: str,
    expected: frozenset[str] | None = None,
    allow_drop: frozenset[str] = frozenset(),
) -> None:
    """One compose through the decisions publish/ makes, applied to the model."""
    entries: dict[str, IndexEntry | None] = {}
    stale: dict[str, str] = {}
    for arch in sorted(compose.arches):
        if arch in push_failures:
            continue  # skopeo failed: the tag is untouched, the arch is "failed"
        built = image(compose, arch)
        tag = f"41-{arch}"
        decision = decide_arch_tag(
            repo.arch_tags.get(tag), arch, built.digest, compose_id=compose.compose_id
        )
        if decision.verdict is Verdict.STALE:
            stale[arch] = decision.holder or ""
            continue
        repo.arch_tags[tag] = CurrentTag(built.digest, compose.compose_id, {arch: built})
        entries[arch] = built
    failed = set(compose.arches) - entries.keys() - stale.keys()
    for tag in INDEX_TAGS:
        decision = decide(
            repo.index_tags.get(tag),
            entries,
            compose_id=compose.compose_id,
            policy=policy,
            expected=expected,
            failed=failed,
            stale=stale,
            allow_drop=allow_drop,
        )
        if decision.moves_tag:
            body = decision.index_body(compose.compose_id)
            held = {entry.arch: entry for entry in decision.entries}
            repo.index_tags[tag] = CurrentTag(digest_of(body), compose.compose_id, held)


arch_sets = st.frozensets(st.sampled_from(ARCHES))
new_compose = st.tuples(
    st.just("new"),
    st.booleans(),  # a respin of the previous day rather than a new day
    arch_sets.filter(bool),  # what the compose built
    arch_sets,  # pushes that fail in this run
    st.one_of(*[st.just(frozenset())] * 5, arch_sets),  # --allow-drop, now and then
)
replay = st.tuples(st.just("replay"), st.integers(min_value=0), arch_sets)
histories = st.lists(st.one_of(new_compose, new_compose, replay), min_size=1, max_size=30)


def composes(steps):
    """Turn generated steps into (compose, push failures, allow_drop) runs."""
    made: list[Compose] = []
    day, respin = 0, 0
    for step in steps:
        if step[0] == "replay" and made:
            yield made[step[1] % len(made)], step[2], frozenset()
            continue
        if step[0] == "replay":
            continue
        _, is_respin, arches, failures, allow_drop = step
        if is_respin and made:
            respin += 1
        else:
            day, respin = day + 1, 0
        date = (START + datetime.timedelta(days=day)).strftime("%Y%m%d")
        compose = Compose(len(made), f"Fedora-41-{date}.{respin}", arches)
        made.append(compose)
        yield compose, failures, allow_drop


def seq_of(held: CurrentTag, by_id: dict[str, int]) -> int:
    return by_id[held.compose_id or ""]


def check_history(steps, policy, expected=None):
    repo = Repository()
    by_id: dict[str, int] = {}
    must_list: dict[str, frozenset[str]] = {}  # index tag → arches published and not retired
    for compose, failures, allow_drop in composes(steps):
        by_id[compose.compose_id] = compose.seq
        before_index = dict(repo.index_tags)
        before_arch = dict(repo.arch_tags)
        newest = max(by_id.values())
        run(repo, compose, failures, policy=policy, expected=expected, allow_drop=allow_drop)

        # No tag ever moves to an older compose.
        for tag, held in [*repo.index_tags.items(), *repo.arch_tags.items()]:
            previous = before_index.get(tag) or before_arch.get(tag)
            if previous is not None and previous.digest != held.digest:
                assert seq_of(held, by_id) >= seq_of(previous, by_id), (tag, compose)
        for tag, held in repo.index_tags.items():
            for entry in held.entries.values():  # every entry is the image its compose built
                assert entry == image(Compose(0, entry.compose_id or "", frozenset()), entry.arch)

            if expected is not None:
                # The configured list is the authority: nothing else, nothing less.
                if held.digest != (before_index.get(tag) or held).digest or tag not in before_index:
                    assert held.arches <= expected
                    assert expected - allow_drop <= held.arches
                continue
            # No index tag loses an arch that was not retired (--allow-drop) on purpose.
            retired_now = allow_drop
            assert must_list.get(tag, frozenset()) - retired_now <= held.arches, (tag, compose)
            must_list[tag] = held.arches
            if policy == "carry-forward" and compose.seq == newest and not failures:
                # ...and a complete, newest run always moves the tag (carrying what is missing).
                assert held.compose_id == compose.compose_id, (tag, compose)


@settings(max_examples=300, deadline=None)
@given(histories)
def test_strict_never_loses_an_arch_and_never_rolls_back(steps):
    check_history(steps, "strict")


@settings(max_examples=300, deadline=None)
@given(histories)
def test_carry_forward_keeps_every_arch_ever_published(steps):
    check_history(steps, "carry-forward")


@settings(max_examples=150, deadline=None)
@given(histories, st.sampled_from(["strict", "carry-forward"]), arch_sets.filter(bool))
def test_expected_arches_are_the_authority(steps, policy, expected):
    check_history(steps, policy, expected)


# -- foreign indexes: nothing the gate cannot read is ever dropped -----------------------------
#
# Random current indexes as other tools (buildx, the legacy releng script, an attacker) write
# them - any mix of entries that map to a Fedora arch, odd entries and attestations - against
# random composes, policies and operator options. The oracle knows by construction which
# entries are images of which arch, which are positive attestations and which are odd.

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
SCHEMA2 = "application/vnd.docker.distribution.manifest.v2+json"
OLD_COMPOSE = "Fedora-41-20241025.0"
NEW_COMPOSE = "Fedora-41-20241026.0"

#: Platforms that are certainly a Fedora arch.
KNOWN_FORMS = {
    "x86_64": [{"architecture": "amd64", "os": "linux"}],
    "aarch64": [
        {"architecture": "arm64", "os": "linux"},
        {"architecture": "arm64", "os": "linux", "variant": "v8"},
    ],
    "ppc64le": [{"architecture": "ppc64le", "os": "linux"}],
    "s390x": [{"architecture": "s390x", "os": "linux"}],
    "armhfp": [{"architecture": "arm", "os": "linux", "variant": "v7"}],
    "i686": [{"architecture": "386", "os": "linux"}],
}
KNOWN = [form for forms in KNOWN_FORMS.values() for form in forms]


@dataclass(frozen=True)
class Raw:
    """A generated entry: what it is by construction, and its JSON."""

    kind: str  # "image" (arch known), "odd", "attestation" (of entry ``subject``)
    json: object
    arch: str | None = None
    subject: int | None = None


def _descriptor(media_type, platform, **more):
    raw = {"mediaType": media_type, "size": 512, **more}
    if platform is not None:
        raw["platform"] = platform
    return raw


known_image = st.builds(
    lambda arch, n, media, compose: Raw(
        "image",
        _descriptor(
            media,
            KNOWN_FORMS[arch][n % len(KNOWN_FORMS[arch])],
            annotations={} if compose is None else {"org.fedoraproject.compose.id": compose},
        ),
        arch,
    ),
    st.sampled_from(sorted(KNOWN_FORMS)),
    st.integers(0, 1),
    st.sampled_from([OCI, SCHEMA2]),
    st.sampled_from([None, OLD_COMPOSE]),
)
UNKNOWN_PLATFORM = {"architecture": "unknown", "os": "unknown"}
ATTESTATION_TYPE = {"vnd.docker.reference.type": "attestation-manifest"}
#: Entries that are certainly not an image of a Fedora arch nor buildkit's attestation.
ODD = [
    # platforms with a part missing, of another system, or of an arch or variant Fedora lacks
    *(
        Raw("odd", _descriptor(OCI, platform))
        for platform in [
            None,
            "linux/arm64",
            {"architecture": "arm64"},
            {"os": "linux"},
            {"architecture": "arm64", "os": "linux", "variant": "v9"},
            {"architecture": "arm", "os": "linux", "variant": "v6"},
            {"architecture": "arm", "os": "linux"},
            {"architecture": "amd64", "os": "linux", "variant": "v3"},
            {"architecture": "amd64", "os": "windows"},
            {"architecture": "arm64", "os": "linux", "os.features": ["sse4"]},
            {"architecture": "amd64", "os": "linux", "os.version": "10.0"},
        ]
    ),
    # what is not an image manifest
    *(
        Raw("odd", _descriptor(media_type, KNOWN_FORMS["aarch64"][0]))
        for media_type in [OCI_INDEX, DOCKER_LIST, "application/vnd.oci.artifact.manifest.v1+json"]
    ),
    Raw("odd", _descriptor(OCI, KNOWN_FORMS["aarch64"][0], artifactType="application/example")),
    # attestation-style annotations on a runnable platform; unknown/unknown without them
    Raw("odd", _descriptor(OCI, KNOWN_FORMS["aarch64"][1], annotations=ATTESTATION_TYPE)),
    Raw("odd", _descriptor(OCI, UNKNOWN_PLATFORM)),
    Raw("odd", _descriptor(OCI, UNKNOWN_PLATFORM, annotations=ATTESTATION_TYPE)),
    Raw("attestation", None, subject=99),  # of an entry the index does not list
    # malformed
    Raw("odd", "linux/amd64"),
    Raw("odd", None),
    Raw("odd", {"size": 1}),
    Raw("odd", {"mediaType": OCI, "size": "512", "platform": KNOWN_FORMS["s390x"][0]}),
]
#: ... and random platforms that are not a Fedora arch.
odd_platforms = st.fixed_dictionaries(
    {},
    optional={
        "architecture": st.sampled_from(["arm64", "amd64", "arm", "mips64le", "AMD64", ""]),
        "os": st.sampled_from(["linux", "windows", "unknown", "Linux", ""]),
        "variant": st.sampled_from(["v9", "v6", "v3", "", 8]),
        "os.features": st.just(["sse4"]),
        "os.version": st.just("10.0"),
    },
).filter(lambda p: p not in KNOWN and {k: v for k, v in p.items() if v} not in KNOWN)
odd_entry = st.one_of(
    st.sampled_from(ODD),
    st.builds(
        lambda p, m: Raw("odd", _descriptor(m, p)), odd_platforms, st.sampled_from([OCI, SCHEMA2])
    ),
)
attestation_of = st.builds(lambda n: Raw("attestation", None, subject=n), st.integers(0, 8))


def _with_attestations(images: list[Raw], subjects: list[int]) -> list[Raw]:
    if not images:
        return images
    return images + [Raw("attestation", None, subject=n % len(images)) for n in subjects]


def _with_one_odd(readable: list[Raw], odd: Raw | None, at: int) -> list[Raw]:
    """``readable`` with one odd entry at ``at``: ``odd``, or (None) a second image of an arch
    it already lists."""
    images = [raw for raw in readable if raw.kind == "image"]
    if odd is None and not images:
        return readable
    if odd is None:
        odd = images[at % len(images)]
    at = at % (len(readable) + 1)
    # Attestations name their subject by position: keep them pointing at the same entry.
    shifted = [
        replace(raw, subject=raw.subject + 1)
        if raw.subject is not None and raw.subject >= at
        else raw
        for raw in readable
    ]
    return [*shifted[:at], odd, *shifted[at:]]


readable_entries = st.builds(
    _with_attestations,
    st.lists(known_image, unique_by=lambda raw: raw.arch, max_size=6),
    st.lists(st.integers(0, 5), max_size=3),
)
#: Indexes of entries the gate can read - one image per arch, attestations of them - so that
#: carrying, retiring and media types get explored; the same with exactly one odd entry, so
#: that each kind of odd entry is the only thing that can hold the tag; and any mix.
index_entries = st.one_of(
    readable_entries,
    st.builds(
        _with_one_odd,
        readable_entries,
        st.none() | st.sampled_from(ODD) | odd_entry,
        st.integers(0, 10),
    ),
    st.lists(st.one_of(known_image, known_image, odd_entry, attestation_of), max_size=8),
)


def current_index(entries: list[Raw], list_type: str) -> tuple[Manifest, list[Raw]]:
    """The index's bytes, and what each entry is (an attestation of a missing or unfit
    subject, or the second image of one arch, is odd)."""
    manifests: list[object] = []
    truth: list[Raw] = []
    digests = [digest_of(f"entry {n}".encode()) for n in range(len(entries))]
    seen: set[str] = set()
    for n, raw in enumerate(entries):
        if raw.kind == "attestation":
            subject = raw.subject if raw.subject is not None else -1
            fit = subject < len(entries) and entries[subject].kind in ("image", "odd")
            fit = fit and isinstance(entries[subject].json, dict)
            fit = fit and {"size", "mediaType"} <= set(entries[subject].json)
            target = digests[subject] if fit else digest_of(b"nowhere")
            document: object = _descriptor(
                OCI,
                {"architecture": "unknown", "os": "unknown"},
                digest=digests[n],
                annotations={
                    "vnd.docker.reference.type": "attestation-manifest",
                    "vnd.docker.reference.digest": target,
                },
            )
            truth.append(Raw("attestation" if fit else "odd", document))
        elif isinstance(raw.json, dict) and "size" in raw.json and "mediaType" in raw.json:
            document = {**raw.json, "digest": digests[n]}
            duplicate = raw.kind == "image" and raw.arch in seen
            if raw.kind == "image":
                seen.add(raw.arch or "")
            truth.append(Raw("odd" if duplicate else raw.kind, document, raw.arch))
        else:
            document = raw.json
            truth.append(raw)
        manifests.append(document)
    body = json.dumps({"schemaVersion": 2, "mediaType": list_type, "manifests": manifests})
    return Manifest(list_type, digest_of(body.encode()), body.encode()), truth


compose_arches = st.frozensets(st.sampled_from(ARCHES), min_size=1)


@settings(max_examples=1000, deadline=None)
@given(
    index_entries,
    st.sampled_from([OCI_INDEX, DOCKER_LIST]),
    compose_arches,
    st.sampled_from(["strict", "carry-forward"]),
    st.one_of(st.none(), arch_sets),
    arch_sets,
    st.booleans(),
)
def test_no_written_index_lacks_an_entry_that_was_not_a_positive_attestation(
    entries, list_type, arches, policy, expected, allow_drop, force
):
    found, truth = current_index(entries, list_type)
    current = CurrentTag.of(found)
    compose = Compose(1, NEW_COMPOSE, arches)
    decision = decide(
        current,
        {arch: image(compose, arch) for arch in arches},
        compose_id=NEW_COMPOSE,
        policy=policy,
        expected=expected,
        allow_drop=allow_drop,
        force=force,
    )
    odd = [raw for raw in truth if raw.kind == "odd"]
    if odd:  # an entry the gate cannot read holds the tag, under every policy
        assert not decision.moves_tag, (decision, odd)
        assert decision.verdict in (Verdict.HOLD, Verdict.STALE)
        return
    if not decision.moves_tag:
        return
    written = json.loads(decision.index_body(NEW_COMPOSE))["manifests"]
    by_arch = {m["annotations"]["org.fedoraproject.arch"]: m for m in written}
    assert len(by_arch) == len(written)
    for raw in truth:
        if raw.kind != "image":
            continue
        assert raw.arch is not None and isinstance(raw.json, dict)
        retired = raw.arch in allow_drop or (expected is not None and raw.arch not in expected)
        assert raw.arch in by_arch or retired, (raw, decision.reason)
        if raw.arch in decision.carried:  # carried: the very same image
            assert by_arch[raw.arch]["digest"] == raw.json["digest"]
    # ... and never a mix of Docker and OCI manifests.
    assert {m["mediaType"] for m in written} == {OCI}


ENTRY_KEYS = ["mediaType", "digest", "size", "platform", "annotations", "architecture", "os"]
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(
            st.sampled_from([*ENTRY_KEYS, "variant", "artifactType"]), inner, max_size=5
        )
    ),
    max_leaves=12,
)


@settings(max_examples=500, deadline=None)
@given(
    st.lists(
        st.one_of(
            known_image.map(lambda raw: raw.json),
            odd_entry.map(lambda raw: raw.json),
            json_values,
        ),
        max_size=10,
    ),
    st.sampled_from([OCI_INDEX, DOCKER_LIST]),
)
def test_reading_accounts_for_every_entry_with_one_clean_line(manifests, list_type):
    body = json.dumps({"mediaType": list_type, "manifests": manifests}).encode()
    content = read_index(Manifest(list_type, digest_of(body), body))
    read = len(content.images) + len(content.attestations) + len(content.unknown)
    assert read == len(manifests)
    for unknown in content.unknown:
        line = str(unknown)
        assert line.isascii() and line.isprintable() and len(line) < 400, line
