"""Secrets never leak: with a known password, run publish, gate hold, dry run and failure paths
against a Basic-auth and a token-auth registry, then search everything the runs printed or
logged (down to DEBUG, httpx included) and every file they left behind.

skopeo runs through a wrapper that records its argv, its environment and the mode of the auth
file it was handed, then execs the real skopeo: so "never in argv", "0600" and "removed
afterwards" are checked on what skopeo really got.
"""

from __future__ import annotations

import base64
import logging
import os
import shutil
import stat
from pathlib import Path

import pytest

from fedora_container_sync import cli
from support.auth import PASSWORD, USER
from support.harness import Harness

pytestmark = pytest.mark.integration

TOOLBOX = "fedora-toolbox"
WRAPPER = """#!/bin/sh
log="{log}"
printf '%s\\n' "$*" >> "$log/argv"
env >> "$log/env"
prev=""
for arg in "$@"; do
    if [ "$prev" = "--dest-authfile" ]; then
        stat -c '%a' "$arg" >> "$log/authfile-modes"
        printf '%s\\n' "$arg" >> "$log/authfile-paths"
    fi
    prev="$arg"
done
exec {skopeo} "$@"
"""


class Capture(logging.Handler):
    """Every record of our package, httpx and httpcore, at DEBUG."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


@pytest.fixture
def capture(monkeypatch: pytest.MonkeyPatch) -> Capture:
    handler = Capture()
    original = cli._setup_logging

    def setup(*, verbose: bool) -> cli.Terminal | None:
        console = original(verbose=verbose)
        for name in ("fedora_container_sync", "httpx", "httpcore"):
            logger = logging.getLogger(name)
            logger.setLevel(logging.DEBUG)
            if handler not in logger.handlers:
                logger.addHandler(handler)
        return console

    monkeypatch.setattr(cli, "_setup_logging", setup)
    yield handler
    for name in ("fedora_container_sync", "httpx", "httpcore"):
        logging.getLogger(name).removeHandler(handler)
        logging.getLogger(name).setLevel(logging.NOTSET)


def secrets_in(text: str, secrets: list[str]) -> list[str]:
    return [secret for secret in secrets if secret in text]


def test_no_secret_in_any_output_or_file(
    tmp_path,
    served_root,
    compose_server,
    namespace,
    capsys,
    basic_registry,
    token_registry,
    token_server,
    monkeypatch,
    capture,
):
    harness = Harness(
        tmp_path, served_root, compose_server, [basic_registry, token_registry], namespace, capsys
    )
    for registry, prefix in ((basic_registry, "BASIC_"), (token_registry, "TOKEN_")):
        harness.registry_entries[registry.host] = (
            f'url = "{registry.host}/{namespace}"\ntls_verify = false\n'
            f'credential_prefix = "{prefix}"\n'
        )
        monkeypatch.setenv(f"{prefix}USER", USER)
        monkeypatch.setenv(f"{prefix}PASSWORD", PASSWORD)
    logs = tmp_path / "skopeo-wrapper"
    logs.mkdir()
    wrapper = tmp_path / "skopeo"
    wrapper.write_text(WRAPPER.format(log=logs, skopeo=shutil.which("skopeo")))
    wrapper.chmod(0o755)
    harness.extra_config = f'skopeo = "{wrapper}"\n'
    harness.retry = {"attempts": 2, "initial_delay": 0.0, "max_delay": 0.0}

    results = []
    # publish
    results.append(harness.replay(harness.compose("Fedora-41-20241025.0"), args=["-v"]))
    assert results[-1].code == 0, results[-1].err
    # gate hold (aarch64 missing), as a dry run and for real
    held = harness.compose("Fedora-41-20241026.0", arches=("x86_64", "s390x"))
    results.append(harness.replay(held, args=["-v", "--dry-run"]))
    assert results[-1].code == 3, results[-1].err
    results.append(harness.replay(held, args=["-v"]))
    assert results[-1].code == 3, results[-1].err
    # failure: a corrupt image, and a registry refusing the (known) password for another user
    failing = harness.compose("Fedora-41-20241027.0")
    image = next(harness.compose_dir(failing).glob("Container/ppc64le/images/*.tar.xz"))
    image.write_bytes(b"\0" * image.stat().st_size)
    results.append(harness.replay(failing, args=["-v"]))
    assert results[-1].code == 1, results[-1].err
    monkeypatch.setenv("BASIC_USER", "somebody-else")
    monkeypatch.setenv("TOKEN_USER", "somebody-else")
    results.append(harness.replay(harness.compose("Fedora-41-20241028.0"), args=["-v"]))
    assert results[-1].code == 1, results[-1].err
    assert "credentials refused" in results[-1].err and "not authorized" in results[-1].err

    # What to look for: the password, the Basic credential, the auth file's entry, every token.
    basic = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    other = base64.b64encode(f"somebody-else:{PASSWORD}".encode()).decode()
    tokens = list(token_server.issued)
    assert tokens, "the token registry handed out no tokens: the test would prove nothing"
    secrets = [PASSWORD, basic, other, *tokens]

    for result in results:
        assert secrets_in(result.out, secrets) == []
        assert secrets_in(result.err, secrets) == []
        assert "Traceback" not in result.err
    assert any("running " in line for line in capture.lines)  # DEBUG did reach the capture
    assert any("HTTP Request" in line for line in capture.lines)
    assert secrets_in("\n".join(capture.lines), secrets) == []

    # skopeo got an auth file, 0600, never a credential in argv or its environment ...
    argv = (logs / "argv").read_text()
    assert "--dest-authfile" in argv and "copy" in argv
    assert secrets_in(argv, secrets) == []
    assert secrets_in((logs / "env").read_text(), secrets) == []
    modes = set((logs / "authfile-modes").read_text().split())
    assert modes == {"600"}
    # ... and the auth files are gone.
    for path in set((logs / "authfile-paths").read_text().split()):
        assert not Path(path).exists()

    # Every file left behind (config, messages, work dir, wrapper logs), except the composes.
    leftovers = []
    for root, _dirs, files in os.walk(tmp_path):
        for name in files:
            path = Path(root) / name
            if not stat.S_ISREG(path.lstat().st_mode):
                continue
            data = path.read_bytes()
            leftovers.append(path)
            for secret in secrets:
                assert secret.encode() not in data, f"{secret[:6]}... found in {path}"
    assert any(path.name == "config.toml" for path in leftovers)
    assert [p for p in leftovers if "work" in p.parts and "auth" in p.parts] == []
