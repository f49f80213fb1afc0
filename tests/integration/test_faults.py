"""Faults survived: a fault-injecting proxy in front of the real registry and the compose server;
a registry down for the whole run; what is retried and what is final."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from fedora_container_sync.errors import SkopeoError, SkopeoTransientError
from fedora_container_sync.oci.manifest import COMPOSE_ID
from fedora_container_sync.registry import skopeo
from support.harness import ARCHES, Harness
from support.images import build_image_archive
from support.proxy import Fault, FaultProxy, ProxyRequest, first_time_faults
from support.servers import Registry, free_port

pytestmark = pytest.mark.integration

TOOLBOX = "fedora-toolbox"
OLD = "Fedora-41-20241025.0"
NEW = "Fedora-41-20241026.0"
PATIENT = {"attempts": 12, "initial_delay": 0.05, "max_delay": 0.2, "max_total": 300}


def error_lines(err: str) -> list[str]:
    return [line for line in err.splitlines() if ": ERROR: " in line or ": error: " in line]


def retry_lines(err: str) -> list[str]:
    return [line for line in err.splitlines() if ": retrying " in line]


@pytest.fixture
def registry_proxy(registry: Registry) -> Iterator[FaultProxy]:
    with FaultProxy(registry.url) as proxy:
        yield proxy


def through(harness: Harness, registry: Registry, proxy_host: str) -> None:
    harness.registry_entries[registry.host] = (
        f'url = "{proxy_host}/{harness.namespace}"\ntls_verify = false\n'
    )


def assert_complete(harness: Harness, compose_id: str) -> None:
    """Every tag is there, and the index lists exactly the per-arch tags of ``compose_id``."""
    index = harness.index(TOOLBOX, "41")
    assert index["annotations"][COMPOSE_ID] == compose_id
    assert harness.arches(TOOLBOX, "41") == set(ARCHES)
    assert harness.digest(TOOLBOX, "latest") == harness.digest(TOOLBOX, "41")
    for entry in index["manifests"]:
        arch = entry["annotations"]["org.fedoraproject.arch"]
        assert entry["digest"] == harness.digest(TOOLBOX, f"41-{arch}")
        assert entry["annotations"][COMPOSE_ID] == compose_id


def test_publish_completes_through_503s_429s_and_dropped_connections(
    harness, registry, registry_proxy
):
    faults = [
        Fault.answer(503),
        Fault.answer(429, retry_after="1"),
        Fault.drop(),
        Fault.answer(502),
        Fault.drop_after(),
        Fault.answer(504),
    ]
    registry_proxy.rule = first_time_faults(faults, share=2)
    through(harness, registry, registry_proxy.host)
    harness.retry = PATIENT

    result = harness.replay(harness.compose(OLD))

    assert result.code == 0, result.err
    assert error_lines(result.err) == []
    assert_complete(harness, OLD)
    injected = {record.fault for record in registry_proxy.faults()}
    assert {"status 503", "status 429", "drop", "status 502", "drop-after"} <= injected
    # Our retries are logged one line each, naming the compose and what was retried.
    retries = retry_lines(result.err)
    assert retries and all(OLD in line for line in retries)
    assert any("push of" in line for line in retries)  # skopeo runs, classified from stderr


def test_second_compose_through_faults_moves_every_tag(harness, registry, registry_proxy):
    assert harness.replay(harness.compose(OLD)).code == 0
    registry_proxy.rule = first_time_faults(
        [Fault.drop(), Fault.answer(503), Fault.drop_after()], share=2
    )
    through(harness, registry, registry_proxy.host)
    harness.retry = PATIENT
    result = harness.replay(harness.compose(NEW))
    assert result.code == 0, result.err
    assert_complete(harness, NEW)
    assert registry_proxy.faults()


@pytest.mark.parametrize("down", ["refused", "503"])
def test_registry_down_for_the_whole_run(harness, registry, registry_proxy, down):
    assert harness.replay(harness.compose(OLD)).code == 0
    before = {tag: harness.digest(TOOLBOX, tag) for tag in ("41", "latest", "41-x86_64")}
    if down == "refused":
        host = f"127.0.0.1:{free_port()}"
    else:
        registry_proxy.rule = lambda _request: Fault.answer(503)
        host = registry_proxy.host
    through(harness, registry, host)

    result = harness.replay(harness.compose(NEW))

    assert result.code == 1
    errors = error_lines(result.err)
    assert len(errors) == 1, result.err
    assert f"registry {host}/{harness.namespace} not usable, nothing was changed there" in errors[0]
    assert "Traceback" not in result.err
    assert len(retry_lines(result.err)) == harness.retry["attempts"] - 1
    assert {tag: harness.digest(TOOLBOX, tag) for tag in before} == before
    if down == "503":
        assert not [r for r in registry_proxy.records if r.method != "GET"]


def test_one_registry_down_does_not_stop_the_others(harness, registry, second_registry):
    harness.registries.append(second_registry)
    dead = f"127.0.0.1:{free_port()}"
    through(harness, registry, dead)
    result = harness.replay(harness.compose(OLD))
    assert result.code == 1
    errors = error_lines(result.err)
    assert len(errors) == 1 and dead in errors[0]
    assert harness.arches(TOOLBOX, "41", second_registry) == set(ARCHES)


# --- the compose server -------------------------------------------------------------------------


@pytest.fixture
def compose_proxy(compose_server) -> Iterator[FaultProxy]:
    with FaultProxy(compose_server.url) as proxy:
        yield proxy


@pytest.fixture
def proxied(harness: Harness, compose_proxy: FaultProxy) -> Harness:
    """The harness with its compose host behind the fault proxy (messages and allowlist)."""
    harness.server = compose_proxy  # type: ignore[assignment]
    return harness


def test_metadata_404_is_final(proxied, compose_proxy):
    body = proxied.compose(OLD)
    (proxied.compose_dir(body) / "metadata" / "images.json").unlink()
    result = proxied.replay(body)
    assert result.code == 1
    errors = error_lines(result.err)
    assert len(errors) == 1
    assert "metadata/images.json not found (HTTP 404)" in errors[0]
    assert retry_lines(result.err) == []
    fetched = [p for m, p, _ in compose_proxy.requests if p.endswith("/images.json")]
    assert len(fetched) == 1
    assert proxied.digest(TOOLBOX, "41-x86_64") is None


def test_compose_timeouts_and_5xx_are_retried(proxied, compose_proxy):
    proxied.extra_config = "http_timeout = 0.5\n"
    proxied.retry = PATIENT
    compose_proxy.rule = first_time_faults(
        [Fault.hang(2.0), Fault.answer(503), Fault.drop(), Fault.answer(429, retry_after="0")],
        share=1,
    )
    result = proxied.replay(proxied.compose(OLD))
    assert result.code == 0, result.err
    assert_complete(proxied, OLD)
    retries = retry_lines(result.err)
    assert all(f"retrying compose {OLD}: " in line for line in retries), result.err
    assert any("timed out" in line for line in retries), result.err
    assert any("HTTP 503" in line for line in retries)
    assert {"hang", "status 503", "drop", "status 429"} <= {r.fault for r in compose_proxy.faults()}


def test_compose_server_timing_out_for_good(proxied, compose_proxy):
    proxied.extra_config = "http_timeout = 0.3\n"
    compose_proxy.rule = lambda request: (
        Fault.hang(1.0) if request.path.endswith("composeinfo.json") else None
    )
    result = proxied.replay(proxied.compose(OLD))
    assert result.code == 1
    errors = error_lines(result.err)
    assert len(errors) == 1 and "timed out fetching metadata/composeinfo.json" in errors[0]
    assert len(retry_lines(result.err)) == proxied.retry["attempts"] - 1


def test_redirect_to_another_host_is_refused(proxied, compose_proxy, compose_server):
    body = proxied.compose(OLD)
    elsewhere = compose_server.url.replace("127.0.0.1", "localhost")  # same server, other host

    def rule(request: ProxyRequest) -> Fault | None:
        if request.path.endswith(".x86_64.tar.xz"):
            return Fault.redirect(elsewhere + request.path)
        return None

    compose_proxy.rule = rule
    compose_server.clear_requests()
    result = proxied.replay(body)
    assert result.code == 1
    errors = error_lines(result.err)
    assert len(errors) == 1
    assert "outside compose_url_allowlist" in errors[0] and "localhost" in errors[0]
    # The other host was never asked: the compose server only saw the proxy's requests.
    assert not any(p.endswith(".x86_64.tar.xz") for _, p, _ in compose_server.requests)
    assert proxied.digest(TOOLBOX, "41-x86_64") is None
    assert proxied.digest(TOOLBOX, "41") is None


def test_redirect_inside_the_allowlist_is_followed(proxied, compose_proxy):
    body = proxied.compose(OLD)
    moved = "/moved"

    def rule(request: ProxyRequest) -> Fault | None:
        if request.path.endswith(".s390x.tar.xz") and not request.path.endswith(moved):
            return Fault.redirect(request.path + "?" + moved)
        return None

    compose_proxy.rule = rule
    result = proxied.replay(body)
    assert result.code == 0, result.err
    assert any(r.fault == "redirect" for r in compose_proxy.records)


# --- skopeo's failures, classified from its real stderr -----------------------------------------


@pytest.fixture(scope="module")
def oci_layout(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("layout")
    archive = build_image_archive(
        base / "image.tar", arch="x86_64", fmt="oci", build_id="classify", compression="none"
    )
    layout = base / "layout"
    skopeo.run(
        skopeo.convert_argv("skopeo", f"oci-archive:{archive}", layout, tmpdir=base),
        timeout=60,
        what="conversion",
    )
    return layout


@pytest.mark.parametrize(
    ("fault", "expected"),
    [
        (Fault.answer(503), SkopeoTransientError),
        (Fault.answer(502), SkopeoTransientError),
        (Fault.answer(504), SkopeoTransientError),
        (Fault.drop(), SkopeoTransientError),
        (Fault.answer(429, retry_after="0"), SkopeoTransientError),
        (Fault.answer(401), SkopeoError),
        (Fault.answer(403), SkopeoError),
        (Fault.answer(400), SkopeoError),
    ],
    ids=lambda value: value.label if isinstance(value, Fault) else value.__name__,
)
def test_skopeo_failures_are_classified_from_stderr(
    registry_proxy, oci_layout, tmp_path, fault, expected
):
    def rule(request: ProxyRequest) -> Fault | None:
        # Let the API check through; fail the first registry operation of the push.
        return None if request.path == "/v2/" else fault

    registry_proxy.rule = rule
    destination = skopeo.Destination(
        f"docker://{registry_proxy.host}/classify/x:tag", tls_verify=False
    )
    argv = skopeo.copy_argv(
        "skopeo",
        f"oci:{oci_layout}:image",
        destination,
        digest_file=tmp_path / "digest",
        tmpdir=tmp_path,
    )
    with pytest.raises(SkopeoError if expected is SkopeoError else SkopeoTransientError) as caught:
        skopeo.run(argv, timeout=120, what="push")
    assert type(caught.value) is expected, str(caught.value)
    assert "\n" not in str(caught.value)
    assert re.match(r"push: \S", str(caught.value))


def test_skopeo_registry_refusing_connections_is_transient(oci_layout, tmp_path):
    destination = skopeo.Destination(
        f"docker://127.0.0.1:{free_port()}/classify/x:tag", tls_verify=False
    )
    argv = skopeo.copy_argv(
        "skopeo",
        f"oci:{oci_layout}:image",
        destination,
        digest_file=tmp_path / "d",
        tmpdir=tmp_path,
    )
    with pytest.raises(SkopeoTransientError, match="connection refused"):
        skopeo.run(argv, timeout=60, what="push")


def test_skopeo_unknown_manifest_is_final(registry, tmp_path):
    argv = [
        "skopeo",
        "--insecure-policy",
        "copy",
        "--src-tls-verify=false",
        f"docker://{registry.host}/classify/nothing:here",
        f"oci:{tmp_path / 'out'}:x",
    ]
    with pytest.raises(SkopeoError) as caught:
        skopeo.run(argv, timeout=60, what="copy")
    assert type(caught.value) is SkopeoError
    assert "manifest unknown" in str(caught.value)


def test_proxy_forwards_faithfully(registry, registry_proxy):
    """The proxy itself changes nothing: the same answers as the registry, header for header."""
    with registry.client() as client:
        direct = client.get("/v2/")
    with httpx.Client(base_url=registry_proxy.url) as client:
        proxied = client.get("/v2/")
    assert proxied.status_code == direct.status_code == 200
    assert json.loads(proxied.content) == json.loads(direct.content)
    assert proxied.headers["docker-distribution-api-version"] == "registry/2.0"
