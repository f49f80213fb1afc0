"""Nothing from the network may exhaust the machine: servers on 127.0.0.1 that trickle their
answer a byte at a time (each read quick, the whole answer never done) or stream without end,
in front of the real compose server, the real registry and a Bodhi. Limits are configured small
so that the tests stay quick; nothing here asserts a duration."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import httpx
import pytest

from fedora_container_sync.compose import bodhi
from fedora_container_sync.config.settings import BodhiSettings, RetrySettings
from fedora_container_sync.errors import ReleaseLookupError, TransientError
from fedora_container_sync.net.httpclient import MAX_API_ANSWER_BYTES, new_client, request_limits
from support.harness import REPOS, Harness
from support.proxy import Fault, FaultProxy, ProxyRequest
from support.servers import Registry

pytestmark = pytest.mark.integration

OLD = "Fedora-41-20241025.0"
TOOLBOX = "fedora-toolbox"
#: each read of a trickle is far quicker than http_timeout: only the deadline can end it
TRICKLE = 0.02
LIMITS = "http_timeout = 5\nhttp_deadline = 0.4\n"


def error_lines(err: str) -> list[str]:
    return [line for line in err.splitlines() if ": ERROR: " in line]


def retry_lines(err: str) -> list[str]:
    return [line for line in err.splitlines() if ": retrying " in line]


def nothing_published(harness: Harness) -> bool:
    registry = harness.registries[0]
    return all(registry.tags(harness.repo(repository)) == [] for repository in REPOS.values())


def on(suffix: str, fault: Fault) -> Callable[[ProxyRequest], Fault | None]:
    """A proxy rule: ``fault`` for the requests whose path ends with ``suffix``."""
    return lambda request: fault if request.path.endswith(suffix) else None


@pytest.fixture
def compose_proxy(compose_server) -> Iterator[FaultProxy]:
    with FaultProxy(compose_server.url) as proxy:
        yield proxy


@pytest.fixture
def proxied(harness: Harness, compose_proxy: FaultProxy) -> Harness:
    """The harness with its compose host behind the fault proxy (messages and allowlist)."""
    harness.server = compose_proxy  # type: ignore[assignment]
    return harness


# --- compose metadata --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "fault",
    [Fault.trickle(TRICKLE), Fault.endless(TRICKLE)],
    ids=["answer trickled from its status line", "endless body trickled"],
)
def test_trickling_metadata_ends_at_the_deadline_and_is_retried(proxied, compose_proxy, fault):
    proxied.extra_config = LIMITS
    compose_proxy.rule = on("/metadata/composeinfo.json", fault)
    body = proxied.compose(OLD, arches=("x86_64",))

    result = proxied.replay(body)

    assert result.code == 1, result.err
    (error,) = error_lines(result.err)
    url = f"{body['location']}/metadata/composeinfo.json"
    assert f"{url}: no complete answer within the 0.4 s http_deadline" in error
    # Transient: a slow server may recover; retried, then the message would be requeued.
    assert len(retry_lines(result.err)) == proxied.retry["attempts"] - 1
    assert nothing_published(proxied)


@pytest.mark.parametrize("cap", [65536, None], ids=["configured cap", "default cap"])
def test_endless_metadata_is_refused_at_the_size_cap(proxied, compose_proxy, cap):
    if cap is not None:
        proxied.extra_config = f"max_metadata_bytes = {cap}\n"
    compose_proxy.rule = on("/metadata/images.json", Fault.endless())
    body = proxied.compose(OLD, arches=("x86_64",))

    result = proxied.replay(body)

    assert result.code == 1, result.err
    (error,) = error_lines(result.err)
    url = f"{body['location']}/metadata/images.json"
    assert f"{url} is larger than max_metadata_bytes ({cap or 16 << 20} bytes)" in error
    assert retry_lines(result.err) == []  # permanent: the same file is as large next time
    assert nothing_published(proxied)


# --- image downloads ---------------------------------------------------------------------------


def test_a_trickled_image_ends_at_its_deadline_and_the_other_arches_go_on(proxied, compose_proxy):
    proxied.extra_config = LIMITS + "min_download_rate = 1000000000\n"
    compose_proxy.rule = on(".x86_64.tar.xz", Fault.trickle(TRICKLE))
    body = proxied.compose(OLD, arches=("x86_64", "aarch64"))

    result = proxied.replay(body)

    assert result.code == 1, result.err
    (error,) = error_lines(result.err)
    assert ".x86_64.tar.xz: no complete answer within the 0.4 s download deadline" in error
    assert "min_download_rate 1000000000 bytes/s" in error
    assert proxied.digest(TOOLBOX, "41-aarch64") is not None
    assert proxied.digest(TOOLBOX, "41-x86_64") is None
    assert proxied.digest(TOOLBOX, "41") is None  # the index tag does not lose x86_64


def test_a_slow_image_within_min_download_rate_completes_past_http_deadline(proxied, compose_proxy):
    """The download deadline grows with the image: http_deadline + size / min_download_rate.
    A trickle of one byte per millisecond outlasts the 0.2 s http_deadline many times over,
    and stays far inside its deadline of several seconds at 100 bytes/s."""
    proxied.extra_config = "http_deadline = 0.2\nmin_download_rate = 100\n"
    compose_proxy.rule = on(".x86_64.tar.xz", Fault.trickle(0.001))
    body = proxied.compose(OLD, arches=("x86_64",))

    result = proxied.replay(body)

    assert result.code == 0, result.err
    assert [r.fault for r in compose_proxy.records if r.path.endswith(".tar.xz")] == ["trickle"]
    assert proxied.arches(TOOLBOX, "41") == {"x86_64"}


# --- registry API ------------------------------------------------------------------------------


@pytest.fixture
def registry_proxy(registry: Registry) -> Iterator[FaultProxy]:
    with FaultProxy(registry.url) as proxy:
        yield proxy


@pytest.mark.parametrize(
    ("fault", "expected", "retried"),
    [
        (Fault.trickle(TRICKLE), "gave no complete answer within the 0.4 s http_deadline", True),
        (Fault.endless(), f"registry answer larger than {MAX_API_ANSWER_BYTES} bytes", False),
    ],
    ids=["trickle", "endless"],
)
def test_a_hostile_registry_is_reported_and_left_unchanged(
    harness, registry, registry_proxy, fault, expected, retried
):
    harness.registry_entries[registry.host] = (
        f'url = "{registry_proxy.host}/{harness.namespace}"\ntls_verify = false\n'
    )
    harness.extra_config = LIMITS

    def rule(request: ProxyRequest) -> Fault | None:
        return fault if "/manifests/" in request.path and request.method == "GET" else None

    registry_proxy.rule = rule
    result = harness.replay(harness.compose(OLD, arches=("x86_64",)))

    assert result.code == 1, result.err
    errors = error_lines(result.err)
    assert errors and all(expected in line for line in errors), result.err
    assert bool(retry_lines(result.err)) is retried
    assert harness.digest(TOOLBOX, "41") is None
    assert harness.digest(TOOLBOX, "latest") is None


# --- Bodhi -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fault", "error", "message"),
    [
        (Fault.trickle(TRICKLE), TransientError, "no complete answer within the 0.3 s"),
        (Fault.endless(), ReleaseLookupError, "answer larger than"),
    ],
    ids=["trickle", "endless"],
)
def test_a_hostile_bodhi_is_bounded(bodhi_proxy, fault, error, message):
    bodhi_proxy.rule = lambda _request: fault
    retry = RetrySettings(attempts=2, initial_delay=0.01, max_delay=0.02)
    with new_client(timeout=5) as client, pytest.raises(error, match=message):
        bodhi.current_releases(
            client, BodhiSettings(url=bodhi_proxy.url), retry=retry, deadline=0.3
        )


# --- the client itself -------------------------------------------------------------------------


def test_a_request_outside_request_limits_is_a_bug(compose_server):
    with new_client(timeout=5) as client, pytest.raises(RuntimeError, match="request_limits"):
        client.get(compose_server.url)


def test_requests_through_a_proxy_from_the_environment_are_bounded_too(monkeypatch):
    def rule(request: ProxyRequest) -> Fault:
        return Fault.endless(TRICKLE if "/slow" in request.path else 0)

    with FaultProxy("http://127.0.0.1:9", rule=rule) as proxy:
        monkeypatch.setenv("HTTP_PROXY", proxy.url)
        monkeypatch.delenv("NO_PROXY", raising=False)
        monkeypatch.delenv("no_proxy", raising=False)
        with new_client(timeout=5) as client:
            with request_limits(0.3) as limits, pytest.raises(httpx.TimeoutException):
                client.get("http://compose.example.invalid/slow")
            assert limits.expired
            with request_limits(30, max_bytes=4096) as limits, pytest.raises(httpx.ReadError):
                client.get("http://compose.example.invalid/fast")
            assert limits.too_large
    assert [r.path for r in proxy.records] == [
        "http://compose.example.invalid/slow",
        "http://compose.example.invalid/fast",
    ]
