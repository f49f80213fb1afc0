"""Registry authentication as one ``httpx.Auth``: Basic, and the Bearer token challenge.

The flow (distribution's token spec): a request answered ``401`` with
``WWW-Authenticate: Bearer realm=...,service=...,scope=...`` sends a ``GET`` to the realm with
the service and scopes (and the credentials as Basic, when there are any), receives
``{"token": ..., "expires_in": ...}`` and retries the request with ``Authorization: Bearer``.
Tokens are cached per scope until shortly before they expire; later requests for a cached scope
carry the token up front. A ``Basic`` challenge is answered with the credentials, which are then
sent up front on every later request.

Neither credentials nor tokens ever reach a log line, an error or a ``repr``.

Everything the registry and its token service send is checked before it goes into a request
of ours: the realm must be a plain http(s) URL without credentials, the token an RFC 6750
``b64token`` of bounded length, ``expires_in`` a JSON integer. A challenge from another origin
(a redirect target) is not answered, so credentials go only where the registry itself sent us.
A failed check is one permanent :class:`RegistryError` naming the token service, never the
token.
"""

from __future__ import annotations

import base64
import ipaddress
import json
import re
import threading
import time
from collections.abc import Callable, Generator, Iterable
from urllib.parse import SplitResult, urlsplit

import httpx

from ..config.settings import Credentials
from ..errors import RegistryError, RegistryUnavailable
from ..net.retry import retry_after_seconds, transient_status

#: Tokens without ``expires_in`` live 60 s (the spec's default); renew this early.
_DEFAULT_EXPIRES_IN = 60
_RENEW_MARGIN = 10.0
#: A token is cached this long at most, whatever ``expires_in`` says (a later 401 renews it).
_MAX_CACHE_SECONDS = 3600
_MAX_TOKEN_RESPONSE = 1 << 20
#: Longest bearer token sent (real ones are 1-3 KiB; proxies refuse headers of 8-16 KiB).
MAX_TOKEN_LENGTH = 16384
#: Longest token realm accepted.
MAX_REALM_LENGTH = 2048
#: RFC 6750 section 2.1: ``b64token = 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="``
_B64TOKEN = re.compile(r"[A-Za-z0-9\-._~+/]+=*")
_HOSTNAME = re.compile(r"[a-z0-9_](?:[a-z0-9_.-]*[a-z0-9_])?")

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


def bearer_token(value: object) -> str:
    """``value`` if it can go into ``Authorization: Bearer``; else :class:`ValueError`.

    A token is an RFC 6750 ``b64token`` of at most :data:`MAX_TOKEN_LENGTH` characters. The
    error says what is wrong and never quotes the value.
    """
    if not isinstance(value, str) or not value:
        raise ValueError("the answer holds no token")
    if len(value) > MAX_TOKEN_LENGTH:
        raise ValueError(f"the token is longer than {MAX_TOKEN_LENGTH} characters")
    if not _B64TOKEN.fullmatch(value):
        raise ValueError("the token holds characters a bearer token cannot (RFC 6750 b64token)")
    return value


def token_lifetime(expires_in: object) -> float:
    """Seconds to cache a token whose document said ``expires_in`` (absent: the spec's 60 s).

    Only a JSON integer is a lifetime (as for containers/image); anything else - a string, a
    float, a boolean, a negative number - raises ValueError. A long lifetime is cached at
    most ``_MAX_CACHE_SECONDS``.
    """
    if type(expires_in) is not int and expires_in is not None:  # bool is an int: not here
        raise ValueError("expires_in is not an integer")
    if expires_in is None or expires_in == 0:
        expires_in = _DEFAULT_EXPIRES_IN
    if expires_in < 0:
        raise ValueError("expires_in is negative")
    seconds = min(expires_in, _MAX_CACHE_SECONDS)
    return max(0.0, seconds - min(_RENEW_MARGIN, seconds / 2))


def token_service(realm: str, *, allow_http: bool) -> tuple[httpx.URL, str]:
    """The URL to request tokens from, and how to name the service in errors.

    ``realm`` comes from the registry's challenge: it must be an absolute ``https://`` URL
    (``http://`` only with ``allow_http``) of printable ASCII, with a plain host name or IP
    address and no credentials. The name is the URL without query and fragment. Raises
    :class:`ValueError` saying what is wrong (naming the realm only once it is known to hold
    no credentials).
    """
    if len(realm) > MAX_REALM_LENGTH:
        raise ValueError(f"the token realm is longer than {MAX_REALM_LENGTH} characters")
    if not realm.isascii() or not realm.isprintable() or " " in realm:
        raise ValueError("the token realm is not a URL (it holds spaces, controls or non-ASCII)")
    try:
        parts = urlsplit(realm)
        port = parts.port
    except ValueError:
        raise ValueError("the token realm is not a URL") from None
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise ValueError("the token realm is not an http(s) URL")
    if "@" in parts.netloc:
        raise ValueError(
            f"the token realm {_realm_name(parts, port)} carries credentials in its URL"
        )
    if not _valid_host(parts.hostname):
        raise ValueError("the token realm's host is not a host name or IP address")
    name = _realm_name(parts, port)
    if parts.scheme == "http" and not allow_http:
        raise ValueError(
            f"refusing to send credentials to the plain-HTTP token realm {name} "
            "(the registry is configured with tls_verify)"
        )
    try:
        url = httpx.URL(realm)
    except httpx.InvalidURL:
        raise ValueError("the token realm is not a URL") from None
    return url, name


