"""Caps hold on decoded bytes (issue 20, class 1): every server the tool talks to — the compose
host, a registry, its token service, Bodhi — may answer with a ``Content-Encoding``. A body of
about 1 KiB encoded ``gzip, gzip`` inflates to 256 MiB; stacked and unknown encodings are
refused, one known encoding is decoded a bounded piece at a time with the decoded bytes counted
against the cap. The lies come from :class:`support.proxy.Fault.lie` in front of the real
servers on 127.0.0.1; the memory a request costs is measured with tracemalloc (what a decoder
allocates is Python ``bytes``)."""

from __future__ import annotations

import gzip
import tracemalloc
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fedora_container_sync.compose import bodhi
from fedora_container_sync.compose.fetch import ComposeFetcher
from fedora_container_sync.compose.selection import ImageArtifact, select_images
from fedora_container_sync.config.settings import (
    BodhiSettings,
    Credentials,
    RegistrySettings,
    RetrySettings,
)
from fedora_container_sync.errors import (
    ComposeError,
    RegistryError,
    ReleaseLookupError,
)
from fedora_container_sync.net.httpclient import new_client, request_limits
from fedora_container_sync.registry.auth import RegistryAuth
from fedora_container_sync.registry.client import RegistryClient
from support.auth import PASSWORD, USER
from support.proxy import Fault, FaultProxy, ProxyRequest, inflating_body
from support.servers import Registry
from support.tokens import TokenServer

pytestmark = pytest.mark.integration

OLD = "Fedora-41-20241025.0"
#: decoded size of the bomb; a run that inflates it costs at least this much memory
BOMB_MIB = 256
#: what one request may cost in memory, whatever it is answered
PEAK_MIB = 48
ONCE = RetrySettings(attempts=1)

STACKED = {"Content-Encoding": "gzip, gzip"}


def bomb(layers: int = 2) -> bytes:
    return inflating_body(BOMB_MIB, layers)


def peak_mib(call: Callable[[], Any]) -> tuple[float, BaseException | None]:
    """The peak of Python allocations while ``call`` runs, in MiB, and what it raised."""
    tracemalloc.start()
    try:
        call()
        raised: BaseException | None = None
    except Exception as error:
        raised = error
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    return peak / (1 << 20), raised


def one_line(error: BaseException | None, kind: type[BaseException]) -> str:
    assert isinstance(error, kind), repr(error)
    text = str(error)
    assert "\n" not in text, text
    return text


def only(suffix: str, fault: Fault) -> Callable[[ProxyRequest], Fault | None]:
    return lambda request: fault if request.path.split("?")[0].endswith(suffix) else None


# The lies: each is the whole class (stacked, unknown, inflating one layer past the cap).
LIES = {
    "gzip, gzip bomb": Fault.lie(body=bomb(), headers=STACKED),
    "gzip bomb, one layer": Fault.lie(body=bomb(1), headers={"Content-Encoding": "gzip"}),
    "x-gzip bomb": Fault.lie(body=bomb(1), headers={"Content-Encoding": "x-gzip"}),
    "two header lines": Fault.lie(
        body=bomb(), headers=[("Content-Encoding", "gzip"), ("Content-Encoding", "gzip")]
    ),
    "unknown encoding": Fault.lie(encode=("gzip",), headers={"Content-Encoding": "br"}),
    "identity, gzip, gzip": Fault.lie(
        body=bomb(), headers={"Content-Encoding": "identity, GZIP ,gzip"}
    ),
}


# --- the compose host --------------------------------------------------------------------------


@pytest.fixture
def compose_proxy(compose_server) -> Iterator[FaultProxy]:
    with FaultProxy(compose_server.url) as proxy:
        yield proxy


def fetcher_for(harness, proxy: FaultProxy, http: httpx.Client) -> ComposeFetcher:
    body = harness.compose(OLD, arches=("x86_64",))
    location = body["location"].replace(harness.server.url, proxy.url)
    return ComposeFetcher(http, location, compose_id=OLD, allowlist=[proxy.url + "/"], retry=ONCE)


def images_of(fetcher: ComposeFetcher) -> list[ImageArtifact]:
    images = fetcher.metadata().images.images
    return select_images(images, {"Container_Toolbox": "fedora-toolbox"}, compose_id=OLD)


