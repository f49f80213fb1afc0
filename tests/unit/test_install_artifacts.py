"""What the install routes rely on, checked as text (`make deploy-check` runs them for real):
the units start from whatever route put the commands on systemd's search path, signal our PID
only, name a missing credential file; the image and the venv route install exactly the hash
lock, which covers every runtime dependency."""

from __future__ import annotations

import re
import shlex
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SERVICES = sorted((ROOT / "systemd").glob("*.service"))
LOCK = ROOT / "requirements.lock"
CONTAINERFILE = ROOT / "deploy" / "openshift" / "Containerfile"


def settings(path: Path) -> list[tuple[str, str]]:
    return [
        (key, value)
        for key, _, value in (line.partition("=") for line in path.read_text().splitlines())
        if value and not key.startswith("#")
    ]


@pytest.mark.parametrize("service", SERVICES, ids=lambda path: path.name)
def test_exec_start_names_a_command_systemd_finds_in_usr_local_bin_too(service):
    # An absolute /usr/bin path failed with 203/EXEC after a pip or venv install, whose
    # commands live in /usr/local/bin; a bare name is looked up in /usr/local/bin, then /usr/bin.
    (command,) = [value for key, value in settings(service) if key == "ExecStart"]
    assert "/" not in shlex.split(command)[0]


@pytest.mark.parametrize("service", SERVICES, ids=lambda path: path.name)
def test_every_credential_file_is_asserted_before_it_is_loaded(service):
    loaded = {value.split(":", 1)[1] for key, value in settings(service) if key == "LoadCredential"}
    asserted = {value for key, value in settings(service) if key == "AssertPathExists"}
    assert loaded and loaded == asserted


def test_sigterm_goes_to_the_consumer_only():
    values = dict(settings(ROOT / "systemd" / "fedora-container-sync.service"))
    assert values["KillMode"] == "mixed"


def _name(requirement: str) -> str:
    found = re.match(r"[A-Za-z0-9._-]+", requirement)
    assert found, requirement
    return re.sub(r"[-_.]+", "-", found[0]).lower()


def test_lock_pins_every_runtime_dependency_with_hashes():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    text = LOCK.read_text()
    pins = dict(re.findall(r"^([A-Za-z0-9._-]+)==(\S+)", text, re.M))
    pinned = {_name(name) for name in pins}
    wanted = {_name(requirement) for requirement in project["dependencies"]}
    assert wanted <= pinned, sorted(wanted - pinned)
    # The build backend too: the project itself installs with --no-build-isolation.
    assert "setuptools" in pinned
    entries = re.split(r"\n(?=[A-Za-z0-9])", text.split("\n", 2)[2])
    for entry in entries:
        if "==" in entry:
            assert "--hash=sha256:" in entry, entry.splitlines()[0]


def test_image_installs_exactly_the_lock():
    text = CONTAINERFILE.read_text()
    assert "--require-hashes --no-deps" in text and "-r /src/requirements.lock" in text
    assert "--no-deps --no-build-isolation /src" in text
    # The base is a build argument (deploy-check builds on a stand-in base).
    assert re.search(r"^ARG BASE_IMAGE=registry\.fedoraproject\.org/fedora:\d+$", text, re.M)
    assert re.search(r"^FROM \$\{BASE_IMAGE\}$", text, re.M)
