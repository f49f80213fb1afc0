"""Secrets and header values from the network (issue 10, class 5), against real registries.

A distribution registry behind a token service that speaks the real protocol
(:class:`support.tokens.TokenServer`) but hands out what no client should send: tokens with a
line break (header injection), a control character, a space, non-ASCII text, a separator,
inner padding, too many characters; no string at all; an ``expires_in`` that is not an
integer. Our client refuses each before use: one permanent line naming the token service,
never the token, never retried; the other configured registry still gets the compose; nothing
a run prints, logs or leaves behind holds a piece of a token. skopeo, which fetches tokens of
its own, fails that registry alone too. A redirect target never gets our credentials, and the
other header values a registry sends (``Location``, ``Content-Encoding``, ``Retry-After``,
``Docker-Content-Digest``) end as our errors, not as a crash.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import string
from collections.abc import Callable, Iterable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fedora_container_sync.config.settings import Credentials, RegistrySettings, RetrySettings
from fedora_container_sync.errors import RegistryError, SyncError
from fedora_container_sync.registry.auth import MAX_TOKEN_LENGTH, RegistryAuth
from fedora_container_sync.registry.client import RegistryClient
from support.auth import PASSWORD, USER
from support.harness import ARCHES, Harness, Result
from support.logs import Capture, capture_logs
from support.proxy import Fault, FaultProxy, ProxyRequest
from support.servers import BackgroundServer, Registry
from support.tokens import TokenRequest, TokenServer

pytestmark = pytest.mark.integration

COMPOSE = "Fedora-41-20241025.0"
TOOLBOX = "fedora-toolbox"
OUR_AGENT = "fedora-container-sync"
#: support.servers.Registry's own reads (tags, manifests) fetch tokens as plain httpx
TEST_HELPER = "python-httpx"
#: a piece of a token this long, found anywhere, is a leak
WINDOW = 16
OCI_INDEX = "application/vnd.oci.image.index.v1+json"

Spoiler = Callable[[str], str]


# --- hostile tokens, generated ------------------------------------------------------------


def _spoilers() -> dict[str, Spoiler]:
    """Ways to spoil a real token: one per kind of character an ``Authorization`` header or an
    RFC 6750 b64token cannot hold, each drawn (seeded) from its class and put in the middle,
    plus a token one character too long. The result always keeps the real token's halves, so
    a leak of either half is found."""
    rng = random.Random(5)  # noqa: S311 - test data
    b64 = string.ascii_letters + string.digits + "-._~+/"
    classes: dict[str, list[str]] = {
        "line break": [f"\r\n{name}: 1" for name in ("X-Injected", "Authorization", "Host")],
        "control": [chr(c) for c in range(0x20) if chr(c) not in "\r\n"] + ["\x7f"],
        "space": [" ", "  ", " Bearer "],
        "latin-1": [chr(c) for c in range(0xA0, 0x100)],
        "unicode": ["\u2028", "\u202e", "\u00a0", "\u2603", "\U0001f600", "\u0663"],
        "separator": list('"(),:;<>?@[\\]{}'),
        "inner padding": ["=", "==", "=a"],
    }
    spoilers: dict[str, Spoiler] = {}
    for name, members in classes.items():
        inserted = rng.choice(members)
        spoilers[name] = lambda token, s=inserted: (
            token[: len(token) // 2] + s + token[len(token) // 2 :]
        )
    filler = "".join(rng.choice(b64) for _ in range(MAX_TOKEN_LENGTH))
    spoilers["too long"] = lambda token: (token + filler)[: MAX_TOKEN_LENGTH + 1]
    return spoilers


SPOILERS = _spoilers()


def hand_out(
    spoil: Spoiler, *, to: Callable[[TokenRequest], bool] | None = None
) -> Callable[[TokenRequest, dict[str, Any]], dict[str, Any]]:
    """A ``TokenServer.answer`` handing spoiled tokens to ``to`` (default: all but the tests'
    own reads), real ones to the others."""
    chosen = to or (lambda request: not request.user_agent.startswith(TEST_HELPER))

    def answer(request: TokenRequest, document: dict[str, Any]) -> dict[str, Any]:
        if not chosen(request):
            return document
        token = spoil(document["token"])
        return {**document, "token": token, "access_token": token}

    return answer


def leaked(text: str, secrets: Iterable[str]) -> list[str]:
    """The secrets of which some ``WINDOW``-character piece occurs in ``text``."""
    pieces = {text[i : i + WINDOW] for i in range(len(text) - WINDOW + 1)}
    return [
        secret[:8]
        for secret in secrets
        if any(secret[i : i + WINDOW] in pieces for i in range(len(secret) - WINDOW + 1))
    ]


def assert_nothing_leaked(
    secrets: list[str], result: Result, logs: Capture, directory: Path
) -> None:
    """No piece of a secret in stdout (the summary), stderr, the DEBUG logs (httpx included)
    or any file under ``directory`` (config, message file, work dir)."""
    assert secrets
    assert any("HTTP Request" in line for line in logs.lines), "DEBUG logs were not captured"
    assert leaked(result.out, secrets) == []
    assert leaked(result.err, secrets) == []
    assert leaked(logs.text, secrets) == []
    as_bytes = [s.encode().decode("latin-1") for s in secrets]
    files = [Path(root) / name for root, _, names in os.walk(directory) for name in names]
    assert any(path.name == "config.toml" for path in files)
    for path in files:
        if path.is_file() and not path.is_symlink():
            assert leaked(path.read_bytes().decode("latin-1"), as_bytes) == [], path


# --- fixtures -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def hostile_tokens(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TokenServer]:
    with TokenServer(tmp_path_factory.mktemp("hostile-tokens"), {USER: PASSWORD}) as server:
        yield server


@pytest.fixture(scope="module")
def hostile_registry(hostile_tokens: TokenServer) -> Iterator[Registry]:
    """distribution with token auth from ``hostile_tokens``."""
    auth = RegistryAuth(Credentials(USER, PASSWORD), registry="test", allow_http_realm=True)
    with Registry(token_auth=hostile_tokens.registry_auth_config(), http_auth=auth) as registry:
        yield registry


@pytest.fixture
def tokens(hostile_tokens: TokenServer) -> Iterator[TokenServer]:
    """The hostile token service, with a clean record; honest again after the test."""
    with hostile_tokens._lock:
        hostile_tokens.requests.clear()
        hostile_tokens.issued.clear()
    yield hostile_tokens
    hostile_tokens.answer = None


def two_registries(
    request: pytest.FixtureRequest, registry: Registry, hostile: Registry
) -> Harness:
    """A harness publishing to a plain registry and to ``hostile`` (with credentials)."""
    harness = Harness(
        request.getfixturevalue("tmp_path"),
        request.getfixturevalue("served_root"),
        request.getfixturevalue("compose_server"),
        [registry, hostile],
        request.getfixturevalue("namespace"),
        request.getfixturevalue("capsys"),
    )
    harness.registry_entries[hostile.host] = (
        f'url = "{hostile.host}/{harness.namespace}"\ntls_verify = false\n'
        'credential_prefix = "HOSTILE_"\n'
    )
    monkeypatch = request.getfixturevalue("monkeypatch")
    monkeypatch.setenv("HOSTILE_USER", USER)
    monkeypatch.setenv("HOSTILE_PASSWORD", PASSWORD)
    return harness


def client_for(
    registry: Registry | FaultProxy, *, namespace: str = "cache", attempts: int = 3
) -> RegistryClient:
    """Our client for ``registry`` under ``namespace``; retries (with no delay) would show as
    repeated token requests."""
    settings = RegistrySettings(url=f"{registry.host}/{namespace}", tls_verify=False)
    auth = RegistryAuth(Credentials(USER, PASSWORD), registry=settings.url, allow_http_realm=True)
    retry = RetrySettings(attempts=attempts, initial_delay=0, max_delay=0)
    return RegistryClient(settings, timeout=10, retry=retry, auth=auth)


def error_lines(result: Result) -> list[str]:
    return [
        line
        for line in result.err.splitlines()
        if line.startswith("fedora-container-sync: ERROR: ")
    ]


# --- a whole run: the hostile registry fails alone ------------------------------------------


@pytest.mark.parametrize("spoil", SPOILERS.values(), ids=SPOILERS.keys())
def test_a_hostile_token_fails_its_registry_alone(
    request, registry, hostile_registry, tokens, monkeypatch, spoil
):
    harness = two_registries(request, registry, hostile_registry)
    tokens.answer = hand_out(spoil)

    with capture_logs(monkeypatch) as logs:
        result = harness.replay(harness.compose(COMPOSE), args=["-v"])

    assert result.code == 1, result.err
    # The other registry got the whole compose.
    assert harness.arches(TOOLBOX, "41", registry) == set(ARCHES)
    assert harness.digest(TOOLBOX, "latest", registry) == harness.digest(TOOLBOX, "41", registry)
    # The hostile one: nothing changed; one line naming the token service, never retried.
    assert hostile_registry.tags(harness.repo(TOOLBOX)) == []
    errors = error_lines(result)
    assert len(errors) == 1, result.err
    assert f"registry {hostile_registry.host}/{harness.namespace} not usable" in errors[0]
    assert f"token service {tokens.realm}: " in errors[0]
    assert "retrying" not in result.err and "internal error" not in result.err
    assert len(tokens.requests_from(OUR_AGENT)) == 1
    assert f"token service {tokens.realm}: " in result.out  # the summary
    assert "result: FAILED (1 error)" in result.out
    assert_nothing_leaked([*tokens.issued, PASSWORD], result, logs, harness.tmp)


@pytest.mark.parametrize("spoil", ["line break", "unicode"])
def test_skopeo_given_a_hostile_token_fails_that_registry_alone(
    request, registry, hostile_registry, tokens, monkeypatch, spoil
):
    """skopeo fetches its own tokens (for the pushes): it must fail there, permanently, and
    say nothing of the token."""
    harness = two_registries(request, registry, hostile_registry)
    ours = (TEST_HELPER, OUR_AGENT)
    tokens.answer = hand_out(SPOILERS[spoil], to=lambda r: not r.user_agent.startswith(ours))

    with capture_logs(monkeypatch) as logs:
        result = harness.replay(harness.compose(COMPOSE), args=["-v"])

    assert result.code == 1, result.err
    assert harness.arches(TOOLBOX, "41", registry) == set(ARCHES)
    assert hostile_registry.tags(harness.repo(TOOLBOX)) == []
    errors = error_lines(result)
    assert len(errors) == len(ARCHES), result.err
    assert all(f"push of {hostile_registry.host}/" in line for line in errors), result.err
    assert "retrying" not in result.err
    assert_nothing_leaked([*tokens.issued, PASSWORD], result, logs, harness.tmp)


def test_a_hostile_push_token_fails_each_tag_move_and_holds_the_index(
    request, registry, hostile_registry, tokens, monkeypatch
):
    """Only our own push tokens are hostile; reads and skopeo's pushes would work. The
    registry fails before anything is pushed, in one line naming the service (its token asked
    for once, by the upload-host check); the other registry gets everything."""
    harness = two_registries(request, registry, hostile_registry)

    def our_pushes(request: TokenRequest) -> bool:
        actions = {a for scope in request.scopes for a in scope.rsplit(":", 1)[-1].split(",")}
        return request.user_agent.startswith(OUR_AGENT) and "push" in actions

    tokens.answer = hand_out(SPOILERS["control"], to=our_pushes)

    with capture_logs(monkeypatch) as logs:
        result = harness.replay(harness.compose(COMPOSE), args=["-v"])

    assert result.code == 1, result.err
    assert harness.arches(TOOLBOX, "41", registry) == set(ARCHES)
    assert hostile_registry.tags(harness.repo(TOOLBOX)) == []
    # Issue 20: before skopeo gets credentials, our client starts a blob upload (with a push
    # token) to learn where uploads go; the hostile push token fails the registry there, in
    # one line naming the service, before anything is pushed (it was one line per tag move).
    (error,) = error_lines(result)
    assert f"registry {hostile_registry.host}/" in error and "not usable" in error, error
    assert f"token service {tokens.realm}: " in error, error
    assert "retrying" not in result.err
    assert len([r for r in tokens.requests_from(OUR_AGENT) if our_pushes(r)]) == 1
    assert_nothing_leaked([*tokens.issued, PASSWORD], result, logs, harness.tmp)


def test_audit_reads_the_other_registries_when_one_hands_out_hostile_tokens(
    request, registry, hostile_registry, tokens, monkeypatch
):
    harness = two_registries(request, registry, hostile_registry)
    harness.registries = [registry]
    assert harness.replay(harness.compose(COMPOSE)).code == 0
    harness.registries = [registry, hostile_registry]
    tokens.answer = hand_out(SPOILERS["unicode"])

    with capture_logs(monkeypatch) as logs:
        result = harness.run("audit", "-v", "--config", str(harness.config()))

    assert result.code == 1, result.err
    errors = error_lines(result)
    assert len(errors) == 1, result.err
    assert f"token service {tokens.realm}: " in errors[0]
    assert f"unreadable: {hostile_registry.host}/{harness.namespace}: " in result.out
    read = [line for line in result.err.splitlines() if ": audit: read " in line]
    assert any(registry.host in line and TOOLBOX in line for line in read), result.err
    assert "internal error" not in result.err
    assert_nothing_leaked([*tokens.issued, PASSWORD], result, logs, harness.tmp)


# --- the token document, at the client ----------------------------------------------------


def _expected(registry: Registry, tokens: TokenServer, reason: str) -> str:
    service = f"registry {registry.host}/cache: token service {tokens.realm}"
    return f"{service}: {reason}; refusing the answer"


#: JSON texts for ``expires_in`` that are no lifetime (as containers/image reads it: an int)
BAD_EXPIRES_IN = {
    "digits in a string": b'"300"',
    "a fraction": b"299.5",
    "an integral float": b"300.0",
    "an exponent": b"3e2",
    "a boolean": b"true",
    "negative": b"-300",
    "NaN": b"NaN",
    "Infinity": b"Infinity",
    "overflowing float": b"1e400",
    "a list": b"[300]",
    "an object": b'{"seconds": 300}',
}


@pytest.mark.parametrize("expires_in", BAD_EXPIRES_IN.values(), ids=BAD_EXPIRES_IN.keys())
def test_an_expires_in_that_is_no_integer_is_refused(hostile_registry, tokens, expires_in):
    def answer(_request: TokenRequest, document: dict[str, Any]) -> bytes:
        return b'{"token": "%s", "expires_in": %s}' % (document["token"].encode(), expires_in)

    tokens.answer = answer
    with client_for(hostile_registry) as client, pytest.raises(RegistryError) as caught:
        client.ping()
    reason = "expires_in is negative" if expires_in == b"-300" else "expires_in is not an integer"
    assert str(caught.value) == _expected(hostile_registry, tokens, reason)
    assert len(tokens.requests_from(OUR_AGENT)) == 1


@pytest.mark.parametrize("expires_in", [None, 0, 1, 60, 10**30])
def test_a_usable_expires_in_works(hostile_registry, tokens, expires_in):
    """Absent, zero (the spec's 60 s), short, and absurdly long (cached for an hour at most)."""

    def answer(_request: TokenRequest, document: dict[str, Any]) -> dict[str, Any]:
        document = {k: v for k, v in document.items() if k != "expires_in"}
        return document if expires_in is None else {**document, "expires_in": expires_in}

    tokens.answer = answer
    with client_for(hostile_registry) as client:
        client.ping()
        assert client.manifest_get("fedora", "41") is None


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (42, "the answer holds no token"),
        (["a", "b"], "the answer holds no token"),
        ({"token": "t"}, "the answer holds no token"),
        (False, "the answer holds no token"),
        ("", "the answer holds no token"),
    ],
)
def test_a_token_that_is_no_string_is_refused(hostile_registry, tokens, value, reason):
    tokens.answer = lambda _request, document: {**document, "token": value, "access_token": value}
    with client_for(hostile_registry) as client, pytest.raises(RegistryError) as caught:
        client.ping()
    assert str(caught.value) == _expected(hostile_registry, tokens, reason)
    assert len(tokens.requests_from(OUR_AGENT)) == 1


