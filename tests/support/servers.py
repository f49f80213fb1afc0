"""Real servers for tests: a static file server (the compose host) and a CNCF distribution
registry (``docker-registry serve``) on 127.0.0.1."""

from __future__ import annotations

import functools
import json
import os
import shutil
import socket
import ssl
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass
from http import HTTPStatus
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any, Final, Self

import httpx

from support.images import OCI_TO_FEDORA_ARCH

__all__ = [
    "DOCKER_MANIFEST",
    "DOCKER_MANIFEST_LIST",
    "MANIFEST_ACCEPT",
    "OCI_INDEX",
    "OCI_MANIFEST",
    "BackgroundServer",
    "FileServer",
    "Registry",
    "RegistryTLS",
    "free_port",
    "registry_binary",
    "write_htpasswd",
]

OCI_INDEX: Final = "application/vnd.oci.image.index.v1+json"
DOCKER_MANIFEST_LIST: Final = "application/vnd.docker.distribution.manifest.list.v2+json"
OCI_MANIFEST: Final = "application/vnd.oci.image.manifest.v1+json"
DOCKER_MANIFEST: Final = "application/vnd.docker.distribution.manifest.v2+json"
#: Accept header value for manifest reads: all four types (see the brief, section A5)
MANIFEST_ACCEPT: Final = ", ".join([OCI_INDEX, DOCKER_MANIFEST_LIST, OCI_MANIFEST, DOCKER_MANIFEST])
INDEX_TYPES: Final = frozenset({OCI_INDEX, DOCKER_MANIFEST_LIST})


def registry_binary() -> str:
    """The distribution registry server: ``docker-registry`` (Debian) or ``registry`` (Fedora)."""
    for name in ("docker-registry", "registry"):
        if shutil.which(name):
            return name
    return "docker-registry"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


# --- static file server --------------------------------------------------------------------------


class _QuietHandler(SimpleHTTPRequestHandler):
    """SimpleHTTPRequestHandler (GET/HEAD, files streamed with copyfileobj) that records
    requests on its server instead of logging them to stderr."""

    server: _RecordingServer

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        try:
            status = int(code.value) if isinstance(code, HTTPStatus) else int(code)
        except ValueError:
            status = 0
        self.server.record(self.command or "", self.path, status)

    def log_message(self, format: str, *args: Any) -> None:
        pass


class _RecordingServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, directory: Path) -> None:
        handler = functools.partial(_QuietHandler, directory=str(directory))
        super().__init__(("127.0.0.1", 0), handler)
        self._lock = threading.Lock()
        self.requests: list[tuple[str, str, int]] = []

    def record(self, method: str, path: str, status: int) -> None:
        with self._lock:
            self.requests.append((method, path, status))

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Clients that hang up mid-download (ConnectionResetError, BrokenPipeError) are normal in
        # tests; don't print tracebacks to stderr.
        pass


class _StartStop:
    """``with server:`` means ``start()`` ... ``stop()``."""

    def start(self) -> Self:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


class BackgroundServer(_StartStop):
    """An HTTP server on 127.0.0.1 (random port) served from a daemon thread: the lifecycle
    every test server here shares. Subclasses build their server in ``_make_server``; use as a
    context manager, or call ``start()``/``stop()``."""

    _server: ThreadingHTTPServer | None = None
    _thread: threading.Thread | None = None

    def _make_server(self) -> ThreadingHTTPServer:
        raise NotImplementedError

    def start(self) -> Self:
        if self._server is not None:
            raise RuntimeError(f"{type(self).__name__} already started")
        server = self._make_server()
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"{type(self).__name__}:{self.port}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._thread = None

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError(f"{type(self).__name__} is not running")
        return int(self._server.server_address[1])


class FileServer(BackgroundServer):
    """Serve ``directory`` over HTTP on 127.0.0.1 (random port) from a daemon thread.

    ``url`` is ``http://127.0.0.1:PORT``; ``requests`` lists ``(method, path, status)`` of every
    answered request, in order. Use as a context manager, or call ``start()``/``stop()``.
    """

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)

    def _make_server(self) -> ThreadingHTTPServer:
        return _RecordingServer(self.directory)

    @property
    def _srv(self) -> _RecordingServer:
        if not isinstance(self._server, _RecordingServer):
            raise RuntimeError("FileServer is not running")
        return self._server

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def requests(self) -> list[tuple[str, str, int]]:
        """A snapshot of the requests answered so far."""
        srv = self._srv
        with srv._lock:
            return list(srv.requests)

    def clear_requests(self) -> None:
        srv = self._srv
        with srv._lock:
            srv.requests.clear()


# --- registry ------------------------------------------------------------------------------------


