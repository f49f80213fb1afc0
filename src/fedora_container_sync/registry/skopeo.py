"""Running skopeo: pure argv builders, one ``run()``, and a stderr classifier.

Credentials never go into argv (``ps`` shows argv): each registry gets a 0600 auth file that
lives only as long as the run needs it.

Every skopeo this process runs is known while it runs, so a stop (:mod:`..shutdown`) ends them
all: systemd and OpenShift send SIGTERM to our PID only, and a child left running would keep
pushing (with an auth file about to be removed) after we are gone. A death we cannot handle
(kill -9, the OOM killer) ends them too: each child asks the kernel for SIGKILL when its parent
dies (``PR_SET_PDEATHSIG``, :func:`_die_with_parent`).
"""

from __future__ import annotations

import atexit
import base64
import contextlib
import ctypes
import functools
import json
import logging
import os
import re
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from .. import shutdown
from ..config.settings import Credentials
from ..errors import Interrupted, SkopeoError, SkopeoTransientError

_log = logging.getLogger(__name__)

#: stderr fragments that mean "try again later" (skopeo 1.9.3 exits 1 for everything).
_TRANSIENT = re.compile(
    r"connection refused|connection reset|broken pipe|\bEOF\b|i/o timeout|timeout|"
    r"TLS handshake|no such host|network is unreachable|toomanyrequests|too many requests|"
    r"\b429\b|\b50[234]\b|received unexpected HTTP status: 5\d\d|Service Unavailable|"
    r"Bad Gateway|Gateway Timeout|\bunavailable\b",
    re.IGNORECASE,
)
#: ... unless the registry said something final.
_PERMANENT = re.compile(
    r"unauthorized|denied|forbidden|authentication required|manifest unknown|name unknown|"
    r"invalid reference|no such file|not found|does not match|unsupported",
    re.IGNORECASE,
)

#: skopeo's (Go's) words for ENOSPC, EDQUOT and EFBIG.
_FULL = re.compile(r"no space left on device|disk quota exceeded|file too large", re.IGNORECASE)


def full_disk(message: str) -> str | None:
    """What skopeo's error says about a write that failed on a full file system (or quota, or
    size limit), in its words; None when it says nothing of the kind."""
    found = _FULL.search(message)
    return found.group(0).lower() if found else None


@dataclass(frozen=True)
class Destination:
    """Where to push: ``docker://host/path:tag`` plus how to talk to that registry."""

    reference: str
    tls_verify: bool = True
    cert_dir: Path | None = None
    auth_file: Path | None = None


def copy_argv(
    skopeo: str,
    source: str,
    destination: Destination,
    *,
    digest_file: Path,
    tmpdir: Path,
    preserve_digests: bool = False,
) -> list[str]:
    """argv for ``skopeo copy`` of one image to one destination."""
    argv = [skopeo, "--insecure-policy", "--tmpdir", str(tmpdir), "copy", "--quiet"]
    argv += ["--retry-times", "0", "--digestfile", str(digest_file)]
    if preserve_digests:
        argv.append("--preserve-digests")
    if not destination.tls_verify:
        argv.append("--dest-tls-verify=false")
    if destination.cert_dir is not None:
        argv += ["--dest-cert-dir", str(destination.cert_dir)]
    if destination.auth_file is not None:
        argv += ["--dest-authfile", str(destination.auth_file)]
    argv += [source, destination.reference]
    return argv


def convert_argv(skopeo: str, source: str, layout: Path, *, tmpdir: Path) -> list[str]:
    """argv to convert an archive into a local OCI layout (compressed once, pushed many times)."""
    return [
        skopeo,
        "--insecure-policy",
        "--tmpdir",
        str(tmpdir),
        "copy",
        "--quiet",
        source,
        f"oci:{layout}:image",
    ]


