"""SIGTERM is how systemd and OpenShift stop us (and SIGINT how a person does): to our PID only.

``replay`` runs as a process of its own against a Basic-auth registry (so auth files exist),
with the registry and the compose server behind proxies that hold a chosen request: the signal
lands while real skopeo is pushing, while the compose is being read, or while tags are read.
Whatever the moment: exit 143 (130), one line, no skopeo left running, no auth file or run
directory left in the work dir, no secret printed, no tag moved.

The daemon: ``fedora-messaging consume`` SIGTERMed mid-push ends its skopeo children, removes
its auth files, hands the message back to the broker, and a fresh consumer completes it.
"""

from __future__ import annotations

import base64
import os
import shutil
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from support.auth import PASSWORD, USER
from support.broker import Bus, wait_until
from support.harness import Harness
from support.proxy import Fault, FaultProxy, ProxyRequest
from support.servers import Registry

pytestmark = pytest.mark.integration

TOOLBOX = "fedora-toolbox"
COMPOSE = "Fedora-41-20241025.0"
SECRETS = [PASSWORD, base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()]

#: The real skopeo, recording the PID it runs as (exec keeps it) in $PIDS.
RECORDING_SKOPEO = """#!/bin/sh
echo $$ >> "{pids}"
exec "{skopeo}" "$@"
"""


