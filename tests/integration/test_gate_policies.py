"""The three gate policies, the rollback guard, the release lookup and the compose rules,
end to end: real compose trees over HTTP, real skopeo, a real registry on 127.0.0.1."""

from __future__ import annotations

import json
import re
import subprocess

import pytest

from fedora_container_sync.oci.manifest import ARCH, COMPOSE_ID
from support.harness import ARCHES, report_rows
from support.images import build_image_archive

pytestmark = pytest.mark.integration

TOOLBOX = "fedora-toolbox"
OLD = "Fedora-41-20241025.0"
NEW = "Fedora-41-20241026.0"
NEWER = "Fedora-41-20241027.0"
ALL = set(ARCHES)


def writes(log: str) -> list[str]:
    return [line for line in log.splitlines() if re.search(r'"(PUT|POST|PATCH|DELETE) /v2/', line)]


def entries_by_arch(index):
    return {entry["annotations"][ARCH]: entry for entry in index["manifests"]}


# -- carry-forward ------------------------------------------------------------------------------


def test_carry_forward_keeps_the_missing_arch_from_the_last_compose(harness):
    harness.extra_config = 'gate_policy = "carry-forward"'
    assert harness.replay(harness.compose(OLD)).code == 0
    old_aarch64 = harness.digest(TOOLBOX, "41-aarch64")

    without_aarch64 = ("x86_64", "ppc64le", "s390x")
    result = harness.replay(
        harness.compose(NEW, arches=without_aarch64, status="FINISHED_INCOMPLETE")
    )

    assert result.code == 0, result.err
    index = harness.index(TOOLBOX, "41")
    assert index["annotations"][COMPOSE_ID] == NEW
    entries = entries_by_arch(index)
    assert set(entries) == ALL
    # The carried arch: the same digest as before, and the compose it came from.
    assert entries["aarch64"]["digest"] == old_aarch64
    assert entries["aarch64"]["annotations"][COMPOSE_ID] == OLD
    assert harness.digest(TOOLBOX, "41-aarch64") == old_aarch64
    for arch in without_aarch64:
        assert entries[arch]["annotations"][COMPOSE_ID] == NEW
        assert entries[arch]["digest"] == harness.digest(TOOLBOX, f"41-{arch}")
    assert harness.digest(TOOLBOX, "latest") == harness.digest(TOOLBOX, "41")
    rows = report_rows(result.out)
    assert rows["41"][0] == "carry"
    assert f"keeps aarch64 from {OLD}" in rows["41"][3]
    assert rows["latest"][0] == "carry"
    # A pull for arm64 through the new index gets the carried image.
    registry = harness.registries[0]
    inspected = subprocess.run(
        ["skopeo", "--override-arch", "arm64", "inspect", "--tls-verify=false",
         f"docker://{registry.host}/{harness.repo(TOOLBOX)}:41"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    labels = json.loads(inspected.stdout)["Labels"]
    assert (labels["build-id"], labels["fedora-arch"]) == (OLD, "aarch64")


def test_strict_holds_where_carry_forward_carries(harness):
    assert harness.replay(harness.compose(OLD)).code == 0
    index_41 = harness.digest(TOOLBOX, "41")
    result = harness.replay(harness.compose(NEW, arches=("x86_64",)))
    assert result.code == 3
    assert harness.digest(TOOLBOX, "41") == index_41
    assert report_rows(result.out)["41"][0] == "hold"


# -- expected arches ----------------------------------------------------------------------------

EXPECT_ALL = '[consumer_config.container.expected_arches]\nfedora-toolbox = ["x86_64", "aarch64", "ppc64le", "s390x"]\n'  # noqa: E501
EXPECT_THREE = '[consumer_config.container.expected_arches]\nfedora-toolbox = ["x86_64", "aarch64", "ppc64le"]\n'  # noqa: E501


def test_expected_arches_hold_even_a_first_publish(harness):
    harness.extra_config = EXPECT_ALL
    result = harness.replay(harness.compose(OLD, arches=("x86_64", "aarch64", "ppc64le")))
    assert result.code == 3, result.err
    assert harness.digest(TOOLBOX, "41") is None
    assert harness.digest(TOOLBOX, "latest") is None
    assert harness.digest(TOOLBOX, "41-x86_64") is not None  # per-arch tags still move
    rows = report_rows(result.out)
    assert rows["41"][0] == "hold"
    assert "compose lacks s390x, which expected_arches lists" in rows["41"][3]


def test_expected_arches_retire_an_arch_by_config(harness):
    assert harness.replay(harness.compose(OLD)).code == 0
    assert harness.arches(TOOLBOX, "41") == ALL

    harness.extra_config = EXPECT_THREE  # s390x is retired: a one-line config change
    result = harness.replay(harness.compose(NEW))

    assert result.code == 0, result.err
    assert harness.arches(TOOLBOX, "41") == {"x86_64", "aarch64", "ppc64le"}
    assert harness.index(TOOLBOX, "41")["annotations"][COMPOSE_ID] == NEW
    rows = report_rows(result.out)
    assert rows["41"][0] == "retire"
    assert "drops s390x (not in expected_arches)" in rows["41"][3]


def test_allow_drop_drops_an_arch_once(harness):
    assert harness.replay(harness.compose(OLD)).code == 0
    lacking = harness.compose(NEW, arches=("x86_64", "ppc64le", "s390x"))
    assert harness.replay(lacking).code == 3  # strict: held

    result = harness.replay(lacking, args=["--allow-drop", "aarch64"])

    assert result.code == 0, result.err
    assert harness.arches(TOOLBOX, "41") == {"x86_64", "ppc64le", "s390x"}
    assert report_rows(result.out)["41"][0] == "retire"
    assert "--allow-drop: index tags may lose aarch64" in result.err
    # Once: the next compose that lacks an arch the tag serves is held again.
    assert harness.replay(harness.compose(NEWER, arches=("x86_64",))).code == 3


def test_allow_drop_names_a_fedora_arch(harness):
    result = harness.replay(harness.compose(OLD), args=["--allow-drop", "arm64"])
    assert result.code == 2
    assert result.err == (
        "fedora-container-sync: error: --allow-drop arm64: not a Fedora arch "
        "(x86_64, aarch64, ppc64le, s390x, riscv64, i686, armhfp)\n"
    )


# -- the rollback guard -------------------------------------------------------------------------


def test_a_replayed_older_compose_moves_nothing(harness):
    old = harness.compose(OLD)
    assert harness.replay(harness.compose(NEW)).code == 0
    before = {tag: harness.digest(TOOLBOX, tag) for tag in ("41", "latest", "41-x86_64")}
    writes_before = len(writes(harness.registries[0].log_text()))

    result = harness.replay(old)  # a fresh run: the registry is the only record

    assert result.code == 3, result.err
    assert len(writes(harness.registries[0].log_text())) == writes_before
    assert {tag: harness.digest(TOOLBOX, tag) for tag in before} == before
    stale = [line for line in result.err.splitlines() if "stale" in line]
    tags = {"41", "latest", *(f"41-{arch}" for arch in ARCHES)}
    assert len(stale) == len(tags)
    assert all(f"holds {NEW}, newer than this compose" in line for line in stale)
    assert {re.search(rf"{TOOLBOX}:([\w.-]+)", line)[1] for line in stale} == tags
    rows = report_rows(result.out)
    assert {tag: row[0] for tag, row in rows.items()} == dict.fromkeys(tags, "stale")
    assert "STALE (6 tags not moved: 6 stale)" in result.out


def test_force_moves_tags_back_loudly(harness):
    old = harness.compose(OLD)
    assert harness.replay(harness.compose(NEW)).code == 0

    result = harness.replay(old, args=["--force"])

    assert result.code == 0, result.err
    assert harness.index(TOOLBOX, "41")["annotations"][COMPOSE_ID] == OLD
    assert "--force: the rollback guard is off" in result.err
    forced = [line for line in result.err.splitlines() if f"--force: replaces {NEW}" in line]
    assert len(forced) == 6  # four per-arch tags and two index tags, one warning each


def test_tags_this_tool_did_not_write_are_taken_over(harness, tmp_path):
    """A per-arch tag pushed as Docker v2s2 by the old sync script carries no annotations:
    there is nothing to compare, so the compose moves it (and says so)."""
    registry = harness.registries[0]
    archive = tmp_path / "legacy.tar"
    build_image_archive(archive, arch="x86_64", fmt="docker", build_id="legacy", name="legacy")
    subprocess.run(
        ["skopeo", "copy", "--quiet", "--format", "v2s2", "--dest-tls-verify=false",
         f"docker-archive:{archive}", f"docker://{registry.host}/{harness.repo(TOOLBOX)}:41-x86_64"],
        check=True, capture_output=True,
    )  # fmt: skip
    legacy = harness.digest(TOOLBOX, "41-x86_64")

    result = harness.replay(harness.compose(OLD))

    assert result.code == 0, result.err
    assert harness.digest(TOOLBOX, "41-x86_64") != legacy
    row = report_rows(result.out)["41-x86_64"]
    assert row[0] == "publish" and row[1] == "x86_64"
    assert "replaces an image this tool did not write" in row[3]


# -- which composes may move which tags ---------------------------------------------------------


def test_a_pre_release_candidate_never_moves_latest(harness):
    assert harness.replay(harness.compose(OLD)).code == 0
    latest = harness.digest(TOOLBOX, "latest")

    result = harness.replay(harness.compose(NEW, label="RC-1.2"))

    assert result.code == 0, result.err
    assert harness.index(TOOLBOX, "41")["annotations"][COMPOSE_ID] == NEW
    assert harness.digest(TOOLBOX, "latest") == latest
    assert "note: latest not moved: pre-release candidate (label RC-1.2)" in result.out
    assert "latest" not in report_rows(result.out)


def test_a_test_compose_publishes_nothing(harness):
    result = harness.replay(harness.compose("Fedora-41-20241025.t.0"))
    assert result.code == 0, result.err
    assert "compose type test is not in compose_rules.compose_types" in result.out
    assert harness.registries[0].tags(harness.repo(TOOLBOX)) == []


# -- release numbers from Bodhi -----------------------------------------------------------------


def test_release_numbers_come_from_bodhi_when_not_configured(harness, bodhi_server):
    harness.releases = None
    harness.extra_config = f'[consumer_config.container.bodhi]\nurl = "{bodhi_server.url}"\n'

    result = harness.replay(
        harness.compose(OLD), harness.compose("Fedora-Rawhide-20241026.n.0", version="Rawhide")
    )

    assert result.code == 0, result.err
    assert harness.digest(TOOLBOX, "latest") == harness.digest(TOOLBOX, "41")  # F41 is current
    assert harness.digest(TOOLBOX, "rawhide") == harness.digest(TOOLBOX, "43")  # F43 is Rawhide
    assert harness.digest(TOOLBOX, "43-x86_64") is not None
    assert len(bodhi_server.requests) == 1  # cached for the second compose


def test_static_release_numbers_win_over_bodhi(harness, bodhi_server):
    harness.releases = {"latest": 40}
    harness.extra_config = f'[consumer_config.container.bodhi]\nurl = "{bodhi_server.url}"\n'

    assert harness.replay(harness.compose(OLD)).code == 0
    assert harness.digest(TOOLBOX, "41") is not None
    assert harness.digest(TOOLBOX, "latest") is None  # latest is 40 by config
    assert bodhi_server.requests == []  # nothing was missing: Bodhi was not asked

    result = harness.replay(harness.compose("Fedora-Rawhide-20241026.n.0", version="Rawhide"))
    assert result.code == 0, result.err
    assert harness.digest(TOOLBOX, "43") is not None  # rawhide's number came from Bodhi
    assert len(bodhi_server.requests) == 1


def test_bodhi_down_is_a_transient_failure(harness, bodhi_server):
    harness.releases = None
    harness.extra_config = f'[consumer_config.container.bodhi]\nurl = "{bodhi_server.url}"\n'
    bodhi_server.statuses = [503] * 5
    result = harness.replay(harness.compose(OLD))
    assert result.code == 1
    assert "Bodhi" in result.err and "HTTP 503" in result.err
    assert "Traceback" not in result.err
    assert harness.registries[0].tags(harness.repo(TOOLBOX)) == []
