"""``replay`` with result messages on and no broker: one line at once, naming the broker's
address and what to do, and nothing published (it would be published unannounced)."""

from __future__ import annotations

import pytest

from fedora_container_sync.bus.reach import broker_address
from fedora_container_sync.errors import ConfigError
from support.servers import free_port

pytestmark = pytest.mark.integration

CID = "Fedora-41-20241025.0"


def test_replay_says_at_once_that_the_broker_is_unreachable(harness):
    port = free_port()
    harness.extra_config = "publish_amqp_messages = true\n"
    body = harness.compose(CID, arches=("x86_64",))
    config = harness.config()
    config.write_text(
        f'amqp_url = "amqp://guest:secret-pw@127.0.0.1:{port}/%2F"\n' + config.read_text()
    )
    result = harness.run("replay", "--config", str(config), str(harness.message_file(body)))
    assert result.code == 1
    assert result.err == (
        f"fedora-container-sync: error: the broker at 127.0.0.1:{port} (amqp_url) is "
        "unreachable: Connection refused; publish_amqp_messages is on, so replay sends result "
        "messages; start the broker or set publish_amqp_messages = false (--dry-run needs none)\n"
    )
    assert result.out == ""
    assert harness.digest("fedora-toolbox", "41-x86_64") is None  # nothing done unannounced
    # A dry run needs no broker.
    dry = harness.run(
        "replay", "--config", str(config), "--dry-run", str(harness.message_file(body))
    )
    assert dry.code == 0, dry.err


@pytest.mark.parametrize(
    ("url", "address"),
    [
        ("amqp://", ("localhost", 5672)),
        ("amqp://localhost", ("localhost", 5672)),
        ("amqps://u:@rabbitmq.fedoraproject.org/%2Fpubsub", ("rabbitmq.fedoraproject.org", 5671)),
        ("amqp://guest:guest@127.0.0.1:5673/%2F", ("127.0.0.1", 5673)),
    ],
)
def test_broker_address(url, address):
    assert broker_address(url) == address


@pytest.mark.parametrize("url", ["http://localhost", "amqp://h:notaport", ""])
def test_broker_address_refuses_what_is_no_amqp_url(url):
    with pytest.raises(ConfigError, match="amqp_url: not an amqp"):
        broker_address(url)
