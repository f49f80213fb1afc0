#!/usr/bin/env python3
"""``make deploy-check``: the production shape run for real, as an operator would.

1. systemd: a Debian rootfs (mmdebstrap, cached) booted with ``systemd-nspawn --boot``; the
   package installed the documented venv way (docs/operating.md#installing) from
   requirements.lock, the shipped units copied unchanged. A missing credential file, a start, a
   publish, a stop mid-publish (run dir removed, message back in the queue), the restart
   finishing it, the audit service and timer beside the running consumer.
2. container: the image built from deploy/openshift/Containerfile on a stand-in base (the same
   rootfs, ``podman import``), run as an arbitrary UID with a read-only root: probes, a stop
   mid-publish within the grace period, the publish finished by the next container, the audit
   run as the CronJob runs it, beside the consumer.
3. manifests: ``kubectl kustomize`` builds them, kubernetes-validate checks them against the
   Kubernetes schemas, ``podman kube play`` runs the Deployment as two replicas; stopping the
   active one mid-publish lets the standby finish.

Every server (registry, compose server) runs on 127.0.0.1; the nspawn container and the pods
share the host's network, so they reach them and RabbitMQ there. Every wait is bounded; what
was started is stopped on the way out. Root only.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests"))

from fedora_messaging import message as fm_message  # noqa: E402

from fedora_container_sync.oci.manifest import ARCH, COMPOSE_ID  # noqa: E402
from support.broker import Broker, production_queue, publish_file, write_messages  # noqa: E402
from support.compose import ComposeImage, build_compose, finished_message  # noqa: E402
from support.servers import Registry, free_port  # noqa: E402

SUITE = "trixie"
MIRROR = "http://deb.debian.org/debian"
#: the rootfs: a booted systemd host, and the image's stand-in base (python3 + skopeo)
PACKAGES = (
    "systemd",
    "systemd-sysv",
    "dbus",
    "python3",
    "python3-venv",
    "skopeo",
    "ca-certificates",
)
REPOSITORY = "fedora-toolbox"
ARCHES = ("x86_64", "aarch64")
CREDENTIALS = (
    "FEDORA_REGISTRY_USER",
    "FEDORA_REGISTRY_PASSWORD",
    "QUAY_IO_USER",
    "QUAY_IO_PASSWORD",
    "registry-fedoraproject.cert",
    "registry-fedoraproject.key",
    "broker-cacert.pem",
    "broker-cert.pem",
    "broker-key.pem",
)
HOST_CA = Path("/etc/ssl/certs/ca-certificates.crt")
STARTED = time.monotonic()


class CheckFailed(Exception):
    pass


def step(text: str) -> None:
    print(f"deploy-check [{time.monotonic() - STARTED:6.1f}s] {text}", flush=True)


def run(
    argv: list[str], *, timeout: float = 300, check: bool = True, **kwargs: Any
) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        argv, capture_output=True, text=True, timeout=timeout, check=False, **kwargs
    )
    if check and result.returncode != 0:
        raise CheckFailed(
            f"{' '.join(argv)[:200]} exited {result.returncode}:\n"
            f"{result.stdout[-3000:]}{result.stderr[-3000:]}"
        )
    return result


def wait_for(condition: Callable[[], Any], *, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise CheckFailed(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(0.5)


def expect(condition: bool, what: str) -> None:
    if not condition:
        raise CheckFailed(what)


# --- what every part shares: a registry, a compose server with a gate, the broker -----------


class Gate:
    """Holds every image download while closed (bounded): the publish is then mid-way."""

    def __init__(self) -> None:
        self.open = threading.Event()
        self.open.set()
        self.held = threading.Event()

    def close(self) -> None:
        self.held.clear()
        self.open.clear()


class _GatedHandler(SimpleHTTPRequestHandler):
    gate: Gate

    def do_GET(self) -> None:
        if "/images/" in self.path and not self.gate.open.is_set():
            self.gate.held.set()
            self.gate.open.wait(300)
        with contextlib.suppress(OSError):
            super().do_GET()

    def log_message(self, *args: Any) -> None:
        pass


class World:
    """The registry, the compose server and this run's queue; composes and messages."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.gate = Gate()
        self.served = tmp / "served"
        self.served.mkdir()
        self.registry = Registry().start()
        handler = type("Handler", (_GatedHandler,), {"gate": self.gate})
        self.server = ThreadingHTTPServer(
            ("127.0.0.1", 0), partial(handler, directory=str(self.served))
        )
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.env = f"deploycheck{uuid.uuid4().hex[:8]}"
        self.topic_prefix = f"org.fedoraproject.{self.env}"
        self.queue = f"fedora-container-sync-{self.env}"
        self.dead_letters = f"{self.queue}.dead-letter"
        # A connection per use: a long step (mmdebstrap, a build) would leave a held one
        # without heartbeats, and the broker closes it.
        with self._broker() as broker:
            broker.declare_dead_letters(self.dead_letters)
            self.arguments = production_queue(delivery_limit=20, dead_letters=self.dead_letters)
            broker.declare(
                self.queue,
                [f"{self.topic_prefix}.pungi.compose.status.change"],
                arguments=self.arguments,
            )
        self.namespace = self.env
        self._day = 0

    @contextlib.contextmanager
    def _broker(self) -> Iterator[Broker]:
        """A fresh connection, closed after use; nothing declared through it is deleted."""
        broker = Broker()
        try:
            yield broker
        finally:
            broker._queues.clear()
            broker._exchanges.clear()
            broker.close()

    def close(self) -> None:
        self.gate.open.set()
        with contextlib.suppress(Exception):
            broker = Broker()
            broker._queues[:] = [self.queue, self.dead_letters]
            broker._exchanges[:] = [self.dead_letters]
            broker.close()
        self.server.shutdown()
        self.registry.stop()

    def new_compose_message(self) -> tuple[str, Path]:
        """A new compose and the file holding its message (not sent): its id and the file."""
        self._day += 1
        compose_id = f"Fedora-41-202410{self._day:02d}.0"
        compose_dir = build_compose(
            self.served,
            compose_id=compose_id,
            release_version="41",
            images=[ComposeImage("Container_Toolbox", arch) for arch in ARCHES],
        )
        body = finished_message(compose_dir, served_root=self.served, base_url=self.url)
        topic = f"{self.topic_prefix}.pungi.compose.status.change"
        message = fm_message.Message(topic=topic, body=body)
        return compose_id, write_messages(self.tmp / f"{compose_id}.jsonl", [message])

    def publish_compose(self) -> str:
        """A new compose (two arches of fedora-toolbox) announced on the bus; its id."""
        compose_id, path = self.new_compose_message()
        publish_file(path, self.tmp)
        return compose_id

    def published(self, compose_id: str) -> bool:
        """The index tag 41 names ``compose_id`` with both arches."""
        import httpx

        try:
            found = self.registry.get_manifest(f"{self.namespace}/{REPOSITORY}", "41")
        except httpx.HTTPError:
            # distribution may answer 500 while the tag is being written: not there yet
            return False
        if found is None:
            return False
        index = json.loads(found[2])
        arches = {entry.get("annotations", {}).get(ARCH) for entry in index.get("manifests", [])}
        return index.get("annotations", {}).get(COMPOSE_ID) == compose_id and arches == set(ARCHES)

    def ready_messages(self) -> int:
        with self._broker() as broker:
            return broker.count(self.queue)

    def config(
        self, *, work_dir: str, health_port: int, monitoring_port: int, address: str = "127.0.0.1"
    ) -> str:
        """The consumer's config: the production queue shape, this run's servers."""
        args = "".join(f'"{k}" = {json.dumps(v)}\n' for k, v in self.arguments.items())
        return f"""
amqp_url = "amqp://guest:guest@127.0.0.1:5672/%2F"
callback = "fedora_container_sync.consumer:Consumer"
topic_prefix = "{self.topic_prefix}"

[client_properties]
app = "fedora-container-sync deploy-check"

[qos]
prefetch_size = 0
prefetch_count = 1

[queues."{self.queue}"]
durable = true
auto_delete = false
exclusive = false

[queues."{self.queue}".arguments]
{args}
[[bindings]]
queue = "{self.queue}"
exchange = "amq.topic"
routing_keys = ["{self.topic_prefix}.pungi.compose.status.change"]

[monitoring]
address = "{address}"
port = {monitoring_port}

[log_config]
version = 1
disable_existing_loggers = false

[log_config.formatters.simple]
format = "%(levelname)s %(name)s: %(message)s"

[log_config.handlers.console]
class = "logging.StreamHandler"
formatter = "simple"
stream = "ext://sys.stdout"

[log_config.loggers.fedora_container_sync]
level = "INFO"

[log_config.loggers.fedora_messaging]
level = "INFO"

[log_config.root]
level = "WARNING"
handlers = ["console"]

[consumer_config.container]
compose_url_allowlist = ["{self.url}/"]
work_dir = "{work_dir}"
publish_amqp_messages = true

[consumer_config.container.health]
address = "{address}"
port = {health_port}

[consumer_config.container.repos]
Container_Toolbox = "{REPOSITORY}"

[consumer_config.container.releases]
latest = 41
rawhide = 43

[[consumer_config.container.registries]]
url = "{self.registry.host}/{self.namespace}"
tls_verify = false
credential_prefix = "FEDORA_REGISTRY_"
"""


