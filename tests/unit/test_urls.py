"""URLs judged as servers read them: what httpx sends, decoded and normalized the way Python's
http.server, nginx, a decoding proxy, Tomcat and Windows servers do (the models below are
written apart from the code under test; http.server's is its own ``translate_path``)."""

from __future__ import annotations

import posixpath
import unicodedata
from http.server import SimpleHTTPRequestHandler
from urllib.parse import unquote

import httpx
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from fedora_container_sync.compose.message import check_location
from fedora_container_sync.compose.selection import check_relative_path
from fedora_container_sync.compose.urls import Place, URLRefused, parse_url, path_segments
from fedora_container_sync.errors import ComposeError, MessageError

HOST = "kojipkgs.example.org"
ALLOW = f"https://{HOST}/compose/"
COMPOSE = f"https://{HOST}/compose/41/Fedora-41-20241025.0/compose"


# --- how servers read a request path -----------------------------------------------------------


def _resolve(segments: list[str]) -> list[str]:
    """RFC 3986 dot-segment removal over already split segments; empty ones merged (nginx)."""
    out: list[str] = []
    for segment in segments:
        if segment in ("", "."):
            continue
        if segment == "..":
            if out:
                out.pop()
            continue
        out.append(segment)
    return out


def _python_http_server(path: str) -> list[str]:
    handler = SimpleHTTPRequestHandler.__new__(SimpleHTTPRequestHandler)
    handler.directory = "/srv"
    served = handler.translate_path(path)
    relative = posixpath.relpath(served, "/srv")
    return [] if relative == "." else relative.split("/")


def server_views(raw_path: str) -> dict[str, list[str]]:
    """The directories several kinds of server resolve a request path (as sent) to."""
    once = unquote(raw_path, errors="surrogateescape")
    return {
        "http.server": _python_http_server(raw_path),
        "nginx": _resolve(once.split("/")),
        "decoding proxy": _resolve(unquote(once, errors="surrogateescape").split("/")),
        "tomcat": _resolve([unquote(s.split(";", 1)[0]) for s in raw_path.split("/")]),
        "windows": _resolve(
            [
                s.rstrip(". ") if s.strip(". ") else s.replace(" ", "")
                for s in unicodedata.normalize("NFKC", once).replace("\\", "/").split("/")
            ]
        ),
    }


def sent_path(url: str) -> str:
    """The path httpx puts on the request line for ``url``."""
    return httpx.URL(url).raw_path.partition(b"?")[0].decode("ascii")


def test_the_server_models_see_what_the_issue_describes():
    views = server_views(sent_path(f"https://{HOST}/compose/%2e%2e/elsewhere/x"))
    assert views["http.server"] == views["nginx"] == ["elsewhere", "x"]
    assert server_views("/compose/%252e%252e/x")["decoding proxy"] == ["x"]
    assert server_views("/compose/..;/x")["tomcat"] == ["x"]
    assert server_views("/compose/..\\x")["windows"] == ["x"]
    assert server_views("/compose/\uff0e\uff0e/x")["windows"] == ["x"]


# --- the rule, by example ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "segments"),
    [
        ("/", ()),
        ("", ()),
        ("/compose/41/", ("compose", "41")),
        ("/a/%41b", ("a", "Ab")),
        ("/caf%C3%A9/x", ("café", "x")),
        ("/café/x", ("café", "x")),
        ("/a/x.tar.xz", ("a", "x.tar.xz")),
        ("/a/x..y", ("a", "x..y")),
        ("/a/%20b", ("a", " b")),
    ],
)
def test_path_segments(path, segments):
    assert path_segments(path) == segments


@pytest.mark.parametrize(
    ("path", "reason"),
    [
        ("/a/%2e%2e/b", "encoded '.'"),
        ("/a/%2E%2E/b", "encoded '.'"),
        ("/a/.%2e/b", "encoded '.'"),
        ("/a/%2e/b", "encoded '.'"),
        ("/a/%2fb", "encoded '/'"),
        ("/a/%2Fb", "encoded '/'"),
        ("/a/%5cb", "encoded backslash"),
        ("/a/%252e%252e/b", "encoded '%'"),
        ("/a/%00", "encoded control character"),
        ("/a/%0a", "encoded control character"),
        ("/a/%3b/b", "encoded ';'"),
        ("/a/%zz", "not a percent-escape"),
        ("/a/%2", "not a percent-escape"),
        ("/a/%c0%ae%c0%ae/b", "not UTF-8"),
        ("/a/%ff", "not UTF-8"),
        ("/a/../b", "'..' segment"),
        ("/a/./b", "'.' segment"),
        ("/a//b", "empty segment"),
        ("/a/..;/b", "';'"),
        ("/a;x=1/b", "';'"),
        ("/a\\..\\b", "backslash"),
        ("/a/b?c", "'?'"),
        ("/a/b#c", "'#'"),
        ("/a/\x00", "control character"),
        ("/a/\x7f", "control character"),
        ("/a/.../b", "segment '...'"),
        ("/a/.. /b", "segment '.. '"),
        ("/a/\uff0e\uff0e/b", "segment"),
        ("/a/%EF%BC%8E%EF%BC%8E/b", "segment"),
        ("/a/\uff0fb", "segment"),
        ("/\uff43ompose/b", "Unicode normalization"),
    ],
)
def test_path_segments_refused(path, reason):
    with pytest.raises(URLRefused, match=reason):
        path_segments(path)


