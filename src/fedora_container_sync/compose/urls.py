"""Where a URL lands: judged as the server that answers it will read it. Pure.

A URL's text is not what a server serves. The client normalizes it first (httpx resolves
``.``/``..`` segments and percent-encodes what it must), and the server then percent-decodes
the path and resolves dot segments again: ``<allowed>/%2e%2e/elsewhere`` is ``/elsewhere`` to
Python's http.server and to nginx. Others go further: a proxy in front decodes once more
(``%252e``), Tomcat drops ``;`` parameters (``..;/``), Windows servers read ``\\`` as ``/``,
and some fold Unicode look-alikes (the fullwidth full stop, U+FF0E) into ASCII. So a path is
judged by the segments a server sees after decoding it once, and whatever could read
differently on another server is refused outright rather than guessed at: an encoded ``.``,
``/``, ``\\``, ``%`` or ``;``, a backslash, a ``;``, a control character, bytes that are not
UTF-8, an empty, ``.`` or ``..`` segment (also one that only looks like one after Unicode
normalization).

:class:`Place` is such a judged URL (scheme, host, port and decoded segments);
:meth:`Place.contains` is the one containment rule: the allowlist holds a location, a compose
holds its files.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from urllib.parse import urlsplit

DEFAULT_PORTS = {"http": 80, "https": 443}

#: Bytes that have no business being percent-encoded in a compose URL: encoded, they are dots
#: and separators that one server decodes and another does not (or decodes twice).
_NEVER_ENCODED = frozenset(b"./\\%;") | frozenset(range(0x20)) | {0x7F}
_ENCODED_NAMES = {ord("."): "'.'", ord("/"): "'/'", ord("\\"): "backslash", ord("%"): "'%'"}
#: Characters refused in a path's text: separators some servers honour, and the URL's own
#: delimiters, which have no place inside a path.
_REFUSED_TEXT = {"\\": "a backslash", ";": "a ';' (path parameter)", "?": "a '?'", "#": "a '#'"}
_HEX = frozenset(b"0123456789abcdefABCDEF")
_HOST = re.compile(r"^(?:[a-z0-9](?:[a-z0-9-]*[a-z0-9])?)(?:\.[a-z0-9](?:[a-z0-9-]*[a-z0-9])?)*$")
_NETLOC = re.compile(r"^(?P<host>\[[0-9a-f:.]+\]|[^:\[\]]+)(?::(?P<port>[1-9][0-9]{0,4}))?$")


class URLRefused(ValueError):
    """A URL or path this module will not vouch for; ``str()`` says why, after "URL ..."."""


@dataclass(frozen=True)
class Place:
    """A URL as it lands: lower-case scheme and host, the port connected to, and the path
    segments the server sees once it has decoded them."""

    scheme: str
    host: str
    port: int
    segments: tuple[str, ...]

    def contains(self, other: Place) -> bool:
        """True when ``other`` is this place or lies below it (on a segment boundary)."""
        return (self.scheme, self.host, self.port) == (
            other.scheme,
            other.host,
            other.port,
        ) and other.segments[: len(self.segments)] == self.segments


def path_segments(path: str) -> tuple[str, ...]:
    """The segments a server sees in ``path`` (the path of a URL, or a relative path).

    Non-ASCII characters stand for themselves (a client sends them UTF-8 percent-encoded and
    the server decodes them back). One trailing ``/`` is allowed. Raises :class:`URLRefused`.
    """
    for char, name in _REFUSED_TEXT.items():
        if char in path:
            raise URLRefused(f"has {name}")
    raw = path.encode("utf-8", errors="surrogatepass")
    decoded = bytearray()
    index = 0
    while index < len(raw):
        byte = raw[index]
        if byte == 0x25:  # '%'
            escape = raw[index + 1 : index + 3]
            if len(escape) < 2 or not set(escape) <= _HEX:
                raise URLRefused("has a '%' that is not a percent-escape")
            value = int(escape, 16)
            if value in _NEVER_ENCODED:
                what = _ENCODED_NAMES.get(value, "control character" if value != 0x3B else "';'")
                raise URLRefused(f"has an encoded {what} (%{escape.decode()})")
            decoded.append(value)
            index += 3
            continue
        if byte < 0x20 or byte == 0x7F:
            raise URLRefused("has a control character")
        decoded.append(byte)
        index += 1
    try:
        text = decoded.decode("utf-8")
    except UnicodeDecodeError:
        raise URLRefused("is not UTF-8 once percent-decoded") from None
    segments = text.split("/")
    if segments[0] == "":
        segments = segments[1:]
    if segments and segments[-1] == "":
        segments.pop()
    for segment in segments:
        folded = unicodedata.normalize("NFKC", segment)
        if segment in ("", ".", ".."):
            kind = f"a {segment!r}" if segment else "an empty"
            raise URLRefused(f"is not a normalized path ({kind} segment)")
        if folded.strip(". ") == "" or "/" in folded or "\\" in folded:
            raise URLRefused(f"is not a normalized path (segment {segment!r})")
        if folded != segment and any(ord(char) > 0x7F for char in segment):
            # Fullwidth letters and the like: equal to ASCII on some servers, not on others.
            raise URLRefused(f"has a segment that Unicode normalization changes ({segment!r})")
    return tuple(segments)


def parse_url(text: str) -> Place:
    """A location or allowlist entry (``http(s)://host[:port]/path``), judged strictly.

    Only printable ASCII; no user info, query or fragment; a lower-cased host name of letters,
    digits, dots and dashes (or an IP literal) without a trailing dot; a port without leading
    zeros. Raises :class:`URLRefused`.
    """
    if any(not 0x21 <= ord(char) <= 0x7E for char in text):
        raise URLRefused("is not a plain ASCII URL (spaces, control or non-ASCII characters)")
    if "\\" in text:
        raise URLRefused("has a backslash")
    parts = urlsplit(text)
    if parts.scheme not in DEFAULT_PORTS:
        raise URLRefused("is not an http(s) URL")
    if "@" in parts.netloc:
        raise URLRefused("carries credentials")
    if parts.query or parts.fragment or "?" in text or "#" in text:
        raise URLRefused("carries a query or a fragment")
    match = _NETLOC.match(parts.netloc.lower())
    if match is None:
        raise URLRefused("has no valid host[:port]")
    host = match.group("host")
    if not host.startswith("[") and not _HOST.match(host):
        raise URLRefused(f"has an unusual host name {host!r}")
    port = int(match.group("port")) if match.group("port") else DEFAULT_PORTS[parts.scheme]
    if not 0 < port < 65536:
        raise URLRefused("has a port out of range")
    return Place(parts.scheme, host.strip("[]"), port, path_segments(parts.path or "/"))


def request_place(scheme: str, host: str, port: int | None, path: str) -> Place:
    """Where a request goes, from the parts an HTTP client sends (its URL after the client's
    own normalization: ``httpx.URL``'s ``scheme``, ``host``, ``port`` and ``raw_path`` without
    the query). Raises :class:`URLRefused`."""
    scheme = scheme.lower()
    if scheme not in DEFAULT_PORTS:
        raise URLRefused("is not an http(s) URL")
    actual_port = DEFAULT_PORTS[scheme] if port is None else port
    return Place(scheme, host.lower(), actual_port, path_segments(path or "/"))
