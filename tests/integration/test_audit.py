"""``audit`` against real registries filled by real publishes (and, for the carry-forward case,
an index PUT the way that policy writes it)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import threading
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar

import httpx
import jsonschema
import pika
import pytest

from fedora_container_sync.audit.report import DOCUMENT_SCHEMA, FINDING_SCHEMA
from fedora_container_sync.config.settings import RegistrySettings, RetrySettings
from fedora_container_sync.errors import RegistryError
from fedora_container_sync.oci.index import IndexEntry, build_index
from fedora_container_sync.oci.manifest import COMPOSE_ID, IMAGE_SHA256
from fedora_container_sync.registry.client import RegistryClient
from support.harness import ARCHES, Harness
from support.servers import OCI_INDEX, free_port

pytestmark = pytest.mark.integration

TOOLBOX = "fedora-toolbox"
OLD = "Fedora-41-20241025.0"
NEW = "Fedora-41-20241026.0"
BUILT = ("x86_64", "ppc64le", "s390x")  # NEW's arches: its aarch64 build failed


def audit(harness: Harness, *args: str):
    return harness.run("audit", "--config", str(harness.config()), *args)


def audit_json(harness: Harness, *args: str) -> tuple[int, dict]:
    result = audit(harness, "--json", *args)
    document = json.loads(result.out)
    jsonschema.validate(document, DOCUMENT_SCHEMA)
    assert document["exit_code"] == result.code
    return result.code, document


def kinds(document: dict) -> set[str]:
    return {finding["kind"] for finding in document["findings"]}


def request_lines(log: str) -> list[str]:
    return re.findall(r'"[A-Z]+ /v2/[^"]*"', log)


def test_held_index_after_a_compose_with_a_failed_arch(harness):
    assert harness.replay(harness.compose(OLD)).code == 0
    code, document = audit_json(harness)
    assert (code, document["findings"], document["result"]) == (0, [], "clean")

    held_run = harness.replay(harness.compose(NEW, arches=BUILT, status="FINISHED_INCOMPLETE"))
    assert held_run.code == 3, held_run.err

    code, document = audit_json(harness)
    assert code == 3
    assert kinds(document) == {"held"}
    findings = document["findings"]
    assert {(f["tag"], f["arch"]) for f in findings} == {
        (tag, arch) for tag in ("41", "latest") for arch in BUILT
    }
    registry = f"{harness.registries[0].host}/{harness.namespace}"
    for finding in findings:
        assert finding["registry"] == registry
        assert finding["repository"] == TOOLBOX
        assert finding["compose_id"] == OLD  # what the index still serves
        assert finding["newer_compose_id"] == NEW  # what the per-arch tag has
        assert finding["index_compose_id"] == OLD
        assert finding["since"] == "2024-10-25"
        assert finding["age_hours"] > 48
        assert finding["digest"] == harness.digest(TOOLBOX, finding["tag"])
        assert finding["severity"] == "warning"
    assert document["counts"] == {
        "missing": 0,
        "diverged": 0,
        "held": 6,
        "carried": 0,
        "unrecognized": 0,
        "unsigned": 0,
    }

    table = audit(harness)
    assert table.code == 3
    rows = [line for line in table.out.splitlines() if " held " in line]
    assert len(rows) == 6
    assert f"{registry}/{TOOLBOX}:41 " in rows[0]
    assert all(OLD in row and NEW in row for row in rows)
    assert table.out.splitlines()[-1].startswith("result: FINDINGS: 6 findings")


def test_missing_arch_in_the_index(harness):
    # The index was created with x86_64 and aarch64; the next compose added s390x but lost
    # aarch64, so the gate held the index and s390x never reached it.
    assert harness.replay(harness.compose(OLD, arches=("x86_64", "aarch64"))).code == 0
    assert harness.replay(harness.compose(NEW, arches=("x86_64", "s390x"))).code == 3
    assert harness.digest(TOOLBOX, "41-s390x") is not None

    code, document = audit_json(harness)
    assert code == 3
    found = {(f["kind"], f["tag"], f["arch"]) for f in document["findings"]}
    assert found == {
        ("missing", "41", "s390x"),
        ("missing", "latest", "s390x"),
        ("held", "41", "x86_64"),
        ("held", "latest", "x86_64"),
    }
    missing = next(f for f in document["findings"] if f["kind"] == "missing")
    assert missing["severity"] == "error"
    assert missing["compose_id"] is None
    assert missing["newer_compose_id"] == NEW
    assert missing["index_compose_id"] == OLD
    # Sorted by severity: both missing (error) findings come before the held ones.
    assert [f["kind"] for f in document["findings"]] == ["missing", "missing", "held", "held"]

    table = audit(harness).out.splitlines()
    assert table[1].split()[:2] == ["severity", "kind"]
    assert [line.split()[1] for line in table[2:6]] == ["missing", "missing", "held", "held"]
    assert (
        "41-s390x has Fedora-41-20241026.0; the index (Fedora-41-20241025.0) has no s390x"
        in (table[2])
    )


def carry_forward_index(harness: Harness, tag: str) -> None:
    """PUT the index the carry-forward policy writes: NEW's builds, aarch64 kept from OLD."""
    registry = harness.registries[0]
    entries = []
    for arch in ARCHES:
        found = registry.get_manifest(harness.repo(TOOLBOX), f"41-{arch}")
        assert found is not None
        media_type, digest, body = found
        annotations = json.loads(body)["annotations"]
        entries.append(
            IndexEntry(
                arch,
                media_type,
                digest,
                len(body),
                annotations[COMPOSE_ID],
                annotations[IMAGE_SHA256],
            )
        )
    body = build_index(entries, compose_id=NEW)
    with registry.client() as client:
        response = client.put(
            f"/v2/{harness.repo(TOOLBOX)}/manifests/{tag}",
            content=body,
            headers={"Content-Type": OCI_INDEX},
        )
    assert response.status_code == 201, response.text


