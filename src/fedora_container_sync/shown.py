"""Text from outside, made safe to print or log: one redaction for URLs, one escaping for text.

Every line this project prints or logs may hold text it did not write: a compose id, a URL from
the configuration or a message, a registry's error code, a server's words in an exception.
:func:`shown` is what such text goes through, once, at the edge where it is written:

* :func:`redact` hides the secrets a URL may carry: the password of its user info, and the
  values of query parameters whose names say they hold one (``token``, ``sig``,
  ``X-Amz-Signature``, ``password``, ...);
* :func:`escape` makes control characters visible instead of acting on the terminal or the log:
  C0 and C1 controls (escape sequences, carriage returns, newlines that would forge a line),
  DEL, and the Unicode line separators and bidirectional overrides, each as ``\\xNN`` or
  ``\\uNNNN``.

:func:`.shown_logs.install` makes every log record's message go through :func:`shown`; a bus
message's body goes through :func:`redacted` (every string in it redacted; JSON escapes the
rest).
"""

from __future__ import annotations

import re
from typing import TypeVar
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

REDACTED = "***"
T = TypeVar("T")

#: Query parameter names that carry a secret (whole name, or one of its ``-``/``_`` parts);
#: ``_state`` is distribution's upload session, a capability to write the upload.
_SECRET_NAMES = re.compile(
    r"(?i)(^|[-_.])(token|access_token|id_token|refresh_token|sig|signature|secret|password|"
    r"passwd|pass|pwd|key|apikey|api_key|auth|authorization|credential|credentials|session|state|"
    r"x-amz-signature|x-amz-credential|x-amz-security-token|x-goog-signature)($|[-_.])"
)
#: A URL in free text: a scheme, ``://``, then anything up to white space or a quote.
_URL = re.compile(r"""[A-Za-z][A-Za-z0-9+.-]*://[^\s'"<>]+""")
#: What :func:`escape` makes visible.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069\ufeff]")


def redact_url(url: str) -> str:
    """``url`` with the password of its user info and secret-looking query values hidden."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return _URL.sub(lambda _m: f"<unparsable URL {REDACTED}>", url)
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, _, hostport = netloc.rpartition("@")
        user, colon, _password = userinfo.partition(":")
        netloc = f"{user}:{REDACTED}@{hostport}" if colon else f"{REDACTED}@{hostport}"
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        if any(_SECRET_NAMES.search(name) for name, _ in pairs):
            query = urlencode(
                [(n, REDACTED if _SECRET_NAMES.search(n) else v) for n, v in pairs], safe="*"
            )
    fragment = REDACTED if parts.fragment and "=" in parts.fragment else parts.fragment
    return urlunsplit((parts.scheme, netloc, parts.path, query, fragment))


def redact(text: str) -> str:
    """Every URL in ``text`` through :func:`redact_url`."""
    return _URL.sub(lambda match: redact_url(match.group(0)), text) if "://" in text else text


def redacted(value: T) -> T:
    """A JSON-like value (a bus message's body) with every string in it, keys included,
    through :func:`redact`."""
    if isinstance(value, str):
        return redact(value)  # type: ignore[return-value]
    if isinstance(value, dict):
        return {redacted(k): redacted(v) for k, v in value.items()}  # type: ignore[return-value]
    if isinstance(value, list | tuple):
        return type(value)(redacted(item) for item in value)
    return value


def escape(text: str) -> str:
    """``text`` with every control character visible (``\\x1b``, ``\\n``, ``\\u202e``)."""
    return _CONTROL.sub(_visible, text)


def _visible(match: re.Match[str]) -> str:
    code = ord(match.group(0))
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def shown(text: object) -> str:
    """Any text from outside, ready for a terminal or a log line: redacted, then escaped."""
    return escape(redact(str(text)))


def shown_lines(text: str) -> str:
    """Text of several lines this project laid out (a table), each line :func:`shown`."""
    return "\n".join(shown(line) for line in text.split("\n"))