class _Children:
    """The skopeo processes running now; once a stop is requested, no new one starts."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._running: set[subprocess.Popen[str]] = set()

    def start(self, argv: Sequence[str], env: dict[str, str]) -> subprocess.Popen[str] | None:
        """Start ``argv``, or return None when the process is stopping."""
        with self._lock:
            if shutdown.requested():
                return None
            process = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                env=env,
                preexec_fn=_die_with_parent(),  # one system call in the child, nothing else
            )
            self._running.add(process)
            return process

    def forget(self, process: subprocess.Popen[str]) -> None:
        with self._lock:
            self._running.discard(process)

    def pids(self) -> list[int]:
        with self._lock:
            return [process.pid for process in self._running]

    def stop(self, grace: float) -> None:
        """SIGTERM the running ones, SIGKILL any still there after ``grace`` seconds."""
        with self._lock:  # a start() either finished (its child is listed) or will refuse
            running = list(self._running)
        for process in running:
            _signal(process, signal.SIGTERM)
        deadline = time.monotonic() + grace
        for process in running:
            while process.poll() is None and time.monotonic() < deadline:
                time.sleep(0.02)
            if process.poll() is None:
                _signal(process, signal.SIGKILL)
                process.wait()


#: prctl(2)'s PR_SET_PDEATHSIG (linux/prctl.h)
_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> Callable[[], None] | None:
    """A ``preexec_fn`` for a child that gets SIGKILL when this process dies, however it dies
    (None where prctl(2) does not exist). Everything is looked up before the fork; the child
    makes one system call, then checks its parent did not die before it was made: it would
    have been reparented already, and no signal would come.

    The kernel sends the signal when the *thread* that started the child ends: :func:`run`
    waits for its child in the thread that started it, so that is never before the child ends
    (or this process dies)."""
    prctl = _prctl()
    if prctl is None:
        return None
    parent = os.getpid()
    kill, getppid, getpid = os.kill, os.getppid, os.getpid

    def preexec() -> None:
        prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if getppid() != parent:
            kill(getpid(), signal.SIGKILL)

    return preexec


@functools.cache
def _prctl() -> Callable[..., int] | None:
    try:
        function: Callable[..., int] = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    return function


def _signal(process: subprocess.Popen[str], number: int) -> None:
    try:
        process.send_signal(number)  # nothing if it was already waited for
    except ProcessLookupError:
        pass  # it ended just now


_children = _Children()


def stop_children(grace: float = 5.0) -> None:
    """End every skopeo this process runs: SIGTERM, then SIGKILL after ``grace`` seconds.

    Called when a stop is requested (:mod:`..shutdown`); from then on :func:`run` starts no
    child and raises :class:`Interrupted`.
    """
    _children.stop(grace)


shutdown.on_request(stop_children)


def running_pids() -> list[int]:
    """The process IDs of the skopeo runs in progress (for ``/live``: :mod:`..activity`)."""
    return _children.pids()


def run(argv: Sequence[str], *, timeout: float, what: str, hide_env: Iterable[str] = ()) -> str:
    """Run skopeo; return stdout. Raise the transient or permanent error its stderr implies.

    ``hide_env`` names environment variables (credentials) skopeo must not inherit. Once a
    stop is requested, raise :class:`Interrupted`: skopeo does not start, or was stopped.
    """
    _log.debug("running %s", " ".join(argv))
    try:
        process = _children.start(argv, _environment(hide_env))
    except FileNotFoundError:
        raise SkopeoError(f"{what}: skopeo not found ({argv[0]}); install skopeo") from None
    if process is None:
        raise Interrupted(f"{what}: not started, the process is stopping")
    try:
        try:
            stdout, stderr = process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.communicate()
            raise SkopeoTransientError(f"{what}: skopeo timed out after {timeout:.0f}s") from None
    finally:
        _children.forget(process)
    if process.returncode != 0:
        if shutdown.requested():
            raise Interrupted(f"{what}: skopeo stopped, the process is stopping")
        raise classify(stderr, what=what)
    return stdout


def classify(stderr: str, *, what: str) -> SkopeoError | SkopeoTransientError:
    """Turn skopeo's stderr into our error, with its last message as the one-line reason."""
    reason = _last_message(stderr)
    if _TRANSIENT.search(stderr) and not _PERMANENT.search(reason):
        return SkopeoTransientError(f"{what}: {reason}")
    return SkopeoError(f"{what}: {reason}")


def _last_message(stderr: str) -> str:
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    for line in reversed(lines):
        match = re.search(r'level=(?:fatal|error) msg="(.*)"\s*$', line)
        if match:
            return match.group(1).replace('\\"', '"')
    return lines[-1] if lines else "skopeo failed without a message"


#: What skopeo inherits from our environment: where programs are, the language, and the
#: proxies an operator set for the network. Nothing else (no credentials, no configuration).
_INHERITED = (
    "PATH", "LANG", "LC_ALL", "LC_CTYPE", "TZ",
    "http_proxy", "https_proxy", "no_proxy", "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY",
)  # fmt: skip
_home_lock = threading.Lock()
_home: Path | None = None