def test_carried_entry(harness):
    assert harness.replay(harness.compose(OLD)).code == 0
    assert harness.replay(harness.compose(NEW, arches=BUILT)).code == 3
    carry_forward_index(harness, "41")
    assert harness.index(TOOLBOX, "41")["annotations"][COMPOSE_ID] == NEW

    code, document = audit_json(harness)
    assert code == 3
    on_41 = [f for f in document["findings"] if f["tag"] == "41"]
    assert len(on_41) == 1, on_41
    (carried,) = on_41
    assert carried["kind"] == "carried"
    assert carried["severity"] == "info"
    assert carried["arch"] == "aarch64"
    assert carried["compose_id"] == OLD
    assert carried["index_compose_id"] == NEW
    assert carried["since"] == "2024-10-25"
    # latest was not carried forward: still held.
    assert {f["kind"] for f in document["findings"] if f["tag"] == "latest"} == {"held"}
    # carried is the least severe: listed last.
    assert document["findings"][-1] == carried


def test_a_registry_that_missed_a_publish(harness, second_registry):
    first, second = harness.registries[0], second_registry
    arches = ("x86_64", "aarch64")
    harness.registries = [first, second]
    assert harness.replay(harness.compose(OLD, arches=arches)).code == 0
    # The second registry misses the next compose, which also brings a new repository.
    harness.registries = [first]
    newer = harness.compose(NEW, arches=arches, subvariants=("Container_Toolbox", "Container_Base"))
    assert harness.replay(newer).code == 0
    harness.registries = [first, second]

    code, document = audit_json(harness)
    assert code == 3
    assert kinds(document) == {"diverged"}
    lagging = f"{second.host}/{harness.namespace}"
    ahead = f"{first.host}/{harness.namespace}"
    tags = {"41", "latest", "41-x86_64", "41-aarch64"}
    by_repository: dict[str, list[dict]] = {}
    for finding in document["findings"]:
        assert finding["registry"] == lagging
        assert finding["reference_registry"] == ahead
        assert finding["newer_compose_id"] == NEW
        by_repository.setdefault(finding["repository"], []).append(finding)
    assert {f["tag"] for f in by_repository[TOOLBOX]} == tags
    assert all(f["compose_id"] == OLD for f in by_repository[TOOLBOX])
    assert {f["tag"] for f in by_repository["fedora"]} == tags
    assert all(f["compose_id"] is None and f["digest"] is None for f in by_repository["fedora"])
    assert {f["arch"] for f in by_repository[TOOLBOX] if f["tag"] == "41-aarch64"} == {"aarch64"}

    rows = [line for line in audit(harness).out.splitlines() if " diverged " in line]
    assert len(rows) == 8
    assert any(f"does not exist here; {ahead} serves {NEW}" in row for row in rows)
    assert any(f"serves {OLD}; {ahead} serves {NEW}" in row for row in rows)


