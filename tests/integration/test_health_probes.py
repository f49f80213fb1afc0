"""The consumer's own /ready and /live (the OpenShift probes), in both states, with the real
RabbitMQ: not ready while the broker is stopped and ready again once it is back; live while
idle or making progress, not live when a publish makes no progress for ``stuck_after``."""

from __future__ import annotations

import shutil
import sys
import time
import uuid

import httpx
import pytest

from support.broker import ConsumerProcess, PrivateBroker, consumer_config, wait_until
from support.servers import free_port

pytestmark = pytest.mark.integration


def get(port: int, path: str) -> tuple[int, dict]:
    try:
        response = httpx.get(f"http://127.0.0.1:{port}{path}", timeout=5)
    except httpx.HTTPError:
        return 0, {}
    return response.status_code, response.json()


def wait_status(port: int, path: str, code: int, *, timeout: float = 60) -> dict:
    found: dict = {}

    def reached() -> bool:
        status, body = get(port, path)
        found.clear()
        found.update(body)
        return status == code

    wait_until(reached, timeout=timeout, what=f"{path} to answer {code}", interval=0.3)
    return found


def test_ready_follows_the_broker(harness, tmp_path):
    port = free_port()
    # One "unreachable" line per 10 s (30 by default): the broker stays down less long, and
    # fedora-messaging's reconnection backoff (which grows with the outage) stays short.
    harness.extra_config = (
        f"\n[consumer_config.container.health]\nport = {port}\nbroker_log_interval = 10\n"
    )
    queue = f"fedora-container-sync-test-health-{uuid.uuid4().hex[:8]}"
    monitoring = free_port()
    rabbit = PrivateBroker()
    config = tmp_path / "consumer.toml"
    config.write_text(
        consumer_config(
            queue=queue,
            routing_keys=["org.fedoraproject.test.pungi.compose.status.change"],
            topic_prefix="org.fedoraproject.test",
            monitoring_port=monitoring,
            container_table=harness.config().read_text(),
            amqp_url=rabbit.url,
        )
    )
    # Started while the broker is down: /ready and the log say so (not only "no consumer").
    consumer = ConsumerProcess(config, tmp_path / "consumer.log", monitoring_port=monitoring)
    consumer.start()
    where = f"broker 127.0.0.1:{rabbit.port}"
    started = False
    try:
        wait_until(
            lambda: get(port, "/ready")[1].get("broker") == "unreachable",
            timeout=30,
            what="/ready to name the broker",
            interval=0.3,
        )
        status, body = get(port, "/ready")
        assert status == 503 and body["reason"].startswith(f"{where} unreachable for ")
        (line,) = consumer.wait_log(rf"{where} unreachable: no connection for \d+s", timeout=60)
        assert line.startswith("WARNING ")
        # One line per interval (10 s here; tests/unit/test_health_decisions.py), not one per
        # reconnection attempt (fedora-messaging makes several within the first 10 s).
        time.sleep(5)
        assert len(consumer.lines(rf"{where} unreachable")) == 1
        assert get(port, "/live")[0] == 200  # idle, not stuck: no reason to restart it

        rabbit.start()
        started = True
        ready = wait_status(port, "/ready", 200, timeout=90)
        assert ready == {"ready": True, "queues": [queue]}
        assert get(port, "/live") == (200, {"live": True, "busy": None})
        consumer.wait_log(rf"{where} reachable again after \d+s")

        rabbit.stop_app()  # as an operator stops RabbitMQ: connections closed, port shut
        down = wait_status(port, "/ready", 503, timeout=30)
        assert down["ready"] is False
        assert down["reason"] in (
            f"not consuming from {queue}: no open channel to the broker",  # the first second
            *(f"{where} unreachable for {n}s" for n in range(3)),
        )
        wait_until(
            lambda: get(port, "/ready")[1].get("broker") == "unreachable",
            timeout=10,
            what="/ready to say the broker is unreachable",
            interval=0.3,
        )
        assert get(port, "/ready")[1]["queues"] == [queue]
        assert get(port, "/live")[0] == 200
        # fedora-messaging's own /ready still answers 200, "consuming": why we serve ours.
        assert consumer.stats()["consuming"] is True
        assert consumer.proc.poll() is None

        rabbit.start_app()
        assert wait_status(port, "/ready", 200, timeout=90)["ready"] is True
        assert consumer.proc.poll() is None
        assert consumer.stop() == 0
    finally:
        consumer.cleanup()
        if started:
            rabbit.stop()


