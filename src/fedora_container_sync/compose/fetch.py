"""Fetching a compose over HTTP: its metadata and its image files (httpx).

Translates every HTTP or network failure into our two branches: transient
(:class:`TransientError`: connection problems, timeouts, 429, 5xx) and permanent
(:class:`ComposeError`: 404, bad metadata, size or checksum mismatch). Every URL is judged as
the server will read it (:mod:`.urls`) before it is asked for: a file must lie inside the
compose, a redirect is followed only while it stays inside the allowlist. Every request has an
overall deadline (:mod:`..net.httpclient`): ``http_deadline`` for metadata, plus the image's size at
``min_download_rate`` for an image; running out of it is transient (a slow or overloaded server
may recover). Metadata larger than ``max_metadata_bytes`` is refused for good.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import tarfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlsplit, urlunsplit

import httpx

from ..config.settings import (
    DEFAULT_HTTP_DEADLINE,
    DEFAULT_MAX_METADATA_BYTES,
    DEFAULT_MIN_DOWNLOAD_RATE,
    RetrySettings,
)
from ..errors import ComposeError, TransientError, one_line
from ..net.httpclient import request_limits
from ..net.retry import call_with_retry, retry_after_seconds, transient_status
from . import urls
from .archive import OCI_ARCHIVE, detect_transport, unpack_oci_stream
from .decompress import (
    DEFAULT_MAX_RATIO,
    DEFAULT_MAX_SIZE,
    MAGIC_LENGTH,
    PIECE,
    Decoder,
    LimitExceeded,
    decoder_for,
    decompressed_limit,
)
from .message import MAX_JSON_DEPTH, nesting_exceeds
from .metadata import ComposeMetadata, metadata_of, parse_composeinfo, parse_images
from .selection import ImageArtifact

_log = logging.getLogger(__name__)

_MAX_REDIRECTS = 5
#: Image files come as they are: the checksum in images.json is of these very bytes.
_IDENTITY = {"Accept-Encoding": "identity"}
#: The images.json ``format`` of an uncompressed OCI archive (bootable containers): unpacked as
#: it is downloaded (:func:`.archive.unpack_oci_stream`), never written whole.
UNPACKED_FORMAT = "ociarchive"


@dataclass(frozen=True)
class LocalImage:
    """A downloaded, verified image: an uncompressed archive and its skopeo transport, or, when
    ``unpacked``, the OCI layout unpacked from an OCI archive as it was downloaded."""

    artifact: ImageArtifact
    path: Path
    transport: str
    unpacked: bool = False

    @property
    def reference(self) -> str:
        return f"oci:{self.path}" if self.unpacked else f"{self.transport}:{self.path}"


class ComposeFetcher:
    """Reads one compose at ``location`` (the message's URL of the ``compose/`` directory)."""

    def __init__(
        self,
        client: httpx.Client,
        location: str,
        *,
        compose_id: str,
        allowlist: Iterable[str],
        retry: RetrySettings,
        max_decompressed_ratio: float = DEFAULT_MAX_RATIO,
        max_decompressed_size: int = DEFAULT_MAX_SIZE,
        deadline: float = DEFAULT_HTTP_DEADLINE,
        max_metadata_bytes: int = DEFAULT_MAX_METADATA_BYTES,
        min_download_rate: int = DEFAULT_MIN_DOWNLOAD_RATE,
    ) -> None:
        self._client = client
        self._location = location.rstrip("/")
        self._compose_id = compose_id
        self._allowlist = list(allowlist)
        self._retry = retry
        self._max_ratio = max_decompressed_ratio
        self._max_size = max_decompressed_size
        self._deadline = deadline
        self._max_metadata_bytes = max_metadata_bytes
        self._min_download_rate = min_download_rate

    def url(self, path: str) -> str:
        return f"{self._location}/{path}"

    def metadata(self) -> ComposeMetadata:
        """Load and parse ``metadata/composeinfo.json`` and ``metadata/images.json``."""
        compose_id = self._compose_id
        info = parse_composeinfo(self._get_json("metadata/composeinfo.json"), compose_id=compose_id)
        images = parse_images(self._get_json("metadata/images.json"), compose_id=compose_id)
        return metadata_of(info, images, compose_id=compose_id)

    def download(
        self,
        artifact: ImageArtifact,
        dest_dir: Path,
        *,
        on_bytes: Callable[[int], None] | None = None,
    ) -> LocalImage:
        """Stream one image file to ``dest_dir``, decompressing it and verifying size and sha256.

        The result is a plain tar named after the archive's checksum; for an OCI archive listed
        as such (``format`` ``ociarchive``), the directory it unpacks to, unpacked as it arrives
        (it must hold an OCI layout). Nothing of a file that does not match its size and sha256
        is kept (a directory unpacked from it is removed). Decompression stops at
        ``max_decompressed_ratio`` times the file's size (at least 1 MiB, at most
        ``max_decompressed_size``): the rest is only checksummed, and the image is refused.
        ``on_bytes``, if given, is called after each chunk with the bytes of the file received
        so far (from 0 again on a retry); for a display, so it must be cheap.
        """
        dest_dir.mkdir(parents=True, exist_ok=True)
        unpack = artifact.format == UNPACKED_FORMAT
        final = dest_dir / f"{artifact.work_name}.{'oci' if unpack else 'tar'}"
        where = f"{self._compose_id}: {artifact.path}"
        seconds = self._deadline + artifact.size / self._min_download_rate
        deadline = (
            f"the {seconds:.1f} s download deadline (http_deadline {self._deadline:g} s + "
            f"{artifact.size} bytes at min_download_rate {self._min_download_rate} bytes/s)"
        )
        call_with_retry(
            lambda: self._download_once(
                artifact, final, where, seconds, deadline, on_bytes, unpack=unpack
            ),
            what=f"compose {self._compose_id}: download of {artifact.path}",
            policy=self._retry,
        )
        if unpack:
            return LocalImage(artifact, final, OCI_ARCHIVE, unpacked=True)
        return LocalImage(artifact, final, detect_transport(final, where=where))

    def _download_once(
        self,
        artifact: ImageArtifact,
        final: Path,
        where: str,
        seconds: float,
        deadline: str,
        on_bytes: Callable[[int], None] | None,
        *,
        unpack: bool,
    ) -> None:
        partial = final.with_name(final.name + ".part")
        cap = decompressed_limit(artifact.size, ratio=self._max_ratio, maximum=self._max_size)
        body = _Body(
            size=artifact.size,
            where=where,
            cap=cap,
            too_large=self._too_large(artifact, cap),
            on_bytes=on_bytes,
        )
        refused: str | None = None
        try:
            with self._stream(
                artifact.path, headers=_IDENTITY, deadline=seconds, limit=deadline
            ) as response:
                body.receive(_body(response))
                if unpack:
                    try:
                        unpack_oci_stream(body, partial, where=where)
                    except _Oversize:
                        raise
                    except ComposeError as error:
                        refused = str(error)  # said once the file is known to be the one listed
                    body.drain()
                else:
                    with partial.open("wb") as out:
                        out.writelines(body.pieces())
            body.check(artifact)
            if refused is not None:
                raise ComposeError(refused)
            if unpack:
                shutil.rmtree(final, ignore_errors=True)
            os.replace(partial, final)
        finally:
            _remove(partial)

    def _too_large(self, artifact: ImageArtifact, limit: int) -> str:
        return (
            f"decompresses to more than {limit} bytes, the limit for a {artifact.size}-byte "
            f"file (max_decompressed_ratio = {self._max_ratio:g}, "
            f"max_decompressed_size = {self._max_size})"
        )

    def _get_json(self, path: str) -> Any:
        def once() -> Any:
            limit = f"the {self._deadline:g} s http_deadline"
            with self._stream(
                path, headers=_IDENTITY, deadline=self._deadline, limit=limit
            ) as response:
                body = self._read_metadata(response)
            too_deep = f"{self._compose_id}: {path} nests deeper than {MAX_JSON_DEPTH} levels"
            try:
                document: Any = json.loads(body)
            except RecursionError:
                raise ComposeError(too_deep) from None
            except ValueError as error:  # not UTF-8, not JSON, a number of thousands of digits
                raise ComposeError(f"{self._compose_id}: {path} is not JSON: {error}") from None
            if nesting_exceeds(document, MAX_JSON_DEPTH):
                raise ComposeError(too_deep)
            return document

        return call_with_retry(
            once, what=f"compose {self._compose_id}: fetch of {path}", policy=self._retry
        )

    def _read_metadata(self, response: httpx.Response) -> bytes:
        """The body, refused as soon as it passes ``max_metadata_bytes`` (decoded)."""
        cap = self._max_metadata_bytes
        refusal = (
            f"{self._compose_id}: {_shown(response.url)} is larger than max_metadata_bytes "
            f"({cap} bytes)"
        )
        length = response.headers.get("content-length", "")
        if length.isascii() and length.isdigit() and int(length) > cap:
            raise ComposeError(refusal)
        chunks: list[bytes] = []
        size = 0
        for chunk in response.iter_bytes():
            size += len(chunk)
            if size > cap:
                raise ComposeError(refusal)
            chunks.append(chunk)
        return b"".join(chunks)

    @contextlib.contextmanager
    def _stream(
        self,
        path: str,
        *,
        deadline: float,
        limit: str,
        headers: dict[str, str] | None = None,
    ) -> Iterator[httpx.Response]:
        """GET ``path`` under the compose, following in-allowlist redirects; 2xx only.

        The whole exchange, redirects and body included, ends within ``deadline`` seconds
        (``limit`` names it in the error).
        """
        url = self.url(path)
        try:
            inside = _place(self._location + "/").contains(_place(url))
        except urls.URLRefused as error:
            raise ComposeError(f"{self._compose_id}: {path}: {_shown(url)} {error}") from None
        if not inside:
            raise ComposeError(
                f"{self._compose_id}: {path}: {_shown(url)} lies outside the compose"
            )
        with request_limits(deadline, stoppable=True) as limits:
            for _ in range(_MAX_REDIRECTS + 1):
                try:
                    with self._client.stream(
                        "GET", url, headers=headers, follow_redirects=False
                    ) as response:
                        if response.is_redirect:
                            url = self._redirect_target(url, response)
                            continue
                        self._raise_for_status(response, path)
                        yield response
                        return
                except httpx.TimeoutException:
                    if limits.expired:
                        raise TransientError(
                            f"{self._compose_id}: {_shown(url)}: no complete answer within {limit}"
                        ) from None
                    raise TransientError(f"{self._compose_id}: timed out fetching {path}") from None
                except httpx.DecodingError:
                    raise ComposeError(
                        f"{self._compose_id}: {path}: the answer cannot be decoded "
                        "(Content-Encoding stacked, unknown or corrupt)"
                    ) from None
                except httpx.TransportError as error:
                    raise TransientError(
                        f"{self._compose_id}: could not fetch {path}: {one_line(error)}"
                    ) from None
        raise ComposeError(f"{self._compose_id}: too many redirects fetching {path}")

    def _redirect_target(self, url: str, response: httpx.Response) -> str:
        target = str(urljoin(url, response.headers.get("location", "")))
        # Judged like any other request (a query, as in signed mirror URLs, is fine here).
        try:
            place = _place(target)
        except urls.URLRefused as error:
            raise ComposeError(
                f"{self._compose_id}: {_shown(url)} redirects to {_shown(target)}, which {error}"
            ) from None
        for prefix in self._allowlist:
            try:
                if urls.parse_url(prefix).contains(place):
                    return target
            except urls.URLRefused:
                continue
        raise ComposeError(
            f"{self._compose_id}: {_shown(url)} redirects to {_shown(target)}, "
            "outside compose_url_allowlist"
        )

    def _raise_for_status(self, response: httpx.Response, path: str) -> None:
        status = response.status_code
        if 200 <= status < 300:
            return
        what = f"{self._compose_id}: {path}: HTTP {status}"
        if transient_status(status):
            raise TransientError(
                what, retry_after=retry_after_seconds(response.headers.get("retry-after"))
            )
        if status in (404, 410):
            raise ComposeError(
                f"{self._compose_id}: {path} not found (HTTP {status}) at {_shown(response.url)}"
            )
        raise ComposeError(what)


def _place(url: str) -> urls.Place:
    """Where a request for ``url`` lands, judged on the URL httpx will send (its own
    normalization done: ``..`` resolved, characters percent-encoded)."""
    try:
        parsed = httpx.URL(url)
        host = parsed.raw_host.decode("ascii")
        path = parsed.raw_path.partition(b"?")[0].decode("ascii")
    except (httpx.InvalidURL, UnicodeDecodeError) as error:
        raise urls.URLRefused(f"is not a usable URL ({one_line(error)})") from None
    if parsed.userinfo:
        raise urls.URLRefused("carries credentials")
    return urls.request_place(parsed.scheme, host, parsed.port, path)


def _shown(url: str | httpx.URL) -> str:
    """``url`` for an error line: without user info, query or fragment (they may hold
    credentials or signatures)."""
    parts = urlsplit(str(url))
    return urlunsplit((parts.scheme, parts.netloc.rpartition("@")[2], parts.path, "", ""))


class _Oversize(ComposeError):
    """More bytes came than images.json lists."""


class _Body:
    """One image file as it arrives: each chunk counted (never more than images.json lists),
    hashed and decoded (never more than ``cap`` bytes). The decoded bytes are read once, in
    order: all at once (:meth:`pieces`), or as a file that reads forward and steps back only
    within the last tar block (:meth:`read`, :meth:`seek`, :meth:`tell`), for a tar reader.
    What does not decode is only counted and hashed from there on (:attr:`error` says why)."""

    #: How far back :meth:`seek` may go: tarfile reads the block after the last member again.
    _BACK = 2 * tarfile.BLOCKSIZE

    def __init__(
        self,
        *,
        size: int,
        where: str,
        cap: int,
        too_large: str,
        on_bytes: Callable[[int], None] | None,
    ) -> None:
        self._expected, self._where, self._cap, self._too_large = size, where, cap, too_large
        self._on_bytes = on_bytes
        self.hasher = hashlib.sha256()
        self.size = 0
        self.error: str | None = None
        self._pieces: Iterator[bytes] = iter(())
        #: decoded bytes from position ``_start`` on: a little behind ``_position``, the rest ahead
        self._buffer = bytearray()
        self._start = 0
        self._position = 0

    def receive(self, chunks: Iterable[bytes]) -> None:
        self._pieces = self._decoded(chunks)

    def pieces(self) -> Iterator[bytes]:
        return self._pieces

    def drain(self) -> None:
        """Count, hash and decode what was not read, to the end of the file."""
        for _ in self._pieces:
            pass

    def check(self, artifact: ImageArtifact) -> None:
        """The whole file came: refuse it unless it is the one images.json lists, and decodes."""
        where = self._where
        if self.size != artifact.size:
            raise ComposeError(
                f"{where}: size mismatch: images.json lists {artifact.size} bytes, got {self.size}"
            )
        actual = self.hasher.hexdigest()
        if actual != artifact.sha256:
            raise ComposeError(
                f"{where}: sha256 mismatch: images.json lists {artifact.sha256}, got {actual}"
            )
        if self.error:
            raise ComposeError(f"{where}: {self.error}")

    def _decoded(self, chunks: Iterable[bytes]) -> Iterator[bytes]:
        decoder: Decoder | None = None
        head = b""
        for chunk in chunks:
            self.hasher.update(chunk)
            self.size += len(chunk)
            if self._on_bytes is not None:
                self._on_bytes(self.size)
            if self.size > self._expected:
                raise _Oversize(
                    f"{self._where}: larger than the {self._expected} bytes images.json lists"
                )
            if self.error:
                continue
            if decoder is None:
                head += chunk
                if len(head) < MAGIC_LENGTH:
                    continue
                decoder, chunk, head = decoder_for(head, limit=self._cap), head, b""
            try:
                yield from decoder.feed(chunk)
            except LimitExceeded:
                self.error = self._too_large
            except ValueError as error:
                self.error = str(error)
        if self.error:
            return
        try:
            if decoder is None:
                decoder = decoder_for(head, limit=self._cap)
                yield from decoder.feed(head)
            tail = decoder.finish()
            if tail:
                yield tail
        except LimitExceeded:
            self.error = self._too_large
        except ValueError as error:
            self.error = str(error)

    def read(self, size: int = -1) -> bytes:
        if size < 0:
            raise tarfile.ReadError("an unbounded read of the archive")
        begin = self._position - self._start
        end = begin + size
        while len(self._buffer) < end:
            piece = next(self._pieces, None)
            if piece is None:
                break
            self._buffer += piece
        with memoryview(self._buffer) as view:
            data = bytes(view[begin:end])
        self._position += len(data)
        behind = self._position - self._start - self._BACK
        if behind >= PIECE:  # forget what lies behind, a few MiB at a time
            del self._buffer[:behind]
            self._start += behind
        return data

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        if whence != os.SEEK_SET or offset < self._start:
            raise tarfile.ReadError("the archive cannot be read in order")
        if offset <= self._position:
            self._position = offset
        while self._position < offset and self.read(min(offset - self._position, PIECE)):
            pass
        return self._position

    def tell(self) -> int:
        return self._position


def _remove(path: Path) -> None:
    """A file, or a directory this process created (never through a link)."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def _body(response: httpx.Response) -> Iterator[bytes]:
    """The body's bytes as they arrive: no re-chunking into big buffers, no extra copies
    (it costs a third of a download's CPU), unless the server encoded them anyway."""
    encoding = response.headers.get("content-encoding", "").strip().lower()
    return response.iter_raw() if encoding in ("", "identity") else response.iter_bytes()