def reencode(registry, repository: str, tag: str, digests: dict[str, str]) -> str:
    """PUT ``tag``'s manifest again with one more annotation: same build, new digest.

    For an index, entries are repointed through ``digests`` (old digest → new)."""
    found = registry.get_manifest(repository, tag)
    assert found is not None
    media_type, old_digest, body = found
    document = json.loads(body)
    document["annotations"]["org.opencontainers.image.description"] = "re-encoded"
    for entry in document.get("manifests", []):
        entry["digest"] = digests[entry["digest"]]
        entry["size"] = registry_size(registry, repository, entry["digest"])
    new_body = json.dumps(document).encode()
    with registry.client() as client:
        response = client.put(
            f"/v2/{repository}/manifests/{tag}",
            content=new_body,
            headers={"Content-Type": media_type},
        )
    assert response.status_code == 201, response.text
    new_digest = response.headers["docker-content-digest"]
    assert new_digest != old_digest
    digests[old_digest] = new_digest
    return new_digest


def registry_size(registry, repository: str, digest: str) -> int:
    found = registry.get_manifest(repository, digest)
    assert found is not None
    return len(found[2])


def test_same_build_under_other_digests_is_not_a_divergence(harness, second_registry):
    arches = ("x86_64", "aarch64")
    harness.registries.append(second_registry)
    assert harness.replay(harness.compose(OLD, arches=arches)).code == 0
    repository = harness.repo(TOOLBOX)
    digests: dict[str, str] = {}
    for arch in arches:
        reencode(second_registry, repository, f"41-{arch}", digests)
    for tag in ("41", "latest"):
        reencode(second_registry, repository, tag, digests)
    for tag in ("41", "41-x86_64"):
        assert harness.digest(TOOLBOX, tag, harness.registries[0]) != harness.digest(
            TOOLBOX, tag, second_registry
        )

    code, document = audit_json(harness)
    assert (code, document["findings"]) == (0, [])


def test_the_audit_only_reads(harness, second_registry):
    harness.registries.append(second_registry)
    assert harness.replay(harness.compose(OLD, arches=("x86_64", "aarch64"))).code == 0
    harness.registries = harness.registries[:1]
    assert harness.replay(harness.compose(NEW, arches=("x86_64",))).code == 3
    harness.registries.append(second_registry)
    registries = harness.registries
    before = [len(request_lines(r.log_text())) for r in registries]

    assert audit(harness).code == 3
    assert audit(harness, "--json").code == 3

    for registry, start in zip(registries, before, strict=True):
        during = request_lines(registry.log_text())[start:]
        assert any(f"GET /v2/{harness.namespace}/{TOOLBOX}/tags/list" in r for r in during)
        assert any(f"GET /v2/{harness.namespace}/{TOOLBOX}/manifests/41" in r for r in during)
        assert [r for r in during if not r.startswith(('"GET ', '"HEAD '))] == []


@dataclass(frozen=True)
class Unreachable:
    """A registry address nothing listens on."""

    host: str


def test_unreadable_registry_exits_1_and_is_not_reported_as_diverged(harness):
    assert harness.replay(harness.compose(OLD)).code == 0
    assert harness.replay(harness.compose(NEW, arches=BUILT)).code == 3
    dead = Unreachable(f"127.0.0.1:{free_port()}")
    harness.registries.append(dead)  # type: ignore[arg-type]

    result = audit(harness)
    assert result.code == 1
    errors = [line for line in result.err.splitlines() if "ERROR" in line or "error:" in line]
    assert len(errors) == 1
    assert dead.host in errors[0]
    assert "Traceback" not in result.err
    assert f"unreadable: {dead.host}/{harness.namespace}: " in result.out
    # The readable registry is still audited; the dead one is never "lacking" a tag.
    assert " held " in result.out
    assert " diverged " not in result.out

    code, document = audit_json(harness)
    assert code == 1
    assert document["result"] == "unreadable"
    assert [e["registry"] for e in document["errors"]] == [f"{dead.host}/{harness.namespace}"]
    assert kinds(document) == {"held"}