def hanging_skopeo(tmp_path):
    """The real skopeo, except that a push (the copy with --digestfile) hangs after creating
    the returned marker."""
    marker = tmp_path / "pushing"
    script = tmp_path / "skopeo-hanging"
    script.write_text(
        "#!/bin/sh\n"
        'for arg in "$@"; do\n'
        f"    case \"$arg\" in --digestfile) : > '{marker}'; exec sleep 600 ;; esac\n"
        "done\n"
        f"exec '{shutil.which('skopeo')}' \"$@\"\n"
    )
    script.chmod(0o755)
    return script, marker


def test_live_until_a_publish_stops_making_progress(bus, tmp_path):
    port = free_port()
    skopeo, pushing = hanging_skopeo(tmp_path)
    settings = (
        f'skopeo = "{skopeo}"\nmax_parallel = 1\n'
        f"\n[consumer_config.container.health]\nport = {port}\nstuck_after = 3\n"
    )
    consumer = bus.consumer(bus.config(settings=settings))
    assert wait_status(port, "/ready", 200) == {"ready": True, "queues": [bus.queue]}
    assert get(port, "/live") == (200, {"live": True, "busy": None})

    compose_id = "Fedora-41-20241025.0"
    bus.publish(bus.pungi(bus.harness.compose(compose_id, arches=("x86_64",))))
    wait_until(pushing.exists, timeout=90, what="the push to start")
    busy = get(port, "/live")
    assert busy[0] == 200 and busy[1]["busy"] == compose_id  # working, progress recent
    stuck = wait_status(port, "/live", 503, timeout=30)
    assert stuck["live"] is False and stuck["busy"] == compose_id
    assert stuck["reason"].startswith(f"compose {compose_id}: no progress for ")
    assert stuck["reason"].endswith("(stuck after 3s)")
    assert get(port, "/ready")[0] == 200  # still connected: readiness is not liveness
    consumer.kill9()
    # What a liveness restart leads to: the message is still queued for the next consumer.
    wait_until(lambda: bus.broker.count(bus.queue) == 1, timeout=30, what="the requeue")


TRICKLING_SKOPEO = """#!{python}
# The real skopeo, except that a push (the copy with --digestfile) first moves bytes slowly,
# without finishing anything, for longer than stuck_after: a slow upload.
import os, sys, time
if "--digestfile" in sys.argv:
    open("{marker}", "w").close()
    with open(os.devnull, "wb") as sink:
        for _ in range(32):
            sink.write(b"x" * 65536)
            sink.flush()
            time.sleep(0.25)
os.execv("{skopeo}", ["{skopeo}", *sys.argv[1:]])
"""


def test_live_while_a_slow_push_moves_bytes(bus, tmp_path):
    """A push that takes longer than stuck_after without finishing a step, but moves bytes all
    along, is alive: the probe does not restart it, and it completes."""
    port = free_port()
    marker = tmp_path / "pushing"
    skopeo = tmp_path / "skopeo-trickling"
    skopeo.write_text(
        TRICKLING_SKOPEO.format(python=sys.executable, marker=marker, skopeo=shutil.which("skopeo"))
    )
    skopeo.chmod(0o755)
    settings = (
        f'skopeo = "{skopeo}"\nmax_parallel = 1\n'
        f"\n[consumer_config.container.health]\nport = {port}\nstuck_after = 3\n"
    )
    consumer = bus.consumer(bus.config(settings=settings))
    assert wait_status(port, "/ready", 200) == {"ready": True, "queues": [bus.queue]}
    compose_id = "Fedora-41-20241025.0"
    bus.publish(bus.pungi(bus.harness.compose(compose_id, arches=("x86_64",))))
    wait_until(marker.exists, timeout=90, what="the push to start")
    answers = []
    deadline = time.monotonic() + 7  # the trickle lasts 8 s, more than twice stuck_after
    while time.monotonic() < deadline:
        answers.append(get(port, "/live"))
        time.sleep(0.5)
    assert all(status == 200 for status, _ in answers), answers
    assert answers[-1][1]["busy"] == compose_id
    consumer.wait_stats(processed=1)
    assert bus.harness.arches("fedora-toolbox", "41") == {"x86_64"}
    assert consumer.stop() == 0