def alive(pid: int) -> bool:
    """Whether ``pid`` still runs (a zombie does not)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state != "Z"


class Holding:
    """A proxy rule holding the first request that ``matches`` until released (or 120 s)."""

    def __init__(self, matches: Callable[[ProxyRequest], bool]) -> None:
        self.matches = matches
        self.held = threading.Event()
        self.release = threading.Event()

    def __call__(self, request: ProxyRequest) -> Fault | None:
        if not self.held.is_set() and self.matches(request):
            self.held.set()
            self.release.wait(120)
            return Fault.hang(0)
        return None


def blob_upload(request: ProxyRequest) -> bool:
    return request.method in ("PATCH", "PUT") and "/blobs/uploads/" in request.path


def metadata(request: ProxyRequest) -> bool:
    return request.path.endswith("/metadata/images.json")


def image_download(request: ProxyRequest) -> bool:
    return "/images/" in request.path and request.method == "GET"


def tag_read(request: ProxyRequest) -> bool:
    return request.method in ("GET", "HEAD") and "/manifests/41-" in request.path


@pytest.fixture
def stoppable(tmp_path, served_root, compose_server, namespace, capsys, basic_registry: Registry):
    """A harness publishing to the Basic-auth registry, both servers behind proxies, skopeo
    recording its PIDs."""
    with FaultProxy(compose_server.url) as compose, FaultProxy(basic_registry.url) as registry:
        harness = Harness(tmp_path, served_root, compose, [basic_registry], namespace, capsys)  # type: ignore[arg-type]
        harness.registry_entries[basic_registry.host] = (
            f'url = "{registry.host}/{namespace}"\ntls_verify = false\n'
            'credential_prefix = "STOP_"\n'
        )
        pids = tmp_path / "skopeo-pids"
        wrapper = tmp_path / "skopeo"
        wrapper.write_text(RECORDING_SKOPEO.format(pids=pids, skopeo=shutil.which("skopeo")))
        wrapper.chmod(0o755)
        harness.extra_config = f'skopeo = "{wrapper}"\n'
        yield harness, compose, registry, pids


def start_replay(harness: Harness, body: dict) -> subprocess.Popen[str]:
    argv = [sys.executable, "-m", "fedora_container_sync", "replay", "-v"]
    argv += ["--config", str(harness.config()), str(harness.message_file(body))]
    env = {**os.environ, "STOP_USER": USER, "STOP_PASSWORD": PASSWORD}
    return subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    )


def leftovers(work_dir: Path) -> list[Path]:
    """Run directories and auth files anywhere under the work dir."""
    return [
        path
        for path in work_dir.rglob("*")
        if path.name.endswith(".run") or path.name.startswith("auth") or "auth" in path.parts
    ]


@pytest.mark.parametrize(
    ("moment", "holds"),
    [
        ("mid-push", blob_upload),
        ("reading the compose", metadata),
        # a worker thread blocked on a silent compose server (no signal reaches its read)
        ("downloading an image", image_download),
        ("reading tags", tag_read),
    ],
)
@pytest.mark.parametrize(
    ("number", "code", "line"),
    [
        (signal.SIGTERM, 143, "fedora-container-sync: terminated"),
        (signal.SIGINT, 130, "fedora-container-sync: interrupted"),
    ],
    ids=["SIGTERM", "SIGINT"],
)
def test_replay_stopped_by_a_signal_ends_its_children_and_leaves_nothing(
    stoppable, moment, holds, number, code, line
):
    harness, compose, registry, pids = stoppable
    holding = Holding(holds)
    (compose if holds in (metadata, image_download) else registry).rule = holding
    body = harness.compose(COMPOSE, arches=("x86_64", "aarch64"))
    process = start_replay(harness, body)
    try:
        wait_until(holding.held.is_set, timeout=120, what=f"replay {moment}")
        started = [int(pid) for pid in pids.read_text().split()] if pids.exists() else []
        if moment == "mid-push":
            assert started and any(alive(pid) for pid in started), "no skopeo is pushing"
        process.send_signal(number)  # our PID only, as systemd and OpenShift do
        out, err = process.communicate(timeout=60)
    finally:
        holding.release.set()
        if process.poll() is None:
            process.kill()
            process.communicate()

    assert process.returncode == code, err
    lines = err.splitlines()
    assert lines[-1] == line, err
    # Before it, only the progress lines of the steps that finished: no error, no traceback.
    assert all(": INFO: " in earlier for earlier in lines[:-1]), err
    assert "Traceback" not in out + err
    for secret in SECRETS:
        assert secret not in out + err
    # No skopeo left behind, no auth file, no run directory.
    started = [int(pid) for pid in pids.read_text().split()] if pids.exists() else []
    assert [pid for pid in started if alive(pid)] == []
    assert leftovers(harness.tmp / "work") == []
    # Tags move last: no index tag was written.
    assert harness.registries[0].tags(harness.repo(TOOLBOX)) in (
        [],
        ["41-x86_64"],
        ["41-aarch64"],
        ["41-aarch64", "41-x86_64"],
    )
    assert harness.digest(TOOLBOX, "41") is None


def test_a_second_replay_after_the_stop_completes_the_compose(stoppable):
    harness, _compose, registry, _pids = stoppable
    holding = Holding(blob_upload)
    registry.rule = holding
    body = harness.compose(COMPOSE, arches=("x86_64",))
    process = start_replay(harness, body)
    try:
        wait_until(holding.held.is_set, timeout=120, what="replay mid-push")
        process.send_signal(signal.SIGTERM)
        process.communicate(timeout=60)
    finally:
        holding.release.set()
    assert process.returncode == 143
    registry.rule = lambda _request: None
    again = start_replay(harness, body)
    _out, err = again.communicate(timeout=300)
    assert again.returncode == 0, err
    assert harness.digest(TOOLBOX, "41") is not None


# -- the daemon ---------------------------------------------------------------------------------

#: skopeo for the consumer: a push (it carries --dest-authfile) records its PID and its auth file,
#: then hangs until killed; anything else is the real skopeo.
PAUSING_SKOPEO = """#!/bin/sh
prev=""
for arg in "$@"; do
    if [ "$prev" = "--dest-authfile" ]; then
        printf '%s\\n' "$arg" > "{log}/authfile"
        echo $$ > "{log}/pid"
        exec sleep 600
    fi
    prev="$arg"
