"""A bus message carries text from outside (a held tag's reason may quote a registry's or a
server's words): every string in its body goes through the one URL redaction of shown.py,
as every printed or logged line does. Pure."""

from __future__ import annotations

import json

from fedora_container_sync.bus.results import held_body
from fedora_container_sync.gate.verdicts import GateDecision, Verdict
from fedora_container_sync.publish.report import ComposeReport, TagAction, TagOutcome
from fedora_container_sync.shown import REDACTED, redacted

CID = "Fedora-41-20241026.0"
LEAKY = "https://release:hunter2@kojipkgs.example/compose/x?token=s3cr3t&arch=x86_64"


def test_a_held_tags_reason_with_a_secret_url_is_announced_redacted():
    decision = GateDecision(
        Verdict.HOLD,
        frozenset({"x86_64", "aarch64"}),
        frozenset({"x86_64"}),
        f"cannot read the aarch64 entry: {LEAKY} answered 500",
        missing=frozenset({"aarch64"}),
    )
    outcome = TagOutcome("quay.io/fedora", "fedora", "41", TagAction.HELD, decision)
    body = held_body(ComposeReport(CID, release=41), outcome)
    text = json.dumps(body)
    assert "hunter2" not in text and "s3cr3t" not in text, text
    assert body["reason"] == (
        f"cannot read the aarch64 entry: https://release:{REDACTED}@kojipkgs.example/compose/x"
        f"?token={REDACTED}&arch=x86_64 answered 500"
    )
    # Everything else as it was.
    assert body["missing_arches"] == ["aarch64"] and body["registry"] == "quay.io/fedora"


def test_redacted_reaches_every_string_of_a_body_and_leaves_the_rest():
    body = {"a": [LEAKY, 41, None, {"b": (LEAKY, True)}], LEAKY: 1.5}
    clean = redacted(body)
    assert "hunter2" not in repr(clean) and "s3cr3t" not in repr(clean)
    assert clean["a"][1:3] == [41, None] and clean["a"][3]["b"][1] is True
    assert isinstance(clean["a"][3]["b"], tuple)
