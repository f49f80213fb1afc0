"""deploy/openshift as an operator applies it (``oc apply -k``): what it writes over, what the
production config switches off, where its pods may run, and the disk it asks for. The
manifests are read as YAML; the sizing arithmetic is docs/operating.md's ("Sizing")."""

from __future__ import annotations

import math
import re
import shlex
import tomllib
from pathlib import Path
from typing import Any

import yaml

from fedora_container_sync.cli import build_parser

OPENSHIFT = Path(__file__).resolve().parents[2] / "deploy" / "openshift"
CONFIG_FILE = "fedora-container-sync.toml"
#: Fedora's largest container images (the bootc and atomic desktops) are about 2 GiB; each image
#: in flight needs about twice its size on disk (the download, then its OCI layout).
LARGEST_IMAGE = 2 << 30
DISK_PER_IMAGE = 2 * LARGEST_IMAGE


def documents(name: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all((OPENSHIFT / name).read_text()) if d]


def applied() -> list[dict[str, Any]]:
    """Every object ``oc apply -k deploy/openshift`` writes."""
    (kustomization,) = documents("kustomization.yaml")
    return [d for name in kustomization["resources"] for d in documents(name)]


def one(kind: str, name: str) -> dict[str, Any]:
    (found,) = [d for d in applied() if d["kind"] == kind and d["metadata"]["name"] == name]
    return found


def quantity(value: str | int) -> float:
    """A Kubernetes quantity (``10Gi``, ``500m``, ``2``) as a number."""
    text = str(value)
    units = {"Ki": 1 << 10, "Mi": 1 << 20, "Gi": 1 << 30, "Ti": 1 << 40, "m": 1e-3}
    for suffix, factor in units.items():
        if text.endswith(suffix):
            return float(text.removesuffix(suffix)) * factor
    return float(text)


def consumer_pod() -> dict[str, Any]:
    spec: dict[str, Any] = one("Deployment", "fedora-container-sync")["spec"]["template"]["spec"]
    return spec


def audit_pod() -> dict[str, Any]:
    cronjob = one("CronJob", "fedora-container-sync-audit")
    spec: dict[str, Any] = cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    return spec


def test_apply_writes_no_placeholder_secret_over_the_operators():
    assert "secret.yaml" not in documents("kustomization.yaml")[0]["resources"]
    assert not [d for d in applied() if d["kind"] == "Secret"]
    assert "CHANGE-ME" not in yaml.safe_dump_all(applied())
    # The Secret the pods mount is the one the docs tell the operator to create.
    (secret,) = documents("secret.yaml")
    name = secret["metadata"]["name"]
    for pod in (consumer_pod(), audit_pod()):
        assert name in [v["secret"]["secretName"] for v in pod["volumes"] if "secret" in v]
    assert f"oc create secret generic {name}" in (OPENSHIFT / "secret.yaml").read_text()
    assert (
        f"oc create secret generic {name}"
        in (OPENSHIFT.parents[1] / "docs/operating.md").read_text()
    )


def test_production_config_leaves_release_numbers_to_bodhi():
    """A pinned [releases] switches the Bodhi lookup off: after the next release latest
    would never move."""
    config = tomllib.loads(one("ConfigMap", "fedora-container-sync-config")["data"][CONFIG_FILE])
    container = config["consumer_config"]["container"]
    assert "latest" not in container.get("releases", {})
    assert "rawhide" not in container.get("releases", {})


def test_the_two_consumers_spread_over_nodes():
    pod = consumer_pod()
    labels = one("Deployment", "fedora-container-sync")["spec"]["template"]["metadata"]["labels"]
    by_key = {c["topologyKey"]: c for c in pod.get("topologySpreadConstraints", [])}
    host = by_key["kubernetes.io/hostname"]
    assert host["maxSkew"] == 1
    assert host["whenUnsatisfiable"] == "DoNotSchedule"
    assert host["labelSelector"]["matchLabels"] == labels


def test_the_consumer_asks_for_the_disk_its_cpus_imply():
    """limits.cpu is max_parallel's default (the CPUs the process may use): that many images
    in flight, each about twice its size on disk."""
    pod = consumer_pod()
    (container,) = pod["containers"]
    resources = container["resources"]
    config = tomllib.loads(one("ConfigMap", "fedora-container-sync-config")["data"][CONFIG_FILE])
    parallel = config["consumer_config"]["container"].get("max_parallel")
    cpus = math.ceil(quantity(resources["limits"]["cpu"]))
    in_flight = parallel if parallel is not None else cpus
    work_mount = next(
        m["name"]
        for m in container["volumeMounts"]
        if m["mountPath"] == config["consumer_config"]["container"]["work_dir"]
    )
    (work,) = [v for v in pod["volumes"] if v["name"] == work_mount]
    size_limit = quantity(work["emptyDir"]["sizeLimit"])
    assert size_limit >= in_flight * DISK_PER_IMAGE
    request = quantity(resources["requests"]["ephemeral-storage"])
    limit = quantity(resources["limits"]["ephemeral-storage"])
    assert request >= size_limit  # the node has room for the work dir it may fill
    assert limit > request  # and for the logs beyond it


def test_the_audit_runs_on_any_node_and_writes_only_its_own_pod():
    pod = audit_pod()
    assert "affinity" not in pod  # no co-scheduling with the page server
    (container,) = pod["containers"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    writable = [m for m in container["volumeMounts"] if not m.get("readOnly")]
    assert writable
    for mount in writable:  # an emptyDir: writable by whatever UID the pod gets
        assert "emptyDir" in volumes[mount["name"]], mount
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert not any("persistentVolumeClaim" in d.get("spec", {}) for d in applied())

    # The audit, as the systemd timer runs it, writes its page into that emptyDir.
    script = container["command"][-1]
    (line,) = [x for x in script.splitlines() if x.startswith("fedora-container-sync audit")]
    args = build_parser().parse_args(shlex.split(line)[1:])
    assert (args.command, args.max_age, args.json) == ("audit", 48.0, False)
    page_dir = str(args.html.parent)
    assert page_dir in [m["mountPath"] for m in writable]
    assert 'exit "$code"' in script  # the audit's exit code is the Job's


def test_the_page_reaches_the_page_server_through_a_configmap_the_audit_may_change():
    pod = audit_pod()
    (container,) = pod["containers"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    store = env["STORE_PAGE"]
    compile(store, "STORE_PAGE", "exec")  # the uploader is valid Python
    (name,) = set(re.findall(r'name = "([^"]+)"', store))
    # nginx serves that ConfigMap, read-only, as its document root.
    web = one("Deployment", "fedora-container-sync-status")["spec"]["template"]["spec"]
    (nginx,) = web["containers"]
    (volume,) = web["volumes"]
    assert volume["configMap"] == {"name": name, "optional": True}
    (mount,) = nginx["volumeMounts"]
    assert (mount["name"], mount["mountPath"], mount["readOnly"]) == (
        volume["name"],
        "/opt/app-root/src",
        True,
    )
    # The audit's service account may change that ConfigMap and no other.
    account = pod["serviceAccountName"]
    binding = one("RoleBinding", account)
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": account}]
    role = one("Role", binding["roleRef"]["name"])
    named = [r for r in role["rules"] if "resourceNames" in r]
    assert named == [
        {
            "apiGroups": [""],
            "resources": ["configmaps"],
            "resourceNames": [name],
            "verbs": ["get", "update"],
        }
    ]
    unnamed = [r for r in role["rules"] if "resourceNames" not in r]
    assert all(r["verbs"] == ["create"] for r in unnamed)
    assert "PUT" in store and "POST" in store  # update, else create
