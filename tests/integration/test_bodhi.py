"""The Bodhi adapter against a recorded releases answer served over HTTP on 127.0.0.1."""

from __future__ import annotations

import httpx
import pytest

from fedora_container_sync.compose import bodhi
from fedora_container_sync.config.settings import BodhiSettings, Releases, RetrySettings
from fedora_container_sync.errors import ReleaseLookupError, TransientError
from support.bodhi import BodhiServer

pytestmark = pytest.mark.integration

RETRY = RetrySettings(attempts=3, initial_delay=0.01, max_delay=0.02)


@pytest.fixture
def server():
    bodhi.clear_cache()
    served = BodhiServer().start()
    yield served
    served.stop()
    bodhi.clear_cache()


def lookup(server, **settings):
    with httpx.Client(timeout=10) as client:
        return bodhi.current_releases(
            client, BodhiSettings(url=server.url, **settings), retry=RETRY
        )


def test_current_and_rawhide_from_the_recorded_answer(server):
    assert lookup(server) == Releases(latest=41, rawhide=43)
    (query,) = server.requests
    assert sorted(query["state"]) == ["current", "frozen", "pending"]
    assert query["page"] == ["1"]


def test_pages_are_followed(server):
    server.max_rows = 4
    assert lookup(server) == Releases(latest=41, rawhide=43)
    assert [q["page"] for q in server.requests] == [["1"], ["2"], ["3"], ["4"]]


def test_answers_are_cached_for_a_while(server):
    assert lookup(server) == lookup(server) == Releases(latest=41, rawhide=43)
    assert len(server.requests) == 1
    lookup(server, cache_seconds=0)
    assert len(server.requests) == 2


def test_transient_errors_are_retried(server):
    server.statuses = [503, 429]
    assert lookup(server) == Releases(latest=41, rawhide=43)
    assert len(server.requests) == 3


def test_a_bodhi_that_stays_down_is_transient(server):
    server.statuses = [502] * 3
    with pytest.raises(TransientError, match="HTTP 502"):
        lookup(server)


def test_a_wrong_url_is_permanent(server):
    with httpx.Client(timeout=10) as client, pytest.raises(ReleaseLookupError, match="HTTP 404"):
        settings = BodhiSettings(url=server.url + "/nothing-here")
        bodhi.current_releases(client, settings, retry=RETRY)


def test_an_answer_without_releases_is_permanent(server):
    server.releases = [r for r in server.releases if r["state"] != "current"]
    with pytest.raises(ReleaseLookupError, match="lists no current Fedora release"):
        lookup(server)
