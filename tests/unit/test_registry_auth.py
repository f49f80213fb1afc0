"""The pure parts of the registry auth flow: challenges, scopes, the cache key."""

from __future__ import annotations

import pytest

from fedora_container_sync.registry.auth import (
    RegistryAuth,
    normalize_scope,
    parse_challenge,
    scopes_for,
)
from fedora_container_sync.settings import Credentials


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
