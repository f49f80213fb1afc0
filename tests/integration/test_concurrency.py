"""Two processes publishing different composes of the same release at once.

distribution has no conditional PUT, so two writers can interleave between the gate's read and
the index PUT. Every index PUT is read back; a writer that finds another writer's index there
has lost a race: it logs one line and runs the gate again on what the tag holds now.

The free-running test checks what must hold under any interleaving (no tag ever lacks an arch;
every index is one compose's complete, consistent index). The choreographed tests force the two
interleavings that matter through two proxies (one per process) in front of the same registry.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

import httpx
import pytest

from fedora_container_sync.oci.manifest import COMPOSE_ID
from support.harness import ARCHES, Harness
from support.proxy import Fault, FaultProxy, ProxyRequest

pytestmark = pytest.mark.integration

TOOLBOX = "fedora-toolbox"
OLD = "Fedora-41-20241025.0"
NEW = "Fedora-41-20241026.0"
INDEX_TAGS = ("41", "latest")
WAIT = 120.0  # generous: an expired wait is recorded and fails the test


@dataclass
class Run:
    process: subprocess.Popen[str]

    def finish(self) -> tuple[int, str, str]:
        out, err = self.process.communicate(timeout=300)
        return self.process.returncode, out, err


def start(harness: Harness, body: dict, *, host: str, name: str) -> Run:
    """Start ``replay`` for ``body`` in its own process, talking to the registry via ``host``."""
    registry = harness.registries[0]
    harness.registry_entries[registry.host] = (
        f'url = "{host}/{harness.namespace}"\ntls_verify = false\n'
    )
    config = harness.tmp / f"config-{name}.toml"
    shutil.copyfile(harness.config(), config)
    messages = harness.message_file(body, name=f"messages-{name}.jsonl")
    argv = [sys.executable, "-m", "fedora_container_sync", "replay", "--config", str(config)]
    process = subprocess.Popen(
        [*argv, str(messages)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    return Run(process)


def assert_tags_hold(harness: Harness, compose_id: str) -> None:
    for tag in INDEX_TAGS:
        index = harness.index(TOOLBOX, tag)
        assert index["annotations"][COMPOSE_ID] == compose_id, tag
        assert harness.arches(TOOLBOX, tag) == set(ARCHES)
    for arch in ARCHES:
        config = harness.registries[0].image_config(harness.repo(TOOLBOX), f"41-{arch}")
        assert config["config"]["Labels"]["build-id"] == compose_id, arch


def assert_consistent(harness: Harness, tag: str) -> str:
    """The index is complete and every entry comes from the index's own compose."""
    index = harness.index(TOOLBOX, tag)
    compose_id = index["annotations"][COMPOSE_ID]
    assert harness.arches(TOOLBOX, tag) == set(ARCHES)
    for entry in index["manifests"]:
        assert entry["annotations"][COMPOSE_ID] == compose_id
        found = harness.registries[0].get_manifest(harness.repo(TOOLBOX), entry["digest"])
        assert found is not None, f"{tag} lists {entry['digest']}, which is not in the registry"
    return str(compose_id)


def test_two_processes_at_once_never_leave_a_tag_without_an_arch(harness):
    old, new = harness.compose(OLD), harness.compose(NEW)
    registry = harness.registries[0]
    seen: list[tuple[str, frozenset[str] | None]] = []
    stop = threading.Event()

    def watch() -> None:
        while not stop.is_set():
            for tag in INDEX_TAGS:
                try:
                    arches = frozenset(registry.index_arches(harness.repo(TOOLBOX), tag))
                except LookupError:
                    arches = None
                except httpx.HTTPStatusError as error:
                    # distribution answers 500 to a read that meets a tag being written
                    # (its link file is replaced in place): no answer, so read again.
                    if error.response.status_code >= 500:
                        continue
                    raise
                seen.append((tag, arches))

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        runs = [
            start(harness, old, host=registry.host, name="old"),
            start(harness, new, host=registry.host, name="new"),
        ]
        results = [run.finish() for run in runs]
    finally:
        stop.set()
        watcher.join(timeout=10)

    (old_code, _, old_err), (new_code, _, new_err) = results
    assert "Traceback" not in old_err + new_err
    assert new_code == 0, new_err
    # The older compose either finished first, or met the newer one's tags (the rollback guard
    # held them: exit 3), or lost a race on its read-back.
    assert (
        old_code == 0
        or (old_code == 3 and "newer than this compose" in old_err)
        or (old_code == 1 and "lost a race" in old_err)
    ), old_err
    for tag in INDEX_TAGS:
        observed = [arches for t, arches in seen if t == tag]
        first = next((i for i, arches in enumerate(observed) if arches), len(observed))
        # Once the tag exists, every read finds all four arches.
        assert all(arches == frozenset(ARCHES) for arches in observed[first:]), tag
    # Whatever the interleaving, the newer compose ends up on every tag, per-arch tags included.
    assert_tags_hold(harness, NEW)
    assert len(seen) > 4  # the watcher did watch


