"""Registries as they answer in production: quay.io (support.quay, quay's own bytes in front of
the real docker-registry) and Nexus's index PUT seconds after its children.

* The first publish of a new repository: quay answers every read ``404 NAME_UNKNOWN`` (certain
  absence), skopeo's push creates it; then a compose that lacks an arch is held, one of its
  per-arch tags deleted within quay's time-machine window (``404 TAG_EXPIRED``) is absent and
  pushed; then carry-forward carries the missing arch.
* Nexus: an index PUT answered ``400 BLOB_UNKNOWN`` is tried again shortly and lands; one that
  keeps being refused fails closed after the bound.
* An anonymous ``audit`` of quay: its ``/v2/`` challenge has no scope and it refuses a token
  without one; that is no "credentials refused" when none were sent.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from fedora_container_sync.oci.manifest import ARCH, COMPOSE_ID
from support.harness import Harness
from support.proxy import Fault, FaultProxy, ProxyRequest
from support.quay import Quay

pytestmark = pytest.mark.integration

TOOLBOX = "fedora-toolbox"
OLD = "Fedora-41-20241025.0"
NEW = "Fedora-41-20241026.0"
NEXUS_BLOB_UNKNOWN = (
    b'{"errors":[{"code":"BLOB_UNKNOWN","message":"blob unknown to registry",'
    b'"detail":"sha256:0000000000000000000000000000000000000000000000000000000000000000"}]}'
)


def through(harness: Harness, proxy: FaultProxy) -> None:
    """Configure the harness's registry at the proxy's address."""
    harness.registry_entries[harness.registries[0].host] = (
        f'url = "{proxy.host}/{harness.namespace}"\ntls_verify = false\n'
    )


@pytest.fixture
def quay(harness) -> Iterator[tuple[Quay, FaultProxy]]:
    registry = harness.registries[0]
    quay = Quay(upstream=registry.url)
    with FaultProxy(upstream=registry.url, rule=quay.rule) as proxy:
        quay.base = proxy.url
        through(harness, proxy)
        yield quay, proxy


def test_first_publish_held_and_carried_tags_through_quay(harness, quay):
    quay, _proxy = quay
    name = harness.repo(TOOLBOX)
    first = harness.replay(harness.compose(OLD, arches=("x86_64", "aarch64")))
    assert first.code == 0, first.err
    assert "NAME_UNKNOWN" in quay.codes()
    assert harness.arches(TOOLBOX, "41") == {"x86_64", "aarch64"}

    # NEW lost aarch64 and adds s390x, whose per-arch tag was deleted on quay a while ago.
    quay.expired.add((name, "41-s390x"))
    new = harness.compose(NEW, arches=("x86_64", "s390x"))
    held = harness.replay(new)
    assert held.code == 3, held.err  # held: the index keeps aarch64
    assert "TAG_EXPIRED" in quay.codes()
    assert harness.index(TOOLBOX, "41")["annotations"][COMPOSE_ID] == OLD
    assert harness.digest(TOOLBOX, "41-s390x") is not None

    harness.extra_config = 'gate_policy = "carry-forward"\n'
    carried = harness.replay(new)
    assert carried.code == 0, carried.err
    index = harness.index(TOOLBOX, "41")
    assert index["annotations"][COMPOSE_ID] == NEW
    composes = {e["annotations"][ARCH]: e["annotations"][COMPOSE_ID] for e in index["manifests"]}
    assert composes == {"x86_64": NEW, "s390x": NEW, "aarch64": OLD}


def index_put(request: ProxyRequest, namespace: str) -> bool:
    path = request.path.split("?", 1)[0]
    return request.method == "PUT" and path == f"/v2/{namespace}/{TOOLBOX}/manifests/41"


def test_an_index_put_seconds_after_its_children_is_tried_again(harness):
    registry = harness.registries[0]
    refusals = 0

    def nexus(request: ProxyRequest) -> Fault | None:
        nonlocal refusals
        if index_put(request, harness.namespace) and refusals < 2:
            refusals += 1
            return Fault.reply(400, {"Content-Type": "application/json"}, NEXUS_BLOB_UNKNOWN)
        return None

    with FaultProxy(upstream=registry.url, rule=nexus) as proxy:
        through(harness, proxy)
        result = harness.replay(harness.compose(OLD, arches=("x86_64",)))
    assert result.code == 0, result.err
    assert refusals == 2
    assert harness.arches(TOOLBOX, "41") == {"x86_64"}


def test_an_index_put_refused_for_good_fails_closed_after_the_bound(harness):
    registry = harness.registries[0]

    def nexus(request: ProxyRequest) -> Fault | None:
        if index_put(request, harness.namespace):
            return Fault.reply(400, {"Content-Type": "application/json"}, NEXUS_BLOB_UNKNOWN)
        return None

    with FaultProxy(upstream=registry.url, rule=nexus) as proxy:
        through(harness, proxy)
        result = harness.replay(harness.compose(OLD, arches=("x86_64",)))
        puts = [r for r in proxy.faults() if r.method == "PUT"]
    assert result.code == 1
    assert "HTTP 400 (BLOB_UNKNOWN): the registry does not know its children" in result.err
    assert len(puts) == 4  # the first try and CHILDREN_SETTLE_PAUSES' three
    assert harness.digest(TOOLBOX, "41") is None


def test_an_anonymous_audit_of_quay_is_no_credentials_refused(harness):
    assert harness.replay(harness.compose(OLD, arches=("x86_64",))).code == 0
    registry = harness.registries[0]
    quay = Quay(upstream=registry.url, anonymous_ping=True)
    with FaultProxy(upstream=registry.url, rule=quay.rule) as proxy:
        quay.base = proxy.url
        through(harness, proxy)
        result = harness.run("audit", "--config", str(harness.config()))
    assert "credentials refused" not in result.err + result.out
    assert result.code == 0, result.err
    # quay's scopeless challenge was met without asking it for a token it refuses.
    assert ("GET", "/v2/", 401, "") in quay.answered
    assert not [path for _m, path, status, _c in quay.answered if status == 401 and "auth" in path]


def test_first_publish_by_a_creator_robot(harness, monkeypatch):
    """quay's creator-role robot may not read a repository that does not exist yet (401 with
    a pull challenge, even with a fresh token); the push-scope token creates it."""
    registry = harness.registries[0]
    quay = Quay(upstream=registry.url, anonymous_ping=True, robot=("org+creator", "s3cret"))
    with FaultProxy(upstream=registry.url, rule=quay.rule) as proxy:
        quay.base = proxy.url
        harness.registry_entries[registry.host] = (
            f'url = "{proxy.host}/{harness.namespace}"\ntls_verify = false\n'
            'credential_prefix = "QUAY_"\n'
        )
        monkeypatch.setenv("QUAY_USER", "org+creator")
        monkeypatch.setenv("QUAY_PASSWORD", "s3cret")
        dry = harness.replay(harness.compose(OLD, arches=("x86_64",)), args=["--dry-run"])
        assert quay.created == set()  # a dry run creates nothing ...
        assert dry.code == 1 and "HTTP 401 (UNAUTHORIZED)" in dry.err  # ... and cannot read
        result = harness.replay(harness.compose(OLD, arches=("x86_64",)))
    assert result.code == 0, result.err
    assert quay.created == {harness.repo(TOOLBOX)}
    refused = [path for _m, path, status, code in quay.answered if code == "UNAUTHORIZED"]
    assert any("/manifests/41" in path for path in refused)
    assert harness.arches(TOOLBOX, "41") == {"x86_64"}
    assert "s3cret" not in result.err + result.out