def write_htpasswd(path: Path, users: dict[str, str]) -> Path:
    """Write a bcrypt htpasswd file (the only kind distribution accepts) with ``htpasswd -Bbn``
    from apache2-utils."""
    htpasswd = shutil.which("htpasswd")
    if htpasswd is None:
        raise RuntimeError("htpasswd (apache2-utils) is not installed")
    lines = []
    for user, password in users.items():
        out = subprocess.run(
            [htpasswd, "-Bbn", user, password], check=True, capture_output=True, text=True
        )
        lines.append(out.stdout.strip())
    path.write_text("\n".join(lines) + "\n")
    return path


def _registry_config(
    *,
    port: int,
    data: Path,
    htpasswd: Path | None,
    token_auth: dict[str, str] | None = None,
    tls: RegistryTLS | None = None,
    blob_redirect: str | None = None,
) -> str:
    # JSON strings are valid YAML double-quoted scalars, so json.dumps quotes paths safely.
    lines = [
        "version: 0.1",
        "log:",
        "  level: info",
        "  formatter: text",
        "storage:",
        "  filesystem:",
        f"    rootdirectory: {json.dumps(str(data))}",
        "  delete:",
        "    enabled: true",
        "  maintenance:",
        "    uploadpurging:",
        "      enabled: false",
        "http:",
        f"  addr: 127.0.0.1:{port}",
        f"  secret: {json.dumps(os.urandom(16).hex())}",
    ]
    if htpasswd is not None:
        lines += [
            "auth:",
            "  htpasswd:",
            "    realm: basic-realm",
            f"    path: {json.dumps(str(htpasswd))}",
        ]
    if token_auth is not None:
        lines += ["auth:", "  token:"]
        lines += [f"    {key}: {json.dumps(value)}" for key, value in token_auth.items()]
    if tls is not None:
        lines += [
            "  tls:",
            f"    certificate: {json.dumps(str(tls.certificate))}",
            f"    key: {json.dumps(str(tls.key))}",
        ]
        if tls.client_cas is not None:
            lines += ["    clientcas:", f"      - {json.dumps(str(tls.client_cas))}"]
    if blob_redirect is not None:
        # distribution's "redirect" storage middleware: blob GETs answer 307 to this base URL
        lines += [
            "middleware:",
            "  storage:",
            "    - name: redirect",
            "      options:",
            f"        baseurl: {json.dumps(blob_redirect)}",
        ]
    return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class RegistryTLS:
    """Serve HTTPS with ``certificate``/``key``; with ``client_cas``, require client certs.

    ``ca`` verifies the server and ``client_cert``/``client_key`` identify the test helpers."""

    certificate: Path
    key: Path
    ca: Path
    client_cas: Path | None = None
    client_cert: Path | None = None
    client_key: Path | None = None


