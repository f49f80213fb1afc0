"""The registry HTTP API client (httpx): manifests and config blobs, nothing else.

Every HTTP status and network failure is translated here, in one place, into our errors:
:class:`RegistryUnavailable` (transient: network, timeouts, 429, 5xx) or
:class:`RegistryError` (permanent). A manifest read answers ``None`` (certain absence) only
for a ``404`` whose only error code is ``MANIFEST_UNKNOWN`` (no such tag or digest),
``NAME_UNKNOWN`` (no such repository, so no tag: quay.io before the first push) or
``TAG_EXPIRED`` (quay: the tag was deleted, within its time-machine window); every other
answer fails closed. An index PUT answered ``400`` with only ``BLOB_UNKNOWN`` /
``MANIFEST_BLOB_UNKNOWN`` (Nexus, seconds after the children were pushed) is tried again after
:data:`CHILDREN_SETTLE_PAUSES`, then fails for good. Every request (with its token
round trips) ends within ``http_deadline`` (transient when it does not) and may receive at most
16 MiB (permanent). Authorization headers are never logged or put into an error.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import ssl
import time
from urllib.parse import urlencode

import httpx

from .. import shutdown
from ..config.settings import DEFAULT_HTTP_DEADLINE, RegistrySettings, RetrySettings
from ..errors import RegistryError, RegistryUnavailable, one_line
from ..net.httpclient import MAX_API_ANSWER_BYTES, new_client, request_limits
from ..net.retry import call_with_retry, retry_after_seconds, transient_status
from ..net.tls import TlsContexts
from ..oci import mediatype
from ..oci.manifest import Manifest, digest_of

_log = logging.getLogger(__name__)

_MAX_CONFIG_BYTES = 4 << 20
_MAX_MANIFEST_BYTES = 4 << 20
_TAGS_PAGE = 1000
_MAX_TAG_PAGES = 100
_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")

#: The error codes of a manifest read's ``404`` that mean certain absence (see the module).
_ABSENT = (frozenset({"MANIFEST_UNKNOWN"}), frozenset({"NAME_UNKNOWN"}), frozenset({"TAG_EXPIRED"}))
#: The error codes of an index PUT's ``400`` that may mean "children not indexed yet" (Nexus).
_CHILDREN_UNKNOWN = frozenset({"BLOB_UNKNOWN", "MANIFEST_BLOB_UNKNOWN"})
#: Seconds to wait before each further try of such an index PUT (7 s in all), then permanent.
CHILDREN_SETTLE_PAUSES = (1.0, 2.0, 4.0)

#: What httpx raises when something the registry sent (a header value, a redirect target, a
#: content encoding) cannot go into our next request or be decoded: permanent for that
#: registry, and never quoted (the text may hold a header value such as a token).
_UNUSABLE: dict[type[Exception], str] = {
    httpx.LocalProtocolError: "a header value for the request is unusable",
    UnicodeEncodeError: "a header value for the request is not ASCII",
    httpx.InvalidURL: "a URL it sent is unusable",
    httpx.UnsupportedProtocol: "it redirected to an unsupported URL",
    httpx.TooManyRedirects: "too many redirects",
    httpx.DecodingError: "its answer cannot be decoded (Content-Encoding)",
}


class RegistryClient:
    """Talks to one configured registry (``host[:port][/namespace]``)."""

    def __init__(
        self,
        registry: RegistrySettings,
        *,
        timeout: float,
        retry: RetrySettings,
        deadline: float = DEFAULT_HTTP_DEADLINE,
        auth: httpx.Auth | None = None,
        transport: httpx.BaseTransport | None = None,
        log_prefix: str = "",
        tls: TlsContexts | None = None,
    ) -> None:
        self.registry = registry
        self._retry = retry
        self._deadline = deadline
        self._log_prefix = log_prefix
        self._scheme: str | None = "https" if registry.tls_verify else None
        self._client = new_client(
            timeout=timeout,
            verify=(tls or TlsContexts()).get(registry.cert_dir, verify=registry.tls_verify),
            auth=auth,
            follow_redirects=False,
            transport=transport,
            headers={"User-Agent": "fedora-container-sync"},
        )

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> RegistryClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def ping(self) -> None:
        """Check that the registry answers the API base (``GET /v2/``). Without credentials,
        a ``401`` with a Bearer challenge counts as an answer: the registry speaks the API, and
        anonymous reads get tokens per repository (quay.io refuses a token without scope)."""
        what = f"registry {self.registry.url}"

        def once() -> None:
            response = self._request("GET", "/v2/", what=what)
            if (
                response.status_code == 401
                and "authorization" not in response.request.headers
                and response.headers.get("www-authenticate", "").lower().startswith("bearer ")
            ):
                return
            self._raise_for_status(response, what)

        call_with_retry(once, what=f"{self._log_prefix}check of {what}", policy=self._retry)

    # -- manifests ---------------------------------------------------------------------------

    def manifest_get(self, repository: str, reference: str) -> Manifest | None:
        """The manifest at ``repository:reference`` with its exact bytes, or None if absent.

        ``repository`` is the name without the configured namespace.
        """
        path = self._path(repository, f"manifests/{reference}")
        what = f"{self._name(repository)}:{reference}"

        def once() -> Manifest | None:
            response = self._request(
                "GET", path, what=what, headers={"Accept": mediatype.MANIFEST_ACCEPT}
            )
            if response.status_code == 404 and _error_codes(response) in _ABSENT:
                return None
            self._raise_for_status(response, what)
            body = response.content
            if len(body) > _MAX_MANIFEST_BYTES:
                raise RegistryError(f"{what}: manifest larger than {_MAX_MANIFEST_BYTES} bytes")
            media_type = mediatype.base(response.headers.get("content-type", ""))
            if media_type not in mediatype.INDEX_TYPES | mediatype.IMAGE_TYPES:
                raise RegistryError(f"{what}: unsupported manifest type {media_type or 'none'!r}")
            digest = digest_of(body)
            header = _digest_header(response, what)
            if header and header != digest and not reference.startswith("sha256:"):
                raise RegistryError(f"{what}: registry digest {header} does not match the body")
            if reference.startswith("sha256:") and digest != reference:
                raise RegistryError(f"{what}: body does not match the requested digest")
            return Manifest(media_type, digest, body)

        return call_with_retry(once, what=f"{self._log_prefix}read of {what}", policy=self._retry)

    def manifest_put(self, repository: str, reference: str, media_type: str, body: bytes) -> str:
        """PUT the exact ``body``; return its digest after checking the registry agrees."""
        path = self._path(repository, f"manifests/{reference}")
        what = f"{self._name(repository)}:{reference}"
        expected = digest_of(body)

        def once() -> str:
            response = self._request(
                "PUT", path, what=what, headers={"Content-Type": media_type}, content=body
            )
            codes = _error_codes(response) if response.status_code == 400 else set()
            if codes and codes <= _CHILDREN_UNKNOWN and media_type in mediatype.INDEX_TYPES:
                raise _ChildrenUnknown(f"{what}: HTTP 400 ({_codes(response)})")
            self._raise_for_status(response, what)
            landed = _digest_header(response, what)
            if landed and landed != expected:
                raise RegistryError(f"{what}: registry stored {landed}, expected {expected}")
            return expected

        for pause in (*CHILDREN_SETTLE_PAUSES, None):
            try:
                return call_with_retry(
                    once, what=f"{self._log_prefix}write of {what}", policy=self._retry
                )
            except _ChildrenUnknown as error:
                if pause is None or shutdown.requested():
                    unknown = f"{error}: the registry does not know its children"
                    raise RegistryError(unknown) from None
                _log.warning(
                    "%s%s: the registry does not know its children yet; trying again in %gs",
                    self._log_prefix,
                    error,
                    pause,
                )
                _pause(pause)
        raise AssertionError("unreachable")

    def blob_get(self, repository: str, digest: str) -> bytes:
        """A small blob (an image config), verified against its digest."""
        path = self._path(repository, f"blobs/{digest}")
        what = f"{self._name(repository)}@{digest}"

        def once() -> bytes:
            response = self._request("GET", path, what=what, follow_redirects=True)
            self._raise_for_status(response, what)
            body = response.content
            if len(body) > _MAX_CONFIG_BYTES or digest_of(body) != digest:
                raise RegistryError(f"{what}: blob does not match its digest")
            return body

        return call_with_retry(once, what=f"{self._log_prefix}read of {what}", policy=self._retry)

    def blob_put(self, repository: str, data: bytes) -> str:
        """Upload a small blob (a signature payload, a config) unless the registry has it;
        its digest. One monolithic POST, or POST then PUT where the registry wants that."""
        digest = digest_of(data)
        what = f"{self._name(repository)}@{digest}"

        def once() -> str:
            head = self._request("HEAD", self._path(repository, f"blobs/{digest}"), what=what)
            if head.status_code == 200:
                return digest
            path = self._path(repository, f"blobs/uploads/?digest={digest}")
            headers = {"Content-Type": "application/octet-stream"}
            response = self._request("POST", path, what=what, headers=headers, content=data)
            self._raise_for_status(response, what)
            if response.status_code == 202:
                location = _upload_location(
                    response.headers.get("location", ""), self.registry.host, what
                )
                joiner = "&" if "?" in location else "?"
                response = self._request(
                    "PUT",
                    f"{location}{joiner}digest={digest}",
                    what=what,
                    headers=headers,
                    content=data,
                )
                self._raise_for_status(response, what)
            return digest

        return call_with_retry(once, what=f"{self._log_prefix}upload of {what}", policy=self._retry)

    def blob_mount(self, repository: str, digest: str, source: str) -> bool:
        """Ask the registry to mount blob ``digest`` of repository ``source`` into
        ``repository`` (``POST .../blobs/uploads/?mount=&from=``): True when it did (201).
        False when it declined (202: it opened an upload instead, which is cancelled here) or
        answered anything else; a failure raises. Never retried: whoever asked uploads the blob
        as usual when it is not mounted."""
        query = urlencode({"mount": digest, "from": self.registry.repository_path(source)})
        path = self._path(repository, f"blobs/uploads/?{query}")
        what = f"mount of {digest} into {self._name(repository)}"
        response = self._request("POST", path, what=what)
        if response.status_code == 201:
            return True
        if response.status_code == 202:
            self._cancel_upload(response.headers.get("location", ""), what)
            return False
        self._raise_for_status(response, what)
        return False

    def _cancel_upload(self, location: str, what: str) -> None:
        """DELETE an upload the registry opened, at its ``Location`` - on this registry only."""
        try:
            path = _upload_location(location, self.registry.host, what)
        except RegistryError:
            return
        with contextlib.suppress(RegistryError, RegistryUnavailable):
            self._request("DELETE", path, what=f"cancelling the upload after the {what}")

    # -- blob uploads ------------------------------------------------------------------------

    def upload_host(self, repository: str) -> str:
        """The host a blob upload to ``repository`` goes to: a session is started (``POST``),
        its ``Location`` read, and the session cancelled. skopeo sends the registry's
        credentials to whatever host that names."""
        path = self._path(repository, "blobs/uploads/")
        what = f"{self._name(repository)} blob upload"

        def once() -> str:
            response = self._request("POST", path, what=what)
            self._raise_for_status(response, what)
            location = response.headers.get("location", "")
            try:
                url = httpx.URL(self._base() + path).join(location)
            except httpx.InvalidURL:
                raise RegistryError(f"{what}: the upload Location is not a URL") from None
            netloc = _netloc(url)
            if netloc == self.registry.host:
                self._request("DELETE", url.raw_path.decode("ascii"), what=what)
            return netloc

        return call_with_retry(once, what=f"{self._log_prefix}check of {what}", policy=self._retry)

    # -- tags --------------------------------------------------------------------------------

    def tags_list(self, repository: str, *, page_size: int = _TAGS_PAGE) -> list[str]:
        """Every tag of ``repository``, following ``Link: rel="next"`` pages.

        A repository the registry does not know (``404 NAME_UNKNOWN``) has no tags.
        """
        path: str | None = self._path(repository, f"tags/list?n={page_size}")
        tags: list[str] = []
        for _page in range(_MAX_TAG_PAGES):
            if path is None:
                return tags
            listed, path = self._tags_page(repository, path)
            tags += listed
        raise RegistryError(f"{self._name(repository)}: more than {_MAX_TAG_PAGES} tag pages")

    def _tags_page(self, repository: str, path: str) -> tuple[list[str], str | None]:
        what = f"{self._name(repository)} tag list"

        def once() -> tuple[list[str], str | None]:
            response = self._request("GET", path, what=what)
            if response.status_code == 404 and _error_codes(response) == {"NAME_UNKNOWN"}:
                return [], None
            self._raise_for_status(response, what)
            try:
                listed = json.loads(response.content).get("tags") or []
            except (ValueError, AttributeError):
                raise RegistryError(f"{what}: not a JSON tag list") from None
            if not isinstance(listed, list) or not all(isinstance(t, str) for t in listed):
                raise RegistryError(f"{what}: not a JSON tag list")
            return listed, _next_page(response, self.registry.host, self._path(repository, ""))

        return call_with_retry(once, what=f"{self._log_prefix}read of {what}", policy=self._retry)

    # -- plumbing ----------------------------------------------------------------------------

    def _name(self, repository: str) -> str:
        return f"{self.registry.host}/{self.registry.repository_path(repository)}"

    def _path(self, repository: str, rest: str) -> str:
        return f"/v2/{self.registry.repository_path(repository)}/{rest}"

    def _base(self) -> str:
        """``scheme://host``; with tls_verify off, HTTPS is tried first, then plain HTTP."""
        if self._scheme is None:
            try:
                with request_limits(self._deadline, max_bytes=MAX_API_ANSWER_BYTES):
                    self._client.get(f"https://{self.registry.host}/v2/")
                self._scheme = "https"
            except httpx.ConnectError as error:
                if isinstance(error.__cause__, ssl.SSLError) or "SSL" in str(error):
                    self._scheme = "http"
                else:
                    raise RegistryUnavailable(
                        f"registry {self.registry.host} unreachable: {one_line(error)}"
                    ) from None
            except tuple(_UNUSABLE) as error:
                raise _unusable(error, f"registry {self.registry.url}") from None
            except httpx.TransportError as error:
                raise RegistryUnavailable(
                    f"registry {self.registry.host} unreachable: {one_line(error)}"
                ) from None
        return f"{self._scheme}://{self.registry.host}"

    def _request(
        self,
        method: str,
        path: str,
        *,
        what: str,
        headers: dict[str, str] | None = None,
        content: bytes | None = None,
        follow_redirects: bool = False,
    ) -> httpx.Response:
        url = self._base() + path
        with request_limits(self._deadline, max_bytes=MAX_API_ANSWER_BYTES) as limits:
            try:
                return self._client.request(
                    method, url, headers=headers, content=content, follow_redirects=follow_redirects
                )
            except httpx.TimeoutException:
                if limits.expired:
                    raise RegistryUnavailable(
                        f"{what}: registry gave no complete answer within the "
                        f"{self._deadline:g} s http_deadline"
                    ) from None
                raise RegistryUnavailable(f"{what}: registry timed out") from None
            except tuple(_UNUSABLE) as error:
                raise _unusable(error, what) from None
            except httpx.TransportError as error:
                if limits.too_large:
                    raise RegistryError(
                        f"{what}: registry answer larger than {MAX_API_ANSWER_BYTES} bytes"
                    ) from None
                raise RegistryUnavailable(
                    f"{what}: registry {self.registry.host} unreachable: {one_line(error)}"
                ) from None

    @staticmethod
    def _raise_for_status(response: httpx.Response, what: str) -> None:
        status = response.status_code
        if 200 <= status < 300:
            return
        codes = ", ".join(sorted(_error_codes(response))) or "no error code"
        detail = f"{what}: HTTP {status} ({codes})"
        if transient_status(status):
            raise RegistryUnavailable(
                detail, retry_after=retry_after_seconds(response.headers.get("retry-after"))
            )
        if status in (401, 403):
            raise RegistryError(f"{detail}: not authorized")
        raise RegistryError(detail)