def test_max_age_counts_only_older_findings(harness):
    today = datetime.now(UTC).strftime("%Y%m%d")
    assert harness.replay(harness.compose(f"Fedora-41-{today}.0")).code == 0
    assert harness.replay(harness.compose(f"Fedora-41-{today}.1", arches=BUILT)).code == 3

    code, document = audit_json(harness)
    assert code == 3
    assert len(document["findings"]) == 6
    assert all(f["age_hours"] < 48 for f in document["findings"])

    code, document = audit_json(harness, "--max-age", "48")
    assert (code, document["findings"], document["younger"]) == (0, [], 6)
    assert document["max_age_hours"] == 48
    result = audit(harness, "--max-age", "48")
    assert result.code == 0
    assert result.out.splitlines()[-1] == "result: CLEAN: 0 findings; 6 younger not counted"


def test_bad_max_age_is_a_usage_error(harness):
    for value in ("-1", "soon", "nan"):
        result = audit(harness, "--max-age", value)
        assert result.code == 2
        assert result.err.count("\n") == 1
        assert "--max-age" in result.err
        assert result.out == ""
    missing = harness.tmp / "missing.toml"
    result = harness.run("audit", "--config", str(missing))
    assert (result.code, result.out) == (2, "")
    assert result.err == f"fedora-container-sync: error: config file {missing}: not found\n"


def test_findings_are_published_to_the_bus(harness):
    """One message of this project's schema per finding, through the real RabbitMQ."""
    assert harness.replay(harness.compose(OLD, arches=("x86_64", "aarch64"))).code == 0
    assert harness.replay(harness.compose(NEW, arches=("x86_64", "s390x"))).code == 3
    harness.extra_config = "publish_amqp_messages = true"
    config = harness.config()

    connection = pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", 5672))
    try:
        channel = connection.channel()
        queue = f"test-audit-{uuid.uuid4().hex[:8]}"
        channel.queue_declare(queue, exclusive=True, auto_delete=True)
        channel.queue_bind(queue, "amq.topic", "fedora_container_sync.audit.finding.v1.#")

        argv = ["audit", "--config", str(config), "--json"]
        run = subprocess.run(
            [sys.executable, "-m", "fedora_container_sync", *argv],
            capture_output=True,
            text=True,
            check=False,
            timeout=300,
        )
        assert run.returncode == 3, run.stderr
        findings = json.loads(run.stdout)["findings"]
        assert len(findings) == 4
        assert run.stderr == (  # it says so
            "fedora-container-sync: sent 4 finding messages to the bus "
            "(publish_amqp_messages; --no-messages sends none)\n"
        )

        received = []
        while True:
            method, properties, body = channel.basic_get(queue, auto_ack=True)
            if method is None:
                break
            payload = json.loads(body)
            if harness.namespace in payload["registry"]:
                received.append((method.routing_key, properties.headers, payload))
    finally:
        connection.close()

    assert sorted(json.dumps(p, sort_keys=True) for _, _, p in received) == sorted(
        json.dumps(f, sort_keys=True) for f in findings
    )
    for routing_key, headers, payload in received:
        jsonschema.validate(payload, FINDING_SCHEMA)
        assert routing_key == f"fedora_container_sync.audit.finding.v1.{payload['kind']}"
        assert headers["fedora_messaging_schema"] == "fedora_container_sync.audit.finding.v1"
        assert (
            headers["fedora_messaging_severity"]
            == {"error": 40, "warning": 30}[payload["severity"]]
        )
        container = f"{payload['registry']}/{payload['repository']}:{payload['tag']}"
        assert headers[f"fedora_messaging_container_{container}"] is True