#: A stop mid-publish must end well within the grace period (TimeoutStopSec=60, the pod's
#: terminationGracePeriodSeconds=60).
STOP_WITHIN = 30.0


def release_gate_soon(gate: Gate) -> None:
    """Let the held download go on 2 s after the stop was asked for: an HTTP read blocked on a
    silent server is not interrupted by the stop (it waits for the read timeout), so holding it
    would measure that timeout, not the stop."""
    threading.Timer(2.0, gate.open.set).start()


def run_dirs(work: Path) -> list[str]:
    """The run directories under a work dir (os.walk: one vanishing meanwhile is no error)."""
    return [
        os.path.join(parent, name)
        for parent, dirs, files in os.walk(work)
        for name in [*dirs, *files]
        if name.endswith(".run")
    ]


def write_credentials(directory: Path) -> None:
    """Dummy values: the test registry has no auth; the config names no cert_dir or [tls]."""
    directory.mkdir(parents=True, exist_ok=True)
    os.chmod(directory, 0o700)
    for name in CREDENTIALS:
        path = directory / name
        path.write_text("deploy-check\n")
        os.chmod(path, 0o600)


def http_status(url: str) -> int:
    import httpx

    try:
        return httpx.get(url, timeout=5).status_code
    except httpx.HTTPError:
        return 0


