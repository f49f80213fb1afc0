"""The audit's bus message: schema, topic, severity and the texts people read."""

from __future__ import annotations

from datetime import date

import jsonschema
import pytest
from fedora_messaging import message

from fedora_container_sync.audit.findings import Finding, Kind
from fedora_container_sync.bus.notify import finding_message
from fedora_container_sync.bus.schemas import AUDIT_FINDING as SCHEMA
from fedora_container_sync.bus.schemas import AuditFindingV1

HELD = Finding(
    Kind.HELD,
    "quay.io/fedora",
    "fedora-toolbox",
    "41",
    "x86_64",
    "41-x86_64 has Fedora-41-20241026.0; the index still serves Fedora-41-20241025.0 for x86_64",
    compose_id="Fedora-41-20241025.0",
    newer_compose_id="Fedora-41-20241026.0",
    index_compose_id="Fedora-41-20241025.0",
    digest="sha256:" + "a" * 64,
    since=date(2024, 10, 25),
    age_hours=78,
)


def test_registered_under_the_fedora_messages_entry_point():
    assert message.get_class(SCHEMA) is AuditFindingV1
    assert message.get_name(AuditFindingV1) == SCHEMA


@pytest.mark.parametrize(
    ("kind", "severity"),
    [
        (Kind.MISSING, message.ERROR),
        (Kind.DIVERGED, message.ERROR),
        (Kind.HELD, message.WARNING),
        (Kind.CARRIED, message.INFO),
        (Kind.UNRECOGNIZED, message.ERROR),
    ],
)
def test_one_message_per_finding(kind, severity):
    finding = Finding(kind, "registry.example", "fedora", "latest", None, "something")
    outgoing = finding_message(finding)
    outgoing.validate()
    assert outgoing.topic == f"fedora_container_sync.audit.finding.v1.{kind.value}"
    assert outgoing.severity == severity
    assert outgoing.body == finding.as_json()
    assert outgoing._headers["fedora_messaging_schema"] == SCHEMA
    assert outgoing._headers["fedora_messaging_container_registry.example/fedora:latest"] is True


def test_texts_for_people():
    outgoing = finding_message(HELD)
    assert outgoing.app_name == "fedora-container-sync"
    assert outgoing.containers == ["quay.io/fedora/fedora-toolbox:41"]
    assert outgoing.summary == (
        "held: quay.io/fedora/fedora-toolbox:41 x86_64: 41-x86_64 has Fedora-41-20241026.0; "
        "the index still serves Fedora-41-20241025.0 for x86_64"
    )
    text = str(outgoing)
    assert text.splitlines()[:3] == [
        "Audit finding (warning): held",
        "Tag: quay.io/fedora/fedora-toolbox:41",
        "Arch: x86_64",
    ]
    assert "Age: 78 hours" in text
    assert "Other registry" not in text


@pytest.mark.parametrize(
    "change",
    [
        {"kind": "stale"},
        {"age_hours": -1},
        {"registry": None},
        {"extra": 1},
    ],
)
def test_the_schema_rejects_bodies_that_break_the_document(change):
    with pytest.raises(jsonschema.ValidationError):
        AuditFindingV1(body={**HELD.as_json(), **change}).validate()
    body = HELD.as_json()
    del body["summary"]
    with pytest.raises(jsonschema.ValidationError):
        AuditFindingV1(body=body).validate()
