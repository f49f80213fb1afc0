"""The work pool: bounded, follow-ups on the caller's thread in submission order; and the
``max_parallel`` setting that sizes it."""

import os
import subprocess
import sys
import threading

import pytest

from fedora_container_sync.config.settings import settings_from_document
from fedora_container_sync.errors import ConfigError, TransientError
from fedora_container_sync.publish.workpool import WorkPool


def test_never_more_than_workers_at_once_and_as_many_as_allowed():
    lock, running, peak = threading.Lock(), [0], [0]
    both = threading.Barrier(2, timeout=30)

    def work():
        with lock:
            running[0] += 1
            peak[0] = max(peak[0], running[0])
        both.wait()  # returns only once two workers run at the same time
        with lock:
            running[0] -= 1

    with WorkPool(2) as pool:
        for _ in range(6):
            pool.submit(work, lambda done: done.result())
        pool.run()
    assert peak[0] == 2


def test_follow_ups_run_on_the_callers_thread_and_may_submit_more():
    caller = threading.get_ident()
    seen = []

    def then(done):
        seen.append((done.result(), threading.get_ident() == caller))
        if done.result() < 3:
            pool.submit(lambda: done.result() + 1, then)

    with WorkPool(3) as pool:
        pool.submit(lambda: 1, then)
        pool.run()
    assert seen == [(1, True), (2, True), (3, True)]


def test_a_failure_reaches_the_follow_up():
    def fail():
        raise TransientError("registry timed out")

    caught = []

    def then(done):
        with pytest.raises(TransientError) as error:
            done.result()
        caught.append(str(error.value))

    with WorkPool(1) as pool:
        pool.submit(fail, then)
        pool.run()
    assert caught == ["registry timed out"]


def test_a_bug_in_a_follow_up_ends_the_run():
    with WorkPool(1) as pool:
        pool.submit(lambda: None, lambda done: 1 / 0)
        with pytest.raises(ZeroDivisionError):
            pool.run()


def _table(**extra):
    return {
        "repos": {"Container_Base": "fedora"},
        "registries": [{"url": "registry.example"}],
        "compose_url_allowlist": ["https://kojipkgs.fedoraproject.org/compose/"],
        **extra,
    }


def _settings(**extra):
    return settings_from_document({"consumer_config": {"container": _table(**extra)}})


def test_max_parallel_defaults_to_the_cpus_the_process_may_use():
    document = {"consumer_config": {"container": _table()}}
    assert settings_from_document(document, cpus=7).max_parallel == 7
    assert settings_from_document(document, cpus=1000).max_parallel == 256  # its own bound
    assert _settings(max_parallel=3).max_parallel == 3
    with_setting = {"consumer_config": {"container": _table(max_parallel=3)}}
    assert settings_from_document(with_setting, cpus=7).max_parallel == 3


def test_max_parallel_default_follows_the_cpu_affinity_not_the_machine(tmp_path):
    """A process allowed one CPU (taskset, CPUAffinity=, a cpuset) defaults to 1, whatever
    os.cpu_count() says: the config file as the command line and the consumer load it."""
    if not hasattr(os, "sched_setaffinity"):
        pytest.skip("no CPU affinity on this platform")
    config = tmp_path / "config.toml"
    config.write_text(
        "[consumer_config.container]\n"
        'repos = { Container_Base = "fedora" }\n'
        'registries = [{ url = "registry.example" }]\n'
        'compose_url_allowlist = ["https://kojipkgs.fedoraproject.org/compose/"]\n'
    )
    code = (
        "import os, sys\n"
        "os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})\n"
        "from fedora_container_sync.config.load import load_settings\n"
        "print(load_settings(__import__('pathlib').Path(sys.argv[1])).max_parallel)\n"
    )
    run = subprocess.run(
        [sys.executable, "-c", code, str(config)],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.split() == ["1"]


@pytest.mark.parametrize("value", [0, -1, "4", 2.5])
def test_max_parallel_must_be_a_positive_integer(value):
    with pytest.raises(ConfigError, match=r"consumer_config\.container\.max_parallel: "):
        _settings(max_parallel=value)