class _ChildrenUnknown(RegistryError):
    """An index PUT refused for children the registry may not have indexed yet."""


def _pause(seconds: float) -> None:
    """Sleep ``seconds``, or less when the process is asked to stop."""
    deadline = time.monotonic() + seconds
    while not shutdown.requested() and (left := deadline - time.monotonic()) > 0:
        time.sleep(min(left, 0.1))


def _codes(response: httpx.Response) -> str:
    return ", ".join(sorted(_error_codes(response))) or "no error code"


def _error_codes(response: httpx.Response) -> set[str]:
    try:
        document = json.loads(response.content or b"{}")
        return {str(error["code"]) for error in document.get("errors", [])}
    except (ValueError, TypeError, KeyError, AttributeError):
        return set()


def _unusable(error: Exception, what: str) -> RegistryError:
    reason = next(text for kind, text in _UNUSABLE.items() if isinstance(error, kind))
    return RegistryError(f"{what}: cannot talk to the registry: {reason}")


def _digest_header(response: httpx.Response, what: str) -> str | None:
    """The ``Docker-Content-Digest`` header, if sent: a sha256 digest, or a RegistryError."""
    header: str = response.headers.get("docker-content-digest", "")
    if not header:
        return None
    if not _DIGEST.fullmatch(header):
        raise RegistryError(f"{what}: the registry's Docker-Content-Digest is not a sha256 digest")
    return header


