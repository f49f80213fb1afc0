"""Fetching a compose over HTTP: its metadata and its image files (httpx).

Translates every HTTP or network failure into our two branches: transient
(:class:`TransientError`: connection problems, timeouts, 429, 5xx) and permanent
(:class:`ComposeError`: 404, bad metadata, size or checksum mismatch). Redirects are followed
only while they stay inside the allowlist.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlsplit, urlunsplit

import httpx

from .archive import MAGIC_LENGTH, Decoder, decoder_for, detect_transport
from .errors import ComposeError, MessageError, TransientError, one_line
from .messages import MAX_JSON_DEPTH, check_location, nesting_exceeds
from .retry import call_with_retry, retry_after_seconds, transient_status
from .selection import ImageArtifact
from .settings import RetrySettings

_log = logging.getLogger(__name__)

_MAX_REDIRECTS = 5
#: Image files come as they are: the checksum in images.json is of these very bytes.
_IDENTITY = {"Accept-Encoding": "identity"}


@dataclass(frozen=True)
class ComposeMetadata:
    """The parsed ``composeinfo.json`` and ``images.json`` (productmd objects)."""

    compose_id: str
    release_version: str
    info: Any
    images: Any


@dataclass(frozen=True)
class LocalImage:
    """A downloaded, verified, uncompressed image archive and its skopeo transport."""

    artifact: ImageArtifact
    path: Path
    transport: str

    @property
    def reference(self) -> str:
        return f"{self.transport}:{self.path}"


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
    ) -> None:
        self._client = client
        self._location = location.rstrip("/")
        self._compose_id = compose_id
        self._allowlist = list(allowlist)
        self._retry = retry

    def url(self, path: str) -> str:
        return f"{self._location}/{path}"

    def metadata(self) -> ComposeMetadata:
        """Load and parse ``metadata/composeinfo.json`` and ``metadata/images.json``."""
        from productmd.composeinfo import ComposeInfo
        from productmd.images import Images

        info = ComposeInfo()
        images = Images()
        for name, target in (("composeinfo.json", info), ("images.json", images)):
            document = self._get_json(f"metadata/{name}")
            try:
                target.deserialize(document)
            except Exception as error:  # productmd raises ValueError, KeyError, TypeError...
                reason = (
                    f"missing key {error.args[0]!r}"
                    if isinstance(error, KeyError) and error.args
                    else one_line(error)
                )
                raise ComposeError(
                    f"{self._compose_id}: metadata/{name} is not valid productmd metadata: {reason}"
                ) from None
        compose_id = info.compose.id
        if compose_id != self._compose_id:
            raise ComposeError(
                f"{self._compose_id}: composeinfo.json describes compose {compose_id}"
            )
        return ComposeMetadata(compose_id, str(info.release.version), info, images)

    def download(self, artifact: ImageArtifact, dest_dir: Path) -> LocalImage:
        """Stream one image file to ``dest_dir``, decompressing it and verifying size and sha256.

        The result is a plain tar named after the archive's checksum.
        """
        dest_dir.mkdir(parents=True, exist_ok=True)
        final = dest_dir / f"{artifact.sha256}.tar"
        where = f"{self._compose_id}: {artifact.path}"
        call_with_retry(
            lambda: self._download_once(artifact, final, where),
            what=f"compose {self._compose_id}: download of {artifact.path}",
            policy=self._retry,
        )
        return LocalImage(artifact, final, detect_transport(final, where=where))

    def _download_once(self, artifact: ImageArtifact, final: Path, where: str) -> None:
        partial = final.with_name(final.name + ".part")
        hasher = hashlib.sha256()
        size = 0
        decoder: Decoder | None = None
        decode_error: str | None = None
        head = b""
        try:
            with (
                self._stream(artifact.path, headers=_IDENTITY) as response,
                partial.open("wb") as out,
            ):
                for chunk in _body(response):
                    hasher.update(chunk)
                    size += len(chunk)
                    if size > artifact.size:
                        raise ComposeError(
                            f"{where}: larger than the {artifact.size} bytes images.json lists"
                        )
                    if decode_error:
                        continue
                    if decoder is None:
                        head += chunk
                        if len(head) < MAGIC_LENGTH:
                            continue
                        decoder, chunk, head = decoder_for(head), head, b""
                    try:
                        out.writelines(decoder.feed(chunk))
                    except ValueError as error:
                        decode_error = str(error)
                if not decode_error:
                    try:
                        if decoder is None:
                            decoder = decoder_for(head)
                            out.writelines(decoder.feed(head))
                        out.write(decoder.finish())
                    except ValueError as error:
                        decode_error = str(error)
            if size != artifact.size:
                raise ComposeError(
                    f"{where}: size mismatch: images.json lists {artifact.size} bytes, got {size}"
                )
            actual = hasher.hexdigest()
            if actual != artifact.sha256:
                raise ComposeError(
                    f"{where}: sha256 mismatch: images.json lists {artifact.sha256}, got {actual}"
                )
            if decode_error:
                raise ComposeError(f"{where}: {decode_error}")
            os.replace(partial, final)
        finally:
            with contextlib.suppress(FileNotFoundError):
                partial.unlink()

    def _get_json(self, path: str) -> Any:
        def once() -> Any:
            with self._stream(path) as response:
                body = response.read()
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

    @contextlib.contextmanager
    def _stream(
        self, path: str, *, headers: dict[str, str] | None = None
    ) -> Iterator[httpx.Response]:
        """GET ``path`` under the compose, following in-allowlist redirects; 2xx only."""
        url = self.url(path)
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
                raise TransientError(f"{self._compose_id}: timed out fetching {path}") from None
            except httpx.TransportError as error:
                raise TransientError(
                    f"{self._compose_id}: could not fetch {path}: {one_line(error)}"
                ) from None
        raise ComposeError(f"{self._compose_id}: too many redirects fetching {path}")

    def _redirect_target(self, url: str, response: httpx.Response) -> str:
        target = str(urljoin(url, response.headers.get("location", "")))
        try:
            # Same rule as a message's location; a query (signed mirror URLs) is fine here.
            without_query = urlunsplit(urlsplit(target)._replace(query=""))
            check_location(without_query, self._allowlist, compose_id=self._compose_id)
        except MessageError:
            raise ComposeError(
                f"{self._compose_id}: {url} redirects to {target}, outside compose_url_allowlist"
            ) from None
        return target

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
            raise ComposeError(f"{self._compose_id}: {path} not found (HTTP {status})")
        raise ComposeError(what)


def _body(response: httpx.Response) -> Iterator[bytes]:
    """The body's bytes as they arrive: no re-chunking into big buffers, no extra copies
    (it costs a third of a download's CPU), unless the server encoded them anyway."""
    encoding = response.headers.get("content-encoding", "").strip().lower()
    return response.iter_raw() if encoding in ("", "identity") else response.iter_bytes()
