"""HTTP clients whose every request has an overall deadline and a cap on the bytes received.

httpx bounds each network operation (connect, each read, each write) but not a request as a
whole (encode/httpx#1450): a server that sends a byte every few seconds, in its headers or its
body, keeps a request alive forever, and an endless body fills memory. Every client of this
project is built by :func:`new_client`; its connections go through a network backend (the
httpcore layer) that bounds each socket operation by the time the request has left and counts
the bytes received. Every request runs inside :func:`request_limits`, which sets the deadline
and cap for the requests its block makes in this thread (redirects and the registry's token
round trips included). A request outside such a block is a bug and raises ``RuntimeError``.

A request that runs out of time fails as httpx's ``TimeoutException``, one that receives too
much as its ``ReadError``; the caller asks its :class:`RequestLimits` which limit it was, to
say so in one line.

A body is decoded here too (:func:`_bounded_decoding`), never by httpx: a ``Content-Encoding``
of one ``gzip`` or ``deflate`` is decoded at most :data:`READ_SIZE` bytes at a time and the
decoded bytes count against the cap like the received ones, so 1 KiB that inflates to
gigabytes costs no memory; stacked (``gzip, gzip``) or unknown encodings are refused as
httpx's ``DecodingError`` (httpx would inflate a whole read in one piece, and pass an
encoding it does not know on as if it were plain).
"""

from __future__ import annotations

import contextlib
import ssl
import time
import zlib
from collections.abc import Iterable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

import httpcore
import httpx

from .. import shutdown

#: What one answer from a registry or Bodhi may weigh, headers included: manifests and config
#: blobs are refused above 4 MiB anyway, a tag-list page or a Bodhi page is a few hundred KiB.
MAX_API_ANSWER_BYTES = 16 << 20


@dataclass
class RequestLimits:
    """The deadline and byte cap of the requests made inside one :func:`request_limits`."""

    seconds: float
    max_bytes: int | None
    ends: float
    received: int = field(default=0)
    #: Bytes after Content-Encoding decoding (0 while answers are not encoded).
    decoded: int = field(default=0)
    #: Reads end once the process is stopping (see :meth:`_Stream._read_until_stopped`).
    stoppable: bool = field(default=False)

    @property
    def expired(self) -> bool:
        return time.monotonic() >= self.ends

    @property
    def too_large(self) -> bool:
        return self.max_bytes is not None and max(self.received, self.decoded) > self.max_bytes

    def remaining(self, timeout: float | None, error: type[Exception]) -> float:
        """``timeout`` (one operation's) shortened to the time left; ``error`` if none is."""
        left = self.ends - time.monotonic()
        if left <= 0:
            raise error(f"no complete answer within {self.seconds:g} s")
        return left if timeout is None else min(timeout, left)


_current: ContextVar[RequestLimits | None] = ContextVar("request_limits", default=None)


@contextlib.contextmanager
def request_limits(
    seconds: float, *, max_bytes: int | None = None, stoppable: bool = False
) -> Iterator[RequestLimits]:
    """Requests made in this block (in this thread) end within ``seconds`` of its start, and
    fail once more than ``max_bytes`` arrived (status line and headers included). With
    ``stoppable``, a read also ends once the process is stopping (downloads: nothing written
    depends on their answer; a registry write's answer must still be read)."""
    limits = RequestLimits(seconds, max_bytes, time.monotonic() + seconds, stoppable=stoppable)
    token = _current.set(limits)
    try:
        yield limits
    finally:
        _current.reset(token)


#: What one read from a socket may return. httpcore asks for 64 KiB at a time; every read then
#: passes through h11 and httpx's stream layers, which cost more CPU than the bytes themselves
#: (a fifth of a download's CPU). Reading up to 1 MiB makes an image download take a few
#: hundred reads instead of thousands; a read returns what has arrived and never waits for more.
READ_SIZE = 1 << 20


#: How long a read waits at a time before it looks whether the process is stopping.
STOP_CHECK = 0.5


class _Stream(httpcore.NetworkStream):
    def __init__(self, stream: httpcore.NetworkStream) -> None:
        self._stream = stream

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        limits = _current.get()
        if limits is None:
            return self._stream.read(max_bytes, timeout)
        timeout = limits.remaining(timeout, httpcore.ReadTimeout)
        if limits.stoppable:
            data = self._read_until_stopped(max(max_bytes, READ_SIZE), timeout)
        else:
            data = self._stream.read(max(max_bytes, READ_SIZE), timeout)
        limits.received += len(data)
        if limits.too_large:
            raise httpcore.ReadError(f"more than {limits.max_bytes} bytes received")
        return data

    def _read_until_stopped(self, max_bytes: int, timeout: float) -> bytes:
        """One read of up to ``timeout`` seconds, waited for in slices of :data:`STOP_CHECK`:
        a stop of the process (:mod:`..shutdown`) ends it within one slice. No signal
        interrupts a read in a worker thread, and a silent server would otherwise hold the stop
        until the read's timeout, past the grace period of systemd or OpenShift."""
        ends = time.monotonic() + timeout
        while True:
            if shutdown.requested():
                raise httpcore.ReadError("the process is stopping")
            try:
                return self._stream.read(
                    max_bytes, max(0.0, min(ends - time.monotonic(), STOP_CHECK))
                )
            except httpcore.ReadTimeout:
                if time.monotonic() >= ends:
                    raise

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        limits = _current.get()
        if limits is not None:
            timeout = limits.remaining(timeout, httpcore.WriteTimeout)
        self._stream.write(buffer, timeout)

    def close(self) -> None:
        self._stream.close()

    def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.NetworkStream:
        limits = _current.get()
        if limits is not None:
            timeout = limits.remaining(timeout, httpcore.ConnectTimeout)
        return _Stream(self._stream.start_tls(ssl_context, server_hostname, timeout))

    def get_extra_info(self, info: str) -> Any:
        return self._stream.get_extra_info(info)