def _netloc(url: httpx.URL) -> str:
    """``host[:port]`` of ``url``, as the registry's ``host`` setting spells it."""
    return url.host if url.port is None else f"{url.host}:{url.port}"


def _elsewhere(url: httpx.URL, host: str) -> bool:
    """Whether ``url`` (a Location or Link the registry sent) leaves the registry at ``host``:
    absolute, and another scheme than HTTP(S) or another host."""
    return url.is_absolute_url and (url.scheme not in ("http", "https") or _netloc(url) != host)


def _upload_location(location: str, host: str, what: str) -> str:
    """The path (and query) of an upload session's ``Location``, on the same registry."""
    try:
        url = httpx.URL(location)
    except httpx.InvalidURL:
        raise RegistryError(f"{what}: the upload Location is not a URL") from None
    if _elsewhere(url, host):
        raise RegistryError(f"{what}: the upload Location points at another host")
    if not url.raw_path.startswith(b"/v2/"):
        raise RegistryError(f"{what}: the upload Location is not on the registry API")
    return url.raw_path.decode("ascii")


def _next_page(response: httpx.Response, host: str, repository_path: str) -> str | None:
    """The path of the next tag-list page from a ``Link`` header.

    Only the same registry and the same repository's tag list (``repository_path`` is
    ``/v2/<name>/``): another path would mix another list into this one.
    """
    link = response.links.get("next", {}).get("url")
    if not link:
        return None
    try:
        url = httpx.URL(link)
    except httpx.InvalidURL:
        raise RegistryError(f"tag list of {host}: the next-page Link is not a URL") from None
    if _elsewhere(url, host):
        raise RegistryError(f"tag list of {host}: next page points at another host")
    path, _, _query = url.raw_path.decode("ascii").partition("?")
    if path != f"{repository_path}tags/list":
        raise RegistryError(f"tag list of {host}: next page points outside the tag list")
    return url.raw_path.decode("ascii")