def test_installed_console_script_runs_the_audit(harness):
    assert harness.replay(harness.compose(OLD, arches=("x86_64",))).code == 0
    run = subprocess.run(
        [sys.executable, "-m", "fedora_container_sync", "audit", "--config", str(harness.config())],
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.splitlines()[-1] == "result: CLEAN: 0 findings"
    assert run.stderr == ""


def test_tag_list_of_a_real_registry(harness):
    assert harness.replay(harness.compose(OLD)).code == 0
    registry = harness.registries[0]
    with registry_client(f"{registry.host}/{harness.namespace}") as client:
        assert sorted(client.tags_list(TOOLBOX)) == registry.tags(harness.repo(TOOLBOX))
        assert len(client.tags_list(TOOLBOX)) == 6
        assert client.tags_list("never-published") == []


def registry_client(url: str) -> RegistryClient:
    settings = RegistrySettings(url=url, tls_verify=False)
    return RegistryClient(settings, timeout=10, retry=RetrySettings(attempts=1))


class _PagingRegistry(BaseHTTPRequestHandler):
    """The tag-list pagination of distribution 3 and quay.io (``n``, ``last``, ``Link``), which
    the docker-registry 2.8 installed here does not implement: it answers every tag at once."""

    tags: ClassVar[list[str]] = [f"41-{n:03d}" for n in range(7)]
    next_host: str | None = None

    def do_GET(self) -> None:
        url = httpx.URL(self.path)
        if url.path == "/v2/":
            self._answer(200, b"{}")
            return
        n = int(url.params.get("n", "100"))
        last = url.params.get("last")
        rest = [tag for tag in self.tags if last is None or tag > last]
        page = rest[:n]
        headers = {}
        if len(rest) > n:
            prefix = f"http://{self.next_host}" if self.next_host else ""
            headers["Link"] = f'<{prefix}{url.path}?last={page[-1]}&n={n}>; rel="next"'
        self._answer(200, json.dumps({"name": "ns/r", "tags": page}).encode(), headers)

    def _answer(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def paging_registry():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _PagingRegistry)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        _PagingRegistry.next_host = None


@pytest.mark.parametrize("page_size", [1, 2, 3, 7, 100])
def test_tag_list_follows_link_pages(paging_registry, page_size):
    with registry_client(f"{paging_registry}/ns") as client:
        assert client.tags_list("r", page_size=page_size) == _PagingRegistry.tags


def test_tag_list_refuses_a_next_page_on_another_host(paging_registry):
    _PagingRegistry.next_host = "elsewhere.example:443"
    with registry_client(f"{paging_registry}/ns") as client, pytest.raises(RegistryError) as error:
        client.tags_list("r", page_size=2)
    assert "another host" in str(error.value)


def test_a_broker_that_does_not_answer_is_one_transient_error(tmp_path):
    """Run in a subprocess: fedora-messaging's publisher starts a Twisted reactor thread."""
    config = tmp_path / "config.toml"
    config.write_text(f'amqp_url = "amqp://127.0.0.1:{free_port()}"\n')
    code = f"""
from pathlib import Path
from fedora_container_sync.audit.findings import Finding, Kind
from fedora_container_sync.bus.notify import load_bus_config, publish_findings
from fedora_container_sync.errors import TransientError
load_bus_config(Path({str(config)!r}))
try:
    publish_findings([Finding(Kind.HELD, "r.example", "fedora", "41", "x86_64", "s")], timeout=2)
except TransientError as error:
    print(error)
"""
    run = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    assert run.stdout == (
        "audit messages: 0 of 1 sent, then the broker failed: "
        "Publishing timed out after waiting 2 seconds.\n"
    )


def test_bad_bus_config_is_a_usage_error(harness):
    assert harness.replay(harness.compose(OLD, arches=("x86_64",))).code == 0
    harness.extra_config = "publish_amqp_messages = true"
    config = harness.config()
    config.write_text("no_such_fedora_messaging_key = 1\n" + config.read_text())
    result = harness.run("audit", "--config", str(config))
    assert result.code == 2
    assert result.err.count("\n") == 1
    assert "no_such_fedora_messaging_key" in result.err
    assert result.out == ""


def test_no_messages_sends_none_and_needs_no_broker(harness, tmp_path):
    """An ad-hoc or monitoring run: publish_amqp_messages on, a broker nothing listens on."""
    assert harness.replay(harness.compose(OLD, arches=("x86_64", "aarch64"))).code == 0
    assert harness.replay(harness.compose(NEW, arches=("x86_64", "s390x"))).code == 3
    harness.extra_config = "publish_amqp_messages = true"
    config = harness.config()
    config.write_text(f'amqp_url = "amqp://127.0.0.1:{free_port()}"\n' + config.read_text())
    page = tmp_path / "status.html"
    result = harness.run("audit", "--config", str(config), "--no-messages", "--html", str(page))
    assert result.code == 3, result.err
    assert result.err == ""
    assert "result: FINDINGS: 4 findings" in result.out
    footer = page.read_text()
    assert "Read-only towards the registries" in footer and "message bus" not in footer
