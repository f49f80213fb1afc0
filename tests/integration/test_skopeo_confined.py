"""skopeo acts for the tool and is confined like it (issue 20, class 3): it runs in a hermetic
environment, with its own auth file always (an empty one for a registry configured anonymous),
so an operator's ``podman login``, ``$DOCKER_CONFIG``, ``$REGISTRY_AUTH_FILE`` or
``~/.docker/config.json`` never lends it credentials. Against a real token registry whose
``public/`` repositories anyone may read and only the user may push to."""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
from pathlib import Path

import pytest

from fedora_container_sync.registry import skopeo
from support.auth import PASSWORD, USER
from support.harness import Harness
from support.servers import Registry

pytestmark = pytest.mark.integration

TOOLBOX = "fedora-toolbox"
COMPOSE = "Fedora-41-20241025.0"


def auth_json(host: str) -> str:
    token = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    return json.dumps({"auths": {host: {"auth": token}}})


def ambient(kind: str, tmp: Path, host: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Credentials for ``host`` where skopeo would look for them on an operator's machine."""
    where = {
        "~/.docker/config.json": ("HOME", tmp / "home", ".docker/config.json"),
        "$DOCKER_CONFIG": ("DOCKER_CONFIG", tmp / "docker", "config.json"),
        "$REGISTRY_AUTH_FILE": ("REGISTRY_AUTH_FILE", tmp / "auth.json", ""),
        "podman login ($XDG_RUNTIME_DIR)": ("XDG_RUNTIME_DIR", tmp / "run", "containers/auth.json"),
        "~/.config/containers/auth.json": ("HOME", tmp / "home", ".config/containers/auth.json"),
    }[kind]
    variable, directory, name = where
    path = directory / name if name else directory
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(auth_json(host))
    monkeypatch.setenv(variable, str(directory))
    if variable == "HOME":
        monkeypatch.delenv("XDG_CONFIG_HOME", raising=False)
        monkeypatch.delenv("DOCKER_CONFIG", raising=False)


@pytest.mark.parametrize(
    "kind",
    [
        "~/.docker/config.json",
        "$DOCKER_CONFIG",
        "$REGISTRY_AUTH_FILE",
        "podman login ($XDG_RUNTIME_DIR)",
        "~/.config/containers/auth.json",
    ],
)
def test_ambient_credentials_are_not_used_for_an_anonymous_registry(
    request, token_registry: Registry, tmp_path, monkeypatch, kind
):
    harness = Harness(
        tmp_path,
        request.getfixturevalue("served_root"),
        request.getfixturevalue("compose_server"),
        [token_registry],
        request.getfixturevalue("namespace"),
        request.getfixturevalue("capsys"),
    )
    public = f"public/{harness.namespace}"
    harness.registry_entries[token_registry.host] = (
        f'url = "{token_registry.host}/{public}"\ntls_verify = false\n'
    )
    ambient(kind, tmp_path / "operator", token_registry.host, monkeypatch)

    result = harness.replay(harness.compose(COMPOSE, arches=("x86_64",)))

    assert token_registry.tags(f"{public}/{TOOLBOX}") == [], result.err
    assert result.code == 1, result.err
    errors = [line for line in result.err.splitlines() if ": ERROR: " in line]
    assert errors and all("push of" in line for line in errors), result.err


def test_skopeo_s_environment_holds_nothing_of_ours(monkeypatch, tmp_path):
    for name in ("DOCKER_CONFIG", "REGISTRY_AUTH_FILE", "XDG_RUNTIME_DIR", "SECRET_PASSWORD"):
        monkeypatch.setenv(name, str(tmp_path / name))
    monkeypatch.setenv("CONTAINERS_REGISTRIES_CONF", str(tmp_path / "registries.conf"))
    monkeypatch.setenv("HOME", str(tmp_path))
    env = skopeo.environment(hide=["SECRET_PASSWORD"])
    home = Path(env["HOME"])
    assert home != tmp_path and home.stat().st_mode & 0o077 == 0
    assert not any(str(tmp_path) in value for value in env.values()), env
    assert "SECRET_PASSWORD" not in env and "REGISTRY_AUTH_FILE" not in env
    assert "CONTAINERS_REGISTRIES_CONF" not in env  # skopeo 1.9 ignores it; see below
    assert (home / skopeo.USER_REGISTRIES_CONF).read_text() == ""
    assert not (Path(env["DOCKER_CONFIG"]) / "config.json").exists()
    # skopeo itself, run in it, finds no credentials for any registry.
    shown = subprocess.run(
        ["skopeo", "login", "--get-login", "registry.example"],
        env=env, capture_output=True, text=True, check=False, timeout=30,
    )  # fmt: skip
    assert shown.returncode != 0 and "not logged into" in shown.stderr.lower()


def test_credentials_stay_with_the_registry_an_upload_location_names_another_host(
    request, basic_registry: Registry, tmp_path, monkeypatch
):
    """skopeo sends the registry's credentials to whatever host a blob upload's ``Location``
    names (measured: ``PATCH`` with ``Authorization: Basic``). It cannot be told not to, so
    the registry is probed first and refused when its uploads leave it: skopeo never gets its
    credentials, the other host never hears from us."""
    from support.proxy import Fault, FaultProxy, ProxyRequest
    from support.servers import FileServer

    root = tmp_path / "elsewhere"
    root.mkdir()
    with FileServer(root) as elsewhere, FaultProxy(basic_registry.url) as proxy:

        def rule(req: ProxyRequest) -> Fault | None:
            if req.method == "POST" and "/blobs/uploads/" in req.path:
                target = f"{elsewhere.url}/v2/stolen/blobs/uploads/session"
                return Fault.lie(headers={"Location": target})
            return None

        proxy.rule = rule
        harness = Harness(
            tmp_path,
            request.getfixturevalue("served_root"),
            request.getfixturevalue("compose_server"),
            [basic_registry],
            request.getfixturevalue("namespace"),
            request.getfixturevalue("capsys"),
        )
        harness.registry_entries[basic_registry.host] = (
            f'url = "{proxy.host}/{harness.namespace}"\ntls_verify = false\n'
            'credential_prefix = "BASIC_"\n'
        )
        monkeypatch.setenv("BASIC_USER", USER)
        monkeypatch.setenv("BASIC_PASSWORD", PASSWORD)

        result = harness.replay(harness.compose(COMPOSE, arches=("x86_64",)))

        assert elsewhere.requests == [], elsewhere.requests
    assert result.code == 1, result.err
    errors = [line for line in result.err.splitlines() if ": ERROR: " in line]
    assert errors and "blob uploads go to another host" in errors[0], result.err
    assert basic_registry.tags(harness.repo(TOOLBOX)) == []


#: A registries.conf (or drop-in) that containers/image refuses to parse: skopeo fails at
#: once, naming it, if it reads one.
_UNREADABLE = "[[registry]\nlocation = \n"
#: A registry nobody listens on: a skopeo that read its configuration fine fails connecting.
_NOWHERE = "docker://127.0.0.1:1/fedora/fedora-toolbox:41"


def _inspect(env: dict[str, str], *wrapper: str) -> subprocess.CompletedProcess[str]:
    argv = [*wrapper, "skopeo", "inspect", "--tls-verify=false", "--retry-times", "0", _NOWHERE]
    return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60, check=False)


