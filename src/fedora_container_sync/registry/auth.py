"""Registry authentication as one ``httpx.Auth``: Basic, and the Bearer token challenge.

The flow (distribution's token spec): a request answered ``401`` with
``WWW-Authenticate: Bearer realm=...,service=...,scope=...`` sends a ``GET`` to the realm with
the service and scopes (and the credentials as Basic, when there are any), receives
``{"token": ..., "expires_in": ...}`` and retries the request with ``Authorization: Bearer``.
Tokens are cached per scope until shortly before they expire; later requests for a cached scope
carry the token up front. A ``Basic`` challenge is answered with the credentials, which are then
sent up front on every later request.

Neither credentials nor tokens ever reach a log line, an error or a ``repr``.
"""

from __future__ import annotations

import base64
import json
import re
import threading
import time
from collections.abc import Callable, Generator, Iterable
from urllib.parse import urlsplit

import httpx

from ..errors import RegistryError, RegistryUnavailable
from ..retry import retry_after_seconds, transient_status
from ..settings import Credentials

#: Tokens without ``expires_in`` live 60 s (the spec's default); renew this early.
_DEFAULT_EXPIRES_IN = 60
_RENEW_MARGIN = 10.0
_MAX_TOKEN_RESPONSE = 1 << 20

_PARAM = re.compile(r'\s*([A-Za-z][A-Za-z0-9_-]*)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,"]*))\s*,?')
_REPOSITORY_PATH = re.compile(r"^/v2/(?P<name>.+?)/(?:manifests|blobs|tags)/")


def parse_challenge(header: str) -> tuple[str, dict[str, str]] | None:
    """``WWW-Authenticate: Scheme k="v", ...`` as ``("scheme", {k: v})``; None if unparsable."""
    match = re.match(r"\s*([A-Za-z][A-Za-z0-9_-]*)(?:\s+|$)", header)
    if not match:
        return None
    scheme, rest = match.group(1).lower(), header[match.end() :]
    params: dict[str, str] = {}
    position = 0
    while position < len(rest):
        param = _PARAM.match(rest, position)
        if not param or param.end() == position:
            break
        value = param.group(2) if param.group(2) is not None else param.group(3)
        params[param.group(1).lower()] = re.sub(r"\\(.)", r"\1", value)
        position = param.end()
    return scheme, params


def normalize_scope(scope: str) -> str:
    """Scopes in a canonical order (``repository:a/b:push,pull`` → ``repository:a/b:pull,push``).

    distribution lists actions in map order, so the same scope can be spelled two ways.
    """
    normalized = []
    for item in scope.split():
        kind, _, rest = item.partition(":")
        name, _, actions = rest.rpartition(":")
        if kind and name:
            item = f"{kind}:{name}:{','.join(sorted(set(actions.split(','))))}"
        normalized.append(item)
    return " ".join(sorted(normalized))


def scopes_for(method: str, path: str) -> list[str]:
    """Cached scopes that would authorize ``method path``, best first ([] for ``/v2/``)."""
    match = _REPOSITORY_PATH.match(path)
    if not match:
        return [""] if path.rstrip("/") == "/v2" else []
    name = match.group("name")
    push = f"repository:{name}:pull,push"
    return [push] if method not in ("GET", "HEAD") else [f"repository:{name}:pull", push]


