"""Which result messages a run announces, and that they satisfy their schemas."""

from __future__ import annotations

import copy

import jsonschema
import pytest
from fedora_image_uploader_messages import ContainerPublishedV1
from fedora_messaging import message as fm_message

from fedora_container_sync.bus.notify import result_messages
from fedora_container_sync.bus.results import held_body, published_moves
from fedora_container_sync.bus.schemas import TagHeldV1
from fedora_container_sync.errors import ComposeError
from fedora_container_sync.gate import verdicts as gate
from fedora_container_sync.oci.platforms import sorted_arches
from fedora_container_sync.publish.report import ComposeReport, TagAction, TagOutcome

CID = "Fedora-41-20241026.0"
ALL = {"x86_64", "aarch64", "ppc64le", "s390x"}
FEDORA = "registry.fedoraproject.org"
QUAY = "quay.io/fedora"


def outcome(registry, repository, tag, action, current=None, compose=ALL):
    """A tag outcome with the gate facts a real run records (the gate is tested elsewhere)."""
    current = None if current is None else frozenset(current)
    missing = (current or frozenset()) - frozenset(compose)
    verdict = gate.Verdict.HOLD if missing else gate.Verdict.PUBLISH
    reason = (
        f"compose lacks {', '.join(sorted_arches(missing))}, which the tag serves now"
        if missing
        else "all current arches present"
    )
    decision = gate.GateDecision(verdict, current, frozenset(compose), reason, missing=missing)
    return TagOutcome(registry, repository, tag, action, decision)


def run(*outcomes, release=41, dry_run=False) -> ComposeReport:
    report = ComposeReport(CID, dry_run=dry_run, release=release)
    report.tags.extend(outcomes)
    return report


def test_one_message_per_move():
    report = run(
        outcome(FEDORA, "fedora", "41", TagAction.PUBLISHED),
        outcome(FEDORA, "fedora", "latest", TagAction.PUBLISHED),
        outcome(QUAY, "fedora", "41", TagAction.PUBLISHED),
        outcome(QUAY, "fedora", "latest", TagAction.HELD, current=ALL, compose={"x86_64"}),
        outcome(QUAY, "fedora-toolbox", "41", TagAction.PUBLISHED, compose={"x86_64"}),
    )
    entries = published_moves(report)
    assert entries[0].body() == {
        "architectures": ["x86_64", "aarch64", "ppc64le", "s390x"],
        "compose_id": CID,
        "registries": [FEDORA],
        "release": 41,
        "repository": "fedora",
        "tags": ["41"],
    }
    # quay's "latest" was held: no message claims quay.io/fedora/fedora:latest.
    assert [(e.registries, e.repository, e.tags, e.architectures) for e in entries] == [
        ((FEDORA,), "fedora", ("41",), ("x86_64", "aarch64", "ppc64le", "s390x")),
        ((FEDORA,), "fedora", ("latest",), ("x86_64", "aarch64", "ppc64le", "s390x")),
        ((QUAY,), "fedora", ("41",), ("x86_64", "aarch64", "ppc64le", "s390x")),
        ((QUAY,), "fedora-toolbox", ("41",), ("x86_64",)),
    ]
    assert len({entry.message_id for entry in entries}) == 4


def test_a_move_announced_again_carries_the_id_it_was_first_announced_with():
    # A delivery moved fedora:41 and fedora:latest and was killed before announcing; the
    # redelivery moved quay's and finds fedora's already at the compose. What it announces
    # again is what the first delivery would have sent, under the same ids.
    first = run(
        outcome(FEDORA, "fedora", "41", TagAction.PUBLISHED),
        outcome(FEDORA, "fedora", "latest", TagAction.PUBLISHED),
    )
    again = run(
        outcome(FEDORA, "fedora", "41", TagAction.UNCHANGED),
        outcome(FEDORA, "fedora", "latest", TagAction.UNCHANGED),
        outcome(QUAY, "fedora", "41", TagAction.PUBLISHED),
    )
    sent_first = {m.id: m.body for m in result_messages(first)}
    sent_again = {m.id: m.body for m in result_messages(again, unchanged=True)}
    assert len(sent_first) == 2 and len(sent_again) == 3
    assert {i: sent_again[i] for i in sent_first} == sent_first
    # The id depends on the move only: another compose, tag, registry or arch set differs.
    (one,) = published_moves(first)[:1]
    others = [
        run(outcome(FEDORA, "fedora", "41", TagAction.PUBLISHED, compose={"x86_64"})),
        run(outcome(QUAY, "fedora", "41", TagAction.PUBLISHED)),
        run(outcome(FEDORA, "fedora", "41", TagAction.PUBLISHED), release=42),
    ]
    assert one.message_id not in {published_moves(other)[0].message_id for other in others}


