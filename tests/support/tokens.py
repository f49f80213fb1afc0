"""A registry token server (distribution's token authentication spec) and TLS material.

:class:`TokenServer` answers ``GET /token?service=...&scope=...`` like Docker Hub's or Quay's
auth endpoints: Basic credentials checked against its users, a JWT signed with ES256 whose
header carries the signing certificate as ``x5c`` (the registry trusts that certificate through
``auth.token.rootcertbundle``), ``access`` claims for the granted scopes, and
``{"token", "access_token", "expires_in", "issued_at"}`` in the body. Signed-in users get what
they ask for; anonymous callers get ``pull`` only on repositories under ``public_prefix``.

``answer``, when set, turns the token document the server would send into the one it does send
(a hostile or foreign token service: a token with a newline, a non-ASCII one, an ``expires_in``
of ``"300"`` or ``1e400``...); what it returns is sent as JSON, or as the body when it is bytes.
Every token the server hands out is recorded in ``issued``.

:func:`make_ca` / :func:`issue_cert` write PEM files for TLS tests (server and client certs).
"""

from __future__ import annotations

import base64
import datetime as dt
import ipaddress
import json
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from support.servers import BackgroundServer

__all__ = ["TokenServer", "issue_cert", "make_ca"]

ISSUER = "test-token-issuer"
SERVICE = "test-registry"


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )


@dataclass(frozen=True)
class CA:
    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey
    cert_path: Path


def make_ca(directory: Path, name: str = "test-ca") -> CA:
    """A self-signed CA; its certificate is written to ``directory/<name>.pem``."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(name))
        .issuer_name(_name(name))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(key, hashes.SHA256())
    )
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}.pem"
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return CA(cert, key, path)


def issue_cert(ca: CA, cert_path: Path, key_path: Path, *, common_name: str, server: bool) -> None:
    """A certificate signed by ``ca``: for 127.0.0.1 (``server``) or a TLS client."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    usage = (
        x509.oid.ExtendedKeyUsageOID.SERVER_AUTH
        if server
        else (x509.oid.ExtendedKeyUsageOID.CLIENT_AUTH)
    )
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(ca.cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    )
    if server:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
    cert = builder.sign(ca.key, hashes.SHA256())
    cert_path.parent.mkdir(parents=True, exist_ok=True)
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    _write_key(key_path, key)


# --- token server ------------------------------------------------------------------------------


@dataclass
class TokenRequest:
    user: str | None
    scopes: list[str]
    user_agent: str
    granted: bool


class _Handler(BaseHTTPRequestHandler):
    server: _TokenHTTPServer

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        tokens = self.server.tokens
        parts = urlsplit(self.path)
        if parts.path != "/token":
            self._send(404, {"errors": [{"code": "NOT_FOUND"}]})
            return
        query = parse_qs(parts.query)
        scopes = [s for value in query.get("scope", []) for s in value.split()]
        user = tokens.authenticate(self.headers.get("Authorization"))
        agent = self.headers.get("User-Agent", "")
        if user is False:
            tokens.log(TokenRequest(None, scopes, agent, granted=False))
            self._send(401, {"errors": [{"code": "UNAUTHORIZED", "message": "bad credentials"}]})
            return
        name = user or None
        request = TokenRequest(name, scopes, agent, granted=True)
        tokens.log(request)
        self._send(200, tokens.hand_out(request, query.get("service", [""])[0]))

    def _send(self, status: int, document: dict[str, Any] | bytes) -> None:
        body = document if isinstance(document, bytes) else json.dumps(document).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class _TokenHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    tokens: TokenServer


@dataclass
class TokenServer(BackgroundServer):
    """Issues registry tokens on ``http://127.0.0.1:PORT/token`` (see the module docstring)."""

    directory: Path
    users: dict[str, str]
    expires_in: int = 300
    public_prefix: str = "public/"
    requests: list[TokenRequest] = field(default_factory=list)
    #: every token handed out, so tests can look for them where they must not be
    issued: list[str] = field(default_factory=list)
    #: (request, token document) -> what is sent instead (see the module docstring)
    answer: Callable[[TokenRequest, dict[str, Any]], dict[str, Any] | bytes] | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        self._key = ec.generate_private_key(ec.SECP256R1())
        now = dt.datetime.now(dt.UTC)
        self._cert = (
            x509.CertificateBuilder()
            .subject_name(_name(ISSUER))
            .issuer_name(_name(ISSUER))
            .public_key(self._key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=1))
            .not_valid_after(now + dt.timedelta(days=30))
            .sign(self._key, hashes.SHA256())
        )
        self.rootcertbundle = self.directory / "token-signer.pem"
        self.rootcertbundle.write_bytes(self._cert.public_bytes(serialization.Encoding.PEM))
        self._x5c = base64.b64encode(self._cert.public_bytes(serialization.Encoding.DER)).decode()

    def _make_server(self) -> ThreadingHTTPServer:
        server = _TokenHTTPServer(("127.0.0.1", 0), _Handler)
        server.tokens = self
        return server

    @property
    def realm(self) -> str:
        return f"http://127.0.0.1:{self.port}/token"

    def registry_auth_config(self) -> dict[str, str]:
        """The ``auth.token`` settings for the registry."""
        return {
            "realm": self.realm,
            "service": SERVICE,
            "issuer": ISSUER,
            "rootcertbundle": str(self.rootcertbundle),
        }

    # protocol

    def authenticate(self, header: str | None) -> str | bool:
        """The user name, "" for anonymous, False for wrong credentials."""
        if not header:
            return ""
        scheme, _, value = header.partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            user, _, password = base64.b64decode(value).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            return False
        return user if self.users.get(user) == password and password else False

    def issue(self, user: str | None, service: str, scopes: list[str]) -> dict[str, Any]:
        access = []
        for scope in scopes:
            kind, _, rest = scope.partition(":")
            name, _, actions = rest.rpartition(":")
            wanted = [a for a in actions.split(",") if a]
            if user is None:
                wanted = ["pull"] if name.startswith(self.public_prefix) else []
                wanted = [a for a in wanted if a in actions.split(",")]
            if kind and name:
                access.append({"type": kind, "name": name, "actions": wanted})
        now = dt.datetime.now(dt.UTC)
        claims = {
            "iss": ISSUER,
            "sub": user or "",
            "aud": service,
            "exp": now + dt.timedelta(seconds=self.expires_in),
            "nbf": now - dt.timedelta(seconds=30),
            "iat": now,
            "jti": uuid.uuid4().hex,
            "access": access,
        }
        token = jwt.encode(claims, self._key, algorithm="ES256", headers={"x5c": [self._x5c]})
        with self._lock:
            self.issued.append(token)
        return {
            "token": token,
            "access_token": token,
            "expires_in": self.expires_in,
            "issued_at": now.isoformat(),
        }

    def hand_out(self, request: TokenRequest, service: str) -> dict[str, Any] | bytes:
        """The answer to a granted request: the token document, or what ``answer`` makes of it."""
        document = self.issue(request.user, service, request.scopes)
        if self.answer is None:
            return document
        answered = self.answer(request, document)
        if isinstance(answered, dict):
            with self._lock:
                self.issued += [
                    answered[key]
                    for key in ("token", "access_token")
                    if isinstance(answered.get(key), str) and answered[key] not in self.issued
                ]
        return answered

    def log(self, request: TokenRequest) -> None:
        with self._lock:
            self.requests.append(request)

    def requests_from(self, user_agent: str) -> list[TokenRequest]:
        with self._lock:
            return [r for r in self.requests if r.user_agent.startswith(user_agent)]
