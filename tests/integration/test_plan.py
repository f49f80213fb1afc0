"""A dry run shows the plan a real run then executes: the same plan objects drive both.

One compose meets every kind of tag at once, on the real registry: a repository whose index is
carried forward (carry-forward policy), one held (expected_arches lists an arch the compose
lacks), one whose per-arch tag and index hold a newer compose (stale), and a repository never
published before (new tags). The dry run's plan must equal the plan the real run executed, and
what each run recorded must be what the plan said.
"""

from __future__ import annotations

from dataclasses import replace

import pytest

from fedora_container_sync.compose.message import parse_compose_message
from fedora_container_sync.config.load import load_settings
from fedora_container_sync.gate.verdicts import Verdict
from fedora_container_sync.oci.manifest import COMPOSE_ID
from fedora_container_sync.publish.pipeline import prepare_work_dir, publish_compose
from fedora_container_sync.publish.plan import ArchAction
from fedora_container_sync.publish.report import TagAction
from support.compose import ComposeImage, build_compose

pytestmark = pytest.mark.integration

OLD = "Fedora-41-20241025.0"
NEW = "Fedora-41-20241026.0"
NEWER = "Fedora-41-20241027.0"
REPOS = {
    "Container_Toolbox": "fedora-toolbox",
    "Container_Base": "fedora",
    "Container_Minimal_Base": "fedora-minimal",
    "Silverblue": "fedora-silverblue",
}


def compose(harness, compose_id, images):
    compose_dir = build_compose(
        harness.served_root / harness.namespace,
        compose_id=compose_id,
        release_version="41",
        images=[ComposeImage(subvariant, arch) for subvariant, arch in images],
    )
    return harness.message_for(compose_dir)


def test_a_dry_run_plans_what_the_real_run_then_does(harness):
    harness.repos = REPOS
    harness.extra_config = (
        'gate_policy = "carry-forward"\n'
        "[consumer_config.container.expected_arches]\n"
        'fedora = ["x86_64", "aarch64"]\n'
    )
    both = ("x86_64", "aarch64")
    old = [
        (s, a)
        for s in ("Container_Toolbox", "Container_Base", "Container_Minimal_Base")
        for a in both
    ]
    assert harness.replay(compose(harness, OLD, old)).code == 0
    # A newer compose already moved fedora-minimal's x86_64 tag, and its index (carrying aarch64).
    newer = compose(harness, NEWER, [("Container_Minimal_Base", "x86_64")])
    assert harness.replay(newer).code == 0

    body = compose(
        harness,
        NEW,
        [
            ("Container_Toolbox", "x86_64"),  # aarch64 failed: carried forward from OLD
            ("Container_Base", "x86_64"),  # aarch64 failed and is expected: held
            ("Container_Minimal_Base", "x86_64"),  # NEWER holds it: stale
            ("Container_Minimal_Base", "aarch64"),
            ("Silverblue", "x86_64"),  # a repository never published: new tags
        ],
    )
    settings = load_settings(harness.config())
    prepare_work_dir(settings)
    message = parse_compose_message(body, settings.compose_url_allowlist)
    tags = [(r, t) for r in REPOS.values() for t in ("41", "latest", "41-x86_64", "41-aarch64")]
    before = {tag: harness.digest(*tag) for tag in tags}
    dry = publish_compose(message, settings, dry_run=True)
    assert {tag: harness.digest(*tag) for tag in tags} == before  # the dry run wrote nothing
    real = publish_compose(message, settings)

    # The same plan drove both runs.
    assert dry.plan is not None and real.plan is not None
    assert dry.plan == real.plan
    plan = real.plan
    actions = {(t.repository, t.tag): t.action for t in plan.targets()}
    assert actions == {
        ("fedora-toolbox", "41-x86_64"): ArchAction.PUSH,
        ("fedora", "41-x86_64"): ArchAction.PUSH,
        ("fedora-minimal", "41-x86_64"): ArchAction.STALE,
        ("fedora-minimal", "41-aarch64"): ArchAction.PUSH,
        ("fedora-silverblue", "41-x86_64"): ArchAction.PUSH,
    }
    assert {image.artifact.name: image.build for image in plan.images} == {
        "fedora-toolbox/x86_64": True,
        "fedora/x86_64": True,
        "fedora-minimal/x86_64": False,  # stale everywhere: neither downloaded nor converted
        "fedora-minimal/aarch64": True,
        "fedora-silverblue/x86_64": True,
    }
    verdicts = {(i.repository, i.tag): i.decision.verdict for i in plan.indexes if i.decision}
    assert verdicts == {
        ("fedora-toolbox", "41"): Verdict.CARRY,
        ("fedora-toolbox", "latest"): Verdict.CARRY,
        ("fedora", "41"): Verdict.HOLD,
        ("fedora", "latest"): Verdict.HOLD,
        ("fedora-minimal", "41"): Verdict.STALE,
        ("fedora-minimal", "latest"): Verdict.STALE,
        ("fedora-silverblue", "41"): Verdict.PUBLISH,
        ("fedora-silverblue", "latest"): Verdict.PUBLISH,
    }
    assert len(plan.indexes) == len(verdicts)

    # Each run did what the plan said, per-arch tags first ...
    pushed = {ArchAction.PUSH: "publish", ArchAction.STALE: "stale"}
    dry_pushed = {ArchAction.PUSH: "would publish", ArchAction.STALE: "stale"}
    for report, verdict_of in ((real, pushed), (dry, dry_pushed)):
        rows = {(p.repository, p.tag): p.row()[1] for p in report.pushes}
        assert rows == {key: verdict_of[action] for key, action in actions.items()}
        assert all(p.ok for p in report.pushes)
    assert real.pushed == 4 and real.conversions == 4 and real.downloads == 4
    assert dry.pushed == 0 and dry.conversions == 0 and dry.downloads == 0

    # ... and index tags: the decisions the plan expected, taken again from the outcomes (the
    # real run's also list the entries it wrote, which a plan cannot know before building).
    moves = {Verdict.CARRY: TagAction.PUBLISHED, Verdict.PUBLISH: TagAction.PUBLISHED}
    expected = {(i.repository, i.tag): i.decision for i in plan.indexes}
    for report, dry_run in ((dry, True), (real, False)):
        assert {(t.repository, t.tag) for t in report.tags} == set(expected)
        for outcome in report.tags:
            planned = expected[(outcome.repository, outcome.tag)]
            assert planned is not None and outcome.decision is not None
            assert replace(outcome.decision, entries=()) == planned, outcome
            if dry_run:
                assert outcome.decision == planned
                action = TagAction.WOULD_PUBLISH if planned.moves_tag else TagAction.WOULD_HOLD
            else:
                assert bool(outcome.decision.entries) == planned.moves_tag
                action = moves.get(planned.verdict, TagAction.HELD)
            assert outcome.action is action, outcome
    assert dry.errors == [] and real.errors == []

    # The registry ended up as planned.
    assert harness.index("fedora-toolbox", "41")["annotations"][COMPOSE_ID] == NEW
    assert harness.arches("fedora-toolbox", "41") == {"x86_64", "aarch64"}
    assert harness.index("fedora", "41")["annotations"][COMPOSE_ID] == OLD
    assert harness.index("fedora-minimal", "41")["annotations"][COMPOSE_ID] == NEWER
    assert harness.arches("fedora-silverblue", "latest") == {"x86_64"}
