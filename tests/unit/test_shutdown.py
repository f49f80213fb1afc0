"""A stop (SIGTERM, SIGINT, the consumer's shutdown) ends the children, starts no more work, and
turns every run into an Interrupted error that is not retried. Real processes, no mocks."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from concurrent.futures import Future
from pathlib import Path

import pytest

from fedora_container_sync import shutdown
from fedora_container_sync.config.settings import RetrySettings
from fedora_container_sync.errors import Interrupted, TransientError
from fedora_container_sync.net.retry import call_with_retry
from fedora_container_sync.publish.workpool import WorkPool
from fedora_container_sync.registry import skopeo


@pytest.fixture(autouse=True)
def resumed() -> Iterator[None]:
    yield
    shutdown.reset()


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


def run_in_thread(argv: list[str], tmp_path: Path) -> tuple[threading.Thread, list[object], Path]:
    """``skopeo.run(argv)`` in a thread; the child writes its PID to a file first."""
    pid_file = tmp_path / "pid"
    outcome: list[object] = []

    def target() -> None:
        try:
            outcome.append(skopeo.run(argv, timeout=120, what="test"))
        except Exception as error:
            outcome.append(error)

    thread = threading.Thread(target=target)
    thread.start()
    deadline = time.monotonic() + 30
    while not (pid_file.exists() and pid_file.read_text().strip()):
        assert time.monotonic() < deadline, "the child did not start"
        time.sleep(0.02)
    return thread, outcome, pid_file


@pytest.mark.parametrize(
    "script",
    [
        'echo $$ > "{pid}"; exec sleep 120',
        # ignores SIGTERM: it gets SIGKILL after the grace period
        'trap "" TERM; echo $$ > "{pid}"; while :; do sleep 0.05; done',
    ],
    ids=["obeys-sigterm", "ignores-sigterm"],
)
def test_stop_ends_the_running_children_and_starts_no_more(tmp_path, script):
    argv = ["sh", "-c", script.format(pid=tmp_path / "pid")]
    thread, outcome, pid_file = run_in_thread(argv, tmp_path)
    pid = int(pid_file.read_text())
    assert alive(pid)

    started = time.monotonic()
    shutdown.request()  # what SIGTERM does: stops the children with the default grace
    thread.join(30)
    assert time.monotonic() - started < 10
    assert not alive(pid)
    (error,) = outcome
    assert isinstance(error, Interrupted)
    assert str(error) == "test: skopeo stopped, the process is stopping"

    with pytest.raises(Interrupted, match="not started"):
        skopeo.run(["true"], timeout=10, what="test")
    shutdown.reset()
    assert skopeo.run(["echo", "again"], timeout=10, what="test") == "again\n"


def test_a_timeout_still_ends_the_child(tmp_path):
    pid_file = tmp_path / "pid"
    with pytest.raises(TransientError, match="timed out"):
        skopeo.run(["sh", "-c", f'echo $$ > "{pid_file}"; exec sleep 60'], timeout=0.5, what="t")
    assert not alive(int(pid_file.read_text()))


def test_a_stopped_pool_starts_nothing_more_and_its_run_raises_interrupted():
    started, followed = [], []
    gate = threading.Event()

    def work(n: int) -> int:
        started.append(n)
        gate.wait(30)
        return n

    def then(done: Future[int]) -> None:
        followed.append(done.result())
        shutdown.request()  # the first follow-up stops the process: the queued work never starts

    with pytest.raises(Interrupted, match="the process is stopping"), WorkPool(1) as pool:
        for n in range(5):
            pool.submit(lambda n=n: work(n), then)
        gate.set()
        pool.run()
    assert started == [0]
    assert followed == [0]


def test_a_stopped_pool_does_not_wait_for_work_blocked_elsewhere():
    release = threading.Event()
    started = threading.Event()

    def blocked() -> None:
        started.set()
        release.wait(60)

    begin = time.monotonic()
    with pytest.raises(Interrupted), WorkPool(2) as pool:
        pool.submit(blocked, lambda done: done.result())
        pool.submit(lambda: started.wait(30), lambda done: shutdown.request())
        pool.run()
    assert time.monotonic() - begin < 10
    release.set()


def test_a_stopped_pool_waits_for_work_it_must_finish_and_runs_its_follow_up():
    """An index tag's gate (``finish=True``) running at the stop completes, and its outcome
    is recorded: the run knows the tags it moved, to announce them."""
    release = threading.Event()
    started = threading.Event()
    followed: list[str] = []

    def gate() -> str:
        started.set()
        release.wait(30)
        return "moved"

    def stop(done: Future[bool]) -> None:
        shutdown.request()
        release.set()  # the write in flight completes after the stop

    with pytest.raises(Interrupted), WorkPool(2) as pool:
        pool.submit(gate, lambda done: followed.append(done.result()), finish=True)
        pool.submit(lambda: started.wait(30), stop)
        pool.run()
    assert followed == ["moved"]


def test_nothing_is_retried_once_the_process_is_stopping():
    calls = []
    policy = RetrySettings(attempts=5, initial_delay=0.5, max_delay=1.0)

    def once() -> None:
        calls.append(1)
        if len(calls) == 2:
            shutdown.request()  # e.g. the connection a read waited on was closed by the stop
        raise TransientError("registry unreachable")

    with pytest.raises(TransientError):
        call_with_retry(once, what="x", policy=policy)
    assert len(calls) == 2


def test_a_start_removes_what_a_killed_run_left_behind(tmp_path):
    """SIGKILL leaves no chance to clean up: the next start (consumer or replay) does it, not
    the next compose it happens to get."""
    from fedora_container_sync.config.settings import settings_from_document
    from fedora_container_sync.publish.pipeline import prepare_work_dir
    from fedora_container_sync.publish.workdir import run_directory

    work = tmp_path / "work"
    work.mkdir()
    with run_directory(work, "Fedora-41-20241025.0") as dead:
        pass
    (dead / "auth").mkdir(parents=True)
    (dead / ".lock").write_text("")  # nobody holds it: its process is gone
    (dead / "auth" / "auth-1.json").write_text('{"auths": {}}')
    table = {
        "repos": {"Container_Toolbox": "fedora-toolbox"},
        "registries": [{"url": "registry.example.org"}],
        "compose_url_allowlist": ["https://kojipkgs.example.org/compose/"],
        "work_dir": str(work),
    }
    prepare_work_dir(settings_from_document({"consumer_config": {"container": table}}))
    assert not dead.exists()