def pip_conf(tmp: Path) -> Path:
    """pip inside the rootfs and the image build trusts what the host trusts (this machine
    reaches PyPI through a TLS proxy): the check's business, not the product's."""
    path = tmp / "pip.conf"
    path.write_text("[global]\ncert = /etc/ssl/certs/host-ca.crt\n")
    return path


# --- the rootfs ------------------------------------------------------------------------------


def rootfs_tar(cache: Path) -> Path:
    """The Debian rootfs tarball, built once per set of inputs."""
    key = hashlib.sha256(f"{SUITE} {MIRROR} {' '.join(PACKAGES)} v1".encode()).hexdigest()[:16]
    tar = cache / f"rootfs-{SUITE}-{key}.tar"
    if tar.exists():
        step(f"rootfs: cached {tar}")
        return tar
    step(f"rootfs: mmdebstrap {SUITE} ({', '.join(PACKAGES)}) from {MIRROR}")
    cache.mkdir(parents=True, exist_ok=True)
    partial_tar = tar.with_suffix(".partial")
    argv = ["mmdebstrap", "--variant=apt", "--format=tar", f"--include={','.join(PACKAGES)}"]
    argv += [SUITE, str(partial_tar), MIRROR]
    for attempt in (1, 2):  # the archive's mirror may stumble once
        result = run(argv, timeout=900, check=attempt == 2)
        if result.returncode == 0:
            break
        step(f"rootfs: mmdebstrap failed ({result.stderr.strip()[-200:]}); once more")
    partial_tar.rename(tar)
    return tar


# --- 1. systemd ----------------------------------------------------------------------------


