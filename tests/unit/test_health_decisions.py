"""What /ready and /live answer (pure), and how the step log feeds /live."""

from __future__ import annotations

import logging

import pytest
from pydantic import ValidationError

from fedora_container_sync import activity
from fedora_container_sync.bus.health import (
    DOWNLOADS,
    BrokerWatch,
    Channel,
    ProgressWatch,
    broker_address,
    io_moved,
    liveness,
    readiness,
)
from fedora_container_sync.config.settings import HealthSettings, Settings
from fedora_container_sync.errors import about_compose
from fedora_container_sync.publish.progress import STEPS

CID = "Fedora-41-20241026.0"


@pytest.mark.parametrize(
    ("channels", "ready"),
    [
        (None, False),  # fedora-messaging not started, or its state unreadable
        ([], False),
        ([Channel("fedora-container-sync", registered=True)], True),  # consuming or standby
        ([Channel("fedora-container-sync", registered=False)], False),  # broker gone
        ([Channel("a", registered=True), Channel("b", registered=False)], False),
    ],
)
def test_ready_only_with_every_consumer_registered(channels, ready):
    ok, body = readiness(channels)
    assert ok is ready and body["ready"] is ready
    assert ("reason" in body) is not ready


@pytest.mark.parametrize(
    ("busy", "since", "last_step", "live"),
    [
        (None, 0.0, None, True),  # idle: a standby, or nothing queued
        (CID, 900.0, None, True),  # started 100 s ago, no step yet
        (CID, 0.0, 900.0, True),  # long run, a step 100 s ago
        (CID, 0.0, None, False),  # no step in 1000 s
        (CID, 0.0, 399.0, False),  # last step 601 s ago
        (CID, 0.0, 400.0, True),  # exactly at the bound: not yet stuck
    ],
)
def test_live_unless_the_compose_in_progress_made_no_progress(busy, since, last_step, live):
    ok, body = liveness(1000.0, busy, since, last_step, stuck_after=600.0)
    assert ok is live and body["live"] is live
    if not live:
        assert body["reason"].startswith(f"compose {CID}: no progress for ")


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class Shown(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


@pytest.fixture
def steps_logger():
    logger = logging.getLogger(STEPS)
    level, filters, handlers = logger.level, list(logger.filters), list(logger.handlers)
    yield logger
    logger.setLevel(level)
    logger.filters[:] = filters
    logger.handlers[:] = handlers


def test_step_lines_count_as_progress_and_the_log_shows_what_it_did(steps_logger):
    steps_logger.setLevel(logging.WARNING)  # a log config that shows only warnings
    shown = Shown()
    steps_logger.addHandler(shown)
    clock = Clock()
    watch = ProgressWatch(clock)
    watch.install()
    watch.begin(CID)
    clock.now = 500.0
    steps_logger.info("compose %s: [1/4] downloaded", CID)
    steps_logger.warning("compose %s: [2/4] tag held", CID)
    assert shown.lines == [f"compose {CID}: [2/4] tag held"]  # INFO stays hidden
    clock.now = 1000.0
    assert watch.check(stuck_after=600.0)[0] is True  # the last step was 500 s ago
    clock.now = 1200.0
    ok, body = watch.check(stuck_after=600.0)
    assert not ok and body["busy"] == CID
    watch.end()
    assert watch.check(stuck_after=600.0) == (True, {"live": True, "busy": None})


def test_health_settings():
    base = {
        "repos": {"Container_Base": "fedora"},
        "registries": [{"url": "quay.io/fedora"}],
        "compose_url_allowlist": ["https://kojipkgs.fedoraproject.org/compose/"],
        "skopeo_timeout": 900.0,
    }
    assert Settings.model_validate(base).health is None
    settings = Settings.model_validate({**base, "health": {"port": 8071}})
    assert (settings.health.address, settings.health.port) == ("127.0.0.1", 8071)
    assert settings.stuck_after == 1800.0  # twice skopeo_timeout
    bound = Settings.model_validate({**base, "health": {"port": 8071, "stuck_after": 60.0}})
    assert bound.stuck_after == 60.0
    for bad in ({"port": 0}, {"port": 8071, "address": "pod.example"}, {"address": "::"}):
        with pytest.raises(ValidationError):
            HealthSettings.model_validate(bad)


@pytest.mark.parametrize(
    ("text", "line"),
    [
        (
            f"{CID}: Container/x86_64/a.tar.xz: sha256 mismatch",
            "Container/x86_64/a.tar.xz: sha256 mismatch",
        ),
        (f"compose {CID}: push of x: HTTP 500", "push of x: HTTP 500"),
        ("registry quay.io down", "registry quay.io down"),
        ("Fedora-41-20241026.01: other compose", "Fedora-41-20241026.01: other compose"),
    ],
)
def test_a_line_names_its_compose_once(text, line):
    assert about_compose(CID, text) == line


# -- the broker: /ready and the log while it is unreachable -----------------------------------


def test_ready_says_the_broker_is_unreachable():
    reason = "broker rabbit.example:5671 unreachable for 42s"
    for channels in (None, [], [Channel("fedora-container-sync", registered=False)]):
        ok, body = readiness(channels, unreachable=reason)
        assert ok is False
        assert (body["broker"], body["reason"]) == ("unreachable", reason)
    ok, body = readiness([Channel("q", registered=False)], unreachable=reason)
    assert body["queues"] == ["q"]
    # Connected (or not known to be down): the consumers decide, as before.
    assert readiness([Channel("q", registered=True)], unreachable=None)[0] is True
    assert readiness([], unreachable=None)[1]["reason"] == "no consumer registered"


@pytest.mark.parametrize(
    ("url", "address"),
    [
        (
            "amqps://fedora-container-sync:@rabbitmq.fedoraproject.org/%2Fpubsub",
            "rabbitmq.fedoraproject.org:5671",
        ),
        ("amqp://guest:secret@127.0.0.1:5673/%2F", "127.0.0.1:5673"),
        ("amqp://localhost", "localhost:5672"),
        ("amqp://[::1]:5672/", "[::1]:5672"),
        ("amqp://host:notaport/", "the broker"),
        ("", "the broker"),  # not known
    ],
)
def test_broker_address_never_shows_credentials(url, address):
    assert broker_address(url) == address


def test_broker_watch_logs_once_per_interval_and_once_when_back():
    now = [0.0]
    watch = BrokerWatch("rabbit:5672", clock=lambda: now[0], interval=30.0)
    assert watch.unreachable() is None  # nothing known yet: the consumers decide
    lines = []
    for second in range(0, 95):  # polled every second, the broker down from 0 s to 94 s
        now[0] = float(second)
        line = watch.poll(False if second < 94 else True)
        if line is not None:
            lines.append((second, line))
        if second == 50:
            assert watch.unreachable() == "broker rabbit:5672 unreachable for 50s"
    down = (
        "broker rabbit:5672 unreachable: no connection for {}s; consuming resumes when it is back"
    )
    assert lines == [
        (30, down.format(30)),
        (60, down.format(60)),
        (90, down.format(90)),
        (94, "broker rabbit:5672 reachable again after 94s"),
    ]
    assert watch.unreachable() is None


def test_broker_watch_says_nothing_of_a_short_reconnect():
    now = [0.0]
    watch = BrokerWatch("rabbit:5672", clock=lambda: now[0], interval=30.0)
    assert watch.poll(None) is None  # not started yet: unknown counts as down, quietly
    now[0] = 5.0
    assert watch.unreachable() == "broker rabbit:5672 unreachable for 5s"
    assert watch.poll(True) is None  # connected within the interval: no line either way
    now[0] = 100.0
    assert watch.poll(True) is None
    assert watch.unreachable() is None


# -- bytes on the move count as progress ------------------------------------------------------


def test_a_long_download_or_push_that_moves_bytes_is_alive():
    """2 GiB at 256 KiB/s is about 8500 s without a finished step: alive while bytes move,
    stuck once they stop for stuck_after."""
    clock = Clock()
    counters = {DOWNLOADS: 0}
    watch = ProgressWatch(clock, counters=lambda: dict(counters))
    watch.begin(CID)
    for second in range(0, 8600, 30):  # the probe asks every 30 s
        clock.now = float(second)
        counters[DOWNLOADS] += 7  # chunks arrived since the last probe
        ok, body = watch.check(stuck_after=600.0)
        assert ok, body
    clock.now = 8580.0 + 600.0  # the download stalls: no chunk since 8580 s
    assert watch.check(stuck_after=600.0)[0] is True
    clock.now = 8580.0 + 601.0
    ok, body = watch.check(stuck_after=600.0)
    assert not ok and body["reason"].startswith(f"compose {CID}: no progress for ")


def test_a_skopeo_run_counts_by_its_io_counters():
    clock = Clock()
    counters: dict[int, int] = {DOWNLOADS: 5}
    watch = ProgressWatch(clock, counters=lambda: dict(counters))
    watch.begin(CID)
    assert watch.check(stuck_after=600.0)[0] is True  # the first reading: a baseline
    clock.now = 500.0
    counters[4242] = 1000  # a push starts
    watch.check(stuck_after=600.0)
    for second in (900.0, 1300.0, 1700.0):
        clock.now = second
        counters[4242] += 65536  # it writes to the registry
        assert watch.check(stuck_after=600.0)[0] is True
    clock.now = 2400.0  # it hangs: its counters stay
    ok, body = watch.check(stuck_after=600.0)
    assert not ok and body["seconds_since_progress"] == 700


@pytest.mark.parametrize(
    ("before", "after", "moved"),
    [
        ({}, {}, False),
        ({-1: 3}, {-1: 3}, False),
        ({-1: 3}, {-1: 4}, True),
        ({-1: 3, 10: 100}, {-1: 3, 10: 100}, False),
        ({-1: 3, 10: 100}, {-1: 3, 10: 101}, True),
        ({-1: 3}, {-1: 3, 11: 0}, True),  # a new skopeo run
        ({-1: 3, 10: 100}, {-1: 3}, False),  # one ended (its step's line says so)
    ],
)
def test_io_moved(before, after, moved):
    assert io_moved(before, after) is moved


def test_io_of_reads_a_running_process(tmp_path):
    import subprocess
    import sys

    with subprocess.Popen(
        [sys.executable, "-c", "import sys; sys.stdout.write(sys.stdin.readline())"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    ) as child:
        assert child.stdin is not None and child.stdout is not None
        first = activity.io_of([child.pid])
        assert set(first) == {child.pid}
        child.stdin.write("x" * 100000 + "\n")
        child.stdin.flush()
        assert len(child.stdout.readline()) == 100001
        assert activity.io_of([child.pid])[child.pid] >= first[child.pid] + 200000
        child.kill()
    assert activity.io_of([child.pid]) == {}  # gone: left out
    (tmp_path / "7").mkdir()
    (tmp_path / "7" / "io").write_text("rchar: 10\nwchar: 5\nsyscr: 1\n")
    assert activity.io_of([7, 8], proc=tmp_path) == {7: 15}
