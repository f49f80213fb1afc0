"""Text from outside, printed or logged (issue 20, classes 4, 5, 6 and 7): secrets in URLs are
redacted wherever a URL is printed (the compose allowlist, bodhi.url, a message's location);
compose ids match Pungi's grammar with a bounded length or the message is refused for good
(never a work-dir failure); control characters from outside never reach the terminal raw; an
images.json describing another compose is refused. End to end: the real CLI, compose server and
registry on 127.0.0.1."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_performance import recording_skopeo

from fedora_container_sync.compose.bodhi import clear_cache
from support.harness import REPOS, Harness

pytestmark = pytest.mark.integration

COMPOSE = "Fedora-41-20241025.0"
SECRET = "s3cret-Pa55word-0f-the-0perator"
#: what no output line may hold raw: C0/C1 controls but tab, DEL, line separators, overrides
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
RAW_CONTROL = re.compile("[\x00-\x08\x0a-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


def output(result) -> str:
    return result.out + result.err


def nothing_published(harness: Harness) -> bool:
    registry = harness.registries[0]
    return all(registry.tags(harness.repo(repository)) == [] for repository in REPOS.values())


def no_raw_control(text: str) -> bool:
    return not any(RAW_CONTROL.search(line) for line in text.split("\n"))


# --- class 4: secrets in URLs --------------------------------------------------------------------


@pytest.mark.parametrize(
    "where",
    [
        "compose_url_allowlist",
        "compose_url_allowlist token",
        "location query token",
        "location user info",
        "bodhi.url",
    ],
)
def test_a_secret_in_a_url_is_never_printed(harness, where):
    body = harness.compose(COMPOSE, arches=("x86_64",))
    host = harness.server.url.removeprefix("http://")
    if where.startswith("compose_url_allowlist"):
        # another allowlist entry carries a password (or a token): the configuration is refused
        entry = (
            f"http://mirror:{SECRET}@{host}/elsewhere/"
            if where == "compose_url_allowlist"
            else f"http://{host}/elsewhere/?access_token={SECRET}"
        )
        written = harness.config

        def config() -> Path:
            path = written()
            path.write_text(
                path.read_text().replace(
                    "compose_url_allowlist = [", f'compose_url_allowlist = ["{entry}", '
                )
            )
            return path

        harness.config = config  # type: ignore[method-assign]
    elif where == "location query token":
        body["location"] = f"http://{host}/outside/compose?token={SECRET}&x=1"
    elif where == "location user info":
        body["location"] = f"http://user:{SECRET}@{host}/{harness.namespace}/{COMPOSE}/compose"
    else:
        clear_cache()
        harness.releases = None
        harness.extra_config = (
            f'[consumer_config.container.bodhi]\nurl = "http://bodhi:{SECRET}@127.0.0.1:9"\n'
        )
        harness.retry = {"attempts": 1, "initial_delay": 0.01, "max_delay": 0.01}

    result = harness.replay(body, args=["-v"])

    assert result.code != 0, output(result)
    assert SECRET not in output(result), output(result)
    assert SECRET[:12] not in output(result)
    assert nothing_published(harness)


# --- class 5 and 7: compose ids and control characters -------------------------------------------

FORGED = {
    "escape sequence": "Fedora-41-\x1b[2J\x1b]0;pwned\x07-20241025.0",
    "forged log line": "Fedora-41-20241025.0\nfedora-container-sync: ERROR: forged",
    "carriage return": "Fedora-41-20241025.0\rfedora-container-sync: INFO: all good",
    "bidi override": "Fedora-41-\u202e0.52014202-",
    "C1 control": "Fedora-41-\x9b31m-20241025.0",
    "path": "../../Fedora-41-20241025.0",
    "overlong": "Fedora-" + "Container-" * 30 + "41-20241025.0",
    "no date": "Fedora-41",
    "spaces": "Fedora 41 20241025.0",
}


@pytest.mark.parametrize("case", list(FORGED), ids=list(FORGED))
def test_a_compose_id_that_is_not_pungi_s_is_refused_and_never_printed_raw(harness, case):
    body = harness.compose(COMPOSE, arches=("x86_64",))
    body["compose_id"] = FORGED[case]

    result = harness.replay(body, args=["-v"])

    assert result.code == 2, output(result)  # refused for good: dropped, never requeued
    assert no_raw_control(output(result)), repr(output(result))
    forged = ("fedora-container-sync: ERROR: forged", "fedora-container-sync: INFO: all good")
    assert not [line for line in output(result).splitlines() if line.startswith(forged)]
    lines = [line for line in result.err.splitlines() if re.search(": (ERROR|error): ", line)]
    assert len(lines) == 1, result.err
    assert "compose_id" in lines[0] and "work_dir" not in lines[0], lines[0]
    assert nothing_published(harness)


def test_a_real_compose_id_forms_are_accepted(harness):
    body = harness.compose("Fedora-41-20241025.0", arches=("x86_64",))
    assert harness.replay(body).code == 0


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(text=st.text(min_size=1, max_size=300))
def test_any_compose_id_is_published_or_refused_in_one_safe_line(harness, text):
    """Whatever a message calls its compose: no raw control character and no traceback out."""
    body = harness.message_for(harness.compose_dir(harness.compose(COMPOSE, arches=("x86_64",))))
    body["compose_id"] = text
    result = harness.replay(body)
    assert result.code in (1, 2), output(result)
    assert no_raw_control(output(result)), repr(output(result))
    assert "Traceback" not in output(result)


def test_a_registry_s_error_code_is_escaped(harness, registry):
    """A registry answering an error code with escape sequences and a newline: the line that
    reports it shows them escaped."""
    from support.proxy import Fault, FaultProxy

    with FaultProxy(registry.url) as proxy:
        harness.registry_entries[registry.host] = (
            f'url = "{proxy.host}/{harness.namespace}"\ntls_verify = false\n'
        )
        code = "DENIED\x1b[31m\nfedora-container-sync: ERROR: forged"
        proxy.rule = lambda request: (
            Fault.lie(status=403, error=(code, "no"), headers={"Content-Type": "application/json"})
            if "/manifests/" in request.path
            else None
        )
        result = harness.replay(harness.compose(COMPOSE, arches=("x86_64",)))
    assert result.code == 1, output(result)
    assert no_raw_control(output(result)), repr(output(result))
    assert not [
        line
        for line in result.err.splitlines()
        if line.startswith("fedora-container-sync: ERROR: forged")
    ]
    assert "DENIED\\x1b[31m" in output(result)


# --- class 6: a compose that contradicts itself --------------------------------------------------


def test_an_images_json_of_another_compose_is_refused(harness):
    body = harness.compose(COMPOSE, arches=("x86_64",))
    images = harness.compose_dir(body) / "metadata" / "images.json"
    document = json.loads(images.read_text())
    document["payload"]["compose"]["id"] = "Fedora-40-20240101.0"
    images.write_text(json.dumps(document))

    result = harness.replay(body)

    assert result.code == 1, output(result)
    (line,) = [line for line in result.err.splitlines() if ": ERROR: " in line]
    assert "images.json lists the images of compose Fedora-40-20240101.0" in line
    assert nothing_published(harness)


# --- class 7: errors that name what failed -------------------------------------------------------


@pytest.mark.parametrize(
    ("tag", "document", "problem"),
    [
        ("41", {"schemaVersion": 2, "mediaType": OCI_INDEX}, "has no manifests list"),
        ("41-x86_64", {"schemaVersion": 2, "mediaType": OCI_MANIFEST}, "has no config descriptor"),
        ("latest", {"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": 7}, "no config"),
    ],
)
def test_a_manifest_error_names_the_registry_and_the_tag(harness, registry, tag, document, problem):
    from support.proxy import Fault, FaultProxy

    body = json.dumps(document).encode()
    digest = "sha256:" + hashlib.sha256(body).hexdigest()
    lie = Fault.lie(
        status=200,
        body=body,
        headers={"Content-Type": document["mediaType"], "Docker-Content-Digest": digest},
    )
    with FaultProxy(registry.url) as proxy:
        harness.registry_entries[registry.host] = (
            f'url = "{proxy.host}/{harness.namespace}"\ntls_verify = false\n'
        )
        proxy.rule = lambda request: lie if request.path.endswith(f"/manifests/{tag}") else None
        result = harness.replay(harness.compose(COMPOSE, arches=("x86_64",)))
        name = f"{proxy.host}/{harness.namespace}/fedora-toolbox:{tag}"
    lines = [line for line in result.err.splitlines() if ": ERROR: " in line and problem in line]
    assert lines, result.err
    assert all(f"{name}: " in line for line in lines), lines


def test_byte_identical_images_at_different_paths_do_not_collide(harness):
    """Two subvariants whose x86_64 files are the same bytes (a compose may well list one
    build twice): each is downloaded, converted and pushed on its own."""
    subvariants = ("Container_Toolbox", "Container_Base")
    body = harness.compose(COMPOSE, arches=("x86_64", "aarch64"), subvariants=subvariants)
    compose_dir = harness.compose_dir(body)
    images = compose_dir / "metadata" / "images.json"
    document = json.loads(images.read_text())
    for arch in ("x86_64",):
        entries = {e["subvariant"]: e for e in document["payload"]["images"]["Container"][arch]}
        toolbox = entries["Container_Toolbox"]
        for other in ("Container_Base",):
            copy = entries[other]
            (compose_dir / copy["path"]).write_bytes((compose_dir / toolbox["path"]).read_bytes())
            copy["size"], copy["checksums"] = toolbox["size"], dict(toolbox["checksums"])
    images.write_text(json.dumps(document))
    recording_skopeo(harness, pause=0.5)  # the two conversions overlap
    harness.extra_config += "max_parallel = 4\n"

    result = harness.replay(body)

    assert result.code == 0, output(result)
    for repository in ("fedora", "fedora-toolbox"):
        assert harness.arches(repository, "41") == {"x86_64", "aarch64"}
    assert harness.digest("fedora", "41-x86_64") == harness.digest("fedora-toolbox", "41-x86_64")