class Machine:
    """``systemd-nspawn --boot`` of a rootfs directory; commands run inside with nsenter."""

    def __init__(self, root: Path, name: str, binds: list[str], log: Path) -> None:
        self.root = root
        self.log = log
        self._log = log.open("w")
        argv = ["systemd-nspawn", "--boot", "-D", str(root), f"--machine={name}", "--register=no"]
        argv += ["--keep-unit", "--quiet", "--console=pipe", *binds]
        self.proc = subprocess.Popen(
            argv, stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
        )
        self.leader = wait_for(self._leader, timeout=60, what="the container's systemd")
        wait_for(self._booted, timeout=120, what="the container to finish booting")

    def _leader(self) -> int | None:
        if self.proc.poll() is not None:
            raise CheckFailed(
                f"systemd-nspawn exited {self.proc.returncode}: {self.log.read_text()[-2000:]}"
            )
        children = run(["pgrep", "-P", str(self.proc.pid)], check=False).stdout.split()
        for pid in children:
            if Path(f"/proc/{pid}/comm").read_text().strip() == "systemd":
                return int(pid)
        return None

    def _booted(self) -> bool:
        state = self.sh("systemctl is-system-running", check=False).stdout.strip()
        return state in ("running", "degraded")

    def sh(
        self, script: str, *, timeout: float = 300, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        argv = ["nsenter", "-t", str(self.leader), "-m", "-u", "-i", "-p", "-n", "--"]
        argv += ["env", "-i", "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]
        argv += ["HOME=/root", "PIP_CONFIG_FILE=/etc/pip.conf", "/bin/sh", "-ec", script]
        return run(argv, timeout=timeout, check=check)

    def stop(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(Exception):
                self.sh("systemctl poweroff --no-block", timeout=30, check=False)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(30)
        self._log.close()


def install_script() -> str:
    """docs/operating.md#installing, the venv route, word for word (SRC: the source tree)."""
    return """
python3 -m venv /opt/fedora-container-sync
/opt/fedora-container-sync/bin/pip install --require-hashes --no-deps -r "$SRC/requirements.lock"
/opt/fedora-container-sync/bin/pip install --no-deps --no-build-isolation "$SRC"
ln -sf /opt/fedora-container-sync/bin/fedora-messaging \\
    /opt/fedora-container-sync/bin/fedora-container-sync /usr/local/bin/
install -m 0644 "$SRC"/systemd/*.service "$SRC"/systemd/*.timer /etc/systemd/system/
install -m 0644 "$SRC"/systemd/fedora-container-sync-audit.sysusers \\
    /usr/lib/sysusers.d/fedora-container-sync-audit.conf
systemd-sysusers
systemctl daemon-reload
"""


def source_tree(dest: Path) -> None:
    """What a release tarball holds: the tracked files of the working tree."""
    files = run(["git", "-C", str(ROOT), "ls-files", "-z"]).stdout.split("\0")
    for name in filter(None, files):
        source = ROOT / name
        if source.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, dest / name)


def check_systemd(world: World, tar: Path, tmp: Path, cache: Path) -> None:
    root = tmp / "machine"
    root.mkdir()
    step("systemd: unpacking the rootfs")
    run(["tar", "-C", str(root), "-xf", str(tar)], timeout=300)
    shutil.copy(HOST_CA, root / "etc/ssl/certs/host-ca.crt")
    shutil.copy(pip_conf(tmp), root / "etc/pip.conf")
    source_tree(root / "root/src")
    pip_cache = cache / "pip-trixie"
    pip_cache.mkdir(parents=True, exist_ok=True)
    step("systemd: booting it with systemd-nspawn --boot")
    machine = Machine(
        root, f"fcs-{world.env[-8:]}", [f"--bind={pip_cache}:/root/.cache/pip"], tmp / "nspawn.log"
    )
    try:
        _check_systemd(world, machine, root)
    except Exception:
        journal = machine.sh("journalctl --no-pager -n 80 -o short-monotonic", check=False)
        print(journal.stdout, file=sys.stderr)
        raise
    finally:
        machine.stop()


def _check_systemd(world: World, machine: Machine, root: Path) -> None:
    version = machine.sh("python3 --version; systemctl --version | head -1").stdout.split("\n")
    step(f"systemd: booted ({version[0]}, {version[1]}); installing the documented way")
    machine.sh("SRC=/root/src\n" + install_script(), timeout=600)

    health, monitoring = free_port(), free_port()
    config = root / "etc/fedora-messaging/fedora-container-sync.toml"
    config.parent.mkdir(parents=True, exist_ok=True)
    config.write_text(
        world.config(
            work_dir="/var/lib/fedora-container-sync",
            health_port=health,
            monitoring_port=monitoring,
        )
    )

    step(
        "systemd: a missing credential file stops the start (AssertPathExists=), no Protocol error"
    )
    machine.sh("mkdir -p -m 0700 /etc/fedora-container-sync/credentials")
    failed = machine.sh("systemctl start fedora-container-sync.service", check=False)
    status = machine.sh(
        "systemctl status --no-pager -l fedora-container-sync.service; "
        "journalctl --no-pager -o cat -u fedora-container-sync.service",
        check=False,
    ).stdout
    expect(failed.returncode != 0, "the service started without its credentials")
    expect("Protocol error" not in status, f"systemd's bare 'Protocol error':\n{status}")
    # systemd logs which AssertPathExists= failed at debug level only: the unit's assert lines
    # (systemctl cat) name the files; "Assertion failed" says it is one of them.
    expect("Assertion failed" in failed.stderr + status, f"no assertion named:\n{status}")
    asserts = machine.sh("systemctl cat fedora-container-sync.service").stdout
    expect(
        "AssertPathExists=/etc/fedora-container-sync/credentials/FEDORA_REGISTRY_USER" in asserts,
        "the unit asserts no credential file",
    )

    write_credentials(root / "etc/fedora-container-sync/credentials")
    step("systemd: starting the shipped fedora-container-sync.service")
    machine.sh("systemctl reset-failed; systemctl enable --now fedora-container-sync.service")
    wait_for(
        lambda: http_status(f"http://127.0.0.1:{health}/ready") == 200, timeout=90, what="/ready"
    )
    expect(http_status(f"http://127.0.0.1:{health}/live") == 200, "/live is not 200")

    work = root / "var/lib/private/fedora-container-sync"
    step("systemd: a publish, stopped mid-way")
    world.gate.close()
    compose = world.publish_compose()
    wait_for(world.gate.held.is_set, timeout=120, what="the first image download")
    wait_for(lambda: run_dirs(work), timeout=30, what="a run directory")
    began = time.monotonic()
    machine.sh("systemctl stop --no-block fedora-container-sync.service")
    release_gate_soon(world.gate)
    wait_for(
        lambda: (
            machine.sh(
                "systemctl is-active fedora-container-sync.service", check=False
            ).stdout.strip()
            in ("inactive", "failed")
        ),
        timeout=STOP_WITHIN,
        what="the service to stop",
    )
    took = time.monotonic() - began
    journal = machine.sh("journalctl --no-pager -o cat -u fedora-container-sync.service").stdout
    expect(not run_dirs(work), f"run directory left: {run_dirs(work)}")
    expect("without a message" not in journal, f"skopeo signalled directly:\n{journal[-2000:]}")
    wait_for(lambda: world.ready_messages() == 1, timeout=30, what="the message back in the queue")
    step(f"systemd: stopped in {took:.1f}s, run directory removed, message requeued")

    machine.sh("systemctl start fedora-container-sync.service")
    wait_for(
        lambda: world.published(compose), timeout=180, what=f"{compose} published after the restart"
    )
    wait_for(lambda: world.ready_messages() == 0, timeout=30, what="the queue to drain")
    step(f"systemd: {compose} redelivered and published")

    step("systemd: the audit service and its timer beside the running consumer")
    machine.sh("systemctl enable --now fedora-container-sync-audit.timer")
    audit = machine.sh(
        "systemctl start fedora-container-sync-audit.service", check=False, timeout=300
    )
    result = machine.sh(
        "systemctl show -p Result -p ExecMainStatus fedora-container-sync-audit.service; "
        "journalctl --no-pager -o cat -u fedora-container-sync-audit.service",
        check=False,
    ).stdout
    expect(
        "Address already in use" not in result,
        f"the audit collided with the consumer:\n{result[-3000:]}",
    )
    expect(
        "ExecMainStatus=0" in result or "ExecMainStatus=3" in result,
        f"audit failed ({audit.stderr}):\n{result[-3000:]}",
    )
    page = root / "var/lib/fedora-container-sync-audit/index.html"
    expect(
        page.is_file() and compose in page.read_text(),
        "the audit wrote no status page naming the compose",
    )
    timers = machine.sh(
        "systemctl list-timers --all --no-pager fedora-container-sync-audit.timer"
    ).stdout
    expect(
        "fedora-container-sync-audit.service" in timers, f"the timer is not scheduled:\n{timers}"
    )
    expect(
        machine.sh("systemctl is-active fedora-container-sync.service", check=False).stdout.strip()
        == "active",
        "the consumer stopped while the audit ran",
    )
    step("systemd: audit ran beside the consumer, page written, timer scheduled")

    # All but the smoke test of tests/support, which starts a registry (docker-registry is not
    # in the rootfs).
    step("systemd: the unit tests on the rootfs' Python (Fedora 42's 3.13)")
    tests = machine.sh(
        """
python3 -m venv /root/tests-venv
/root/tests-venv/bin/pip install -q --require-hashes --no-deps -r /root/src/requirements.lock
/root/tests-venv/bin/pip install -q --no-build-isolation -e '/root/src[test]'
cd /root/src
/root/tests-venv/bin/python -m pytest tests/unit -q -x -p no:cacheprovider \\
    --ignore=tests/unit/test_support_smoke.py >/root/unit.log 2>&1 && rc=0 || rc=$?
tail -15 /root/unit.log
exit $rc
""",
        timeout=900,
        check=False,
    )
    summary = tests.stdout.strip().splitlines()[-1] if tests.stdout.strip() else ""
    expect(
        tests.returncode == 0 and " passed" in summary and "failed" not in summary,
        f"unit tests on the rootfs' Python:\n{tests.stdout}{tests.stderr[-3000:]}",
    )
    step(f"systemd: unit tests on {version[0]}: {summary}")


# --- 2. container --------------------------------------------------------------------------

IMAGE = "localhost/fedora-container-sync:deploy-check"
#: an arbitrary non-root UID in group 0, as OpenShift runs it
UID = "100999:0"


class Podman:
    """podman with this check's own storage (kept as a cache) and this machine's quirks."""

    def __init__(self, cache: Path) -> None:
        self.argv = ["podman", "--root", str(cache / "containers"), "--runroot"]
        self.argv += ["/run/fcs-deploy-check-podman", "--cgroup-manager=cgroupfs"]
        # crun refuses this machine's hybrid cgroups ("drop all controllers from cgroupv2")
        self.argv += ["--events-backend=file", "--runtime", shutil.which("runc") or "runc"]
        # podman asks for more open files and processes than this machine's hard limits
        # allow (runc: "error setting rlimit type 7", 6): the host's file limit, fewer
        # processes, for `run` and `kube play` alike.
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        conf = cache / "containers.conf"
        cache.mkdir(parents=True, exist_ok=True)
        conf.write_text(
            f'[containers]\ndefault_ulimits = ["nofile={soft}:{hard}", "nproc=4096:4096"]\n'
        )
        self.env = {**os.environ, "CONTAINERS_CONF": str(conf)}
        self.containers: list[str] = []
        self.pods: list[str] = []

    def __call__(self, *args: str, **kwargs: Any) -> subprocess.CompletedProcess[str]:
        return run([*self.argv, *args], env=self.env, **kwargs)

    def remove_all(self) -> None:
        for name in self.containers:
            self("rm", "-f", "-t", "5", name, check=False, timeout=120)
        for name in self.pods:
            self("pod", "rm", "-f", "-t", "5", name, check=False, timeout=120)


def stand_in_base(podman: Podman, tar: Path) -> str:
    """The rootfs as an image: Debian's python3 and skopeo stand in for Fedora's."""
    name = f"localhost/fcs-stand-in-base:{tar.stem.rsplit('-', 1)[1]}"
    if podman("image", "exists", name, check=False).returncode != 0:
        step(f"container: podman import {tar.name} as {name}")
        podman("import", "--change", "CMD=/bin/sh", str(tar), name, timeout=600)
    return name


def build_image(podman: Podman, base: str, tmp: Path) -> None:
    context = tmp / "context"
    source_tree(context)
    ca = tmp / "host-ca.crt"
    shutil.copy(HOST_CA, ca)
    step(f"container: podman build -f deploy/openshift/Containerfile --build-arg BASE_IMAGE={base}")
    podman(
        "build",
        "--build-arg",
        f"BASE_IMAGE={base}",
        "-f",
        str(context / "deploy/openshift/Containerfile"),
        "-t",
        IMAGE,
        "--volume",
        f"{ca}:/etc/ssl/certs/host-ca.crt:ro",
        "--volume",
        f"{pip_conf(tmp)}:/etc/pip.conf:ro",
        str(context),
        timeout=900,
    )
    # The previous builds' layers: the cache keeps only what the next build can reuse.
    podman("image", "prune", "-f", check=False, timeout=300)


def group_dir(path: Path) -> Path:
    """A directory the arbitrary UID may write through group 0 (emptyDir, fsGroup)."""
    path.mkdir(parents=True)
    os.chown(path, 0, 0)
    os.chmod(path, 0o2770)  # noqa: S103 (group 0 only, as OpenShift's fsGroup)
    return path


def check_container(world: World, tar: Path, tmp: Path, cache: Path) -> None:
    podman = Podman(cache)
    try:
        base = stand_in_base(podman, tar)
        build_image(podman, base, tmp / "build")
        _check_container(world, podman, tmp / "container")
    finally:
        podman.remove_all()


def _check_container(world: World, podman: Podman, tmp: Path) -> None:
    config_dir = tmp / "config"
    config_dir.mkdir(parents=True)
    health, monitoring = free_port(), free_port()
    (config_dir / "fedora-container-sync.toml").write_text(
        world.config(
            work_dir="/var/lib/fedora-container-sync",
            health_port=health,
            monitoring_port=monitoring,
        )
    )
    os.chmod(config_dir / "fedora-container-sync.toml", 0o644)
    os.chmod(config_dir, 0o755)  # noqa: S103 (a ConfigMap is world-readable)
    credentials = tmp / "credentials"
    write_credentials(credentials)
    for path in [credentials, *credentials.iterdir()]:
        os.chown(path, 0, 0)
        os.chmod(path, 0o750 if path.is_dir() else 0o640)
    work = group_dir(tmp / "work")
    status = group_dir(tmp / "status")
    mounts = [
        "-v",
        f"{config_dir}:/etc/fedora-messaging:ro",
        "-v",
        f"{credentials}:/run/secrets/fedora-container-sync:ro",
    ]
    # As the Deployment runs it: an arbitrary UID in group 0, nothing writable but the work
    # dir (no tmpfs either: Kubernetes' readOnlyRootFilesystem gives none).
    sandbox = ["--user", UID, "--read-only", "--read-only-tmpfs=false", "--network", "host"]
    sandbox += ["--cap-drop", "all", "--security-opt", "no-new-privileges"]
    name = f"fcs-{world.env}-consumer"
    podman.containers.append(name)

    def start() -> None:
        podman("rm", "-f", name, check=False)
        podman(
            "run", "-d", "--name", name, *sandbox, *mounts,
            "-v", f"{work}:/var/lib/fedora-container-sync",
            IMAGE, "fedora-messaging", "consume",
        )  # fmt: skip

    step(f"container: running it as UID {UID} with a read-only root")
    start()
    wait_for(
        lambda: http_status(f"http://127.0.0.1:{health}/ready") == 200,
        timeout=90,
        what=f"/ready of the container ({podman('logs', name, check=False).stdout[-1500:]})",
    )
    expect(http_status(f"http://127.0.0.1:{health}/live") == 200, "/live is not 200")
    step("container: probes answer 200; a publish, stopped mid-way with SIGTERM")
    world.gate.close()
    compose = world.publish_compose()
    wait_for(world.gate.held.is_set, timeout=120, what="the first image download")
    wait_for(lambda: run_dirs(work), timeout=30, what="a run directory")
    began = time.monotonic()
    release_gate_soon(world.gate)
    podman("stop", "-t", "60", name, timeout=120)
    took = time.monotonic() - began
    expect(took < STOP_WITHIN, f"the container took {took:.0f}s to stop")
    expect(not run_dirs(work), f"run directory left: {run_dirs(work)}")
    wait_for(lambda: world.ready_messages() == 1, timeout=30, what="the message back in the queue")
    exited = podman("inspect", "-f", "{{.State.ExitCode}}", name).stdout.strip()
    step(f"container: stopped in {took:.1f}s (exit {exited}), run dir removed, message requeued")
    start()
    wait_for(lambda: world.published(compose), timeout=180, what=f"{compose} published")
    wait_for(lambda: world.ready_messages() == 0, timeout=30, what="the queue to drain")
    step(f"container: {compose} redelivered and published by the next container")

    step("container: the audit as the CronJob runs it, beside the consumer")
    audit = podman(
        "run", "--rm", *sandbox, *mounts,
        "-v", f"{status}:/var/lib/fedora-container-sync-audit",
        "-e", "FEDORA_MESSAGING_CONF=/etc/fedora-messaging/fedora-container-sync.toml",
        "-e", "CREDENTIALS_DIRECTORY=/run/secrets/fedora-container-sync",
        IMAGE, "fedora-container-sync", "audit", "--max-age", "48",
        "--html", "/var/lib/fedora-container-sync-audit/index.html",
        check=False, timeout=300,
    )  # fmt: skip
    expect(
        audit.returncode in (0, 3),
        f"audit exited {audit.returncode}:\n{audit.stdout}{audit.stderr}",
    )
    page = status / "index.html"
    expect(
        page.is_file() and compose in page.read_text(), "the audit wrote no page naming the compose"
    )

    step("container: replay beside the consumer, as the dead-letter procedure runs it (oc exec)")
    replayed = world.new_compose_message()
    shutil.copy(replayed[1], work / "replay.jsonl")
    os.chmod(work / "replay.jsonl", 0o644)
    replay = podman(
        "exec", name, "fedora-container-sync", "replay",
        "/var/lib/fedora-container-sync/replay.jsonl",
        check=False, timeout=300,
    )  # fmt: skip
    output = replay.stdout + replay.stderr
    expect(
        "Address already in use" not in output,
        f"replay collided with the consumer:\n{output[-3000:]}",
    )
    expect(replay.returncode == 0, f"replay exited {replay.returncode}:\n{output[-3000:]}")
    expect(world.published(replayed[0]), f"replay did not publish {replayed[0]}")
    expect(
        podman("inspect", "-f", "{{.State.Running}}", name).stdout.strip() == "true",
        "consumer died",
    )
    step("container: audit and replay ran beside the consumer")


# --- 3. manifests --------------------------------------------------------------------------


def check_manifests(world: World, cache: Path, tmp: Path) -> None:
    step("manifests: kubectl kustomize deploy/openshift")
    built = run(["kubectl", "kustomize", str(ROOT / "deploy" / "openshift")]).stdout
    path = tmp / "openshift.yaml"
    path.write_text(built)
    step("manifests: kubernetes-validate --strict against the bundled Kubernetes schemas")
    validator = Path(sys.executable).parent / "kubernetes-validate"
    result = run([str(validator), "--strict", str(path)], check=False)
    lines = (result.stdout + result.stderr).splitlines()
    passed = [line for line in lines if " passed for resource " in line]
    # The Route is OpenShift's: no schema among Kubernetes' own.
    others = [
        line
        for line in lines
        if line.strip() and " passed for resource " not in line and "kind Route " not in line
    ]
    expect(result.returncode == 0 and not others, "manifests do not validate:\n" + "\n".join(lines))
    expect(len(passed) >= 5, f"too few resources validated:\n{result.stdout}")
    step(f"manifests: {len(passed)} resources valid (the Route has no Kubernetes schema)")
    podman = Podman(cache)
    try:
        check_kube_play(world, podman, built, tmp / "kube")
    finally:
        podman.remove_all()


def played_deployment(built: str, replica: str, image: str, dirs: dict[str, Path]) -> str:
    """The shipped Deployment as ``podman kube play`` can run it here, one replica per play
    (podman plays one pod per Deployment): the image built above; the host's network (the
    registry, compose server and broker are on its loopback; each replica its own ports);
    ConfigMap, Secret and emptyDir as host directories; probes asked from outside (podman
    would run them with curl inside, which the image has not); an arbitrary UID in group 0
    with a read-only root, as OpenShift runs it. Everything else as shipped."""
    import yaml

    (deployment,) = [
        doc
        for doc in yaml.safe_load_all(built)
        if doc
        and doc["kind"] == "Deployment"
        and doc["metadata"]["name"] == "fedora-container-sync"
    ]
    deployment["metadata"]["name"] = f"fcs-{replica}"
    deployment["spec"]["replicas"] = 1
    pod = deployment["spec"]["template"]["spec"]
    pod["hostNetwork"] = True
    pod.pop("topologySpreadConstraints", None)
    pod.pop("affinity", None)
    (container,) = pod["containers"]
    container["image"] = image
    container.pop("ports", None)
    container.pop("livenessProbe", None)
    container.pop("readinessProbe", None)
    container["securityContext"].update(runAsUser=100998, runAsGroup=0, readOnlyRootFilesystem=True)
    pod["volumes"] = [
        {"name": name, "hostPath": {"path": str(path), "type": "Directory"}}
        for name, path in dirs.items()
    ]
    return yaml.safe_dump(deployment)


def check_kube_play(world: World, podman: Podman, built: str, tmp: Path) -> None:
    tmp.mkdir()
    credentials = tmp / "credentials"
    write_credentials(credentials)
    for path in [credentials, *credentials.iterdir()]:
        os.chmod(path, 0o750 if path.is_dir() else 0o640)
    replicas: dict[str, tuple[int, Path]] = {}
    pods: dict[str, str] = {}
    for replica in ("a", "b"):
        config = tmp / f"config-{replica}"
        config.mkdir()
        os.chmod(config, 0o755)  # noqa: S103 (a ConfigMap is world-readable)
        health = free_port()
        (config / "fedora-container-sync.toml").write_text(
            world.config(
                work_dir="/var/lib/fedora-container-sync",
                health_port=health,
                monitoring_port=free_port(),
            )
        )
        os.chmod(config / "fedora-container-sync.toml", 0o644)
        work = group_dir(tmp / f"work-{replica}")
        dirs = {"config": config, "credentials": credentials, "work": work}
        played = tmp / f"deployment-{replica}.yaml"
        played.write_text(played_deployment(built, f"{world.env[-8:]}-{replica}", IMAGE, dirs))
        step(f"manifests: podman kube play of the Deployment, replica {replica}")
        output = podman("kube", "play", str(played), timeout=300).stdout.split()
        # It prints "Pod:" and the pod's ID (then "Container:" and theirs).
        pods[replica] = output[output.index("Pod:") + 1]
        podman.pods.append(pods[replica])
        replicas[replica] = (health, work)
    for replica, (health, _) in replicas.items():
        wait_for(
            lambda health=health: http_status(f"http://127.0.0.1:{health}/ready") == 200,
            timeout=90,
            what=f"/ready of replica {replica}",
        )
    step("manifests: both replicas ready (one consumes, one stands by); a publish")
    world.gate.close()
    compose = world.publish_compose()
    wait_for(world.gate.held.is_set, timeout=120, what="the first image download")
    active = wait_for(
        lambda: [r for r, (_, work) in replicas.items() if run_dirs(work)],
        timeout=30,
        what="a run directory in one replica",
    )
    expect(len(active) == 1, f"both replicas at work: {active}")
    (stopped,) = active
    pod = pods[stopped]
    step(f"manifests: stopping the active pod ({pod}) mid-publish")
    began = time.monotonic()
    release_gate_soon(world.gate)
    podman("pod", "stop", "-t", "60", pod, timeout=120)
    took = time.monotonic() - began
    expect(took < STOP_WITHIN, f"the pod took {took:.0f}s to stop")
    wait_for(
        lambda: world.published(compose), timeout=180, what=f"{compose} published by the standby"
    )
    wait_for(lambda: world.ready_messages() == 0, timeout=30, what="the queue to drain")
    (standby,) = set(replicas) - {stopped}
    expect(not run_dirs(replicas[stopped][1]), "the stopped pod left a run directory")
    step(f"manifests: pod stopped in {took:.1f}s; the standby ({standby}) published {compose}")


# --- main ------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--cache", type=Path, default=Path("/var/cache/fedora-container-sync-deploy-check")
    )
    parser.add_argument(
        "--only",
        choices=("systemd", "container", "manifests"),
        action="append",
        help="run only these parts (default: all)",
    )
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        print("deploy-check: needs root (systemd-nspawn, podman)", file=sys.stderr)
        return 2
    parts = args.only or ["systemd", "container", "manifests"]
    # A CI timeout's SIGTERM still stops the machine, the containers and the servers.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    with tempfile.TemporaryDirectory(prefix="fcs-deploy-check-", dir="/var/tmp") as name:
        tmp = Path(name)
        world = World(tmp)
        try:
            tar = rootfs_tar(args.cache)
            if "systemd" in parts:
                check_systemd(world, tar, tmp, args.cache)
            if "container" in parts:
                check_container(world, tar, tmp, args.cache)
            if "manifests" in parts:
                check_manifests(world, args.cache, tmp)
        except CheckFailed as error:
            print(f"deploy-check: FAILED: {error}", file=sys.stderr)
            return 1
        finally:
            world.close()
    step("all passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
