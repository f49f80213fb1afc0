"""A registry that answers as quay.io does, in front of the real docker-registry.

:class:`Quay` is a rule for :class:`support.proxy.FaultProxy`: every request is forwarded to the
real registry, except those where quay.io answers otherwise than distribution 2.8; those get
quay's status, headers and body byte for byte, as quay's source builds them (quay/quay at
ffba0c70, 2026-08; Flask 2.3's ``jsonify``: sorted keys, compact separators, a final newline):

* a manifest read (GET/HEAD by tag or digest) in a repository that does not exist yet:
  ``404 NAME_UNKNOWN "repository not found"`` (``endpoints/v2/manifest.py``
  fetch_manifest_by_tagname; quay creates a repository only at the first push-scope token);
* a manifest read by tag of a tag deleted within the time-machine window (:attr:`Quay.expired`):
  ``404 TAG_EXPIRED "Tag <t> was deleted or has expired. To pull, revive via time machine"``;
  any other missing tag: ``404 MANIFEST_UNKNOWN "manifest unknown"``;
* with ``anonymous_ping`` (quay.io's ``v2_support_enabled``, ``endpoints/v2/__init__.py``):
  ``GET /v2/`` without ``Authorization`` is ``401`` with the body ``true`` and the challenge
  ``Bearer realm="<base>/v2/auth",service="<host>"`` (no scope); the token endpoint
  ``/v2/auth`` (``endpoints/v2/v2auth.py`` generate_registry_jwt) refuses a request with no
  credentials and no scope with ``401 UNAUTHORIZED`` and gives ``{"token": ...}`` for a scope;
  a repository request (public, anonymous access on) is served with or without a token;
* a manifest PUT: (forwarded, 201) with quay's relative ``Location: /v2/<name>/manifests/<digest>``
  (``_write_manifest_and_log``);
* with ``robot`` (user, password): a robot of a team with the *creator* role, and quay's token
  auth on every request. ``/v2/auth`` with the robot's Basic credentials grants, per scope,
  ``pull,push`` when push is asked - creating the repository if it does not exist
  (``get_or_create_repository`` at token time) - and ``pull`` only on a repository that exists
  (a creator has no read on one that does not); a request without the access it needs gets
  ``401 UNAUTHORIZED`` with the challenge ``scope="repository:<name>:pull"`` (reads) or
  ``:pull,push`` (writes) (``require_repo_read`` / ``require_repo_write``).

Which repositories exist is asked of the real registry (its tag list), so pushes through the
proxy create them as quay's push would.
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import json
import re
import threading
from dataclasses import dataclass, field
from urllib.parse import parse_qs, urlsplit

from support.proxy import Fault, ProxyRequest

_MANIFEST = re.compile(r"^/v2/(?P<name>.+)/manifests/(?P<reference>[^/]+)$")
_REPOSITORY = re.compile(r"^/v2/(?P<name>.+?)/(?:manifests|blobs|tags)/")
_SCOPE = re.compile(r"^repository:(?P<name>[^:]+):(?P<actions>[a-z*,]+)$")


def quay_error(code: str, message: str) -> bytes:
    """quay's ``{"errors": [error.as_dict()]}`` through Flask 2.3's ``jsonify``."""
    document = {"errors": [{"code": code, "detail": {}, "message": message}]}
    return (json.dumps(document, sort_keys=True, separators=(",", ":")) + "\n").encode()


JSON = "application/json"
NAME_UNKNOWN = quay_error("NAME_UNKNOWN", "repository not found")
MANIFEST_UNKNOWN = quay_error("MANIFEST_UNKNOWN", "manifest unknown")
UNAUTHORIZED = quay_error("UNAUTHORIZED", "access to the requested resource is not authorized")


def tag_expired(tag: str) -> bytes:
    return quay_error(
        "TAG_EXPIRED",
        f"Tag {tag} was deleted or has expired. To pull, revive via time machine",
    )


@dataclass
class Quay:
    """The rule (``FaultProxy(upstream=registry.url, rule=quay.rule)``); ``base`` is the
    proxy's own URL, for the token realm (set it once the proxy runs)."""

    upstream: str
    anonymous_ping: bool = False
    base: str = ""
    #: a creator-role robot's (user, password): quay's token auth on every request
    robot: tuple[str, str] | None = None
    #: ``(repository name, tag)`` deleted within the time-machine window
    expired: set[tuple[str, str]] = field(default_factory=set)
    #: repositories a push-scope token created (empty until the first push lands)
    created: set[str] = field(default_factory=set)
    #: what quay answered itself: ``(method, path, status, error code or "")``
    answered: list[tuple[str, str, int, str]] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def rule(self, request: ProxyRequest) -> Fault | None:
        path = urlsplit(request.path).path
        if self.anonymous_ping and path == "/v2/" and "Authorization" not in request.headers:
            host = urlsplit(self.base).netloc
            return self._reply(
                request,
                401,
                {
                    "Content-Type": "text/html; charset=utf-8",
                    "WWW-Authenticate": f'Bearer realm="{self.base}/v2/auth",service="{host}"',
                    "X-Sparse-Manifest-Support": "false",
                },
                b"true",
            )
        if path == "/v2/auth":
            return self._token(request)
        if self.robot is not None:
            refused = self._authorize(request, path)
            if refused is not None:
                return refused
        match = _MANIFEST.match(path)
        if match is None:
            return None
        name, reference = match["name"], match["reference"]
        if request.method == "PUT":
            digest = "sha256:" + hashlib.sha256(request.body).hexdigest()
            # Forwarded; quay's relative Location replaces distribution's absolute one.
            return Fault.rewrite({"Location": f"/v2/{name}/manifests/{digest}"})
        if request.method not in ("GET", "HEAD"):
            return None
        status = self._upstream_status(f"/v2/{name}/manifests/{reference}", request)
        if status != 404:
            return None
        if not self._exists(name, request):
            return self._reply(request, 404, {"Content-Type": JSON}, NAME_UNKNOWN)
        if (name, reference) in self.expired:
            return self._reply(request, 404, {"Content-Type": JSON}, tag_expired(reference))
        return self._reply(request, 404, {"Content-Type": JSON}, MANIFEST_UNKNOWN)

    def _exists(self, name: str, request: ProxyRequest) -> bool:
        return name in self.created or (
            self._upstream_status(f"/v2/{name}/tags/list", request) != 404
        )

    def _challenge(self, scope: str = "") -> str:
        host = urlsplit(self.base).netloc
        challenge = f'Bearer realm="{self.base}/v2/auth",service="{host}"'
        return challenge + (f',scope="{scope}"' if scope else "")

    def _authorize(self, request: ProxyRequest, path: str) -> Fault | None:
        """The robot's token auth: None when the request's token grants what it needs."""
        grants = _grants(request.headers.get("Authorization", ""))
        if path == "/v2/":
            if grants is not None:
                return self._reply(request, 200, {"Content-Type": "text/html"}, b"true")
            return None  # the anonymous answer below
        match = _REPOSITORY.match(path)
        if match is None:
            return None
        name = match["name"]
        needed = "pull" if request.method in ("GET", "HEAD") else "push"
        if grants is not None and needed in grants.get(name, []):
            return None
        scope = f"repository:{name}:{'pull' if needed == 'pull' else 'pull,push'}"
        headers = {"Content-Type": JSON, "WWW-Authenticate": self._challenge(scope)}
        return self._reply(request, 401, headers, UNAUTHORIZED)

    def _token(self, request: ProxyRequest) -> Fault:
        scopes = parse_qs(urlsplit(request.path).query).get("scope", [])
        if self.robot is not None:
            return self._robot_token(request, scopes)
        if not scopes and "Authorization" not in request.headers:
            host = urlsplit(self.base).netloc
            return self._reply(
                request,
                401,
                {
                    "Content-Type": JSON,
                    "WWW-Authenticate": f'Bearer realm="{self.base}/v2/auth",service="{host}"',
                },
                UNAUTHORIZED,
            )
        token = hashlib.sha256(request.path.encode()).hexdigest()
        body = (json.dumps({"token": token}, separators=(",", ":")) + "\n").encode()
        return self._reply(request, 200, {"Content-Type": JSON}, body)

    def _robot_token(self, request: ProxyRequest, scopes: list[str]) -> Fault:
        assert self.robot is not None
        basic = "Basic " + base64.b64encode(":".join(self.robot).encode()).decode()
        if request.headers.get("Authorization") != basic:
            headers = {"Content-Type": JSON, "WWW-Authenticate": self._challenge()}
            invalid = quay_error("UNAUTHORIZED", "Specified credentials are invalid")
            return self._reply(request, 401, headers, invalid)
        grants: dict[str, list[str]] = {}
        for scope in " ".join(scopes).split():
            match = _SCOPE.match(scope)
            if match is None:
                continue
            name, actions = match["name"], match["actions"].split(",")
            if "push" in actions:
                with self._lock:
                    self.created.add(name)  # get_or_create_repository
                grants[name] = ["pull", "push"]
            elif "pull" in actions and self._exists(name, request):
                grants[name] = ["pull"]
        token = base64.urlsafe_b64encode(json.dumps(grants, sort_keys=True).encode()).decode()
        body = (json.dumps({"token": token}, separators=(",", ":")) + "\n").encode()
        return self._reply(request, 200, {"Content-Type": JSON}, body)

    def _reply(
        self, request: ProxyRequest, status: int, headers: dict[str, str], body: bytes
    ) -> Fault:
        code = ""
        if headers.get("Content-Type") == JSON and status >= 400:
            code = json.loads(body)["errors"][0]["code"]
        with self._lock:
            self.answered.append((request.method, request.path, status, code))
        return Fault.reply(status, headers, body)

    def codes(self) -> set[str]:
        with self._lock:
            return {code for _method, _path, _status, code in self.answered if code}

    def _upstream_status(self, path: str, request: ProxyRequest) -> int:
        """The real registry's status for a read of ``path`` (with the client's ``Accept``)."""
        parts = urlsplit(self.upstream)
        connection = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=30)
        try:
            accept = request.headers.get("Accept", "*/*")
            connection.request("GET", path, headers={"Accept": accept})
            response = connection.getresponse()
            response.read()
            return response.status
        finally:
            connection.close()


def _grants(authorization: str) -> dict[str, list[str]] | None:
    """What a robot token (from :meth:`Quay._robot_token`) grants; None without one."""
    if not authorization.startswith("Bearer "):
        return None
    try:
        grants = json.loads(base64.urlsafe_b64decode(authorization.removeprefix("Bearer ")))
    except ValueError:
        return None
    return grants if isinstance(grants, dict) else None
