"""Percent-encoding that walks past the allowlist and the path checks, tried for real: a compose
outside the allowlist and an image file outside the compose, both reachable through the real
HTTP server on 127.0.0.1 once it has decoded the URL, must be neither fetched nor published."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import httpx
import pytest

from fedora_container_sync.compose.fetch import ComposeFetcher
from fedora_container_sync.compose.selection import ImageArtifact
from fedora_container_sync.config.settings import RetrySettings
from fedora_container_sync.errors import ComposeError
from fedora_container_sync.net.httpclient import new_client, request_limits
from support.compose import ComposeImage, build_compose
from support.harness import REPOS, Harness
from support.proxy import Fault, FaultProxy, ProxyRequest

pytestmark = pytest.mark.integration

COMPOSE = "Fedora-41-20241025.0"
#: '..' spelled the ways a server decodes back into '..'
ENCODED_DOTDOT = ["%2e%2e", "%2E%2E", ".%2e", "%2E.", "%252e%252e", "..;", "%2e%2e%2f%2e%2e"]


def nothing_published(harness: Harness) -> bool:
    registry = harness.registries[0]
    return all(registry.tags(harness.repo(repository)) == [] for repository in REPOS.values())


def served(url: str) -> int:
    """What the compose server answers for ``url`` (proof that the hostile input is real)."""
    with httpx.Client(timeout=10) as client:
        return client.get(url).status_code


def outside_compose(harness: Harness) -> Path:
    """A complete, valid compose next to the allowlisted directory, not under it."""
    return build_compose(
        harness.served_root / f"{harness.namespace}-outside",
        compose_id=COMPOSE,
        release_version="41",
        images=[ComposeImage("Container_Toolbox", "x86_64")],
    )


@pytest.mark.parametrize("dotdot", ENCODED_DOTDOT)
def test_a_location_climbing_out_encoded_is_refused_before_any_fetch(harness, dotdot):
    outside = outside_compose(harness)
    body = harness.message_for(outside)
    outside_path = body["location"].removeprefix(harness.server.url + "/")
    body["location"] = f"{harness.server.url}/{harness.namespace}/{dotdot}/{outside_path}"
    if dotdot in ("%2e%2e", "%2E%2E", ".%2e", "%2E."):
        # Python's http.server decodes and normalizes: the outside compose is right there.
        assert served(body["location"] + "/metadata/composeinfo.json") == 200
    harness.server.clear_requests()

    result = harness.replay(body)

    assert result.code == 2, result.err
    (line,) = result.err.splitlines()
    assert "location" in line and "compose_url_allowlist" not in line, line
    assert harness.server.requests == []
    assert nothing_published(harness)


def _move_image_out(harness: Harness, body: dict[str, Any], dotdot: str) -> tuple[Path, str]:
    """Move the x86_64 image file out of the compose (same bytes, same checksum) and point
    images.json at it through encoded '..' segments; return the file and its new path."""
    compose_dir = harness.compose_dir(body)
    images_json = compose_dir / "metadata" / "images.json"
    document = json.loads(images_json.read_text())
    entry = document["payload"]["images"]["Container"]["x86_64"][0]
    outside = harness.served_root / f"{harness.namespace}-outside" / "image.tar.xz"
    outside.parent.mkdir()
    shutil.move(compose_dir / entry["path"], outside)
    # compose/Container/ + four times '..' = the served root
    entry["path"] = "Container/" + f"{dotdot}/" * 4 + f"{harness.namespace}-outside/image.tar.xz"
    images_json.write_text(json.dumps(document, indent=4))
    return outside, entry["path"]


@pytest.mark.parametrize("dotdot", ["%2e%2e", "%2E%2E", ".%2e", "%2e."])
def test_an_image_path_climbing_out_encoded_is_refused(harness, dotdot):
    body = harness.compose(COMPOSE, arches=("x86_64",))
    outside, path = _move_image_out(harness, body, dotdot)
    assert served(f"{body['location']}/{path}") == 200  # the server would hand it out
    harness.server.clear_requests()

    result = harness.replay(body)

    assert result.code == 1, result.err
    errors = [line for line in result.err.splitlines() if ": ERROR: " in line]
    assert len(errors) == 1, result.err
    assert "path escapes the compose directory: it has an encoded '.'" in errors[0]
    assert not any(outside.name in path for _, path, _ in harness.server.requests)
    assert nothing_published(harness)


@pytest.fixture
def compose_proxy(compose_server) -> Any:
    with FaultProxy(compose_server.url) as proxy:
        yield proxy


@pytest.mark.parametrize("dotdot", ["%2e%2e", "%2E.", "%252e%252e", "..;"])
def test_a_redirect_climbing_out_encoded_is_not_followed(
    harness, compose_proxy, compose_server, dotdot
):
    """The compose host answers the image request with a redirect to a URL inside the
    allowlist by its text, outside once decoded: the target is never asked for."""
    harness.server = compose_proxy
    body = harness.compose(COMPOSE, arches=("x86_64",))
    compose_dir = harness.compose_dir(body)
    images = json.loads((compose_dir / "metadata" / "images.json").read_text())
    image = compose_dir / images["payload"]["images"]["Container"]["x86_64"][0]["path"]
    outside = harness.served_root / f"{harness.namespace}-outside" / image.name
    outside.parent.mkdir()
    shutil.copy(image, outside)
    target = f"{compose_proxy.url}/{harness.namespace}/{dotdot}/{outside.parent.name}/{image.name}"

    def rule(request: ProxyRequest) -> Fault | None:
        if request.path.endswith(image.name) and outside.parent.name not in request.path:
            return Fault.redirect(target)
        return None

    compose_proxy.rule = rule
    result = harness.replay(body)

    assert result.code == 1, result.err
    errors = [line for line in result.err.splitlines() if ": ERROR: " in line]
    assert len(errors) == 1, result.err
    assert f"redirects to {target}" in errors[0]
    assert any(r.fault == "redirect" for r in compose_proxy.records)
    assert not any(outside.parent.name in path for path in compose_proxy.paths())
    assert not any(outside.parent.name in path for _, path, _ in compose_server.requests)
    assert nothing_published(harness)


@pytest.mark.parametrize(
    ("path", "reason"),
    [
        ("Container/%2e%2e/%2e%2e/%2e%2e/x.tar.xz", "has an encoded '.'"),
        ("Container/../../../x.tar.xz", "lies outside the compose"),
        ("Container/..;/x.tar.xz", "has a ';'"),
    ],
)
def test_the_fetcher_judges_every_url_it_requests(harness, path, reason):
    """Behind the images.json check, the fetcher judges the URL httpx is about to send (httpx
    resolves plain '..' itself): an artifact handed to it directly is not fetched either."""
    body = harness.compose(COMPOSE, arches=("x86_64",))
    artifact = ImageArtifact(
        "fedora-toolbox", "Container_Toolbox", "Container", "x86_64", path, 1, "0" * 64, "docker",
        "tar.xz",
    )  # fmt: skip
    harness.server.clear_requests()
    with new_client(timeout=5) as client:
        fetcher = ComposeFetcher(
            client,
            body["location"],
            compose_id=COMPOSE,
            allowlist=[f"{harness.server.url}/{harness.namespace}/"],
            retry=RetrySettings(attempts=1),
        )
        with pytest.raises(ComposeError, match=reason):
            fetcher.download(artifact, harness.tmp / "downloads")
    assert harness.server.requests == []


@pytest.mark.parametrize(
    ("suffix", "sent"),
    [
        ("%2e%2e/x", "%2e%2e/x"),  # escapes go out as they are...
        ("%252E/x", "%252E/x"),
        ("..;/x", "..;/x"),
        ("a\\..\\x", "a\\..\\x"),
        ("a//x", "a//x"),
        ("a%2fx%5C", "a%2fx%5C"),
        ("%zz", "%zz"),
        ("a/../x", "x"),  # ...plain dot segments httpx resolves itself...
        ("a/./x", "a/x"),
        ("caf\u00e9 x", "caf%C3%A9%20x"),  # ...and what must be encoded, it encodes
    ],
)
def test_the_fetcher_judges_the_path_httpx_puts_on_the_request_line(
    compose_server, namespace, suffix, sent
):
    """compose._place judges ``httpx.URL(url).raw_path``: the request line a real server on
    127.0.0.1 receives is exactly that."""
    url = f"{compose_server.url}/{namespace}/{suffix}"
    compose_server.clear_requests()
    with new_client(timeout=5) as client, request_limits(10):
        client.get(url)
    ((_, received, _),) = compose_server.requests
    assert received == f"/{namespace}/{sent}" == httpx.URL(url).raw_path.decode()
