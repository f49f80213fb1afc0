"""A fault-injecting HTTP reverse proxy on 127.0.0.1, for putting in front of a real registry or
compose server.

Every request is read in full (``Content-Length`` or chunked), offered to ``rule``, and then
either answered with a fault or forwarded to the upstream server with ``http.client``; the
upstream's answer is passed back unchanged. The ``Host`` header is forwarded as the client sent
it, so distribution builds its ``Location`` URLs with the proxy's address and the client stays on
the proxy. ``rule`` may block (to force an interleaving between two clients); ``on_response``
runs after an answer has been sent.

Faults:

* ``Fault.answer(503)`` / ``Fault.answer(429, retry_after="1")``: that status with a
  distribution-style error body, the request is not forwarded;
* ``Fault.drop()``: the connection is closed without an answer, the request is not forwarded;
* ``Fault.drop_after()``: the request is forwarded (it takes effect), then the connection is
  closed without passing the answer on;
* ``Fault.hang(seconds)``: nothing is sent for ``seconds``, then the connection is closed;
* ``Fault.redirect(url)``: a 302 to ``url``;
* ``Fault.rewrite({"Docker-Content-Digest": "..."})``: the request is forwarded and the answer
  passed back with these headers replaced (or added);
* ``Fault.trickle(seconds)``: the request is forwarded, and the upstream's answer (status line
  and headers included) is passed on one byte every ``seconds``: each read is quick, the whole
  answer takes forever;
* ``Fault.endless(seconds)``: a 200 whose body never ends (no ``Content-Length``; JSON-looking
  bytes, ``seconds`` between chunks, 0 for as fast as the client reads), not forwarded;
* ``Fault.reply(status, headers, body)``: exactly this answer (another registry's own bytes,
  see support.quay), not forwarded.
* ``Fault.lie(...)``: the lying server. The request is forwarded and the upstream's answer
  changed by every lie given, each one parameter, all composable: ``status`` (another status
  line), ``body`` (other bytes; a callable gets the real ones), ``encode`` (the body encoded by
  each content coding in turn, and ``Content-Encoding`` naming them: ``("gzip", "gzip")``;
  ``raw-deflate`` is deflate without its zlib wrapper, as some servers send it),
  ``headers`` (replaced or added, after ``encode``: so a header may lie about the encoding too),
  ``error`` (a distribution-style error body with this code and message).
  :func:`inflating_body` builds a body of a few KiB that decodes to hundreds of MiB.
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import http.client
import json
import re
import socket
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import cache
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

from support.servers import BackgroundServer

__all__ = ["Fault", "FaultProxy", "ProxyRequest", "first_time_faults"]

_HOP_BY_HOP = {
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailers",
    "transfer-encoding",
    "upgrade",
}
_UPLOAD_SESSION = re.compile(r"/blobs/uploads/[^/?]+")


@dataclass(frozen=True)
class Fault:
    kind: str
    status: int = 0
    retry_after: str | None = None
    seconds: float = 0.0
    location: str = ""
    headers: tuple[tuple[str, str], ...] = ()
    body: bytes | Callable[[bytes], bytes] | None = None
    encode: tuple[str, ...] = ()
    error: tuple[str, str] | None = None

    @classmethod
    def reply(cls, status: int, headers: dict[str, str], body: bytes) -> Fault:
        return cls("reply", status=status, headers=tuple(headers.items()), body=body)

    @classmethod
    def answer(cls, status: int, retry_after: str | None = None) -> Fault:
        return cls("status", status=status, retry_after=retry_after)

    @classmethod
    def drop(cls) -> Fault:
        return cls("drop")

    @classmethod
    def drop_after(cls) -> Fault:
        return cls("drop-after")

    @classmethod
    def hang(cls, seconds: float) -> Fault:
        return cls("hang", seconds=seconds)

    @classmethod
    def redirect(cls, location: str) -> Fault:
        return cls("redirect", status=302, location=location)

    @classmethod
    def rewrite(cls, headers: dict[str, str]) -> Fault:
        return cls("rewrite", headers=tuple(headers.items()))

    @classmethod
    def trickle(cls, seconds: float) -> Fault:
        return cls("trickle", seconds=seconds)

    @classmethod
    def endless(cls, seconds: float = 0.0) -> Fault:
        return cls("endless", status=200, seconds=seconds)

    @classmethod
    def lie(
        cls,
        *,
        status: int = 0,
        body: bytes | Callable[[bytes], bytes] | None = None,
        encode: tuple[str, ...] = (),
        headers: dict[str, str] | list[tuple[str, str]] | None = None,
        error: tuple[str, str] | None = None,
    ) -> Fault:
        pairs = headers.items() if isinstance(headers, dict) else headers or []
        return cls(
            "lie",
            status=status,
            body=body,
            encode=encode,
            headers=tuple(pairs),
            error=error,
        )

    def but(self, **changes: Any) -> Fault:
        """This lie with some parameters changed (or added): lies compose."""
        return dataclasses.replace(self, **changes)

    def told(
        self, status: int, headers: list[tuple[str, str]], body: bytes
    ) -> tuple[int, list[tuple[str, str]], bytes]:
        """The upstream's answer as this lie tells it."""
        if self.error is not None:
            code, message = self.error
            body = json.dumps({"errors": [{"code": code, "message": message}]}).encode()
        if self.body is not None:
            body = self.body(body) if callable(self.body) else self.body
        for coding in self.encode:
            body = _ENCODERS[coding](body)
        replaced = {name.lower() for name, _ in self.headers} | {"content-length"}
        if self.encode:
            replaced.add("content-encoding")
        headers = [(k, v) for k, v in headers if k.lower() not in replaced]
        if self.encode:
            named = (coding.removeprefix("raw-") for coding in self.encode)
            headers.append(("Content-Encoding", ", ".join(named)))
        headers += [*self.headers, ("Content-Length", str(len(body)))]
        return self.status or status, headers, body

    @property
    def label(self) -> str:
        return f"{self.kind} {self.status}" if self.kind in ("status", "reply") else self.kind


