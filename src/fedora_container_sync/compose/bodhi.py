"""Bodhi's releases API: which release is current stable (``latest``) and Rawhide's number.

Asked only when ``[releases]`` lacks a number a compose needs. ``GET <url>/releases/`` with
the non-archived states, page by page; the answer is interpreted by
:func:`~fedora_container_sync.gate.tags.releases_from_bodhi` and cached per URL for
``bodhi.cache_seconds`` (one lookup per 20 minutes by default, however many composes arrive).
Network failures, timeouts (also the ``http_deadline`` of one request), 429 and 5xx are
transient (retried, then the message is requeued); any other answer that is not a usable
release list (also one larger than 16 MiB) is permanent.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import httpx

from ..config.settings import DEFAULT_HTTP_DEADLINE, BodhiSettings, Releases, RetrySettings
from ..errors import ReleaseLookupError, TransientError, one_line
from ..gate.tags import releases_from_bodhi
from ..net.httpclient import MAX_API_ANSWER_BYTES, request_limits
from ..net.retry import call_with_retry

_log = logging.getLogger(__name__)

_STATES = ("current", "pending", "frozen")
_ROWS_PER_PAGE = 100
_MAX_PAGES = 20

_cache: dict[str, tuple[float, Releases]] = {}
_cache_lock = threading.Lock()


def clear_cache() -> None:
    """Forget every cached answer (the next lookup asks Bodhi)."""
    with _cache_lock:
        _cache.clear()


def current_releases(
    client: httpx.Client,
    settings: BodhiSettings,
    *,
    retry: RetrySettings,
    deadline: float = DEFAULT_HTTP_DEADLINE,
) -> Releases:
    """The current stable release and Rawhide's number, from the cache or from Bodhi."""
    now = time.monotonic()
    with _cache_lock:
        cached = _cache.get(settings.url)
    if cached is not None and now - cached[0] < settings.cache_seconds:
        return cached[1]
    releases = call_with_retry(
        lambda: _fetch(client, settings.url, deadline),
        what=f"release lookup at {settings.url}",
        policy=retry,
    )
    with _cache_lock:
        _cache[settings.url] = (now, releases)
    _log.info(
        "Bodhi %s: current stable release %s, Rawhide %s",
        settings.url,
        releases.latest,
        releases.rawhide,
    )
    return releases


def _fetch(client: httpx.Client, base: str, deadline: float) -> Releases:
    url = f"{base}/releases/"
    found: list[Any] = []
    for page in range(1, _MAX_PAGES + 1):
        params = httpx.QueryParams(
            [*(("state", state) for state in _STATES), ("rows_per_page", _ROWS_PER_PAGE)]
        ).set("page", page)
        document = _get_json(client, url, params, deadline)
        releases, pages = document.get("releases"), document.get("pages")
        if not isinstance(releases, list) or not isinstance(pages, int):
            raise ReleaseLookupError(f"Bodhi {url}: answer has no releases list")
        found.extend(item for item in releases if isinstance(item, dict))
        if page >= pages:
            return releases_from_bodhi(found, source=f"Bodhi {url}")
    raise ReleaseLookupError(f"Bodhi {url}: more than {_MAX_PAGES} pages of releases")


def _get_json(
    client: httpx.Client, url: str, params: httpx.QueryParams, deadline: float
) -> dict[str, Any]:
    with request_limits(deadline, max_bytes=MAX_API_ANSWER_BYTES) as limits:
        try:
            response = client.get(url, params=params, headers={"Accept": "application/json"})
        except httpx.TimeoutException:
            if limits.expired:
                raise TransientError(
                    f"Bodhi {url}: no complete answer within the {deadline:g} s http_deadline"
                ) from None
            raise TransientError(f"Bodhi {url}: timed out") from None
        except httpx.DecodingError:
            raise ReleaseLookupError(
                f"Bodhi {url}: answer cannot be decoded (Content-Encoding stacked, unknown or "
                "corrupt)"
            ) from None
        except httpx.TransportError as error:
            if limits.too_large:
                raise ReleaseLookupError(
                    f"Bodhi {url}: answer larger than {MAX_API_ANSWER_BYTES} bytes"
                ) from None
            raise TransientError(f"Bodhi {url}: unreachable: {one_line(error)}") from None
    status = response.status_code
    if status == 429 or status >= 500:
        raise TransientError(f"Bodhi {url}: HTTP {status}")
    if status != 200:
        raise ReleaseLookupError(f"Bodhi {url}: HTTP {status}")
    try:
        document = response.json()
    except (ValueError, RecursionError):
        raise ReleaseLookupError(f"Bodhi {url}: answer is not JSON") from None
    if not isinstance(document, dict):
        raise ReleaseLookupError(f"Bodhi {url}: answer is not a JSON object")
    return document