class RegistryAuth(httpx.Auth):
    """Basic and Bearer-token authentication for one registry.

    ``credentials`` None means anonymous (tokens are still fetched for public scopes).
    ``allow_http_realm`` permits a token realm on plain HTTP (only for registries configured with
    ``tls_verify = false``); otherwise credentials are never sent to an ``http://`` realm.
    """

    requires_response_body = True

    def __init__(
        self,
        credentials: Credentials | None,
        *,
        registry: str,
        allow_http_realm: bool = False,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._registry = registry
        self._allow_http_realm = allow_http_realm
        self._clock = clock
        self._basic: str | None = None
        if credentials is not None:
            pair = f"{credentials.username}:{credentials.password}".encode()
            self._basic = "Basic " + base64.b64encode(pair).decode("ascii")
        self._send_basic = False
        self._tokens: dict[str, tuple[str, float]] = {}
        self._locks: dict[str, threading.Lock] = {}
        self._locks_lock = threading.Lock()

    def __repr__(self) -> str:
        return f"RegistryAuth(registry={self._registry!r})"

    # -- the flow ----------------------------------------------------------------------------

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        token = self._cached_token(scopes_for(request.method, request.url.path))
        if token is not None:
            request.headers["Authorization"] = f"Bearer {token}"
        elif self._send_basic and self._basic is not None:
            request.headers["Authorization"] = self._basic
        response = yield request
        if response.status_code != 401:
            return
        challenge = parse_challenge(response.headers.get("www-authenticate", ""))
        if challenge is None:
            return
        scheme, params = challenge
        if scheme == "basic":
            if self._basic is None or request.headers.get("Authorization") == self._basic:
                return  # no credentials, or they were just refused
            self._send_basic = True
            request.headers["Authorization"] = self._basic
            yield request
        elif scheme == "bearer":
            # One token request per scope, also when parallel requests meet the same challenge:
            # whoever holds the scope's lock fetches; the others then find the token cached.
            scope = normalize_scope(params.get("scope", ""))
            with self._lock_for(scope):
                token = self._cached_token([scope])
                if token is None or request.headers.get("Authorization") == f"Bearer {token}":
                    token_request = self._token_request(params)
                    if "user-agent" in request.headers:
                        token_request.headers["User-Agent"] = request.headers["user-agent"]
                    token_response = yield token_request
                    token = self._store_token(params, token_response)
            request.headers["Authorization"] = f"Bearer {token}"
            yield request

    # -- tokens ------------------------------------------------------------------------------

    def _lock_for(self, scope: str) -> threading.Lock:
        with self._locks_lock:
            return self._locks.setdefault(scope, threading.Lock())

    def _cached_token(self, scopes: Iterable[str]) -> str | None:
        now = self._clock()
        for scope in scopes:
            cached = self._tokens.get(scope)
            if cached is not None and cached[1] > now:
                return cached[0]
        return None

    def _token_request(self, params: dict[str, str]) -> httpx.Request:
        realm = params.get("realm", "")
        parts = urlsplit(realm)
        if parts.scheme not in ("https", "http") or not parts.hostname:
            raise RegistryError(f"registry {self._registry}: token realm {realm!r} is not a URL")
        if parts.scheme == "http" and not self._allow_http_realm:
            raise RegistryError(
                f"registry {self._registry}: refusing to send credentials to the plain-HTTP "
                f"token realm {realm} (the registry is configured with tls_verify)"
            )
        query: list[tuple[str, str | int | float | bool | None]] = []
        if params.get("service"):
            query.append(("service", params["service"]))
        query += [("scope", scope) for scope in params.get("scope", "").split()]
        headers = {"Authorization": self._basic} if self._basic is not None else {}
        return httpx.Request("GET", realm, params=query, headers=headers)

    def _store_token(self, params: dict[str, str], response: httpx.Response) -> str:
        what = f"registry {self._registry}: token service {params.get('realm')}"
        status = response.status_code
        if transient_status(status):
            raise RegistryUnavailable(
                f"{what}: HTTP {status}",
                retry_after=retry_after_seconds(response.headers.get("retry-after")),
            )
        if status in (401, 403):
            raise RegistryError(f"{what}: credentials refused (HTTP {status})")
        if status != 200:
            raise RegistryError(f"{what}: HTTP {status}")
        try:
            if len(response.content) > _MAX_TOKEN_RESPONSE:
                raise ValueError("too large")
            document = json.loads(response.content)
            token = document.get("token") or document.get("access_token")
            expires_in = int(document.get("expires_in") or _DEFAULT_EXPIRES_IN)
        except (ValueError, TypeError, AttributeError):
            raise RegistryError(f"{what}: the answer is not a token document") from None
        if not isinstance(token, str) or not token:
            raise RegistryError(f"{what}: the answer holds no token")
        lifetime = max(0.0, expires_in - min(_RENEW_MARGIN, expires_in / 2))
        self._tokens[normalize_scope(params.get("scope", ""))] = (token, self._clock() + lifetime)
        return token