@dataclass
class Choreography:
    """Events shared by the two proxies' rules, and a record of waits that expired."""

    events: dict[str, threading.Event] = field(default_factory=dict)
    expired: list[str] = field(default_factory=list)
    arch_puts: dict[str, int] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def event(self, name: str) -> threading.Event:
        with self.lock:
            return self.events.setdefault(name, threading.Event())

    def set(self, name: str) -> None:
        self.event(name).set()

    def wait(self, name: str) -> None:
        if not self.event(name).wait(WAIT):
            self.expired.append(name)


def manifest_tag(request: ProxyRequest, namespace: str) -> str | None:
    prefix = f"/v2/{namespace}/{TOOLBOX}/manifests/"
    return request.path.removeprefix(prefix) if request.path.startswith(prefix) else None


def writer(
    choreo: Choreography,
    who: str,
    namespace: str,
    *,
    before_put: Callable[[str], str | None],
    before_readback: Callable[[str], str | None],
    before_verify: Callable[[str], str | None] = lambda _: None,
) -> tuple[Callable[[ProxyRequest], Fault | None], Callable[[ProxyRequest, int], None]]:
    """Rules for one process's proxy. Events it sets: ``<who>-arches`` (all per-arch tags
    written), ``<who>-read-<tag>`` (gate read answered, after the per-arch tags),
    ``<who>-put-<tag>`` (index PUT answered), ``<who>-done-<tag>`` (the read-back after that
    PUT answered). ``before_put`` /
    ``before_readback`` name the event to wait for first (None: go); ``before_verify`` likewise
    for the next read of the tag after that (the end-of-run check)."""
    put_done: set[str] = set()
    readback_held: set[str] = set()
    verify_held: set[str] = set()

    def rule(request: ProxyRequest) -> Fault | None:
        tag = manifest_tag(request, namespace)
        if tag is None:
            return None
        if request.method == "PUT" and tag.startswith("41-") and who == "new":
            choreo.wait("old-arches")
        elif request.method == "PUT" and tag in INDEX_TAGS:
            wait_for = before_put(tag)
            if wait_for:
                choreo.wait(wait_for)
        elif request.method == "GET" and tag in put_done and tag not in readback_held:
            readback_held.add(tag)
            wait_for = before_readback(tag)
            if wait_for:
                choreo.wait(wait_for)
        elif request.method == "GET" and tag in readback_held and tag not in verify_held:
            verify_held.add(tag)
            wait_for = before_verify(tag)
            if wait_for:
                choreo.wait(wait_for)
        return None

    def on_response(request: ProxyRequest, status: int) -> None:
        tag = manifest_tag(request, namespace)
        if tag is None:
            return
        if request.method == "PUT" and tag.startswith("41-") and status == 201:
            with choreo.lock:
                choreo.arch_puts[who] = choreo.arch_puts.get(who, 0) + 1
                done = choreo.arch_puts[who] == len(ARCHES)
            if done:
                choreo.set(f"{who}-arches")
        elif request.method == "PUT" and tag in INDEX_TAGS and status == 201:
            put_done.add(tag)
            choreo.set(f"{who}-put-{tag}")
        elif request.method == "GET" and tag in INDEX_TAGS:
            if tag in put_done:
                choreo.set(f"{who}-done-{tag}")
            elif choreo.event(f"{who}-arches").is_set():
                # The gate's read comes after the run's per-arch tags; the run's first read of
                # the tag, when it plans, comes before them.
                choreo.set(f"{who}-read-{tag}")

    return rule, on_response


