"""The Bodhi adapter against a recorded releases answer served over HTTP on 127.0.0.1."""

from __future__ import annotations

import httpx
import pytest

from fedora_container_sync.compose import bodhi
from fedora_container_sync.config.settings import BodhiSettings, Releases, RetrySettings
from fedora_container_sync.errors import ReleaseLookupError, TransientError

pytestmark = pytest.mark.integration

RETRY = RetrySettings(attempts=3, initial_delay=0.01, max_delay=0.02)


def lookup(bodhi_server, **settings):
    with httpx.Client(timeout=10) as client:
        return bodhi.current_releases(
            client, BodhiSettings(url=bodhi_server.url, **settings), retry=RETRY
        )


def test_current_and_rawhide_from_the_recorded_answer(bodhi_server):
    assert lookup(bodhi_server) == Releases(latest=41, rawhide=43)
    (query,) = bodhi_server.requests
    assert sorted(query["state"]) == ["current", "frozen", "pending"]
    assert query["page"] == ["1"]


def test_pages_are_followed(bodhi_server):
    bodhi_server.max_rows = 4
    assert lookup(bodhi_server) == Releases(latest=41, rawhide=43)
    assert [q["page"] for q in bodhi_server.requests] == [["1"], ["2"], ["3"], ["4"]]


def test_answers_are_cached_for_a_while(bodhi_server):
    assert lookup(bodhi_server) == lookup(bodhi_server) == Releases(latest=41, rawhide=43)
    assert len(bodhi_server.requests) == 1
    lookup(bodhi_server, cache_seconds=0)
    assert len(bodhi_server.requests) == 2


def test_transient_errors_are_retried(bodhi_server):
    bodhi_server.statuses = [503, 429]
    assert lookup(bodhi_server) == Releases(latest=41, rawhide=43)
    assert len(bodhi_server.requests) == 3


def test_a_bodhi_that_stays_down_is_transient(bodhi_server):
    bodhi_server.statuses = [502] * 3
    with pytest.raises(TransientError, match="HTTP 502"):
        lookup(bodhi_server)


def test_a_wrong_url_is_permanent(bodhi_server):
    with httpx.Client(timeout=10) as client, pytest.raises(ReleaseLookupError, match="HTTP 404"):
        settings = BodhiSettings(url=bodhi_server.url + "/nothing-here")
        bodhi.current_releases(client, settings, retry=RETRY)


def test_an_answer_without_releases_is_permanent(bodhi_server):
    bodhi_server.releases = [r for r in bodhi_server.releases if r["state"] != "current"]
    with pytest.raises(ReleaseLookupError, match="lists no current Fedora release"):
        lookup(bodhi_server)