class _Backend(httpcore.NetworkBackend):
    def __init__(self, backend: httpcore.NetworkBackend) -> None:
        self._backend = backend

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        limits = _current.get()
        if limits is not None:
            timeout = limits.remaining(timeout, httpcore.ConnectTimeout)
        return _Stream(
            self._backend.connect_tcp(host, port, timeout, local_address, socket_options)
        )

    def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        limits = _current.get()
        if limits is not None:
            timeout = limits.remaining(timeout, httpcore.ConnectTimeout)
        return _Stream(self._backend.connect_unix_socket(path, timeout, socket_options))

    def sleep(self, seconds: float) -> None:
        self._backend.sleep(seconds)


#: The encodings decoded (one at most per answer); what we ask servers for.
_DECODED = ("gzip", "x-gzip", "deflate")
ACCEPT_ENCODING = "gzip, deflate"


class _Inflate(httpx.SyncByteStream):
    """``stream`` (a gzip or deflate body) decoded, at most :data:`READ_SIZE` bytes per piece,
    counting the decoded bytes against ``limits``."""

    def __init__(self, stream: httpx.SyncByteStream, encoding: str, limits: RequestLimits) -> None:
        self._stream = stream
        self._gzip = encoding != "deflate"
        # gzip: members, each with header and trailer; deflate: one zlib stream, or a raw
        # deflate stream, which some servers send (tried when the first is not).
        self._window = zlib.MAX_WBITS | 16 if self._gzip else zlib.MAX_WBITS
        self._limits = limits

    def __iter__(self) -> Iterator[bytes]:
        inflater: Any = None
        fresh = False
        for data in self._stream:
            while data:
                if inflater is None or inflater.eof:
                    # A new gzip member (several may follow each other).
                    if inflater is not None and (not self._gzip or not data.strip(b"\0")):
                        if data.strip(b"\0"):
                            raise httpx.DecodingError("Content-Encoding: bytes after the body")
                        break
                    inflater = zlib.decompressobj(self._window)
                    fresh = True
                try:
                    piece = inflater.decompress(data, READ_SIZE)
                except zlib.error as error:
                    if not (fresh and self._window == zlib.MAX_WBITS):
                        raise httpx.DecodingError(f"Content-Encoding: {error}") from None
                    inflater = zlib.decompressobj(-zlib.MAX_WBITS)  # deflate sent raw
                    fresh = False
                    continue
                fresh = False
                data = inflater.unconsumed_tail or inflater.unused_data
                if piece:
                    yield self._count(piece)
        while inflater is not None and not inflater.eof:
            try:  # what zlib held back when a piece was full
                piece = inflater.decompress(b"", READ_SIZE)
            except zlib.error as error:
                raise httpx.DecodingError(f"Content-Encoding: {error}") from None
            if not piece:
                raise httpx.DecodingError("Content-Encoding: the encoded body ends early")
            yield self._count(piece)

    def _count(self, piece: bytes) -> bytes:
        limits = self._limits
        limits.decoded += len(piece)
        if limits.too_large:
            raise httpx.ReadError(f"more than {limits.max_bytes} bytes after decoding")
        return piece

    def close(self) -> None:
        self._stream.close()


def _bounded_decoding(response: httpx.Response) -> None:
    """Take the body's decoding from httpx (a response hook): one known encoding is decoded by
    :class:`_Inflate`, anything else refused. The header goes, so httpx passes the bytes on."""
    encodings = [
        value.strip().lower()
        for value in response.headers.get_list("content-encoding", split_commas=True)
    ]
    encodings = [value for value in encodings if value not in ("", "identity")]
    if not encodings:
        return
    limits = _current.get()
    if len(encodings) > 1:
        raise httpx.DecodingError(
            f"Content-Encoding of {len(encodings)} stacked encodings refused",
            request=response.request,
        )
    if (
        encodings[0] not in _DECODED
        or limits is None
        or not isinstance(response.stream, httpx.SyncByteStream)
    ):
        raise httpx.DecodingError("Content-Encoding not supported", request=response.request)
    response.stream = _Inflate(response.stream, encodings[0], limits)
    del response.headers["content-encoding"]


def _require_limits(request: httpx.Request) -> None:
    if _current.get() is None:
        raise RuntimeError(f"HTTP request to {request.url.host} outside request_limits()")


def new_client(*, timeout: float, **options: Any) -> httpx.Client:
    """An ``httpx.Client`` (``options`` as httpx takes them) whose requests obey
    :func:`request_limits`. ``timeout`` bounds each network operation (connect: 15 s at most).

    httpx offers no hook for a network backend, so it is put into the connection pools the
    client built (also those for proxies from the environment); a version of httpx without
    them fails here, loudly, rather than running without deadlines.
    """
    headers = {"Accept-Encoding": ACCEPT_ENCODING, **options.pop("headers", {})}
    client = httpx.Client(
        timeout=httpx.Timeout(timeout, connect=min(timeout, 15.0)),
        event_hooks={"request": [_require_limits], "response": [_bounded_decoding]},
        headers=headers,
        **options,
    )
    transports = [client._transport, *client._mounts.values()]
    for transport in transports:
        if transport is None or options.get("transport") is transport:
            continue  # no proxy for this pattern; a transport the caller built (tests)
        pool = getattr(transport, "_pool", None)
        backend = getattr(pool, "_network_backend", None)
        if not isinstance(backend, httpcore.NetworkBackend):
            client.close()
            raise RuntimeError("httpx/httpcore changed: cannot bound requests with a deadline")
        pool._network_backend = _Backend(backend)  # type: ignore[union-attr]
    return client