def test_skopeo_reads_the_registries_conf_of_its_private_home(tmp_path):
    """The registries.conf skopeo gets is the one it reads: in a copy of its home where every
    registries.conf is unreadable, skopeo fails on it. (``$CONTAINERS_REGISTRIES_CONF``, which
    skopeo 1.9 ignores, would leave it reading /etc/containers/registries.conf.)"""
    env = skopeo.environment()
    home = Path(env["HOME"])
    copy = tmp_path / "home"
    shutil.copytree(home, copy)
    for found in copy.rglob("registries.conf"):
        found.write_text(_UNREADABLE)
    moved = {name: value.replace(str(home), str(copy)) for name, value in env.items()}
    done = _inspect(moved)
    assert done.returncode != 0
    assert str(copy / skopeo.USER_REGISTRIES_CONF) in done.stderr, done.stderr
    assert "connection refused" not in done.stderr


def _private_mounts() -> list[str]:
    """A command prefix that runs a command in a mount namespace of its own (as root in a user
    namespace when we are not root), or [] where this machine allows none."""
    for prefix in (["unshare", "--mount"], ["unshare", "--map-root-user", "--mount"]):
        if shutil.which("unshare") is None:
            break
        probe = subprocess.run([*prefix, "true"], capture_output=True, timeout=30, check=False)
        if probe.returncode == 0:
            return prefix
    return []


def test_the_system_wide_registries_configuration_does_not_reach_skopeo(tmp_path):
    """An unreadable drop-in in /etc/containers/registries.conf.d (and an unreadable
    /etc/containers/registries.conf) - a directory of the test's bind-mounted over
    /etc/containers in a mount namespace of its own: nothing on the machine changes - leaves
    skopeo unmoved: it never reads them."""
    prefix = _private_mounts()
    if not prefix or not Path("/etc/containers").is_dir():
        pytest.skip("needs /etc/containers and a mount namespace (unshare --mount) to cover it")
    etc = tmp_path / "etc-containers"
    (etc / "registries.conf.d").mkdir(parents=True)
    (etc / "registries.conf.d" / "00-unreadable.conf").write_text(_UNREADABLE)
    (etc / "registries.conf").write_text(_UNREADABLE)
    script = 'mount --bind "$0" /etc/containers && exec "$@"'
    env = skopeo.environment()
    wrapper = [*prefix, "sh", "-c", script, str(etc)]
    # The check can fail: skopeo in an ordinary environment reads both and stops on them.
    ordinary = {**env, "HOME": str(tmp_path), "XDG_CONFIG_HOME": str(tmp_path / ".config")}
    refused = _inspect(ordinary, *wrapper)
    assert refused.returncode != 0 and "/etc/containers/registries.conf" in refused.stderr, (
        refused.stderr
    )
    # In its own environment, it gets as far as the network.
    done = _inspect(env, *wrapper)
    assert done.returncode != 0
    assert "connection refused" in done.stderr, done.stderr