def test_the_message_id_is_fixed_for_good():
    # Moves announced by an older version and again by a newer one must keep their ids: the
    # namespace and the canonical body are part of the contract.
    (entry,) = published_moves(run(outcome(FEDORA, "fedora", "41", TagAction.PUBLISHED)))
    assert entry.message_id == "e71a1d82-f4b5-5c46-9280-72e935a323e3"


@pytest.mark.parametrize(
    "report",
    [
        run(outcome(FEDORA, "fedora", "41", TagAction.WOULD_PUBLISH), dry_run=True),
        run(TagOutcome(FEDORA, "fedora", "41", TagAction.FAILED, error="registry answered 500")),
        run(outcome(FEDORA, "fedora", "41", TagAction.HELD, current=ALL, compose={"x86_64"})),
        run(),
    ],
    ids=["dry-run", "failed", "held", "nothing"],
)
def test_nothing_published_nothing_announced(report):
    assert published_moves(report) == []


def test_a_run_that_moved_nothing_announces_nothing_unless_asked():
    # A redelivery or a replay after the work was done: every tag already serves the compose.
    report = run(
        outcome(FEDORA, "fedora", "41", TagAction.UNCHANGED),
        outcome(FEDORA, "fedora", "latest", TagAction.UNCHANGED),
    )
    assert published_moves(report) == []
    assert result_messages(report) == []
    again = published_moves(report, unchanged=True)  # replay --announce
    assert [(e.registries, e.tags) for e in again] == [
        ((FEDORA,), ("41",)),
        ((FEDORA,), ("latest",)),
    ]


def test_tags_an_earlier_delivery_moved_are_not_announced_again():
    # An earlier delivery moved fedora's tags and announced them before quay's failure
    # requeued it; this one moved quay's and latest on fedora.
    report = run(
        outcome(FEDORA, "fedora", "41", TagAction.UNCHANGED),
        outcome(FEDORA, "fedora", "latest", TagAction.PUBLISHED),
        outcome(QUAY, "fedora", "41", TagAction.PUBLISHED),
        outcome(QUAY, "fedora", "latest", TagAction.PUBLISHED),
        outcome(FEDORA, "fedora-toolbox", "41", TagAction.UNCHANGED),
    )
    assert [(e.repository, e.registries, e.tags) for e in published_moves(report)] == [
        ("fedora", (FEDORA,), ("latest",)),
        ("fedora", (QUAY,), ("41",)),
        ("fedora", (QUAY,), ("latest",)),
    ]
    # A redelivery after one that died unanswered announces what already served it, too.
    assert [
        (e.repository, e.registries, e.tags) for e in published_moves(report, unchanged=True)
    ] == [
        ("fedora", (FEDORA,), ("41",)),
        ("fedora", (FEDORA,), ("latest",)),
        ("fedora", (QUAY,), ("41",)),
        ("fedora", (QUAY,), ("latest",)),
        ("fedora-toolbox", (FEDORA,), ("41",)),
    ]


def test_a_requeued_run_announces_its_moves_not_what_it_held():
    report = run(
        outcome(FEDORA, "fedora", "41", TagAction.PUBLISHED),
        outcome(QUAY, "fedora", "41", TagAction.HELD, current=ALL, compose={"x86_64"}),
    )
    (moved,) = result_messages(report, held=False)
    assert isinstance(moved, ContainerPublishedV1)
    assert [type(m) for m in result_messages(report)] == [ContainerPublishedV1, TagHeldV1]


def test_messages_validate_against_their_schemas():
    report = run(
        outcome(QUAY, "fedora-toolbox", "41", TagAction.PUBLISHED, compose={"x86_64"}),
        outcome(FEDORA, "fedora-toolbox", "41", TagAction.HELD, current=ALL, compose={"x86_64"}),
    )
    report.errors.append(ComposeError("aarch64: sha256 mismatch"))
    published, held = result_messages(report)
    assert isinstance(published, ContainerPublishedV1)
    assert isinstance(held, TagHeldV1)
    published.validate()
    held.validate()
    assert published.containers == ["quay.io/fedora/fedora-toolbox:41"]
    assert held.body["missing_arches"] == ["aarch64", "ppc64le", "s390x"]
    assert held.body["current_arches"] == ["x86_64", "aarch64", "ppc64le", "s390x"]
    assert held.body["verdict"] == "held"
    assert held.body["reason"] == "compose lacks aarch64, ppc64le, s390x, which the tag serves now"


def test_dry_run_announces_nothing():
    report = run(
        outcome(FEDORA, "fedora", "41", TagAction.WOULD_HOLD, current=ALL, compose={"x86_64"}),
        dry_run=True,
    )
    assert result_messages(report) == []


