"""End to end: real compose trees over HTTP, real skopeo, real registries on 127.0.0.1."""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import sys

import pytest

from fedora_container_sync.oci.manifest import COMPOSE_ID
from support.compose import real_rawhide_compose
from support.harness import ARCHES, report_rows

pytestmark = pytest.mark.integration

TOOLBOX = "fedora-toolbox"
OLD = "Fedora-41-20241025.0"
NEW = "Fedora-41-20241026.0"


def writes(log: str) -> list[str]:
    """Access-log lines of requests that change a registry."""
    return [line for line in log.splitlines() if re.search(r'"(PUT|POST|PATCH|DELETE) /v2/', line)]


def test_upstream_scenario_aarch64_failed_keeps_index_and_moves_other_arches(harness):
    first = harness.compose(OLD)
    result = harness.replay(first)
    assert result.code == 0, result.err
    assert harness.arches(TOOLBOX, "41") == set(ARCHES)
    assert harness.digest(TOOLBOX, "latest") == harness.digest(TOOLBOX, "41")
    index_41 = harness.digest(TOOLBOX, "41")
    old = {arch: harness.digest(TOOLBOX, f"41-{arch}") for arch in ARCHES}
    assert all(old.values())
    assert harness.index(TOOLBOX, "41")["annotations"][COMPOSE_ID] == OLD

    # The next compose's aarch64 build failed.
    second = harness.compose(
        NEW, arches=("x86_64", "ppc64le", "s390x"), status="FINISHED_INCOMPLETE"
    )
    result = harness.replay(second)

    assert result.code == 3, result.err
    assert harness.digest(TOOLBOX, "41") == index_41
    assert harness.digest(TOOLBOX, "latest") == index_41
    assert harness.arches(TOOLBOX, "41") == set(ARCHES)
    for arch in ("x86_64", "ppc64le", "s390x"):
        moved = harness.digest(TOOLBOX, f"41-{arch}")
        assert moved != old[arch], f"41-{arch} did not move to the new build"
    assert harness.digest(TOOLBOX, "41-aarch64") == old["aarch64"]
    # One line per held tag on stderr, naming the tag and the missing arch.
    held = [line for line in result.err.splitlines() if "held" in line]
    assert len(held) == 2
    assert all("aarch64" in line for line in held)
    assert "HELD" in result.out


def test_complete_compose_after_a_hold_moves_the_tags(harness):
    assert harness.replay(harness.compose(OLD)).code == 0
    assert harness.replay(harness.compose(NEW, arches=("x86_64",))).code == 3
    third = harness.compose("Fedora-41-20241027.0")
    result = harness.replay(third)
    assert result.code == 0, result.err
    index = harness.index(TOOLBOX, "41")
    assert index["annotations"][COMPOSE_ID] == "Fedora-41-20241027.0"
    assert harness.digest(TOOLBOX, "latest") == harness.digest(TOOLBOX, "41")
    # Every entry points at the per-arch tag of the same compose.
    for entry in index["manifests"]:
        arch = entry["annotations"]["org.fedoraproject.arch"]
        assert entry["digest"] == harness.digest(TOOLBOX, f"41-{arch}")


def test_index_is_an_oci_index_with_fedora_platforms(harness):
    assert harness.replay(harness.compose(OLD)).code == 0
    index = harness.index(TOOLBOX, "41")
    assert index["mediaType"] == "application/vnd.oci.image.index.v1+json"
    platforms = {
        entry["annotations"]["org.fedoraproject.arch"]: entry["platform"]
        for entry in index["manifests"]
    }
    assert platforms == {
        "x86_64": {"architecture": "amd64", "os": "linux"},
        "aarch64": {"architecture": "arm64", "os": "linux", "variant": "v8"},
        "ppc64le": {"architecture": "ppc64le", "os": "linux"},
        "s390x": {"architecture": "s390x", "os": "linux"},
    }
    # Each per-arch manifest records, in the registry, the compose and file it came from.
    body = harness.compose_dir({"compose_id": OLD})
    sums = {}
    for image in body.glob("Container/*/images/*.tar.xz"):
        sums[image.parent.parent.name] = hashlib.sha256(image.read_bytes()).hexdigest()
    for arch in ARCHES:
        found = harness.registries[0].get_manifest(harness.repo(TOOLBOX), f"41-{arch}")
        assert found is not None
        media_type, _, raw = found
        assert media_type == "application/vnd.oci.image.manifest.v1+json"
        annotations = json.loads(raw)["annotations"]
        assert annotations[COMPOSE_ID] == OLD
        assert annotations["org.fedoraproject.arch"] == arch
        assert annotations["org.fedoraproject.image.sha256"] == sums[arch]
    # skopeo resolves the index to the right image for each arch.
    registry = harness.registries[0]
    for oci_arch in ("arm64", "s390x"):
        inspected = subprocess.run(
            [
                "skopeo",
                "--override-arch",
                oci_arch,
                "inspect",
                "--tls-verify=false",
                f"docker://{registry.host}/{harness.repo(TOOLBOX)}:41",
            ],
            capture_output=True,
            text=True,
            check=True,
        )
        assert json.loads(inspected.stdout)["Architecture"] == oci_arch


