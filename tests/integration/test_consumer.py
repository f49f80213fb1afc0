"""The daemon: ``fedora-messaging consume`` with our callback, through the real RabbitMQ on
127.0.0.1:5672, real compose trees over HTTP, real skopeo and real registries."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from importlib.resources import files

import httpx
import pytest
from fedora_image_uploader_messages import ContainerPublishedV1
from hotness_schema import UpdateDrop

from fedora_container_sync.bus.schemas import TagHeldV1
from fedora_container_sync.oci.manifest import COMPOSE_ID
from support.broker import BIN, wait_until, write_messages
from support.harness import ARCHES
from support.servers import Registry, free_port

pytestmark = pytest.mark.integration

TOOLBOX = "fedora-toolbox"
OLD = "Fedora-41-20241025.0"
NEW = "Fedora-41-20241026.0"
PUBLISH = "publish_amqp_messages = true\n"


def hotness_drop(topic_prefix: str) -> UpdateDrop:
    """A real the-new-hotness message (the schema package's own fixture, a message once seen
    on Fedora's bus), under this test's topic namespace."""
    fixtures = files("hotness_schema") / "tests" / "fixtures"
    fixture = fixtures / "org.fedoraproject.prod.hotness.update.drop.json"
    body = json.loads(fixture.read_text())[0]
    return UpdateDrop(topic=f"{topic_prefix}.hotness.update.drop", body=body)


def test_consumer_publishes_announces_and_acks_foreign_messages(bus):
    harness = bus.harness
    finished = harness.compose(OLD)
    started = {**finished, "status": "STARTED"}
    bus.publish(bus.pungi(started), hotness_drop(bus.topic_prefix), bus.pungi(finished))

    consumer = bus.consumer(bus.config(settings=PUBLISH))
    stats = consumer.wait_stats(processed=3)

    assert harness.arches(TOOLBOX, "41") == set(ARCHES)
    assert harness.digest(TOOLBOX, "latest") == harness.digest(TOOLBOX, "41")
    published = bus.results(2)  # one message per moved tag
    for message, tag in zip(published, ("41", "latest"), strict=True):
        assert isinstance(message, ContainerPublishedV1)
        assert message.topic == f"{bus.topic_prefix}.fedora_image_uploader.published.v1.container"
        assert message.body == {
            "architectures": ["x86_64", "aarch64", "ppc64le", "s390x"],
            "compose_id": OLD,
            "registries": [f"{harness.registries[0].host}/{harness.namespace}"],
            "release": 41,
            "repository": TOOLBOX,
            "tags": [tag],
        }
    # The foreign message was decoded with its own schema and acknowledged without work.
    assert consumer.lines(rf"ignoring \S+: topic {bus.topic_prefix}\.hotness\.update\.drop")
    assert not consumer.lines("not in the schema registry|Traceback")
    assert stats["received"] == 3
    assert (stats["dropped"], stats["rejected"], stats["failed"]) == (0, 0, 0)
    assert bus.broker.count(bus.queue) == 0
    # The health endpoints the OpenShift probes use.
    live = httpx.get(f"http://127.0.0.1:{consumer.monitoring_port}/live", timeout=5)
    assert (live.status_code, live.json()) == (200, {"status": "OK"})
    assert stats["consuming"] is True
    assert consumer.stop() == 0


def test_held_tags_are_announced_with_this_projects_schema(bus):
    harness = bus.harness
    complete = harness.compose(OLD)
    partial = harness.compose(
        NEW, arches=("x86_64", "ppc64le", "s390x"), status="FINISHED_INCOMPLETE"
    )
    bus.publish(bus.pungi(complete), bus.pungi(partial))

    consumer = bus.consumer(bus.config(settings=PUBLISH))
    consumer.wait_stats(processed=2)

    assert harness.index(TOOLBOX, "41")["annotations"][COMPOSE_ID] == OLD
    results = bus.results(4)
    assert [type(m) for m in results] == [ContainerPublishedV1] * 2 + [TagHeldV1] * 2
    registry = f"{harness.registries[0].host}/{harness.namespace}"
    for held, tag in zip(results[2:], ("41", "latest"), strict=True):
        assert held.topic == f"{bus.topic_prefix}.fedora_container_sync.tag.held.v1"
        assert held.body == {
            "compose_id": NEW,
            "release": 41,
            "registry": registry,
            "repository": TOOLBOX,
            "tag": tag,
            "verdict": "held",
            "reason": "compose lacks aarch64, which the tag serves now",
            "missing_arches": ["aarch64"],
            "current_arches": ["x86_64", "aarch64", "ppc64le", "s390x"],
            "compose_arches": ["x86_64", "ppc64le", "s390x"],
        }
        # Filter headers let release engineering subscribe to one container.
        assert held._headers[f"fedora_messaging_container_{registry}/{TOOLBOX}:{tag}"] is True
        assert held.severity == 30  # WARNING
    assert consumer.lines(rf"compose {NEW}: acknowledged: done; 2 tags not moved: 2 held")


def pausing_skopeo(tmp_path, *, on: str):
    """The real skopeo, except that a push with an argument ending in ``on`` (the push's
    ``--digestfile`` is named after its tag) first creates the returned marker file and then
    hangs until killed: a consumer caught mid-publish."""
    marker = tmp_path / "paused"
    script = tmp_path / "skopeo-pausing"
    script.write_text(
        "#!/bin/sh\n"
        'for arg in "$@"; do\n'
        f"    case \"$arg\" in *'{on}') : > '{marker}'; exec sleep 600 ;; esac\n"
        "done\n"
        f"exec '{shutil.which('skopeo')}' \"$@\"\n"
    )
    script.chmod(0o755)
    return script, marker


def test_killed_mid_publish_a_fresh_consumer_completes_the_redelivered_message(bus, tmp_path):
    harness = bus.harness
    bus.publish(bus.pungi(harness.compose(OLD)))
    skopeo, paused = pausing_skopeo(tmp_path, on="-41-ppc64le")
    # One step at a time: the kill lands after exactly x86_64 and aarch64 were pushed.
    settings = PUBLISH + f'skopeo = "{skopeo}"\nmax_parallel = 1\n'
    first = bus.consumer(bus.config(settings=settings, name="first"))
    wait_until(paused.exists, timeout=90, what="the consumer to start pushing 41-ppc64le")

    before = {arch: harness.digest(TOOLBOX, f"41-{arch}") for arch in ARCHES}
    assert before["x86_64"] and before["aarch64"]
    assert before["ppc64le"] is None and before["s390x"] is None
    assert harness.digest(TOOLBOX, "41") is None
    first.kill9()

    # Not acknowledged: the broker puts it back; nothing was announced.
    wait_until(lambda: bus.broker.count(bus.queue) == 1, timeout=30, what="the requeue")
    assert bus.broker.take(bus.results_queue) == []

    second = bus.consumer(bus.config(settings=PUBLISH, name="second"))
    second.wait_stats(processed=1)
    assert harness.arches(TOOLBOX, "41") == set(ARCHES)
    assert harness.digest(TOOLBOX, "latest") == harness.digest(TOOLBOX, "41")
    for entry in harness.index(TOOLBOX, "41")["manifests"]:
        arch = entry["annotations"]["org.fedoraproject.arch"]
        assert entry["digest"] == harness.digest(TOOLBOX, f"41-{arch}")
    # What the killed consumer had pushed is recognised, not pushed again.
    for arch in ("x86_64", "aarch64"):
        assert harness.digest(TOOLBOX, f"41-{arch}") == before[arch]
        assert second.lines(rf"tag \S+:41-{arch}, verdict unchanged")
    published = bus.results(2)
    assert [(m.body["compose_id"], m.body["tags"]) for m in published] == [
        (OLD, ["41"]),
        (OLD, ["latest"]),
    ]
    assert bus.broker.count(bus.queue) == 0


def test_permanently_bad_messages_are_dropped_and_the_next_good_one_is_processed(bus):
    harness = bus.harness
    good = harness.compose(OLD, arches=("x86_64",))
    outside = {
        **good,
        "compose_id": "Fedora-41-20241022.0",
        "location": "https://compose.example.org/compose/Fedora-41-20241022.0/compose",
    }
    malformed = {k: v for k, v in good.items() if k != "location"}
    malformed["compose_id"] = "Fedora-41-20241023.0"
    corrupt = harness.compose("Fedora-41-20241024.0", arches=("x86_64",))
    (image,) = harness.compose_dir(corrupt).glob("Container/x86_64/images/*.tar.xz")
    data = bytearray(image.read_bytes())
    data[len(data) // 2] ^= 0xFF  # same size, different sha256
    image.write_bytes(bytes(data))
    bus.publish(*(bus.pungi(body) for body in (outside, malformed, corrupt, good)))

    consumer = bus.consumer(bus.config())
    stats = consumer.wait_stats(processed=1, dropped=3)

    drops = consumer.lines("dropping the message")
    assert len(drops) == 3, drops
    assert "Fedora-41-20241022.0" in drops[0] and "outside compose_url_allowlist" in drops[0]
    assert "Fedora-41-20241023.0" in drops[1] and "location" in drops[1]
    assert "Fedora-41-20241024.0" in drops[2] and "sha256 mismatch" in drops[2]
    # Every error line names its compose once: "compose X: ...", never "compose X: X: ...".
    errors = consumer.lines("^ERROR fedora_container_sync")
    for line in errors:
        compose_id = re.search(r": compose (\S+): ", line)[1]
        assert line.count(f"{compose_id}: ") == 1, line
    assert consumer.lines(
        r"^ERROR fedora_container_sync.publish: compose Fedora-41-20241024.0: "
        r"Container/x86_64/images/\S+: sha256 mismatch"
    )
    assert (stats["rejected"], stats["failed"]) == (0, 0)
    assert harness.arches(TOOLBOX, "41") == {"x86_64"}
    assert harness.index(TOOLBOX, "41")["annotations"][COMPOSE_ID] == OLD
    assert bus.broker.count(bus.queue) == 0
    assert consumer.proc.poll() is None  # still consuming


def test_registry_down_requeues_with_growing_delay_until_it_is_back(bus):
    harness = bus.harness
    down = Registry(port=free_port())  # configured, not started yet
    harness.registries = [down]
    bus.publish(bus.pungi(harness.compose(OLD, arches=("x86_64",))))
    consumer = bus.consumer(bus.config(requeue="initial_delay = 0.2\nmax_delay = 0.8\n"))
    try:
        requeues = consumer.wait_log("requeueing the message", count=4)
        delays = [float(re.search(r"in ([0-9.]+)s", line)[1]) for line in requeues[:4]]
        assert delays == [0.2, 0.4, 0.8, 0.8]  # growing, then bounded
        assert all(OLD in line and down.host in line for line in requeues)
        down.start()
        stats = consumer.wait_stats(processed=1)
        assert stats["rejected"] >= 4 and stats["dropped"] == 0
        assert harness.arches(TOOLBOX, "41") == {"x86_64"}
    finally:
        down.stop()


def test_bad_config_stops_the_consumer_with_one_line(bus, tmp_path):
    config = bus.config(settings='gate_policy = "lenient"\n')
    consumer = bus.consumer(config)
    code = consumer.proc.wait(timeout=60)
    output = consumer.output()
    assert code == 2, output
    errors = [line for line in output.splitlines() if "cannot start" in line]
    assert errors == [
        "ERROR fedora_container_sync.consumer: fedora-container-sync cannot start: "
        f"config file {config}: consumer_config.container.gate_policy: "
        "Input should be 'strict' or 'carry-forward'"
    ]
    assert "Traceback" not in output


def test_replay_sends_the_same_result_messages(bus, tmp_path):
    harness = bus.harness
    messages = write_messages(tmp_path / "saved.jsonl", [bus.pungi(harness.compose(OLD))])
    config = bus.config(settings=PUBLISH)
    result = subprocess.run(
        [str(BIN / "fedora-container-sync"), "replay", "--config", str(config), str(messages)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    published = bus.results(2)
    assert all(isinstance(m, ContainerPublishedV1) for m in published)
    assert published[0].topic == f"{bus.topic_prefix}.fedora_image_uploader.published.v1.container"
    assert [m.body["compose_id"] for m in published] == [OLD, OLD]


def test_stale_tags_are_announced_as_stale_not_held(bus):
    harness = bus.harness
    newer, older = harness.compose(NEW), harness.compose(OLD)
    bus.publish(bus.pungi(newer), bus.pungi(older))  # the older compose arrives late

    consumer = bus.consumer(bus.config(settings=PUBLISH))
    consumer.wait_stats(processed=2)

    assert harness.index(TOOLBOX, "41")["annotations"][COMPOSE_ID] == NEW
    *published, kept_41, kept_latest = bus.results(4)
    kept = [kept_41, kept_latest]
    assert [type(m) for m in published] == [ContainerPublishedV1] * 2
    assert [m.body["compose_id"] for m in published] == [NEW, NEW]
    registry = f"{harness.registries[0].host}/{harness.namespace}"
    assert [type(m) for m in kept] == [TagHeldV1, TagHeldV1]
    for message, tag in zip(kept, ("41", "latest"), strict=True):
        assert message.body == {
            "compose_id": OLD,
            "release": 41,
            "registry": registry,
            "repository": TOOLBOX,
            "tag": tag,
            "verdict": "stale",
            "newer_compose": NEW,
            "reason": f"holds {NEW}, newer than this compose",
            "missing_arches": [],
            "current_arches": ["x86_64", "aarch64", "ppc64le", "s390x"],
            "compose_arches": [],  # its per-arch tags were stale too: nothing was published
        }
        assert message.severity == 20  # INFO: nothing is wrong
    # Two index tags and four per-arch tags kept; none of them held.
    assert consumer.lines(rf"compose {OLD}: acknowledged: done; 6 tags not moved: 6 stale$")


def test_a_compose_is_announced_once_however_often_it_is_handled(bus, tmp_path):
    harness = bus.harness
    finished = harness.compose(OLD)
    bus.publish(bus.pungi(finished), bus.pungi(finished))  # e.g. Pungi sending it twice

    consumer = bus.consumer(bus.config(settings=PUBLISH))
    consumer.wait_stats(processed=2)
    assert consumer.stop() == 0
    published = bus.results(2)
    assert [(m.body["compose_id"], m.body["tags"]) for m in published] == [
        (OLD, ["41"]),
        (OLD, ["latest"]),
    ]
    assert len(consumer.lines(rf"compose {OLD}: acknowledged: done$")) == 2

    # A replay that moves nothing announces nothing; --announce asks for it.
    messages = write_messages(tmp_path / "saved.jsonl", [bus.pungi(finished)])
    config = bus.config(settings=PUBLISH, name="replay")
    replay = [str(BIN / "fedora-container-sync"), "replay", "--config", str(config)]
    for extra, expected in (([], 0), (["--announce"], 2)):
        result = subprocess.run(
            [*replay, *extra, str(messages)],
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        assert result.returncode == 0, result.stderr
        # replay returns after the broker confirmed each message: routed by then, if sent.
        sent = bus.broker.take(bus.results_queue)
        assert [m.body["compose_id"] for m in sent] == [OLD] * expected, extra
        if expected:  # announced again under the ids of the consumer's announcements
            assert {m.id for m in sent} == {m.id for m in published}