def choreographed(harness: Harness, old_rules, new_rules) -> dict[str, tuple[int, str, str]]:
    registry = harness.registries[0]
    old, new = harness.compose(OLD), harness.compose(NEW)
    with FaultProxy(registry.url) as old_proxy, FaultProxy(registry.url) as new_proxy:
        old_proxy.rule, old_proxy.on_response = old_rules
        new_proxy.rule, new_proxy.on_response = new_rules
        runs = {
            "old": start(harness, old, host=old_proxy.host, name="old"),
            "new": start(harness, new, host=new_proxy.host, name="new"),
        }
        return {who: run.finish() for who, run in runs.items()}


def test_newer_compose_that_loses_the_race_detects_it_and_wins(harness):
    """old reads; new writes; old writes over it; new reads back old's index, sees the lost race,
    gates again and writes. Per-arch tags: old's land first, then new's."""
    choreo = Choreography()
    ns = harness.namespace
    old_rules = writer(
        choreo, "old", ns, before_put=lambda tag: f"new-put-{tag}", before_readback=lambda _: None
    )
    new_rules = writer(
        choreo,
        "new",
        ns,
        before_put=lambda tag: f"old-read-{tag}",
        before_readback=lambda tag: f"old-done-{tag}",
    )
    results = choreographed(harness, old_rules, new_rules)

    assert choreo.expired == []
    code, _out, err = results["new"]
    assert code == 0, err
    lost = [line for line in err.splitlines() if "lost a race" in line]
    assert len(lost) == len(INDEX_TAGS), err
    assert all(NEW in line and "gating again" in line for line in lost)
    code, _out, err = results["old"]
    assert code == 0, err
    assert "lost a race" not in err
    assert_tags_hold(harness, NEW)


def test_older_compose_that_loses_the_race_leaves_the_newer_one(harness):
    """old writes; new writes over it and reads back its own; old reads back new's index, sees
    the lost race and gates again: the tag must stay on the newer compose."""
    choreo = Choreography()
    ns = harness.namespace
    old_rules = writer(
        choreo, "old", ns, before_put=lambda _: None, before_readback=lambda tag: f"new-done-{tag}"
    )
    new_rules = writer(
        choreo, "new", ns, before_put=lambda tag: f"old-put-{tag}", before_readback=lambda _: None
    )
    results = choreographed(harness, old_rules, new_rules)

    assert choreo.expired == []
    assert results["new"][0] == 0, results["new"][2]
    assert "lost a race" in results["old"][2]
    assert "Traceback" not in results["old"][2]
    assert_tags_hold(harness, NEW)


def test_older_compose_that_writes_after_the_newer_ones_read_back_is_undone(harness):
    """old reads; new writes and reads back its own; only then old writes over it (its own
    read-back sees nothing wrong). The newer run's end-of-run check finds an older compose on
    the tag and gates it again: the newer compose ends up on every tag."""
    choreo = Choreography()
    ns = harness.namespace
    old_rules = writer(
        choreo, "old", ns, before_put=lambda tag: f"new-done-{tag}", before_readback=lambda _: None
    )
    new_rules = writer(
        choreo,
        "new",
        ns,
        before_put=lambda tag: f"old-read-{tag}",
        before_readback=lambda _: None,
        before_verify=lambda tag: f"old-done-{tag}",
    )
    results = choreographed(harness, old_rules, new_rules)
    assert choreo.expired == []
    code, _out, err = results["new"]
    assert code == 0, err
    overwritten = [line for line in err.splitlines() if "was overwritten by" in line]
    assert len(overwritten) == len(INDEX_TAGS), err
    assert all(OLD in line and "gating again" in line for line in overwritten)
    code, _out, err = results["old"]
    assert code == 0, err
    assert_tags_hold(harness, NEW)
