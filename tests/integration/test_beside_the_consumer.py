"""The command line beside a running consumer, with the consumer's own config file (the
audit timer or CronJob, ``oc exec ... replay``): the consumer's ``[monitoring]`` port is taken,
and the command must still do its work and send its messages."""

from __future__ import annotations

import socket
import subprocess

import pytest
from fedora_image_uploader_messages import ContainerPublishedV1

from fedora_container_sync.bus.schemas import AuditFindingV1
from support.broker import BIN, Bus, write_messages

pytestmark = pytest.mark.integration

OLD = "Fedora-41-20241025.0"
NEW = "Fedora-41-20241026.0"
PUBLISH = "publish_amqp_messages = true\n"


def cli(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "fedora-container-sync"), *argv],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_replay_beside_a_running_consumer_sends_its_messages(bus: Bus, tmp_path):
    config = bus.config(settings=PUBLISH)
    consumer = bus.consumer(config)
    consumer.wait_stats()  # its monitoring server answers: the port is the consumer's
    messages = write_messages(tmp_path / "saved.jsonl", [bus.pungi(bus.harness.compose(OLD))])

    result = cli("replay", "--config", str(config), str(messages))

    assert result.returncode == 0, result.stderr
    assert "Address already in use" not in result.stderr
    published = bus.results(2)  # 41 and latest
    assert all(isinstance(m, ContainerPublishedV1) for m in published)
    assert [m.body["compose_id"] for m in published] == [OLD, OLD]
    assert consumer.stats()["consuming"] is True  # the consumer's server is still its own
    assert consumer.stop() == 0


def test_audit_with_findings_on_a_taken_monitoring_port_sends_them(bus: Bus):
    harness = bus.harness
    assert harness.replay(harness.compose(OLD, arches=("x86_64", "aarch64"))).code == 0
    assert harness.replay(harness.compose(NEW, arches=("x86_64", "s390x"))).code == 3
    config = bus.config(settings=PUBLISH)
    port = int(config.read_text().split("[monitoring]", 1)[1].split("port = ", 1)[1].split()[0])
    with socket.socket() as taken:  # what a running consumer's monitoring server does
        taken.bind(("127.0.0.1", port))
        taken.listen()

        result = cli("audit", "--config", str(config))

    assert result.returncode == 3, result.stderr
    assert "Address already in use" not in result.stderr
    findings = bus.results(1)
    assert findings
    assert all(isinstance(finding, AuditFindingV1) for finding in findings)