@pytest.mark.parametrize(
    ("url", "place"),
    [
        (f"https://{HOST}/compose/", Place("https", HOST, 443, ("compose",))),
        (f"HTTPS://{HOST.upper()}/compose", Place("https", HOST, 443, ("compose",))),
        (f"https://{HOST}:443/compose", Place("https", HOST, 443, ("compose",))),
        ("http://127.0.0.1:8080/a/", Place("http", "127.0.0.1", 8080, ("a",))),
        ("http://[::1]:8080/a", Place("http", "::1", 8080, ("a",))),
        (f"https://{HOST}", Place("https", HOST, 443, ())),
    ],
)
def test_parse_url(url, place):
    assert parse_url(url) == place


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        (f"ftp://{HOST}/compose", "not an http"),
        (f"https://user@{HOST}/compose", "credentials"),
        (f"https://{HOST}\\@evil.example/compose", "backslash"),
        (f"https://{HOST}/compose?x", "query"),
        (f"https://{HOST}/compose?", "query"),
        (f"https://{HOST}/compose#", "fragment"),
        (f"https://{HOST}:0443/compose", "host"),
        (f"https://{HOST}:/compose", "host"),
        (f"https://{HOST}:99999/compose", "port out of range"),
        (f"https://{HOST}./compose", "unusual host"),
        (f"https://{HOST.replace('k', chr(0xFF4B))}/compose", "ASCII"),
        ("https://xn--kji-gna..example/compose", "unusual host"),
        (f"https://{HOST}/com pose", "ASCII"),
        (f"https://{HOST}/com\tpose", "ASCII"),
        (f"https://{HOST}/compose/%2e%2e/x", "encoded '.'"),
    ],
)
def test_parse_url_refused(url, reason):
    with pytest.raises(URLRefused, match=reason):
        parse_url(url)


def test_containment_is_on_segment_boundaries():
    allowed = parse_url(ALLOW)
    assert allowed.contains(parse_url(f"https://{HOST}/compose"))
    assert allowed.contains(parse_url(f"https://{HOST}/compose/41/x"))
    assert not allowed.contains(parse_url(f"https://{HOST}/compose-evil/x"))
    assert not allowed.contains(parse_url(f"https://{HOST}/"))
    assert not allowed.contains(parse_url(f"http://{HOST}/compose/x"))
    assert not allowed.contains(parse_url(f"https://{HOST}:8443/compose/x"))
    assert not allowed.contains(parse_url(f"https://{HOST}.evil.example/compose/x"))


# --- properties: anything accepted lands where it should, on every server ----------------------

#: Pieces a hostile location or path is made of: dots, separators and escapes of each kind.
PIECES = [
    "/", "a", "41", "compose", "..", ".", "...", ";", ";x=1", "..;", "\\", "?", "#", "%", " ",
    "%2e", "%2E", "%252e", "%25", "%2f", "%2F", "%5c", "%5C", "%3b", "%00", "%0a", "%20", "%41",
    "%zz", "%c0%ae", "%ff", "%ef%bc%8e", "\uff0e", "\uff0f", "\uff43", "\u00e9", "~", "//",
]  # fmt: skip
hostile = st.lists(st.sampled_from(PIECES) | st.text(max_size=2), max_size=14).map("".join)


def _under(view: list[str], prefix: tuple[str, ...]) -> bool:
    return tuple(view[: len(prefix)]) == prefix


@settings(max_examples=600, suppress_health_check=[HealthCheck.too_slow])
@given(suffix=hostile)
@example(suffix="%2e%2e/elsewhere/compose")
@example(suffix="%252e%252e/elsewhere")
@example(suffix="..;/elsewhere")
@example(suffix="41/x")
def test_an_accepted_location_lands_under_the_allowlist_on_every_server(suffix):
    location = ALLOW + suffix
    try:
        check_location(location, [ALLOW], compose_id="c")
    except MessageError:
        return
    url = httpx.URL(location)
    assert (url.scheme, url.raw_host.decode(), url.port) == ("https", HOST, None)
    for server, view in server_views(sent_path(location)).items():
        assert _under(view, ("compose",)), (server, view)


authority = st.lists(
    st.sampled_from(
        [HOST, HOST.upper(), ".", ":", "443", "0443", "@", "\\", "evil.example", "\uff4b", "%2e"]
    ),
    min_size=1,
    max_size=5,
).map("".join)


@settings(max_examples=300)
@given(netloc=authority)
@example(netloc=f"{HOST}\\@evil.example")
@example(netloc=f"evil.example\\@{HOST}")
def test_an_accepted_location_goes_to_the_allowlisted_host(netloc):
    location = f"https://{netloc}/compose/x"
    try:
        check_location(location, [ALLOW], compose_id="c")
    except MessageError:
        return
    url = httpx.URL(location)
    assert (url.raw_host.decode(), url.port, url.userinfo) == (HOST, None, b"")


@settings(max_examples=600, suppress_health_check=[HealthCheck.too_slow])
@given(path=hostile)
@example(path="Container/%2e%2e/%2e%2e/%2e%2e/elsewhere/x.tar")
@example(path="Container/x86_64/images/x.tar.xz")
def test_an_accepted_image_path_stays_inside_the_compose_on_every_server(path):
    try:
        check_relative_path(path, where="x")
    except ComposeError:
        return
    compose = tuple(COMPOSE.split("/")[3:])
    for server, view in server_views(sent_path(f"{COMPOSE}/{path}")).items():
        assert _under(view, compose) and len(view) > len(compose), (server, view)


def test_plain_locations_and_paths_are_accepted():
    """The properties above are not vacuous: ordinary input passes."""
    for suffix in ("41/Fedora-41-20241025.0/compose", "a%41/x", "caf%C3%A9", ""):
        check_location(ALLOW + suffix, [ALLOW], compose_id="c")
    for path in ("Container/x86_64/images/x.tar.xz", "a/b%41", "caf\u00e9/x"):
        check_relative_path(path, where="x")
