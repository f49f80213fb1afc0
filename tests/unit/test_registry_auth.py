"""The pure parts of the registry auth flow: challenges, scopes, the cache key, and the checks
on what the registry and its token service send (realm, token, ``expires_in``)."""

from __future__ import annotations

import math
import string

import h11
import pytest
from hypothesis import given
from hypothesis import strategies as st

from fedora_container_sync.config.settings import Credentials
from fedora_container_sync.registry.auth import (
    MAX_REALM_LENGTH,
    MAX_TOKEN_LENGTH,
    RegistryAuth,
    bearer_token,
    normalize_scope,
    parse_challenge,
    scopes_for,
    token_lifetime,
    token_service,
)


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ('Basic realm="basic-realm"', ("basic", {"realm": "basic-realm"})),
        (
            'Bearer realm="https://auth.example/token",service="registry.example",'
            'scope="repository:fedora/fedora:pull,push"',
            (
                "bearer",
                {
                    "realm": "https://auth.example/token",
                    "service": "registry.example",
                    "scope": "repository:fedora/fedora:pull,push",
                },
            ),
        ),
        (
            'Bearer realm="http://127.0.0.1:1/token", service="svc", '
            'scope="repository:a:pull repository:b:pull", error="insufficient_scope"',
            (
                "bearer",
                {
                    "realm": "http://127.0.0.1:1/token",
                    "service": "svc",
                    "scope": "repository:a:pull repository:b:pull",
                    "error": "insufficient_scope",
                },
            ),
        ),
        (
            "Bearer realm=https://a/token,service=s",
            ("bearer", {"realm": "https://a/token", "service": "s"}),
        ),
        ('Basic realm="a \\"quoted\\" realm"', ("basic", {"realm": 'a "quoted" realm'})),
        ("Negotiate", ("negotiate", {})),
        ("", None),
        ('="x"', None),
    ],
)
def test_parse_challenge(header, expected):
    assert parse_challenge(header) == expected


@pytest.mark.parametrize(
    ("scope", "normalized"),
    [
        ("repository:a/b:push,pull", "repository:a/b:pull,push"),
        ("repository:a/b:pull,push", "repository:a/b:pull,push"),
        ("repository:a/b:pull", "repository:a/b:pull"),
        ("repository:b:pull repository:a:push,pull", "repository:a:pull,push repository:b:pull"),
        ("registry:catalog:*", "registry:catalog:*"),
        ("", ""),
    ],
)
def test_normalize_scope(scope, normalized):
    assert normalize_scope(scope) == normalized


@pytest.mark.parametrize(
    ("method", "path", "scopes"),
    [
        ("GET", "/v2/", [""]),
        (
            "GET",
            "/v2/ns/fedora/manifests/41",
            ["repository:ns/fedora:pull", "repository:ns/fedora:pull,push"],
        ),
        (
            "HEAD",
            "/v2/fedora/blobs/sha256:00",
            ["repository:fedora:pull", "repository:fedora:pull,push"],
        ),
        ("PUT", "/v2/ns/fedora/manifests/41", ["repository:ns/fedora:pull,push"]),
        (
            "GET",
            "/v2/ns/fedora/tags/list",
            ["repository:ns/fedora:pull", "repository:ns/fedora:pull,push"],
        ),
        ("GET", "/v2/_catalog", []),
        ("GET", "/token", []),
    ],
)
def test_scopes_for(method, path, scopes):
    assert scopes_for(method, path) == scopes


def test_repr_hides_credentials():
    auth = RegistryAuth(Credentials("bot", "s3cret-pass"), registry="quay.io/fedora")
    assert "s3cret" not in repr(auth)
    assert "s3cret" not in str(Credentials("bot", "s3cret-pass"))


# --- the token ------------------------------------------------------------------------------

#: what a refusal may say: never the token itself
TOKEN_REFUSALS = {
    "the answer holds no token",
    f"the token is longer than {MAX_TOKEN_LENGTH} characters",
    "the token holds characters a bearer token cannot (RFC 6750 b64token)",
}
#: RFC 6750 section 2.1, b64token
B64TOKEN = st.from_regex(r"\A[A-Za-z0-9\-._~+/]{1,300}={0,3}\Z")


