"""Registry authentication against real registries: htpasswd (Basic), token auth with a token
server speaking the real protocol (ES256 JWT, x5c), and client TLS certificates (cert_dir)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from fedora_container_sync.config.settings import Credentials, RegistrySettings, RetrySettings
from fedora_container_sync.errors import RegistryError
from fedora_container_sync.registry.auth import RegistryAuth
from fedora_container_sync.registry.client import RegistryClient
from support.auth import PASSWORD, USER
from support.harness import ARCHES, Harness
from support.servers import Registry, RegistryTLS
from support.tokens import issue_cert, make_ca

pytestmark = pytest.mark.integration

TOOLBOX = "fedora-toolbox"
COMPOSE = "Fedora-41-20241025.0"
OUR_AGENT = "fedora-container-sync"


def make_harness(request: pytest.FixtureRequest, registry: Registry) -> Harness:
    return Harness(
        request.getfixturevalue("tmp_path"),
        request.getfixturevalue("served_root"),
        request.getfixturevalue("compose_server"),
        [registry],
        request.getfixturevalue("namespace"),
        request.getfixturevalue("capsys"),
    )


def with_credentials(harness: Harness, registry: Registry, prefix: str) -> None:
    harness.registry_entries[registry.host] = (
        f'url = "{registry.host}/{harness.namespace}"\ntls_verify = false\n'
        f'credential_prefix = "{prefix}"\n'
    )


def test_publish_with_basic_auth(request, basic_registry, monkeypatch):
    harness = make_harness(request, basic_registry)
    with_credentials(harness, basic_registry, "BASIC_")
    monkeypatch.setenv("BASIC_USER", USER)
    monkeypatch.setenv("BASIC_PASSWORD", PASSWORD)
    result = harness.replay(harness.compose(COMPOSE))
    assert result.code == 0, result.err
    assert harness.arches(TOOLBOX, "41") == set(ARCHES)
    for arch in ARCHES:
        assert harness.digest(TOOLBOX, f"41-{arch}") is not None


def test_wrong_password_fails_once_without_retrying(request, basic_registry, monkeypatch):
    harness = make_harness(request, basic_registry)
    with_credentials(harness, basic_registry, "BASIC_")
    monkeypatch.setenv("BASIC_USER", USER)
    monkeypatch.setenv("BASIC_PASSWORD", "wrong-password-1234")
    result = harness.replay(harness.compose(COMPOSE))
    assert result.code == 1
    errors = [line for line in result.err.splitlines() if "ERROR" in line]
    assert len(errors) == 1, result.err
    assert basic_registry.host in errors[0] and "not authorized" in errors[0]
    assert "retrying" not in result.err
    assert "wrong-password-1234" not in result.err + result.out
    assert basic_registry.tags(harness.repo(TOOLBOX)) == []


def test_publish_with_token_auth(request, token_registry, token_server, monkeypatch):
    harness = make_harness(request, token_registry)
    with_credentials(harness, token_registry, "TOKEN_")
    monkeypatch.setenv("TOKEN_USER", USER)
    monkeypatch.setenv("TOKEN_PASSWORD", PASSWORD)
    token_server.requests.clear()

    result = harness.replay(harness.compose(COMPOSE))

    assert result.code == 0, result.err
    assert harness.arches(TOOLBOX, "41") == set(ARCHES)
    assert harness.digest(TOOLBOX, "latest") == harness.digest(TOOLBOX, "41")
    # Our client: every token was issued to the user, and each scope was asked for once
    # (the cache served every later request of the run).
    ours = token_server.requests_from(OUR_AGENT)
    assert ours and all(r.user == USER and r.granted for r in ours)
    scopes = Counter(" ".join(sorted(r.scopes)) for r in ours)
    assert max(scopes.values()) == 1, scopes
    assert f"repository:{harness.repo(TOOLBOX)}:pull,push" in {
        s.replace("push,pull", "pull,push") for s in scopes
    }
    # skopeo authenticated too (through the auth file): tokens for push, issued to the user.
    theirs = [r for r in token_server.requests if not r.user_agent.startswith(OUR_AGENT)]
    assert any(r.user == USER and any("push" in s for s in r.scopes) for r in theirs)


def test_token_auth_wrong_password_is_refused(request, token_registry, monkeypatch):
    harness = make_harness(request, token_registry)
    with_credentials(harness, token_registry, "TOKEN_")
    monkeypatch.setenv("TOKEN_USER", USER)
    monkeypatch.setenv("TOKEN_PASSWORD", "not-the-password-5678")
    result = harness.replay(harness.compose(COMPOSE))
    assert result.code == 1
    errors = [line for line in result.err.splitlines() if "ERROR" in line]
    assert len(errors) == 1, result.err
    assert "credentials refused" in errors[0]
    assert "retrying" not in result.err
    assert "not-the-password-5678" not in result.err + result.out


def _client(registry: Registry, auth: RegistryAuth) -> RegistryClient:
    settings = RegistrySettings(url=f"{registry.host}/cache", tls_verify=False)
    retry = RetrySettings(attempts=1, initial_delay=0, max_delay=0)
    return RegistryClient(settings, timeout=10, retry=retry, auth=auth)


def test_tokens_are_cached_per_scope_until_they_expire(token_registry, token_server):
    now = [1000.0]
    auth = RegistryAuth(
        Credentials(USER, PASSWORD),
        registry=token_registry.host,
        allow_http_realm=True,
        clock=lambda: now[0],
    )
    token_server.requests.clear()
    with _client(token_registry, auth) as client:
        client.ping()
        assert client.manifest_get("one", "41") is None
        assert client.manifest_get("one", "42") is None
        assert client.manifest_get("two", "41") is None
        asked = [r.scopes for r in token_server.requests_from(OUR_AGENT)]
        assert asked == [[], ["repository:cache/one:pull"], ["repository:cache/two:pull"]]
        now[0] += token_server.expires_in  # past the expiry (minus the renewal margin)
        assert client.manifest_get("one", "43") is None
        asked = [r.scopes for r in token_server.requests_from(OUR_AGENT)]
        assert asked[-1] == ["repository:cache/one:pull"] and len(asked) == 4


def test_anonymous_client_gets_no_push(token_registry, token_server):
    auth = RegistryAuth(None, registry=token_registry.host, allow_http_realm=True)
    with _client(token_registry, auth) as client:
        client.ping()
        with pytest.raises(RegistryError, match="not authorized"):
            client.manifest_get("private", "41")
        with pytest.raises(RegistryError, match="not authorized"):
            client.manifest_put("private", "41", "application/vnd.oci.image.index.v1+json", b"{}")
    anonymous = [r for r in token_server.requests_from(OUR_AGENT) if r.user is None]
    assert anonymous and all(r.granted for r in anonymous)


def test_token_realm_on_plain_http_is_refused_for_a_tls_registry(token_registry):
    auth = RegistryAuth(Credentials(USER, PASSWORD), registry=token_registry.host)
    with _client(token_registry, auth) as client, pytest.raises(RegistryError) as caught:
        client.manifest_get("x", "41")
    assert "refusing to send credentials to the plain-HTTP token realm" in str(caught.value)
    assert PASSWORD not in str(caught.value)


# --- client certificates --------------------------------------------------------------------


@pytest.fixture(scope="module")
def tls_material(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("tls")
    ca = make_ca(base / "ca")
    issue_cert(ca, base / "server.pem", base / "server.key", common_name="127.0.0.1", server=True)
    issue_cert(ca, base / "client.pem", base / "client.key", common_name="sync", server=False)
    # cert_dir in the containers convention: CAs as *.crt, client pairs as *.cert + *.key.
    cert_dir = base / "cert_dir"
    cert_dir.mkdir()
    (cert_dir / "ca.crt").write_bytes(ca.cert_path.read_bytes())
    (cert_dir / "client.cert").write_bytes((base / "client.pem").read_bytes())
    (cert_dir / "client.key").write_bytes((base / "client.key").read_bytes())
    ca_only = base / "ca_only"
    ca_only.mkdir()
    (ca_only / "ca.crt").write_bytes(ca.cert_path.read_bytes())
    return {
        "ca": ca.cert_path,
        "server": base / "server.pem",
        "server_key": base / "server.key",
        "client": base / "client.pem",
        "client_key": base / "client.key",
        "cert_dir": cert_dir,
        "ca_only": ca_only,
    }


@pytest.fixture(scope="module")
def mtls_registry(tls_material: dict[str, Path]) -> Iterator[Registry]:
    tls = RegistryTLS(
        certificate=tls_material["server"],
        key=tls_material["server_key"],
        ca=tls_material["ca"],
        client_cas=tls_material["ca"],
        client_cert=tls_material["client"],
        client_key=tls_material["client_key"],
    )
    with Registry(tls=tls) as registry:
        yield registry


def _tls_entry(harness: Harness, registry: Registry, cert_dir: Path) -> None:
    harness.registry_entries[registry.host] = (
        f'url = "{registry.host}/{harness.namespace}"\ntls_verify = true\ncert_dir = "{cert_dir}"\n'
    )


def test_client_certificates_from_cert_dir(request, mtls_registry, tls_material):
    harness = make_harness(request, mtls_registry)
    _tls_entry(harness, mtls_registry, tls_material["cert_dir"])
    result = harness.replay(harness.compose(COMPOSE))
    assert result.code == 0, result.err
    assert harness.arches(TOOLBOX, "41") == set(ARCHES)
    assert harness.digest(TOOLBOX, "41-s390x") is not None


def test_without_a_client_certificate_the_registry_is_not_usable(
    request, mtls_registry, tls_material
):
    harness = make_harness(request, mtls_registry)
    _tls_entry(harness, mtls_registry, tls_material["ca_only"])
    result = harness.replay(harness.compose(COMPOSE))
    assert result.code == 1
    errors = [line for line in result.err.splitlines() if "ERROR" in line]
    assert len(errors) == 1, result.err
    assert f"registry {mtls_registry.host}/{harness.namespace} not usable" in errors[0]
    assert mtls_registry.tags(harness.repo(TOOLBOX)) == []
