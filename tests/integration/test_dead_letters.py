"""``dead-letters`` against the real RabbitMQ: every dead letter is drained, the ones whose body
is not a message (not UTF-8, not JSON) too, saved byte for byte; ``--limit`` is respected."""

from __future__ import annotations

import base64
import json
import subprocess
import time
from pathlib import Path

import pika
import pytest

from support.broker import AMQP_URL, BIN, Broker, rabbitmq_listening

pytestmark = pytest.mark.integration

TOPIC = "org.fedoraproject.prod.pungi.compose.status.change"
GOOD = {"compose_id": "Fedora-41-20241026.0", "status": "FINISHED", "location": "https://x/"}
NOT_UTF8 = b"\xff\xfe\x00garbage"
NOT_JSON = b"compose finished, see https://x/"


def dead_letters(config: Path, output: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [BIN / "fedora-container-sync", "dead-letters", "--config", config, *extra, output],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_undecodable_dead_letters_are_drained_and_saved_as_they_are(tmp_path):
    if not rabbitmq_listening():
        pytest.fail("RabbitMQ is not listening on 127.0.0.1:5672", pytrace=False)
    name = f"fcs-test-dead-{time.time_ns() % 10**12}"
    config = tmp_path / "bus.toml"
    config.write_text(f'amqp_url = "{AMQP_URL}"\n')
    with Broker() as broker:
        queue = broker.declare_dead_letters(name)
        connection = pika.BlockingConnection(pika.URLParameters(AMQP_URL))
        try:
            channel = connection.channel()
            for number, body in enumerate([NOT_UTF8, json.dumps(GOOD).encode(), NOT_JSON]):
                properties = pika.BasicProperties(
                    message_id=f"m{number}",
                    headers={"fedora_messaging_schema": "base.message", "x-other": 1},
                )
                channel.basic_publish(name, TOPIC, body, properties)
        finally:
            connection.close()

        first = tmp_path / "first.jsonl"
        result = dead_letters(config, first, "--queue", queue, "--limit", "2")
        assert result.returncode == 0, result.stderr
        assert broker.count(queue) == 1
        took = [line for line in result.stdout.splitlines() if line.startswith("took ")]
        assert took == [
            f"took m0: no x-death record; UNDECODABLE, saved as is to {first}.undecodable",
            "took Fedora-41-20241026.0: no x-death record",
        ]
        (good,) = first.read_text().splitlines()
        assert json.loads(good)["body"] == GOOD
        (bad,) = (tmp_path / "first.jsonl.undecodable").read_text().splitlines()
        saved = json.loads(bad)
        assert base64.b64decode(saved["body_base64"]) == NOT_UTF8
        assert "not UTF-8 JSON" in saved["undecodable"]
        assert (saved["topic"], saved["id"]) == (TOPIC, "m0")
        assert saved["headers"] == {"fedora_messaging_schema": "base.message"}

        rest = tmp_path / "rest.jsonl"
        result = dead_letters(config, rest, "--queue", queue)
        assert result.returncode == 0, result.stderr
        assert broker.count(queue) == 0
        assert not rest.exists()  # nothing replayable
        (bad,) = (tmp_path / "rest.jsonl.undecodable").read_text().splitlines()
        assert base64.b64decode(json.loads(bad)["body_base64"]) == NOT_JSON
        assert "1 undecodable message from" in result.stdout