@pytest.mark.parametrize(
    "token",
    [
        "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiIifQ.MEUCIQDw-_sig",  # a JWT
        "djE6ZmVkb3JhOjE3MDAwMDAwMDA=",  # base64 with padding (GHCR-style)
        "ya29.a0Af_~+/x",
        "x" * MAX_TOKEN_LENGTH,
    ],
)
def test_bearer_token_takes_b64tokens(token):
    assert bearer_token(token) == token


@given(B64TOKEN)
def test_every_b64token_is_taken(token):
    assert bearer_token(token) == token


@given(
    st.one_of(
        st.text(),
        st.text(alphabet=string.printable + "\x00\x7f\u00e9\u2028\U0001f600", max_size=40),
        st.builds(lambda a, b, c: a + b + c, B64TOKEN, st.text(max_size=3), B64TOKEN),
        st.none(),
        st.integers(),
        st.lists(st.text(max_size=3), max_size=2),
    )
)
def test_a_token_is_sent_as_is_or_refused_without_quoting_it(value):
    """Whatever the token service sends: either it goes into the header unchanged, and h11
    (what httpx writes requests with) takes that header, or the refusal is one of three fixed
    sentences."""
    try:
        token = bearer_token(value)
    except ValueError as error:
        assert str(error) in TOKEN_REFUSALS
        return
    assert token == value and len(token) <= MAX_TOKEN_LENGTH
    assert token.isascii() and token.isprintable() and not any(c.isspace() for c in token)
    h11.Request(
        method="GET", target="/v2/", headers=[("Host", "r"), ("Authorization", f"Bearer {token}")]
    )


def test_a_token_too_long_is_refused():
    with pytest.raises(ValueError, match=f"longer than {MAX_TOKEN_LENGTH} characters"):
        bearer_token("x" * (MAX_TOKEN_LENGTH + 1))


# --- expires_in -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expires_in", "seconds"),
    [
        (None, 50.0),  # the spec's default 60 s, renewed 10 s early
        (0, 50.0),
        (300, 290.0),
        (1, 0.5),  # a short life is halved, never negative
        (3600, 3590.0),
        (10**30, 3590.0),  # cached an hour at most
    ],
)
def test_token_lifetime(expires_in, seconds):
    assert token_lifetime(expires_in) == seconds


@pytest.mark.parametrize(
    "expires_in",
    ["300", 300.0, 299.5, True, False, -1, -(10**30), math.nan, math.inf, [300], {"s": 300}],
)
def test_an_expires_in_that_is_no_lifetime_is_refused(expires_in):
    with pytest.raises(ValueError, match="expires_in is"):
        token_lifetime(expires_in)


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner),
    max_leaves=5,
)


@given(JSON)
def test_any_expires_in_is_a_bounded_lifetime_or_refused(expires_in):
    try:
        seconds = token_lifetime(expires_in)
    except ValueError:
        assert expires_in is not None and not (type(expires_in) is int and expires_in >= 0)
        return
    assert expires_in is None or type(expires_in) is int
    assert 0 <= seconds <= 3600


# --- the realm ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("realm", "allow_http", "url", "name"),
    [
        ("https://auth.docker.io/token", False, "https://auth.docker.io/token", None),
        ("https://Quay.IO/v2/auth", False, "https://quay.io/v2/auth", "https://quay.io/v2/auth"),
        (
            "http://127.0.0.1:5001/token?account=bot",
            True,
            "http://127.0.0.1:5001/token?account=bot",
            "http://127.0.0.1:5001/token",
        ),
        ("https://[::1]:8443/t#x", False, "https://[::1]:8443/t#x", "https://[::1]:8443/t"),
        ("https://auth_host/token", False, "https://auth_host/token", None),
    ],
)
def test_token_service(realm, allow_http, url, name):
    got_url, got_name = token_service(realm, allow_http=allow_http)
    assert str(got_url) == url
    assert got_name == (name or url)