class Registry(_StartStop):
    """A throw-away CNCF distribution registry (``docker-registry serve``) on 127.0.0.1.

    Storage, config and log live in a temp dir removed by ``stop()``. ``htpasswd`` enables basic
    auth (realm "basic-realm"); pass ``credentials`` too so the helper methods can read.
    """

    START_TIMEOUT: Final = 15.0

    def __init__(
        self,
        *,
        htpasswd: Path | None = None,
        credentials: tuple[str, str] | None = None,
        binary: str | None = None,
        port: int = 0,
        token_auth: dict[str, str] | None = None,
        tls: RegistryTLS | None = None,
        http_auth: httpx.Auth | None = None,
        blob_redirect: str | None = None,
    ) -> None:
        self.htpasswd = htpasswd
        #: base URL blob GETs are redirected to (distribution's redirect storage middleware)
        self.blob_redirect = blob_redirect
        self.credentials = credentials
        self.token_auth = token_auth
        self.tls = tls
        self.http_auth = http_auth
        self.binary = binary or registry_binary()
        #: a fixed port (e.g. one a config names before the registry starts); 0: any free one
        self.fixed_port = port
        self.port = port
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._log_path: Path | None = None
        self._final_log = ""

    # lifecycle

    def start(self) -> Self:
        if self._proc is not None:
            raise RuntimeError("Registry already started")
        exe = shutil.which(self.binary)
        if exe is None:
            raise RuntimeError(
                f"{self.binary!r} is not on PATH (install the docker-registry package)"
            )
        self._tmp = tempfile.TemporaryDirectory(prefix="test-registry-")
        tmp = Path(self._tmp.name)
        self._log_path = tmp / "registry.log"
        # free_port() can race with other processes: retry on "address already in use".
        for _attempt in range(3):
            self.port = self.fixed_port or free_port()
            config = tmp / "config.yml"
            config.write_text(
                _registry_config(
                    port=self.port,
                    data=tmp / "data",
                    htpasswd=self.htpasswd,
                    token_auth=self.token_auth,
                    tls=self.tls,
                    blob_redirect=self.blob_redirect,
                )
            )
            # REGISTRY_* variables would override the config file.
            env = {k: v for k, v in os.environ.items() if not k.startswith("REGISTRY_")}
            with self._log_path.open("ab") as log:
                self._proc = subprocess.Popen(
                    [exe, "serve", str(config)],
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    env=env,
                )
            if self._wait_ready():
                return self
            if self._proc.poll() is not None and "address already in use" in self.log_text():
                self._proc = None
                continue
            break
        tail = "\n".join(self.log_text().splitlines()[-30:])
        self.stop()
        raise RuntimeError(
            f"docker-registry did not answer GET /v2/ within {self.START_TIMEOUT}s; log tail:\n"
            f"{tail}"
        )

    def _wait_ready(self) -> bool:
        assert self._proc is not None
        deadline = time.monotonic() + self.START_TIMEOUT
        with self.client() as client:
            while time.monotonic() < deadline:
                if self._proc.poll() is not None:
                    return False
                try:
                    if client.get("/v2/", auth=None).status_code in (200, 401):
                        return True
                except httpx.TransportError:
                    pass
                time.sleep(0.05)
        return False

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        if self._tmp is not None:
            self._final_log = self.log_text()
            self._tmp.cleanup()
            self._tmp = None
            self._log_path = None

    # addresses and logs

    @property
    def host(self) -> str:
        """``127.0.0.1:PORT``, the registry part of image references."""
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://{self.host}"

    @property
    def storage_dir(self) -> Path:
        if self._tmp is None:
            raise RuntimeError("Registry is not running")
        return Path(self._tmp.name) / "data"

    def log_text(self) -> str:
        """The registry's stderr so far (logrus text; one access-log line per request)."""
        if self._log_path is None:
            return self._final_log
        try:
            return self._log_path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return ""

    # HTTP helpers (httpx, all four manifest types in Accept)

    def client(self) -> httpx.Client:
        """An httpx client for this registry (base_url set, credentials if given). Close it."""
        auth: httpx.Auth | tuple[str, str] | None = self.http_auth or self.credentials
        if self.tls is None:
            return httpx.Client(base_url=self.url, auth=auth, timeout=10.0)
        context = ssl.create_default_context(cafile=str(self.tls.ca))
        if self.tls.client_cert is not None and self.tls.client_key is not None:
            context.load_cert_chain(str(self.tls.client_cert), str(self.tls.client_key))
        return httpx.Client(base_url=self.url, auth=auth, timeout=10.0, verify=context)

    def get_manifest(self, repo: str, ref: str) -> tuple[str, str, bytes] | None:
        """``(Content-Type, Docker-Content-Digest, body)`` of ``repo:ref`` (tag or digest), or
        None on 404. Any other non-200 answer raises ``httpx.HTTPStatusError``."""
        with self.client() as c:
            r = c.get(f"/v2/{repo}/manifests/{ref}", headers={"Accept": MANIFEST_ACCEPT})
        if r.status_code == 404:
            return None
        r.raise_for_status()
        content_type = r.headers.get("content-type", "").split(";")[0].strip()
        return content_type, r.headers.get("docker-content-digest", ""), r.content

    def get_blob(self, repo: str, digest: str) -> bytes:
        with self.client() as c:
            r = c.get(f"/v2/{repo}/blobs/{digest}", follow_redirects=True)
        r.raise_for_status()
        return r.content

    def image_config(self, repo: str, ref: str) -> dict[str, Any]:
        """The config JSON of a single-arch manifest (labels: name, build-id, fedora-arch)."""
        found = self.get_manifest(repo, ref)
        if found is None:
            raise LookupError(f"{self.host}/{repo}:{ref} not found")
        content_type, _, body = found
        if content_type in INDEX_TYPES:
            raise ValueError(f"{repo}:{ref} is an index ({content_type}), not an image manifest")
        manifest = json.loads(body)
        config: dict[str, Any] = json.loads(self.get_blob(repo, manifest["config"]["digest"]))
        return config

    def tags(self, repo: str) -> list[str]:
        """Sorted tags of ``repo``; [] if the repository does not exist."""
        with self.client() as c:
            r = c.get(f"/v2/{repo}/tags/list")
        if r.status_code == 404:
            return []
        r.raise_for_status()
        return sorted(r.json().get("tags") or [])

    def index_arches(self, repo: str, tag: str) -> set[str]:
        """Fedora arch names (x86_64, aarch64, ppc64le, s390x) of the entries of the index or
        manifest list at ``repo:tag``. Raises LookupError if absent, ValueError if not an index."""
        found = self.get_manifest(repo, tag)
        if found is None:
            raise LookupError(f"{self.host}/{repo}:{tag} not found")
        content_type, _, body = found
        if content_type not in INDEX_TYPES:
            raise ValueError(f"{repo}:{tag} is {content_type}, not an index or manifest list")
        arches = set()
        for entry in json.loads(body).get("manifests", []):
            platform = entry.get("platform") or {}
            arch = platform.get("architecture", "unknown")
            if arch == "unknown":  # attestation manifests etc.
                continue
            arches.add(OCI_TO_FEDORA_ARCH.get(arch, arch))
        return arches