_ENCODERS: dict[str, Callable[[bytes], bytes]] = {
    "gzip": lambda data: gzip.compress(data, mtime=0),
    "deflate": zlib.compress,
    "raw-deflate": lambda data: zlib.compress(data, wbits=-zlib.MAX_WBITS),
    "identity": lambda data: data,
}


@cache
def inflating_body(decoded_mib: int, layers: int = 2) -> bytes:
    """A gzip body (``layers`` times gzip, ``Content-Encoding: gzip, gzip`` for 2) that decodes
    to ``decoded_mib`` MiB of zeros: a few KiB on the wire."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, zlib.MAX_WBITS | 16)
    zeros = bytes(1 << 20)
    body = b"".join(compressor.compress(zeros) for _ in range(decoded_mib)) + compressor.flush()
    for _ in range(layers - 1):
        body = gzip.compress(body, mtime=0)
    return body


@dataclass(frozen=True)
class ProxyRequest:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    @property
    def key(self) -> str:
        """``METHOD path`` without the query and with blob-upload session IDs folded, so a
        retried request has the same key as the first try."""
        path = _UPLOAD_SESSION.sub("/blobs/uploads/*", self.path.split("?", 1)[0])
        return f"{self.method} {path}"


@dataclass
class Record:
    method: str
    path: str
    fault: str | None
    status: int | None


Rule = Callable[[ProxyRequest], Fault | None]


def no_faults(_request: ProxyRequest) -> Fault | None:
    return None


def first_time_faults(
    faults: list[Fault], *, share: int = 2, skip: Callable[[ProxyRequest], bool] | None = None
) -> Rule:
    """A rule that fails the first occurrence of about one in ``share`` distinct request keys
    (chosen by a hash of the key), cycling through ``faults``; every later occurrence passes.

    Each request therefore succeeds on a retry, whatever the interleaving of clients, and a
    client that retries enough always completes.
    """
    lock = threading.Lock()
    seen: set[str] = set()
    count = 0

    def rule(request: ProxyRequest) -> Fault | None:
        nonlocal count
        if skip is not None and skip(request):
            return None
        key = request.key
        chosen = hashlib.sha256(key.encode()).digest()[0] % share == 0
        with lock:
            if key in seen or not chosen:
                seen.add(key)
                return None
            seen.add(key)
            fault = faults[count % len(faults)]
            count += 1
            return fault

    return rule


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _ProxyServer

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";", 1)[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    break
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            return b"".join(chunks)
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _handle(self) -> None:
        proxy = self.server.proxy
        request = ProxyRequest(
            self.command, self.path, {k: v for k, v in self.headers.items()}, self._read_body()
        )
        fault = proxy.rule(request)
        if fault is not None and fault.kind in ("drop", "hang"):
            # Recorded when injected: a client that gave up may finish before the hang ends.
            proxy.record(request, fault, None)
            if fault.kind == "hang":
                time.sleep(fault.seconds)
            self._hang_up()
            return
        if fault is not None and fault.kind == "endless":
            proxy.record(request, fault, fault.status)
            self._endless(fault.seconds)
            return
        if fault is not None and fault.kind == "reply":
            assert isinstance(fault.body, bytes)
            proxy.record(request, fault, fault.status)
            self.send_response(fault.status)
            for name, value in fault.headers:
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(fault.body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(fault.body)
            proxy.on_response(request, fault.status)
            return
        if fault is not None and fault.kind in ("status", "redirect"):
            body = json.dumps(
                {"errors": [{"code": "UNAVAILABLE", "message": "injected fault", "detail": None}]}
            ).encode()
            proxy.record(request, fault, fault.status)
            self.send_response(fault.status)
            if fault.retry_after is not None:
                self.send_header("Retry-After", fault.retry_after)
            if fault.location:
                self.send_header("Location", fault.location)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)
            proxy.on_response(request, fault.status)
            return
        try:
            status, headers, body = proxy.forward(request)
        except OSError:
            proxy.record(request, Fault("upstream-down"), None)
            self._hang_up()
            return
        if fault is not None and fault.kind == "trickle":
            proxy.record(request, fault, status)
            self._trickle(status, headers, body, fault.seconds)
            return
        if fault is not None and fault.kind == "lie":
            status, headers, body = fault.told(status, headers, body)
        elif fault is not None and fault.kind == "rewrite":
            replaced = {name.lower() for name, _ in fault.headers}
            headers = [(k, v) for k, v in headers if k.lower() not in replaced]
            headers += list(fault.headers)
        elif fault is not None:  # drop-after: it took effect upstream; the answer is lost
            proxy.record(request, fault, status)
            self._hang_up()
            return
        # Recorded before the answer goes out: a client that refuses it on its headers (a lie it
        # will not decode) hangs up, and its test reads the records before a write would fail.
        proxy.record(request, fault, status)
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)
        self.wfile.flush()
        proxy.on_response(request, status)

    def _trickle(
        self, status: int, headers: list[tuple[str, str]], body: bytes, seconds: float
    ) -> None:
        head = f"HTTP/1.1 {status} {http.client.responses.get(status, '')}\r\n"
        head += "".join(f"{name}: {value}\r\n" for name, value in headers)
        answer = (head + "\r\n").encode("latin-1") + (b"" if self.command == "HEAD" else body)
        try:
            for index in range(len(answer)):
                self.wfile.write(answer[index : index + 1])
                self.wfile.flush()
                time.sleep(seconds)
        except OSError:
            pass  # the client gave up
        self._hang_up()

    def _endless(self, seconds: float) -> None:
        chunk = b"0," * 4096 if seconds == 0 else b"0,"
        try:
            self.wfile.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\r\n[")
            while True:
                self.wfile.write(chunk)
                self.wfile.flush()
                if seconds:
                    time.sleep(seconds)
        except OSError:
            pass  # the client gave up
        self._hang_up()

    def _hang_up(self) -> None:
        self.close_connection = True
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = _handle


class _ProxyServer(ThreadingHTTPServer):
    daemon_threads = True
    proxy: FaultProxy

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # clients hanging up (or TLS probes) are normal here


@dataclass
class FaultProxy(BackgroundServer):
    """Reverse proxy to ``upstream`` (``http://host:port``) with fault injection.

    ``rule(request)`` → a :class:`Fault` or None (forward); ``on_response(request, status)`` runs
    after each answer. ``records`` lists what happened to every request.
    """

    upstream: str
    rule: Rule = no_faults
    on_response: Callable[[ProxyRequest, int], None] = lambda _request, _status: None
    records: list[Record] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def _make_server(self) -> ThreadingHTTPServer:
        server = _ProxyServer(("127.0.0.1", 0), _Handler)
        server.proxy = self
        return server

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.host}"

    # what happened

    def record(self, request: ProxyRequest, fault: Fault | None, status: int | None) -> None:
        with self._lock:
            self.records.append(
                Record(request.method, request.path, fault.label if fault else None, status)
            )

    def faults(self) -> list[Record]:
        with self._lock:
            return [r for r in self.records if r.fault]

    @property
    def requests(self) -> list[tuple[str, str, int]]:
        """``(method, path, status)`` of every request answered (FileServer-compatible)."""
        with self._lock:
            return [(r.method, r.path, r.status or 0) for r in self.records]

    def clear_requests(self) -> None:
        with self._lock:
            self.records.clear()

    def paths(self) -> Iterator[str]:
        return (r.path for r in list(self.records))

    # forwarding

    def forward(self, request: ProxyRequest) -> tuple[int, list[tuple[str, str]], bytes]:
        parts = urlsplit(self.upstream)
        connection = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=60)
        try:
            headers = {
                k: v
                for k, v in request.headers.items()
                if k.lower() not in _HOP_BY_HOP and k.lower() != "content-length"
            }
            if request.body or request.method in ("POST", "PUT", "PATCH"):
                headers["Content-Length"] = str(len(request.body))
            connection.request(request.method, request.path, body=request.body, headers=headers)
            response = connection.getresponse()
            body = response.read()
            out = [
                (k, v)
                for k, v in response.getheaders()
                if k.lower() not in _HOP_BY_HOP
                and not (k.lower() == "content-length" and request.method != "HEAD")
            ]
            if request.method != "HEAD":
                out.append(("Content-Length", str(len(body))))
            return response.status, out, body
        finally:
            connection.close()