@pytest.mark.parametrize(
    ("realm", "reason"),
    [
        ("", "not an http(s) URL"),
        ("/token", "not an http(s) URL"),
        ("ftp://auth.example/token", "not an http(s) URL"),
        ("https:///token", "not an http(s) URL"),
        ("https://bot:s3cret@auth.example/token", "https://auth.example/token carries credentials"),
        ("https://bot@auth.example/token", "carries credentials"),
        ("https://auth.example:99999/token", "not a URL"),
        ("https://auth.example:port/token", "not a URL"),
        ("https://auth example/token", "spaces, controls or non-ASCII"),
        ("https://auth.example/to\nken", "spaces, controls or non-ASCII"),
        ("https://t\u00f6kens.example/token", "spaces, controls or non-ASCII"),
        ("https://auth.example%2f.evil/token", "not a host name or IP address"),
        ("https://-auth.example/token", "not a host name or IP address"),
        ("http://auth.example/token", "refusing to send credentials to the plain-HTTP"),
        ("https://auth.example/" + "t" * MAX_REALM_LENGTH, f"longer than {MAX_REALM_LENGTH}"),
    ],
)
def test_a_realm_that_is_no_plain_url_is_refused(realm, reason):
    with pytest.raises(ValueError, match=r"the token realm|plain-HTTP") as caught:
        token_service(realm, allow_http=False)
    assert reason in str(caught.value)
    assert "s3cret" not in str(caught.value)


HOSTS = st.one_of(
    st.sampled_from(["auth.example", "127.0.0.1", "[::1]", "AUTH.example", "a_b", "[zz]", ""]),
    st.text(max_size=12),
)
REALMS = st.builds(
    lambda scheme, user, host, port, path, query: f"{scheme}{user}{host}{port}{path}{query}",
    st.sampled_from(["https://", "http://", "HTTPS://", "ftp://", "//", ""]),
    st.sampled_from(["", "bot@", "bot:pw-Zq7@", ":pw-Zq7@", "bot%3Apw-Zq7@"]),
    HOSTS,
    st.sampled_from(["", ":443", ":0", ":65536", ":-1", ":x"]) | st.integers(0, 70000).map(str),
    st.text(max_size=10).map(lambda text: "/" + text),
    st.sampled_from(["", "?service=r&scope=x", "?pw-Zq7", "#frag"]),
)


@given(REALMS, st.booleans())
def test_a_realm_is_a_clean_url_or_refused(realm, allow_http):
    """Any realm: a ValueError that never holds a password (nor anything after a ``?``), or an
    http(s) URL without credentials, named without query and fragment."""
    try:
        url, name = token_service(realm, allow_http=allow_http)
    except ValueError as error:
        assert "pw-Zq7" not in str(error)
        return
    assert url.scheme in (("https", "http") if allow_http else ("https",))
    assert url.userinfo == b"" and url.host
    assert name.startswith(f"{url.scheme}://") and "@" not in name
    assert "?" not in name and "#" not in name and "pw-Zq7" not in name


@given(st.text())
def test_any_realm_text_gives_a_url_or_a_value_error(realm):
    try:
        token_service(realm, allow_http=True)
    except ValueError:
        pass


@pytest.mark.parametrize(
    ("claim_push", "credentials", "scope", "wider"),
    [
        (True, True, "repository:org/fedora:pull", "repository:org/fedora:pull,push"),
        (True, True, "repository:org/fedora:pull,push", None),  # already asked for push
        (True, True, "repository:a:pull repository:b:pull", None),  # not one repository
        (True, True, "", None),
        (True, False, "repository:org/fedora:pull", None),  # anonymous: nothing to claim
        (False, True, "repository:org/fedora:pull", None),  # a dry run, an audit
    ],
)
def test_a_publish_claims_push_scope_only_for_one_refused_pull(
    claim_push, credentials, scope, wider
):
    from fedora_container_sync.registry.auth import RegistryAuth

    auth = RegistryAuth(
        Credentials("robot", "secret") if credentials else None,
        registry="quay.io/org",
        claim_push=claim_push,
    )
    assert auth._claimed_scope(scope) == wider