def test_replaying_the_same_compose_is_a_no_op(harness):
    body = harness.compose(OLD)
    assert harness.replay(body).code == 0
    before = len(writes(harness.registries[0].log_text()))
    result = harness.replay(body)
    assert result.code == 0, result.err
    assert "unchanged" in result.out
    assert len(writes(harness.registries[0].log_text())) == before


@pytest.mark.parametrize("fmt", ["oci", "docker"])
def test_both_archive_formats(harness, fmt):
    result = harness.replay(harness.compose(OLD, fmt=fmt, subvariants=("Container_Base",)))
    assert result.code == 0, result.err
    assert harness.arches("fedora", "41") == set(ARCHES)


def test_every_registry_gets_the_same_digests(harness, second_registry):
    harness.registries.append(second_registry)
    assert harness.replay(harness.compose(OLD)).code == 0
    for tag in ("41", "latest", *(f"41-{arch}" for arch in ARCHES)):
        first = harness.digest(TOOLBOX, tag, harness.registries[0])
        assert first is not None
        assert harness.digest(TOOLBOX, tag, second_registry) == first


def test_dry_run_writes_nothing(harness):
    assert harness.replay(harness.compose(OLD)).code == 0
    before = len(writes(harness.registries[0].log_text()))
    index_41 = harness.digest(TOOLBOX, "41")
    body = harness.compose(NEW, arches=("x86_64", "s390x"))
    harness.server.clear_requests()  # the server is the session's: other tests' requests too
    result = harness.replay(body, args=["--dry-run"])
    assert result.code == 3, result.err
    assert "dry run" in result.out
    verdicts = {tag: row[0] for tag, row in report_rows(result.out).items()}
    assert verdicts == {
        "41-x86_64": "would publish",
        "41-s390x": "would publish",
        "41": "hold",
        "latest": "hold",
    }
    assert len(writes(harness.registries[0].log_text())) == before
    assert harness.digest(TOOLBOX, "41") == index_41
    # ... and it read the compose's metadata, but downloaded no image (issue 23: a dry run
    # downloads nothing; it used to download and verify every image it would publish).
    paths = [path for method, path, _ in harness.server.requests if method == "GET"]
    assert any(NEW in path and path.endswith(".json") for path in paths)
    assert not any(path.endswith(".tar.xz") and NEW in path for path in paths)


def test_dry_run_on_an_empty_registry_plans_a_publish(harness):
    result = harness.replay(harness.compose(OLD), args=["--dry-run"])
    assert result.code == 0, result.err
    assert "would publish" in result.out
    assert harness.digest(TOOLBOX, "41") is None
    assert writes(harness.registries[0].log_text()) == [] or not any(
        harness.namespace in line for line in writes(harness.registries[0].log_text())
    )


@pytest.mark.parametrize("status", ["STARTED", "DOOMED", "TERMINATED"])
def test_non_finished_status_does_nothing(harness, status):
    body = harness.compose(OLD, status=status)
    harness.server.clear_requests()
    result = harness.replay(body)
    assert result.code == 0, result.err
    assert f"status {status}" in result.out
    assert harness.server.requests == []
    assert harness.digest(TOOLBOX, "41") is None


def test_rawhide_tags_from_the_real_compose_metadata(harness):
    compose_dir = real_rawhide_compose(harness.served_root / harness.namespace)
    harness.releases = {"latest": 38, "rawhide": 39}
    result = harness.replay(harness.message_for(compose_dir))
    assert result.code == 0, result.err
    for repository in ("fedora", "fedora-minimal", "fedora-toolbox"):
        assert harness.arches(repository, "rawhide") == set(ARCHES)
        assert harness.digest(repository, "39") == harness.digest(repository, "rawhide")
        for arch in ARCHES:
            assert harness.digest(repository, f"39-{arch}") is not None
        assert harness.digest(repository, "latest") is None
        index = harness.index(repository, "rawhide")
        assert index["annotations"][COMPOSE_ID] == "Fedora-Rawhide-20230502.n.0"