_BREAKERS = [*"\r\n\t \x00\x7f\"',;:=@\\", "é", "\u2028", "\u202e", "\u2603", "\U0001f600"]
_PIECES = st.text(
    alphabet=st.sampled_from(_BREAKERS)
    | st.sampled_from(string.ascii_letters + "-._~+/=")
    | st.characters(),
    max_size=12,
)
_SPOILS = st.one_of(
    st.tuples(_PIECES, _PIECES).map(lambda pair: ("wrap", *pair)),
    st.text(max_size=40).map(lambda text: ("replace", text, "")),
)


@settings(max_examples=60, deadline=None)
@given(spoil=_SPOILS)
def test_any_token_either_works_or_fails_in_one_permanent_line(
    hostile_registry, hostile_tokens, spoil
):
    """For whatever token the service hands out: either it is the real one and works, or the
    run gets one permanent line - ours (naming the service) or the registry's refusal - that
    is the same for every token, so holds no piece of it; the service is asked once."""
    kind, first, second = spoil
    handed: dict[str, str] = {}

    def answer(request: TokenRequest, document: dict[str, Any]) -> dict[str, Any]:
        if not request.user_agent.startswith(OUR_AGENT):
            return document
        real = document["token"]
        token = first + real + second if kind == "wrap" else first
        handed.update(real=real, token=token)
        return {**document, "token": token, "access_token": token}

    hostile_tokens.answer = answer
    try:
        asked = len(hostile_tokens.requests_from(OUR_AGENT))
        outcome: SyncError | None = None
        with client_for(hostile_registry) as client:
            try:
                client.ping()
            except SyncError as error:
                outcome = error
        assert len(hostile_tokens.requests_from(OUR_AGENT)) == asked + 1
    finally:
        hostile_tokens.answer = None

    if outcome is None:  # it works: the real token, or with padding the registry tolerates
        assert handed["token"].rstrip("=") == handed["real"]
        return
    assert isinstance(outcome, RegistryError), outcome  # permanent: never retried
    message = str(outcome)
    reasons = [
        "the answer holds no token",
        f"the token is longer than {MAX_TOKEN_LENGTH} characters",
        "the token holds characters a bearer token cannot (RFC 6750 b64token)",
    ]
    expected = {_expected(hostile_registry, hostile_tokens, r) for r in reasons}
    expected.add(f"registry {hostile_registry.host}/cache: HTTP 401 (UNAUTHORIZED): not authorized")
    assert message in expected
    assert "\n" not in message
    assert leaked(message, [handed["real"]]) == []