HELD_BODY = {
    "compose_id": CID,
    "release": 41,
    "registry": QUAY,
    "repository": "fedora-toolbox",
    "tag": "41",
    "verdict": "held",
    "reason": "compose lacks aarch64, which the tag serves now",
    "missing_arches": ["aarch64"],
    "current_arches": ["x86_64", "aarch64"],
    "compose_arches": ["x86_64"],
}


def test_tag_held_schema_is_registered_under_its_topic():
    assert fm_message.get_class("fedora_container_sync.tag.held.v1") is TagHeldV1
    message = TagHeldV1(body=HELD_BODY)
    assert message._headers["fedora_messaging_schema"] == "fedora_container_sync.tag.held.v1"
    assert message.app_name == "fedora-container-sync"
    assert message.containers == ["quay.io/fedora/fedora-toolbox:41"]


def test_tag_held_summary_and_text():
    message = TagHeldV1(body=HELD_BODY)
    assert message.summary == (
        f"fedora-container-sync held quay.io/fedora/fedora-toolbox:41 for compose {CID}: "
        "missing aarch64"
    )
    text = str(message)
    assert text.startswith(
        f"The tag quay.io/fedora/fedora-toolbox:41 was not moved to compose {CID}"
    )
    assert "\tMissing arches: aarch64\n" in text
    assert "\tArches served now: x86_64, aarch64\n" in text


@pytest.mark.parametrize(
    ("key", "value"),
    [("tag", None), ("release", "Rawhide"), ("missing_arches", "aarch64"), ("compose_id", 41)],
)
def test_tag_held_schema_rejects_bad_bodies(key, value):
    body = dict(HELD_BODY)
    if value is None:
        del body[key]  # a required key is missing
    else:
        body[key] = value
    with pytest.raises(jsonschema.ValidationError):
        TagHeldV1(body=body).validate()


def test_loading_a_serialized_held_message_gives_the_class():
    wire = fm_message.dumps(TagHeldV1(body=HELD_BODY))
    (loaded,) = fm_message.loads(wire)
    assert isinstance(loaded, TagHeldV1)
    assert loaded.body == HELD_BODY


NEWER = "Fedora-41-20241027.0"


def stale_outcome(tag: str) -> TagOutcome:
    decision = gate.GateDecision(
        gate.Verdict.STALE,
        frozenset(ALL),
        frozenset(ALL),
        f"holds {NEWER}, newer than this compose",
        holder=NEWER,
    )
    return TagOutcome(QUAY, "fedora-toolbox", tag, TagAction.HELD, decision)


def test_a_stale_tag_is_announced_as_stale_not_held():
    report = run(
        stale_outcome("41"),
        outcome(FEDORA, "fedora-toolbox", "41", TagAction.HELD, current=ALL, compose={"x86_64"}),
    )
    stale, held = result_messages(report)
    stale.validate()
    assert stale.body == {
        "compose_id": CID,
        "release": 41,
        "registry": QUAY,
        "repository": "fedora-toolbox",
        "tag": "41",
        "verdict": "stale",
        "newer_compose": NEWER,
        "reason": f"holds {NEWER}, newer than this compose",
        "missing_arches": [],
        "current_arches": ["x86_64", "aarch64", "ppc64le", "s390x"],
        "compose_arches": ["x86_64", "aarch64", "ppc64le", "s390x"],
    }
    assert stale.severity == fm_message.INFO and held.severity == fm_message.WARNING
    assert stale.summary == (
        f"fedora-container-sync kept quay.io/fedora/fedora-toolbox:41 at {NEWER}, "
        f"newer than compose {CID}"
    )
    assert f"\tNewer compose it serves: {NEWER}\n" in str(stale)
    assert (held.body["verdict"], "newer_compose" in held.body) == ("held", False)
    # The summary of the run tells them apart too.
    assert (len(report.held), len(report.stale_tags)) == (1, 1)


def test_the_v1_schema_grew_compatibly():
    """verdict "stale" and newer_compose were added within v1: a body of either kind is valid
    under the first v1 schema (verdict a free string, no newer_compose), and the first v1's
    bodies are valid under this one."""
    first = copy.deepcopy(TagHeldV1.body_schema)
    del first["properties"]["verdict"]["enum"]
    del first["properties"]["newer_compose"]
    stale = held_body(run(stale_outcome("latest")), stale_outcome("latest"))
    for body in (stale, HELD_BODY):
        jsonschema.validate(body, first)
        jsonschema.validate(body, TagHeldV1.body_schema)
    assert "newer_compose" not in TagHeldV1.body_schema["required"]
    with pytest.raises(jsonschema.ValidationError):
        TagHeldV1(body={**HELD_BODY, "verdict": "moved"}).validate()
