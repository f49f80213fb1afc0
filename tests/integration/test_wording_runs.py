"""Wording of real runs (issue 23, item 10): a compose 404 names the URL; an error about one
message of a file names its line; a misspelled topic is an error saying so, another topic is
ignored with the reason."""

from __future__ import annotations

import json

import pytest

from support.compose import serialized_message

pytestmark = pytest.mark.integration

OLD = "Fedora-41-20241025.0"
NEW = "Fedora-41-20241026.0"


def test_a_compose_404_names_the_url(harness):
    body = harness.compose(OLD, arches=("x86_64",))
    (harness.compose_dir(body) / "metadata" / "images.json").unlink()
    result = harness.replay(body)
    assert result.code == 1
    url = f"{body['location']}/metadata/images.json"
    assert f"metadata/images.json not found (HTTP 404) at {url}\n" in result.err


def test_an_allowlist_error_names_the_line_of_its_message(harness):
    good = harness.compose(OLD, arches=("x86_64",))
    outside = {
        **harness.compose(NEW, arches=("x86_64",)),
        "location": "https://elsewhere.example/c",
    }
    result = harness.replay(good, outside)
    assert result.code == 2
    assert result.err.startswith(f"fedora-container-sync: error: {harness.tmp}/messages.jsonl:2: ")
    assert "outside compose_url_allowlist" in result.err
    assert harness.digest("fedora-toolbox", "41-x86_64") is None  # nothing done


def test_a_misspelled_topic_is_an_error_another_topic_is_ignored_with_its_reason(harness):
    body = harness.compose(OLD, arches=("x86_64",))
    line = json.loads(serialized_message(body))
    misspelled = {**line, "topic": line["topic"].replace("status.change", "status.chnage")}
    path = harness.tmp / "typo.jsonl"
    path.write_text(json.dumps(misspelled) + "\n")
    result = harness.run("replay", "--config", str(harness.config()), str(path))
    assert result.code == 2
    assert result.err == (
        f"fedora-container-sync: error: {path}:1: {OLD}: topic {misspelled['topic']!r} does not "
        "end in 'pungi.compose.status.change', though the body is a Pungi status change "
        "(misspelled?)\n"
    )
    other = {**line, "topic": "org.fedoraproject.prod.bodhi.update.comment", "body": {"x": 1}}
    path.write_text(json.dumps(other) + "\n")
    result = harness.run("replay", "--config", str(harness.config()), str(path))
    assert result.code == 0
    assert result.out.startswith(
        f"ignored {line['id']}: topic org.fedoraproject.prod.bodhi.update.comment is not a "
        "pungi.compose.status.change"
    )
    started = {**line, "body": {**line["body"], "status": "STARTED"}}
    path.write_text(json.dumps(started) + "\n")
    result = harness.run("replay", "--config", str(harness.config()), str(path))
    assert result.out == (
        f"ignored {OLD}: status STARTED: only FINISHED or FINISHED_INCOMPLETE composes are "
        "published\n"
    )
