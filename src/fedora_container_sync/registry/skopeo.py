"""Running skopeo: pure argv builders, one ``run()``, and a stderr classifier.

Credentials never go into argv (``ps`` shows argv): each registry gets a 0600 auth file that
lives only as long as the run needs it.

Every skopeo this process runs is known while it runs, so a stop (:mod:`..shutdown`) ends them
all: systemd and OpenShift send SIGTERM to our PID only, and a child left running would keep
pushing (with an auth file about to be removed) after we are gone.
"""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import os
import re
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
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


def _environment(hide: Iterable[str]) -> dict[str, str]:
    # No ambient auth and no credentials: only the auth file we pass explicitly.
    env = dict(os.environ)
    for name in ("REGISTRY_AUTH_FILE", *hide):
        env.pop(name, None)
    return env


@contextlib.contextmanager
def auth_file(host: str, credentials: Credentials | None, directory: Path) -> Iterator[Path | None]:
    """A 0600 containers-auth.json for ``host`` that exists only inside the ``with`` block."""
    if credentials is None:
        yield None
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