class _SpoiledHeader(httpx.Auth):
    """An auth flow that puts ``value`` into a header as it is: what the client's boundary
    meets if anything unchecked ever reaches a header again. It reads a header first, as
    RegistryAuth does: httpx then encodes later values as ASCII (else as UTF-8)."""

    def __init__(self, value: str) -> None:
        self.value = value

    def auth_flow(self, request: httpx.Request) -> Iterator[httpx.Request]:
        request.headers.get("Authorization")
        request.headers["Authorization"] = f"Bearer {self.value}"
        yield request


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("eyJ\r\nX-Injected: 1", "a header value for the request is unusable"),
        ("eyJ\x00nul", "a header value for the request is unusable"),
        ("eyJ\u00e9", "a header value for the request is not ASCII"),
        ("eyJ\u2603", "a header value for the request is not ASCII"),
    ],
)
def test_a_header_value_httpx_refuses_is_our_permanent_error(registry, value, reason):
    settings = RegistrySettings(url=f"{registry.host}/cache", tls_verify=False)
    retry = RetrySettings(attempts=3, initial_delay=0, max_delay=0)
    client = RegistryClient(settings, timeout=10, retry=retry, auth=_SpoiledHeader(value))
    with client, pytest.raises(RegistryError) as caught:
        client.ping()
    assert str(caught.value) == (
        f"registry {registry.host}/cache: cannot talk to the registry: {reason}"
    )