def _realm_name(parts: SplitResult, port: int | None) -> str:
    host = parts.hostname or ""
    host = f"[{host}]" if ":" in host else host
    return f"{parts.scheme}://{host}{'' if port is None else f':{port}'}{parts.path}"


def _valid_host(host: str) -> bool:
    if _HOSTNAME.fullmatch(host):
        return True
    try:
        ipaddress.IPv6Address(host)
    except ValueError:
        return False
    return True


def _same_origin(one: httpx.URL, other: httpx.URL) -> bool:
    return (one.scheme, one.host, one.port) == (other.scheme, other.host, other.port)


class RegistryAuth(httpx.Auth):
    """Basic and Bearer-token authentication for one registry.

    ``credentials`` None means anonymous (tokens are still fetched for public scopes).
    ``allow_http_realm`` permits a token realm on plain HTTP (only for registries configured with
    ``tls_verify = false``); otherwise credentials are never sent to an ``http://`` realm.
    ``claim_push`` (a publish, not a dry run or an audit): a read refused ``401`` even with a
    fresh pull token is tried once more with a push-scope token for its repository (quay.io
    creates a repository at that token, for a robot that may create but not yet read it).
    """

    requires_response_body = True

    def __init__(
        self,
        credentials: Credentials | None,
        *,
        registry: str,
        allow_http_realm: bool = False,
        claim_push: bool = False,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._registry = registry
        self._claim_push = claim_push
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
        if not _same_origin(response.url, request.url):
            return  # a redirect target asks for credentials: they are not its to have
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
            scope = normalize_scope(params.get("scope", ""))
            if self._basic is None and not scope:
                # Anonymous, and nothing to ask for (the ``/v2/`` check): a token without scope
                # grants an anonymous client nothing, and quay refuses to issue one (401).
                return
            token = yield from self._token_for(params, scope, request)
            request.headers["Authorization"] = f"Bearer {token}"
            response = yield request
            wider = self._claimed_scope(scope)
            if response.status_code == 401 and wider is not None:
                # quay: a robot that may create repositories gets no pull on one that does not
                # exist yet; the push-scope token a publish needs anyway creates it.
                token = yield from self._token_for({**params, "scope": wider}, wider, request)
                self._tokens.pop(scope, None)  # later reads use the push-scope token
                request.headers["Authorization"] = f"Bearer {token}"
                yield request

    def _token_for(
        self, params: dict[str, str], scope: str, request: httpx.Request
    ) -> Generator[httpx.Request, httpx.Response, str]:
        """The token for ``scope``: cached, or asked of the challenge's token service.

        One token request per scope, also when parallel requests meet the same challenge:
        whoever holds the scope's lock fetches; the others then find the token cached."""
        with self._lock_for(scope):
            token = self._cached_token([scope])
            if token is None or request.headers.get("Authorization") == f"Bearer {token}":
                token_request, service = self._token_request(params)
                if "user-agent" in request.headers:
                    token_request.headers["User-Agent"] = request.headers["user-agent"]
                token_response = yield token_request
                token = self._store_token(service, scope, token_response)
        return token

    def _claimed_scope(self, scope: str) -> str | None:
        """With ``claim_push`` and credentials, the push scope to ask for when a pull-only
        ``scope`` (one repository) was refused; otherwise None."""
        if not self._claim_push or self._basic is None:
            return None
        kind, _, rest = scope.partition(":")
        name, _, actions = rest.rpartition(":")
        if kind != "repository" or not name or actions != "pull" or " " in scope:
            return None
        return f"repository:{name}:pull,push"

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

    def _token_request(self, params: dict[str, str]) -> tuple[httpx.Request, str]:
        """The token request for a challenge's ``params``, and the token service's name."""
        try:
            url, service = token_service(params.get("realm", ""), allow_http=self._allow_http_realm)
        except ValueError as error:
            raise RegistryError(f"registry {self._registry}: {error}") from None
        query: list[tuple[str, str | int | float | bool | None]] = []
        if params.get("service"):
            query.append(("service", params["service"]))
        query += [("scope", scope) for scope in params.get("scope", "").split()]
        headers = {"Authorization": self._basic} if self._basic is not None else {}
        return httpx.Request("GET", url, params=query, headers=headers), service

    def _store_token(self, service: str, scope: str, response: httpx.Response) -> str:
        """The token in the token service's ``response``, cached for ``scope``."""
        what = f"registry {self._registry}: token service {service}"
        status = response.status_code
        if transient_status(status):
            raise RegistryUnavailable(
                f"{what}: HTTP {status}",
                retry_after=retry_after_seconds(response.headers.get("retry-after")),
            )
        if status in (401, 403) and self._basic is None:
            raise RegistryError(
                f"{what}: refused an anonymous token (HTTP {status}); no credentials are "
                "configured for this registry"
            )
        if status in (401, 403):
            raise RegistryError(f"{what}: credentials refused (HTTP {status})")
        if status != 200:
            raise RegistryError(f"{what}: HTTP {status}")
        try:
            if len(response.content) > _MAX_TOKEN_RESPONSE:
                raise ValueError("too large")
            document = json.loads(response.content)
            found = document.get("token") or document.get("access_token")
            expires_in = document.get("expires_in")
        except (ValueError, TypeError, AttributeError):
            raise RegistryError(f"{what}: the answer is not a token document") from None
        try:
            token = bearer_token(found)
            lifetime = token_lifetime(expires_in)
        except ValueError as error:
            # Permanent: the same service gives the same kind of answer; never quotes it.
            raise RegistryError(f"{what}: {error}; refusing the answer") from None
        self._tokens[scope] = (token, self._clock() + lifetime)
        return token