def test_location_outside_the_allowlist(harness):
    body = harness.compose(OLD)
    body["location"] = "http://127.0.0.2:9/elsewhere/compose"
    harness.server.clear_requests()
    result = harness.replay(body)
    assert result.code == 2
    lines = result.err.strip().splitlines()
    assert len(lines) == 1
    assert "outside compose_url_allowlist" in lines[0]
    assert "Traceback" not in result.err
    assert harness.server.requests == []
    assert harness.digest(TOOLBOX, "41-x86_64") is None


def test_checksum_mismatch_pushes_nothing_wrong(harness):
    assert harness.replay(harness.compose(OLD)).code == 0
    index_41 = harness.digest(TOOLBOX, "41")
    old_aarch64 = harness.digest(TOOLBOX, "41-aarch64")
    body = harness.compose(NEW)
    tampered = next(harness.compose_dir(body).glob("Container/aarch64/images/*.tar.xz"))
    data = bytearray(tampered.read_bytes())
    data[-100] ^= 0xFF  # same size, different content
    tampered.write_bytes(bytes(data))

    result = harness.replay(body)

    assert result.code == 1
    errors = [line for line in result.err.splitlines() if "ERROR" in line]
    assert len(errors) == 1
    assert "sha256 mismatch" in errors[0] and tampered.name in errors[0]
    assert "Traceback" not in result.err
    assert harness.digest(TOOLBOX, "41-aarch64") == old_aarch64
    assert harness.digest(TOOLBOX, "41") == index_41
    assert harness.digest(TOOLBOX, "latest") == index_41


def test_checksum_mismatch_on_a_new_tag_publishes_no_partial_index(harness):
    body = harness.compose(OLD)
    tampered = next(harness.compose_dir(body).glob("Container/s390x/images/*.tar.xz"))
    tampered.write_bytes(b"\0" * tampered.stat().st_size)
    result = harness.replay(body)
    assert result.code == 1
    assert harness.digest(TOOLBOX, "41") is None
    assert harness.digest(TOOLBOX, "41-s390x") is None
    assert harness.digest(TOOLBOX, "41-x86_64") is not None


def test_malformed_message_file(harness):
    path = harness.tmp / "bad.jsonl"
    path.write_text('{"topic": "x", "body": {}}\n{"topic": \n')
    result = harness.run("replay", "--config", str(harness.config()), str(path))
    assert result.code == 2
    assert result.err.count("\n") == 1
    assert "bad.jsonl:2: not JSON" in result.err
    assert result.out == ""


def test_messages_are_handled_in_order_from_stdin(harness, monkeypatch):
    import io

    first, second = harness.compose(OLD), harness.compose(NEW, arches=("x86_64",))
    text = harness.message_file(first, second).read_text()
    monkeypatch.setattr(sys, "stdin", io.StringIO(text))
    result = harness.run("replay", "--config", str(harness.config()), "-")
    assert result.code == 3, result.err
    assert result.out.index(OLD) < result.out.index(NEW)
    assert harness.index(TOOLBOX, "41")["annotations"][COMPOSE_ID] == OLD


def test_installed_console_script(harness):
    """The real entry point, as operators run it: exit code and one-line error."""
    config = harness.config()
    missing = harness.tmp / "missing.jsonl"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "fedora_container_sync",
            "replay",
            "--config",
            str(config),
            str(missing),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 2
    assert result.stderr == f"fedora-container-sync: error: message file {missing}: not found\n"


def test_dry_run_needs_no_writable_work_dir_and_downloads_nothing(harness):
    """An unprivileged user's dry run: the work dir cannot be created (its parent is a file),
    and no image is downloaded; the plan is printed all the same."""
    blocker = harness.tmp / "not-a-directory"
    blocker.write_text("")
    harness.extra_config = f'work_dir = "{blocker / "work"}"\n'
    body = harness.compose(OLD, arches=("x86_64", "aarch64"))
    config = harness.config().read_text().replace(f'work_dir = "{harness.tmp / "work"}"\n', "")
    (harness.tmp / "config.toml").write_text(config)
    harness.server.clear_requests()
    result = harness.run(
        "replay", "--config", str(harness.tmp / "config.toml"), "--dry-run",
        str(harness.message_file(body)),
    )  # fmt: skip
    assert result.code == 0, result.err
    assert report_rows(result.out)["41"][0] == "would publish"
    assert not any(path.endswith(".tar.xz") for _, path, _ in harness.server.requests)
    assert blocker.read_text() == "" and not (harness.tmp / "work").exists()
    # A real run with that config says the work dir is the trouble.
    real = harness.run(
        "replay", "--config", str(harness.tmp / "config.toml"), str(harness.message_file(body))
    )
    assert real.code == 2 and "work_dir" in real.err