# --- credentials stay with the registry; foreign header values end as our errors -----------


class _Elsewhere(BackgroundServer):
    """Where the registry redirects blob reads: answers as ``mode`` says and records every
    request's path and whether it carried an ``Authorization`` header."""

    def __init__(self) -> None:
        self.mode = "challenge"
        self.seen: list[tuple[str, bool]] = []

    def _make_server(self) -> ThreadingHTTPServer:
        elsewhere = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                elsewhere.seen.append((self.path, "Authorization" in self.headers))
                realm = f"http://127.0.0.1:{elsewhere.port}/token"
                if self.path.startswith("/token"):
                    self._answer(200, [], b'{"token": "elsewhere-token"}')
                elif elsewhere.mode == "challenge":
                    challenge = f'Bearer realm="{realm}",service="elsewhere",scope="x:y:pull"'
                    self._answer(401, [("WWW-Authenticate", challenge)], b"{}")
                elif elsewhere.mode == "loop":
                    self._answer(302, [("Location", self.path)], b"")
                elif elsewhere.mode == "other scheme":
                    self._answer(302, [("Location", "ftp://127.0.0.1/blob")], b"")
                elif elsewhere.mode == "bad encoding":
                    self._answer(200, [("Content-Encoding", "gzip")], b"not gzip at all")

            def _answer(self, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
                self.send_response(status)
                for name, value in headers:
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        return ThreadingHTTPServer(("127.0.0.1", 0), Handler)


@pytest.fixture(scope="module")
def elsewhere() -> Iterator[_Elsewhere]:
    with _Elsewhere() as server:
        yield server


@pytest.fixture(scope="module")
def redirecting_registry(hostile_tokens: TokenServer, elsewhere: _Elsewhere) -> Iterator[Registry]:
    """distribution with token auth whose blob reads redirect to ``elsewhere`` (its
    ``redirect`` storage middleware), holding one small blob in ``cache/fedora``."""
    auth = RegistryAuth(Credentials(USER, PASSWORD), registry="test", allow_http_realm=True)
    with Registry(
        token_auth=hostile_tokens.registry_auth_config(),
        http_auth=auth,
        blob_redirect=f"http://127.0.0.1:{elsewhere.port}",
    ) as registry:
        yield registry


def _upload(registry: Registry, repository: str, data: bytes) -> str:
    """Push a blob (POST an upload, PUT its bytes) with the test's own client."""
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    with registry.client() as client:
        started = client.post(f"/v2/{repository}/blobs/uploads/")
        assert started.status_code == 202, started.text
        location = started.headers["Location"]
        separator = "&" if "?" in location else "?"
        done = client.put(f"{location}{separator}digest={digest}", content=data)
        assert done.status_code == 201, done.text
    return digest


def test_a_redirect_target_never_gets_our_credentials(redirecting_registry, elsewhere, tokens):
    digest = _upload(redirecting_registry, "cache/fedora", b'{"architecture": "amd64"}')
    elsewhere.mode, elsewhere.seen = "challenge", []

    with client_for(redirecting_registry) as client:
        # A read first: the pull token is then cached and goes with the blob read up front,
        # so the redirect target's challenge meets a flow with no challenge answered yet.
        assert client.manifest_get("fedora", "41") is None
        with pytest.raises(RegistryError) as caught:
            client.blob_get("fedora", digest)

    assert "HTTP 401" in str(caught.value) and "not authorized" in str(caught.value)
    blob = digest.removeprefix("sha256:")
    assert any(blob in path for path, _ in elsewhere.seen), "the registry did not redirect"
    assert [path for path, _ in elsewhere.seen if path.startswith("/token")] == []
    assert [path for path, authorized in elsewhere.seen if authorized] == []


@pytest.mark.parametrize(
    ("mode", "reason"),
    [
        ("loop", "too many redirects"),
        ("other scheme", "it redirected to an unsupported URL"),
        ("bad encoding", "its answer cannot be decoded (Content-Encoding)"),
    ],
)
def test_a_foreign_answer_to_a_redirect_is_our_permanent_error(
    redirecting_registry, elsewhere, tokens, mode, reason
):
    digest = _upload(redirecting_registry, "cache/fedora", f"{{{mode!r}: 1}}".encode())
    elsewhere.mode = mode
    with client_for(redirecting_registry) as client, pytest.raises(RegistryError) as caught:
        client.blob_get("fedora", digest)
    assert str(caught.value) == (
        f"{redirecting_registry.host}/cache/fedora@{digest}: cannot talk to the registry: {reason}"
    )


@pytest.fixture
def plain_proxy(registry: Registry) -> Iterator[FaultProxy]:
    with FaultProxy(registry.url) as proxy:
        yield proxy


@pytest.mark.parametrize("retry_after", ["²", "³", "¹"])
def test_a_retry_after_in_other_digits_is_ignored(plain_proxy, namespace, retry_after):
    """``Retry-After: ²`` is no number of seconds: the 503 is retried on our own schedule."""
    answered: list[str] = []

    def once(request: ProxyRequest) -> Fault | None:
        answered.append(request.path)
        return Fault.answer(503, retry_after=retry_after) if len(answered) == 1 else None

    plain_proxy.rule = once
    with client_for(plain_proxy, namespace=namespace) as client:
        client.ping()
    assert len(answered) == 2


def _digest_variants() -> dict[str, Callable[[str], str]]:
    return {
        "upper case": lambda d: d.upper(),
        "another algorithm": lambda d: "sha512:" + d.removeprefix("sha256:") * 2,
        "two digests": lambda d: f"{d}, {d}",
        "truncated": lambda d: d[:-1],
        "no algorithm": lambda d: d.removeprefix("sha256:"),
        "latin-1 digit": lambda d: d[:-1] + "²",
    }


@pytest.mark.parametrize("variant", _digest_variants().values(), ids=_digest_variants().keys())
def test_an_unreadable_docker_content_digest_is_refused_without_echo(
    registry, plain_proxy, namespace, variant
):
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "manifests": [],
        }
    ).encode()
    digest = "sha256:" + hashlib.sha256(manifest).hexdigest()
    header = variant(digest)
    with client_for(registry, namespace=namespace) as client:
        client.manifest_put("fedora", "41", "application/vnd.oci.image.index.v1+json", manifest)

    plain_proxy.rule = lambda request: (
        Fault.rewrite({"Docker-Content-Digest": header}) if "/manifests/" in request.path else None
    )
    with (
        client_for(plain_proxy, namespace=namespace) as client,
        pytest.raises(RegistryError) as caught,
    ):
        client.manifest_get("fedora", "41")
    assert str(caught.value) == (
        f"{plain_proxy.host}/{namespace}/fedora:41: the registry's Docker-Content-Digest is not a "
        "sha256 digest"
    )