#: Where containers/image looks for a user's registries.conf, under ``$HOME``: when it exists,
#: the system's ``/etc/containers/registries.conf`` and its drop-in directory
#: ``/etc/containers/registries.conf.d`` are not read at all, only the drop-ins beside it
#: (containers-registries.conf.d(5)). ``$CONTAINERS_REGISTRIES_CONF`` is no way to do this:
#: skopeo 1.9 ignores it, and a path given in its place still reads the system's drop-ins.
USER_REGISTRIES_CONF = Path(".config/containers/registries.conf")
#: Where containers/image looks for registries.d (signature storage) first: when it exists,
#: ``/etc/containers/registries.d`` is not read (containers-registries.d(5)).
USER_REGISTRIES_D = Path(".config/containers/registries.d")


def private_home() -> Path:
    """skopeo's own home (made once per process, 0700): an empty user ``registries.conf``
    with an empty drop-in directory beside it and an empty ``registries.d`` (so nothing of
    ``/etc/containers/registries.conf``, ``registries.conf.d`` or ``registries.d`` applies),
    an empty ``containers.conf``, no ``.docker/config.json``, no ``containers/auth.json``, and
    ``empty-auth.json``, the auth file of a registry configured anonymous."""
    global _home
    with _home_lock:
        if _home is None or not _home.is_dir():
            home = Path(tempfile.mkdtemp(prefix="fedora-container-sync-skopeo-"))
            (home / "containers.conf").write_text("")
            for name in (".config", "run"):
                (home / name).mkdir(mode=0o700)
            registries = home / USER_REGISTRIES_CONF
            registries.parent.mkdir(mode=0o700)
            registries.write_text("")
            (home / f"{USER_REGISTRIES_CONF}.d").mkdir(mode=0o700)
            (home / USER_REGISTRIES_D).mkdir(mode=0o700)
            (home / "empty-auth.json").write_text('{"auths": {}}')
            atexit.register(shutil.rmtree, home, True)
            _home = home
        return _home


def environment(hide: Iterable[str] = ()) -> dict[str, str]:
    """The hermetic environment every skopeo runs in: only :data:`_INHERITED` from ours, and a
    private home (:func:`private_home`) for everything skopeo would read from the user's: no
    ``$DOCKER_CONFIG``, ``$REGISTRY_AUTH_FILE``, ``~/.docker/config.json``,
    ``$XDG_RUNTIME_DIR/containers/auth.json`` (an operator's ``podman login``), and no
    ``registries.conf`` of the user's or the system's, drop-ins included. ``hide`` (credential
    variables) never passes."""
    home = private_home()
    env = {name: os.environ[name] for name in _INHERITED if name in os.environ}
    env.update(
        HOME=str(home),
        XDG_CONFIG_HOME=str(home / ".config"),
        XDG_RUNTIME_DIR=str(home / "run"),
        DOCKER_CONFIG=str(home / ".docker"),
        CONTAINERS_CONF=str(home / "containers.conf"),
    )
    for name in hide:
        env.pop(name, None)
    return env


def _environment(hide: Iterable[str]) -> dict[str, str]:
    return environment(hide)


@contextlib.contextmanager
def auth_file(host: str, credentials: Credentials | None, directory: Path) -> Iterator[Path | None]:
    """A 0600 containers-auth.json for ``host`` that exists only inside the ``with`` block;
    for a registry configured anonymous, an empty one: skopeo always gets its own auth file,
    and never looks for credentials elsewhere."""
    if credentials is None:
        yield private_home() / "empty-auth.json"
        return
    directory.mkdir(parents=True, exist_ok=True)
    token = base64.b64encode(f"{credentials.username}:{credentials.password}".encode()).decode()
    descriptor, name = tempfile.mkstemp(prefix="auth-", suffix=".json", dir=directory)
    path = Path(name)
    try:
        with os.fdopen(descriptor, "w") as handle:  # mkstemp creates it 0600
            json.dump({"auths": {host: {"auth": token}}}, handle)
        yield path
    finally:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def read_digest(digest_file: Path, *, what: str) -> str:
    try:
        digest = digest_file.read_text().strip()
    except OSError:
        raise SkopeoError(f"{what}: skopeo wrote no digest file") from None
    if not re.fullmatch(r"sha256:[0-9a-f]{64}", digest):
        raise SkopeoError(f"{what}: skopeo wrote an unexpected digest {digest!r}")
    return digest