@pytest.mark.parametrize("lie", list(LIES), ids=list(LIES))
def test_compose_metadata_that_inflates_is_refused_without_the_memory(harness, compose_proxy, lie):
    compose_proxy.rule = only("/metadata/composeinfo.json", LIES[lie])
    with new_client(timeout=10) as http:
        fetcher = fetcher_for(harness, compose_proxy, http)
        peak, raised = peak_mib(fetcher.metadata)
    text = one_line(raised, ComposeError)
    assert "composeinfo.json" in text
    assert "larger than max_metadata_bytes" in text or "cannot be decoded" in text
    assert peak < PEAK_MIB, f"{peak:.0f} MiB for one metadata file"


def test_compose_metadata_encoded_once_is_read(harness, compose_proxy):
    """A server may gzip its JSON (we ask for it): one encoding, within the cap, is fine."""
    compose_proxy.rule = only(".json", Fault.lie(encode=("gzip",)))
    with new_client(timeout=10) as http:
        metadata = fetcher_for(harness, compose_proxy, http).metadata()
    assert metadata.compose_id == OLD
    assert {r.fault for r in compose_proxy.records if r.path.endswith(".json")} == {"lie"}


@pytest.mark.parametrize("coding", ["gzip", "deflate", "raw-deflate"])
def test_an_image_encoded_anyway_is_decoded_and_checked(harness, compose_proxy, tmp_path, coding):
    compose_proxy.rule = only(".tar.xz", Fault.lie(encode=(coding,)))
    with new_client(timeout=10) as http:
        fetcher = fetcher_for(harness, compose_proxy, http)
        (image,) = images_of(fetcher)
        local = fetcher.download(image, tmp_path)
    assert local.path.stat().st_size > 0


def test_an_image_that_inflates_is_refused_at_its_size(harness, compose_proxy, tmp_path):
    compose_proxy.rule = only(".tar.xz", LIES["gzip bomb, one layer"])
    with new_client(timeout=10) as http:
        fetcher = fetcher_for(harness, compose_proxy, http)
        (image,) = images_of(fetcher)
        peak, raised = peak_mib(lambda: fetcher.download(image, tmp_path))
    assert f"larger than the {image.size} bytes images.json lists" in one_line(raised, ComposeError)
    assert peak < PEAK_MIB


def test_a_whole_run_refuses_the_bomb_in_one_line(harness, compose_proxy):
    harness.server = compose_proxy  # type: ignore[assignment]
    compose_proxy.rule = only("/metadata/images.json", LIES["gzip, gzip bomb"])
    result = harness.replay(harness.compose(OLD, arches=("x86_64",)))
    assert result.code == 1, result.err
    errors = [line for line in result.err.splitlines() if ": ERROR: " in line]
    assert len(errors) == 1, result.err
    assert "images.json: the answer cannot be decoded" in errors[0]
    assert not [line for line in result.err.splitlines() if ": retrying " in line]


# --- a registry and its token service -----------------------------------------------------------


@pytest.fixture
def registry_proxy(registry: Registry) -> Iterator[FaultProxy]:
    with FaultProxy(registry.url) as proxy:
        yield proxy


def client_for(proxy: FaultProxy, auth: httpx.Auth | None = None) -> RegistryClient:
    settings = RegistrySettings(url=f"{proxy.host}/cache", tls_verify=False)
    return RegistryClient(settings, timeout=10, retry=ONCE, auth=auth)


REGISTRY_READS: dict[str, tuple[str, Callable[[RegistryClient], Any]]] = {
    "manifest": ("/manifests/41", lambda client: client.manifest_get("fedora", "41")),
    "tag list": ("/tags/list", lambda client: client.tags_list("fedora")),
    "config blob": (
        "/blobs/sha256:" + "0" * 64,
        lambda c: c.blob_get("fedora", "sha256:" + "0" * 64),
    ),
    "API check": ("/v2/", lambda client: client.ping()),
}


@pytest.mark.parametrize("lie", ["gzip, gzip bomb", "gzip bomb, one layer", "unknown encoding"])
@pytest.mark.parametrize("read", list(REGISTRY_READS))
def test_a_registry_answer_that_inflates_is_refused_without_the_memory(registry_proxy, read, lie):
    suffix, call = REGISTRY_READS[read]
    registry_proxy.rule = only(suffix, LIES[lie].but(status=200))
    with client_for(registry_proxy) as client:
        peak, raised = peak_mib(lambda: call(client))
    text = one_line(raised, RegistryError)
    assert f"{registry_proxy.host}/cache" in text, text
    assert "larger than" in text or "cannot be decoded" in text, text
    assert peak < PEAK_MIB, f"{peak:.0f} MiB for one {read}"