def _links(namespace: str) -> dict[str, tuple[str, str]]:
    """``Link`` headers for the first tag-list page that lead elsewhere, and the refusal."""
    outside = "next page points outside the tag list"
    return {
        "another repository": (f'</v2/{namespace}/other/tags/list?n=1>; rel="next"', outside),
        "a climbing path": (f'</v2/{namespace}/fedora/../other/tags/list>; rel="next"', outside),
        "an encoded slash": (f'</v2/{namespace}%2Ffedora/tags/list?n=1>; rel="next"', outside),
        "a relative path": ('<tags/list?n=1&last=a>; rel="next"', outside),
        "another host": (
            f'<http://127.0.0.2:1/v2/{namespace}/fedora/tags/list>; rel="next"',
            "next page points at another host",
        ),
        "not a URL": ('<http://[::1>; rel="next"', "the next-page Link is not a URL"),
    }


@pytest.mark.parametrize("variant", list(_links("ns")))
def test_a_tag_list_link_that_leads_elsewhere_is_refused(registry, plain_proxy, namespace, variant):
    link, refusal = _links(namespace)[variant]
    index = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": []}).encode()
    with client_for(registry, namespace=namespace) as client:
        for repository, tag in (("fedora", "a"), ("fedora", "b"), ("other", "z")):
            client.manifest_put(repository, tag, OCI_INDEX, index)
    with client_for(plain_proxy, namespace=namespace) as client:
        assert sorted(client.tags_list("fedora", page_size=1)) == ["a", "b"]  # honest pages

        def first_page(request: ProxyRequest) -> Fault | None:
            first = "/tags/list" in request.path and "last=" not in request.path
            return Fault.rewrite({"Link": link}) if first else None

        plain_proxy.rule = first_page
        with pytest.raises(RegistryError) as caught:
            client.tags_list("fedora", page_size=1)
    assert str(caught.value) == f"tag list of {plain_proxy.host}: {refusal}"