done
exec "{skopeo}" "$@"
"""


def test_a_consumer_stopped_mid_push_ends_skopeo_removes_auth_files_and_hands_the_message_back(
    bus: Bus, basic_registry: Registry, tmp_path, monkeypatch
):
    harness = bus.harness
    harness.registries = [basic_registry]
    harness.registry_entries[basic_registry.host] = (
        f'url = "{basic_registry.host}/{harness.namespace}"\ntls_verify = false\n'
        'credential_prefix = "STOPC_"\n'
    )
    monkeypatch.setenv("STOPC_USER", USER)
    monkeypatch.setenv("STOPC_PASSWORD", PASSWORD)
    log = tmp_path / "pausing"
    log.mkdir()
    wrapper = tmp_path / "skopeo-pausing"
    wrapper.write_text(PAUSING_SKOPEO.format(log=log, skopeo=shutil.which("skopeo")))
    wrapper.chmod(0o755)
    bus.publish(bus.pungi(harness.compose(COMPOSE, arches=("x86_64",))))

    first = bus.consumer(bus.config(settings=f'skopeo = "{wrapper}"\n', name="first"))
    wait_until((log / "pid").exists, timeout=120, what="the consumer to start a push")
    pid = int((log / "pid").read_text())
    authfile = Path((log / "authfile").read_text().strip())
    assert alive(pid) and authfile.exists()

    assert first.stop(timeout=60) == 0  # SIGTERM to the consumer's PID only
    assert not alive(pid)
    assert not authfile.exists()
    assert leftovers(harness.tmp / "work") == []
    (handed_back,) = first.lines(r"the consumer is stopping, the message goes back to the queue")
    assert COMPOSE in handed_back
    output = first.output()
    assert "Traceback" not in output
    for secret in SECRETS:
        assert secret not in output
    # Not acknowledged, not lost: the broker has it again; no tag was moved.
    wait_until(lambda: bus.broker.count(bus.queue) == 1, timeout=30, what="the requeue")
    assert harness.digest(TOOLBOX, "41", basic_registry) is None

    second = bus.consumer(bus.config(name="second"))
    second.wait_stats(processed=1)
    assert harness.arches(TOOLBOX, "41", basic_registry) == {"x86_64"}
    assert bus.broker.count(bus.queue) == 0
    assert second.stop() == 0


def test_the_consumer_drops_a_body_nested_too_deep_and_goes_on(bus: Bus):
    harness = bus.harness
    good = harness.compose(COMPOSE, arches=("x86_64",))
    deep: object = "bottom"
    for _ in range(200):  # fedora-messaging parses this; it is 200 levels more than a body needs
        deep = [deep]
    bad = {**good, "compose_id": "Fedora-41-20241024.0", "extra": deep}
    bus.publish(bus.pungi(bad), bus.pungi(good))

    consumer = bus.consumer(bus.config())
    stats = consumer.wait_stats(processed=1, dropped=1)
    (dropped,) = consumer.lines(r"dropping the message")
    # One line naming the compose once: "compose X: dropping the message: <reason>".
    assert dropped.endswith(
        "compose Fedora-41-20241024.0: dropping the message: "
        "message body nests deeper than 64 levels"
    )
    assert stats["failed"] == 0
    assert harness.arches(TOOLBOX, "41") == {"x86_64"}
    assert "Traceback" not in consumer.output()


def test_a_consumer_stopped_while_a_download_waits_on_a_silent_server_stops_at_once(
    bus: Bus, compose_server
):
    """The download runs in a worker thread, blocked in a read that no signal interrupts: the
    stop must not wait out the read timeout (nor the grace period after which systemd and
    OpenShift kill the pod)."""
    harness = bus.harness
    with FaultProxy(compose_server.url) as proxy:
        harness.server = proxy  # type: ignore[assignment]
        holding = Holding(image_download)
        proxy.rule = holding
        bus.publish(bus.pungi(harness.compose(COMPOSE, arches=("x86_64",))))
        consumer = bus.consumer(bus.config(name="stopped"))
        try:
            wait_until(holding.held.is_set, timeout=120, what="the consumer to start a download")
            # The hold lasts 120 s; a stop that waited for the read would take that long.
            assert consumer.stop(timeout=30) == 0
        finally:
            holding.release.set()
        (handed_back,) = consumer.lines(r"the consumer is stopping, the message goes back")
        assert COMPOSE in handed_back
        assert leftovers(harness.tmp / "work") == []
        wait_until(lambda: bus.broker.count(bus.queue) == 1, timeout=30, what="the requeue")