def test_a_registry_error_answer_that_inflates_costs_no_memory(registry_proxy):
    """The body of a 404 is read for its error codes: decoded under the same cap."""
    registry_proxy.rule = only("/manifests/41", Fault.lie(status=404, body=bomb(), headers=STACKED))
    with client_for(registry_proxy) as client:
        peak, raised = peak_mib(lambda: client.manifest_get("fedora", "41"))
    assert "cannot be decoded" in one_line(raised, RegistryError)
    assert peak < PEAK_MIB


@pytest.fixture(scope="module")
def lying_tokens(tmp_path_factory) -> Iterator[tuple[FaultProxy, Registry]]:
    """A token registry whose realm is a proxy in front of the real token service."""
    with TokenServer(tmp_path_factory.mktemp("tokens"), {USER: PASSWORD}) as tokens:
        with FaultProxy(f"http://127.0.0.1:{tokens.port}") as proxy:
            config = {**tokens.registry_auth_config(), "realm": f"{proxy.url}/token"}
            auth = RegistryAuth(Credentials(USER, PASSWORD), registry="test", allow_http_realm=True)
            with Registry(token_auth=config, http_auth=auth) as registry:
                yield proxy, registry


@pytest.mark.parametrize("lie", ["gzip, gzip bomb", "gzip bomb, one layer", "unknown encoding"])
def test_a_token_answer_that_inflates_is_refused_without_the_memory(lying_tokens, lie):
    proxy, registry = lying_tokens
    proxy.rule = lambda _request: LIES[lie].but(status=200)
    settings = RegistrySettings(url=f"{registry.host}/cache", tls_verify=False)
    auth = RegistryAuth(Credentials(USER, PASSWORD), registry=settings.url, allow_http_realm=True)
    try:
        with RegistryClient(settings, timeout=10, retry=ONCE, auth=auth) as client:
            peak, raised = peak_mib(lambda: client.manifest_get("fedora", "41"))
    finally:
        proxy.rule = lambda _request: None
    text = one_line(raised, RegistryError)
    assert "larger than" in text or "cannot be decoded" in text, text
    assert peak < PEAK_MIB
    assert any(r.fault == "lie" for r in proxy.records)


# --- Bodhi --------------------------------------------------------------------------------------


@pytest.mark.parametrize("lie", ["gzip, gzip bomb", "gzip bomb, one layer", "unknown encoding"])
def test_a_bodhi_answer_that_inflates_is_refused_without_the_memory(bodhi_proxy, lie):
    bodhi_proxy.rule = lambda _request: LIES[lie]
    with new_client(timeout=10) as client:
        peak, raised = peak_mib(
            lambda: bodhi.current_releases(
                client, BodhiSettings(url=bodhi_proxy.url), retry=ONCE, deadline=10
            )
        )
    text = one_line(raised, ReleaseLookupError)
    assert "larger than" in text or "cannot be decoded" in text, text
    assert peak < PEAK_MIB


# --- the decoder, over the space of encodings -----------------------------------------------------


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    payload=st.binary(max_size=4096),
    codings=st.lists(st.sampled_from(["gzip", "deflate", "raw-deflate", "identity"]), max_size=3),
    cut=st.integers(min_value=0, max_value=64),
)
def test_any_encoding_is_decoded_exactly_or_refused(registry_proxy, payload, codings, cut):
    """Whatever a server stacks or cuts short: the exact bytes, or httpx's DecodingError; never
    other bytes, never another exception."""
    real = [c for c in codings if c != "identity"]
    truncate = (lambda body: body[: max(1, len(body) - cut)]) if cut and real else None

    def body(_original: bytes) -> bytes:
        return payload

    lie = Fault.lie(body=body, encode=tuple(codings))
    if truncate is not None:
        encoded = lie.told(200, [], payload)[2]
        lie = Fault.lie(body=truncate(encoded), headers={"Content-Encoding": ", ".join(codings)})
    registry_proxy.rule = lambda _request: lie
    with new_client(timeout=10) as client, request_limits(10, max_bytes=1 << 20):
        try:
            got: bytes | None = client.get(f"{registry_proxy.url}/v2/x").content
        except httpx.DecodingError:
            got = None
    if len(real) > 1 or truncate is not None:
        assert got is None  # stacked, or cut short: refused
    else:
        assert got == payload


def test_gzip_members_one_after_another_are_one_body(registry_proxy):
    body = gzip.compress(b"first ", mtime=0) + gzip.compress(b"second", mtime=0)
    registry_proxy.rule = lambda _r: Fault.lie(body=body, headers={"Content-Encoding": "gzip"})
    with new_client(timeout=10) as client, request_limits(10, max_bytes=1 << 20):
        assert client.get(f"{registry_proxy.url}/v2/").content == b"first second"
