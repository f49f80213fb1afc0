"""The tool's HTTP clients (compose host, Bodhi, registries: all built by ``new_client``) send
no credentials they were not configured with: an operator's ``~/.netrc`` or ``$NETRC`` for the
very host asked lends them nothing (httpx reads netrc only through an explicit ``NetRCAuth``,
since 0.24; the project needs 0.27 or later). A real HTTP server on 127.0.0.1 records what
arrives."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar

import httpx
import pytest

from fedora_container_sync.net.httpclient import new_client, request_limits

pytestmark = pytest.mark.integration


class _Recording(BaseHTTPRequestHandler):
    seen: ClassVar[list[str | None]] = []

    def do_GET(self) -> None:
        type(self).seen.append(self.headers.get("Authorization"))
        self.send_response(401 if self.headers.get("Authorization") is None else 200)
        self.send_header("WWW-Authenticate", 'Basic realm="compose"')
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def server():
    _Recording.seen = []
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Recording)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()


def test_netrc_credentials_for_the_host_are_never_sent(server, tmp_path, monkeypatch):
    netrc = tmp_path / ".netrc"
    netrc.write_text("machine 127.0.0.1 login operator password hunter2\n")
    netrc.chmod(0o600)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("NETRC", str(netrc))
    url = f"http://127.0.0.1:{server.server_port}/compose/metadata/composeinfo.json"
    with new_client(timeout=5) as client, request_limits(10):
        assert client.get(url).status_code == 401
    assert _Recording.seen == [None]
    # The check can fail: a client that reads the netrc does send them.
    with httpx.Client(auth=httpx.NetRCAuth(str(netrc))) as reading:
        assert reading.get(url).status_code == 200
    assert _Recording.seen[-1] is not None and _Recording.seen[-1].startswith("Basic ")
