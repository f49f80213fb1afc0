"""What ships for running the daemon: config.toml.example (run as-is against the local
RabbitMQ), the systemd units (systemd-analyze), the OpenShift deployment (consistent with the
config it carries), and that all of them agree on the config path, the credentials and the
cert dir."""

from __future__ import annotations

import random
import re
import shutil
import subprocess
import tomllib
import uuid
from pathlib import Path

import pytest
import yaml
from fedora_messaging import message as fm_message
from fedora_messaging.config import LazyConfig

from fedora_container_sync.cli import build_parser
from fedora_container_sync.config.load import load_settings
from support.broker import (
    BIN,
    ConsumerProcess,
    publish_file,
    rabbitmq_listening,
    write_messages,
)

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "config.toml.example"
UNIT = ROOT / "systemd" / "fedora-container-sync.service"
SERVICES = sorted((ROOT / "systemd").glob("*.service"))
OPENSHIFT = ROOT / "deploy" / "openshift"
CONFIG_FILE = "fedora-container-sync.toml"


def test_example_config_runs_as_is_against_the_local_broker(tmp_path):
    if not rabbitmq_listening():
        pytest.fail("RabbitMQ is not listening on 127.0.0.1:5672", pytrace=False)
    # Its work_dir is the example's; the test leaves the machine as it found it.
    work_dir = Path(tomllib.loads(EXAMPLE.read_text())["consumer_config"]["container"]["work_dir"])
    existed = work_dir.exists()
    consumer = ConsumerProcess(EXAMPLE, tmp_path / "example.log").start()
    try:
        consumer.wait_log("Successfully registered AMQP consumer")
        # A Pungi message from any environment reaches it: STARTED is acknowledged without
        # work, a FINISHED compose outside its allowlist is dropped.
        topic = f"org.fedoraproject.t{uuid.uuid4().hex[:12]}.pungi.compose.status.change"
        compose_id = f"Fedora-41-20241025.{random.randrange(1000, 10**6)}"  # noqa: S311
        location = f"https://kojipkgs.example.org/compose/{compose_id}/compose"
        body = {"compose_id": compose_id, "location": location}
        messages = [
            fm_message.Message(topic=topic, body={**body, "status": "STARTED"}),
            fm_message.Message(topic=topic, body={**body, "status": "FINISHED"}),
        ]
        publish_file(write_messages(tmp_path / "messages.jsonl", messages), tmp_path)
        consumer.wait_log(rf"ignoring {re.escape(compose_id)}: topic {re.escape(topic)}")
        (dropped,) = consumer.wait_log(rf"{re.escape(compose_id)}: dropping the message")
        assert "outside compose_url_allowlist" in dropped
        assert consumer.stop() == 0
    finally:
        consumer.cleanup()
        if not existed:
            shutil.rmtree(work_dir, ignore_errors=True)
    assert work_dir.exists() == existed


def unit_settings(text: str) -> list[tuple[str, str]]:
    return [
        (key, value)
        for key, _, value in (line.partition("=") for line in text.splitlines())
        if value and not key.startswith("#")
    ]


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze here")
@pytest.mark.parametrize("service", SERVICES, ids=lambda path: path.name)
def test_systemd_units_pass_systemd_analyze(tmp_path, service):
    # verify checks that ExecStart's binary exists: point it at this venv's scripts.
    unit = tmp_path / service.name
    unit.write_text(service.read_text().replace("ExecStart=fedora-", f"ExecStart={BIN}/fedora-"))
    verify = subprocess.run(
        ["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, check=False
    )
    # verify only warns about unknown keys or bad values: any output is a finding.
    assert (verify.returncode, verify.stdout + verify.stderr) == (0, "")
    # Exposure 1.2 at most (threshold in tenths), as sandboxed as the consumer always was.
    security = subprocess.run(
        ["systemd-analyze", "security", "--offline=yes", "--threshold=12", str(unit)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert security.returncode == 0, security.stdout[-2000:]
    assert "Overall exposure level" in security.stdout


def test_systemd_unit_runs_the_consumer_sandboxed_with_loaded_credentials(tmp_path):
    settings = unit_settings(UNIT.read_text())
    values = dict(settings)
    assert values["ExecStart"].endswith(
        "fedora-messaging consume --callback fedora_container_sync.consumer:Consumer"
    )
    for key, value in {
        "DynamicUser": "yes",
        "NoNewPrivileges": "yes",
        "ProtectSystem": "strict",
        "PrivateTmp": "yes",
        "ProtectHome": "yes",
        "Restart": "on-failure",
        "RestartPreventExitStatus": "2",  # a bad config: restarting cannot help
        "StateDirectory": "fedora-container-sync",
        "ReadWritePaths": "-/var/lib/fedora-container-sync",
    }.items():
        assert values.get(key) == value, key
    # Every credential the Fedora config names is loaded (and the client certificate).
    loaded = {value.split(":", 1)[0] for key, value in settings if key == "LoadCredential"}
    fedora = load_settings(_configmap_config(tmp_path))
    for registry in fedora.registries:
        assert {f"{registry.credential_prefix}USER", f"{registry.credential_prefix}PASSWORD"} <= (
            loaded
        )
    assert {"registry-fedoraproject.cert", "registry-fedoraproject.key"} <= loaded


def _yaml(name: str) -> dict:
    document: dict = yaml.safe_load((OPENSHIFT / name).read_text())
    return document


def _configmap_config(tmp: Path) -> Path:
    path = tmp / CONFIG_FILE
    path.write_text(_yaml("configmap.yaml")["data"][CONFIG_FILE])
    return path


def test_openshift_configmap_is_a_valid_config_for_fedoras_broker(tmp_path):
    path = _configmap_config(tmp_path)
    conf = LazyConfig().load_config(config_path=str(path))  # fedora-messaging's own checks
    settings = load_settings(path)  # ours
    assert conf["callback"] == "fedora_container_sync.consumer:Consumer"
    assert conf["amqp_url"].startswith("amqps://") and conf["passive_declares"] is True
    assert conf["qos"]["prefetch_count"] == 1
    (queue,) = conf["queues"]
    assert conf["queues"][queue]["durable"] is True
    assert conf["queues"][queue]["auto_delete"] is False
    assert conf["queues"][queue]["exclusive"] is False
    # The production shape: one quorum queue shared by the replicas, one of them active,
    # a poison message dead-lettered after a bounded number of deliveries.
    arguments = conf["queues"][queue]["arguments"]
    assert arguments["x-queue-type"] == "quorum"
    assert arguments["x-single-active-consumer"] is True
    assert 1 <= arguments["x-delivery-limit"] <= 50
    assert arguments["x-dead-letter-exchange"] == f"{queue}.dead-letter"
    assert arguments["x-dead-letter-strategy"] == "at-least-once"
    assert arguments["x-overflow"] == "reject-publish"  # what at-least-once requires
    assert conf["bindings"] == [
        {
            "queue": queue,
            "exchange": "amq.topic",
            "routing_keys": ["org.fedoraproject.prod.pungi.compose.status.change"],
        }
    ]
    assert conf["topic_prefix"] == "org.fedoraproject.prod"
    assert settings.publish_amqp_messages
    assert [r.url for r in settings.registries] == ["registry.fedoraproject.org", "quay.io/fedora"]


def test_openshift_deployment_matches_its_config_secret_and_image(tmp_path):
    deployment = _yaml("deployment.yaml")
    configmap = _yaml("configmap.yaml")
    secret = _yaml("secret.yaml")
    kustomization = _yaml("kustomization.yaml")
    # secret.yaml is the Secret's shape, created by hand (never applied over the real one).
    assert set(kustomization["resources"]) == {
        "configmap.yaml",
        "deployment.yaml",
        "poddisruptionbudget.yaml",
        "audit-cronjob.yaml",
        "status-page.yaml",
    }
    conf = tomllib.loads(configmap["data"][CONFIG_FILE])
    settings = load_settings(_configmap_config(tmp_path))

    # Two replicas on the single-active-consumer queue; an update never drops below two.
    assert deployment["spec"]["replicas"] == 2
    assert deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    budget = _yaml("poddisruptionbudget.yaml")
    assert "poddisruptionbudget.yaml" in kustomization["resources"]
    assert budget["spec"]["minAvailable"] == 1
    assert budget["spec"]["selector"] == deployment["spec"]["selector"]

    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    env = {item["name"]: item["value"] for item in container["env"]}
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}

    # The probes ask the consumer's own health endpoints, not fedora-messaging's /ready.
    ports = {port["name"]: port["containerPort"] for port in container["ports"]}
    assert ports == {"monitoring": conf["monitoring"]["port"], "health": settings.health.port}
    assert settings.health.address == "0.0.0.0"  # noqa: S104 - probed on the pod IP
    assert container["livenessProbe"]["httpGet"] == {"path": "/live", "port": "health"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/ready", "port": "health"}
    # The config file is the ConfigMap's.
    config_volume = next(n for n, v in volumes.items() if "configMap" in v)
    assert volumes[config_volume]["configMap"]["name"] == configmap["metadata"]["name"]
    assert env["FEDORA_MESSAGING_CONF"] == f"{mounts[config_volume]}/{CONFIG_FILE}"
    # Secrets are files in $CREDENTIALS_DIRECTORY: registry credentials, client certificate,
    # broker certificate.
    secret_volume = next(n for n, v in volumes.items() if "secret" in v)
    assert volumes[secret_volume]["secret"]["secretName"] == secret["metadata"]["name"]
    credentials = mounts[secret_volume]
    assert env["CREDENTIALS_DIRECTORY"] == credentials
    keys = set(secret["stringData"])
    for registry in settings.registries:
        assert {f"{registry.credential_prefix}USER", f"{registry.credential_prefix}PASSWORD"} <= (
            keys
        )
        if registry.cert_dir is not None:
            assert str(registry.cert_dir) == credentials
            assert any(k.endswith(".cert") for k in keys) and any(k.endswith(".key") for k in keys)
    for tls_file in conf["tls"].values():
        directory, _, name = tls_file.rpartition("/")
        assert (directory, name in keys) == (credentials, True), tls_file
    # The work dir is a writable volume.
    work_volume = next(n for n, path in mounts.items() if path == str(settings.work_dir))
    assert "emptyDir" in volumes[work_volume]
    # The image sets the same paths, for runs without the Deployment's env.
    containerfile = (OPENSHIFT / "Containerfile").read_text()
    for name in ("FEDORA_MESSAGING_CONF", "CREDENTIALS_DIRECTORY"):
        assert f"{name}={env[name]}" in containerfile
    assert "skopeo" in containerfile
    assert container["command"] == ["fedora-messaging", "consume"]


def test_openshift_audit_cronjob_writes_the_page_that_nginx_serves():
    deployment = _yaml("deployment.yaml")
    cronjob = _yaml("audit-cronjob.yaml")
    status = {
        d["kind"]: d for d in yaml.safe_load_all((OPENSHIFT / "status-page.yaml").read_text())
    }
    assert set(status) == {
        "ServiceAccount",
        "Role",
        "RoleBinding",
        "Deployment",
        "Service",
        "Route",
    }

    job = cronjob["spec"]["jobTemplate"]["spec"]
    pod = job["template"]["spec"]
    (audit,) = pod["containers"]
    (consumer,) = deployment["spec"]["template"]["spec"]["containers"]
    # The consumer's image, config and credentials, mounted and named the same way.
    assert audit["image"] == consumer["image"]
    page_store = [e for e in audit["env"] if e["name"] == "STORE_PAGE"]
    assert [e for e in audit["env"] if e not in page_store] == [
        e for e in consumer["env"] if e["name"] != "HOME"
    ]
    consumer_volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    mounts = {m["name"]: m for m in audit["volumeMounts"]}
    consumer_mounts = {m["name"]: m for m in consumer["volumeMounts"]}
    for name in ("config", "credentials"):
        assert volumes[name] == consumer_volumes[name]
        assert mounts[name] == consumer_mounts[name]
    # The audit with --max-age 48, as the systemd timer runs it, writing the page into its
    # pod's emptyDir (stored as a ConfigMap afterwards: tests/unit/test_deploy_manifests.py);
    # a run with findings (exit 3) is not retried.
    script = audit["command"][-1].splitlines()
    (line,) = [x for x in script if x.startswith("fedora-container-sync ")]
    args = build_parser().parse_args(line.split()[1:])
    assert (args.command, args.max_age, args.json) == ("audit", 48.0, False)
    (page_volume,) = [n for n, v in volumes.items() if "emptyDir" in v]
    assert args.html.parent == Path(mounts[page_volume]["mountPath"])
    assert (job["backoffLimit"], pod["restartPolicy"]) == (0, "Never")
    assert cronjob["spec"]["concurrencyPolicy"] == "Forbid"

    # nginx serves the page; Service and Route reach it.
    web = status["Deployment"]["spec"]["template"]
    (nginx,) = web["spec"]["containers"]
    labels = web["metadata"]["labels"]
    assert status["Service"]["spec"]["selector"] == labels
    (port,) = nginx["ports"]
    (service_port,) = status["Service"]["spec"]["ports"]
    assert service_port["targetPort"] == port["name"]
    assert status["Route"]["spec"]["to"]["name"] == status["Service"]["metadata"]["name"]
    # Nothing shared between nodes: the audit's pod may run anywhere.
    assert "affinity" not in pod


# -- every unit and manifest agrees ----------------------------------------------------------


def _workload_containers() -> list[tuple[str, dict, dict]]:
    """(manifest, pod spec, container) for every container of every workload in
    deploy/openshift that runs this project (Deployments, CronJobs, Jobs ...)."""
    found = []
    for path in sorted(OPENSHIFT.glob("*.yaml")):
        for document in yaml.safe_load_all(path.read_text()):
            if not isinstance(document, dict):
                continue
            spec = document.get("spec", {})
            template = spec.get("jobTemplate", {}).get("spec", spec).get("template")
            if not template:
                continue
            pod = template["spec"]
            for container in pod["containers"]:
                command = " ".join(container.get("command", []) + container.get("args", []))
                runs = f"{container.get('image', '')} {command}"
                if "fedora-messaging" in runs or "fedora-container-sync" in runs:
                    found.append((path.name, pod, container))
    return found


def _required_credentials(config: Path, credentials_dir: str) -> set[str]:
    """The secret files the config needs in ``credentials_dir``: registry users and passwords,
    the files [tls] names, the client certificates (skopeo's .cert + .key) in cert_dir."""
    settings = load_settings(config)
    names = set()
    for registry in settings.registries:
        if registry.credential_prefix:
            names |= {f"{registry.credential_prefix}USER", f"{registry.credential_prefix}PASSWORD"}
    tls = tomllib.loads(config.read_text()).get("tls", {})
    for tls_file in tls.values():
        directory, _, name = tls_file.rpartition("/")
        assert directory == credentials_dir, f"[tls] {tls_file} is outside {credentials_dir}"
        names.add(name)
    return names


def test_every_unit_and_manifest_agrees_on_config_credentials_and_cert_dir(tmp_path):
    """One config file, one set of credential names, one directory holding them (also the
    registry's cert_dir and the broker's [tls] files), for every systemd unit and every
    OpenShift container."""
    config_paths: dict[str, str] = {}
    credential_names: dict[str, set[str]] = {}
    credential_dirs: dict[str, str] = {}
    for service in SERVICES:
        settings = unit_settings(service.read_text())
        keys = {key for key, _ in settings}
        assert "EnvironmentFile" not in keys, f"{service.name}: credentials come as files"
        env = dict(
            value.split("=", 1) for key, value in settings if key == "Environment" and "=" in value
        )
        config_paths[service.name] = env["FEDORA_MESSAGING_CONF"]
        loaded = [value.split(":", 1) for key, value in settings if key == "LoadCredential"]
        credential_names[service.name] = {name for name, _ in loaded}
        # Root-only files under one directory, each under its own name.
        assert {Path(source).name for _, source in loaded} == credential_names[service.name]
        assert {str(Path(source).parent) for _, source in loaded} == {
            "/etc/fedora-container-sync/credentials"
        }
        (bind,) = [value for key, value in settings if key == "BindReadOnlyPaths"]
        source, _, target = bind.partition(":")
        assert source == "%d", f"{service.name}: binds $CREDENTIALS_DIRECTORY"
        credential_dirs[service.name] = target

    secret = _yaml("secret.yaml")
    containers = _workload_containers()
    assert containers, "no OpenShift workload runs fedora-container-sync"
    for manifest, pod, container in containers:
        name = f"{manifest}:{container['name']}"
        env = {item["name"]: item.get("value") for item in container.get("env", [])}
        volumes = {volume["name"]: volume for volume in pod["volumes"]}
        mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
        config_volume = next(n for n in mounts if "configMap" in volumes[n])
        assert env["FEDORA_MESSAGING_CONF"] == f"{mounts[config_volume]}/{CONFIG_FILE}", name
        config_paths[name] = env["FEDORA_MESSAGING_CONF"]
        secret_volume = next(n for n in mounts if "secret" in volumes[n])
        assert volumes[secret_volume]["secret"]["secretName"] == secret["metadata"]["name"]
        credential_dirs[name] = mounts[secret_volume]
        assert env["CREDENTIALS_DIRECTORY"] == mounts[secret_volume], name
        credential_names[name] = set(secret["stringData"])

    assert set(config_paths.values()) == {f"/etc/fedora-messaging/{CONFIG_FILE}"}, config_paths
    (credentials_dir,) = set(credential_dirs.values())
    (names,) = {frozenset(found) for found in credential_names.values()}

    # What the config needs is exactly what every deployment hands over.
    config = _configmap_config(tmp_path)
    settings = load_settings(config)
    cert_dirs = {str(r.cert_dir) for r in settings.registries if r.cert_dir is not None}
    assert cert_dirs == {credentials_dir}
    certs = {name for name in names if name.endswith((".cert", ".key", ".crt"))}
    # Only the registry client certificate looks like one to skopeo (a pair of .cert/.key).
    assert {name.rsplit(".", 1)[0] for name in certs} == {"registry-fedoraproject"}
    assert {name.rsplit(".", 1)[1] for name in certs} == {"cert", "key"}
    assert _required_credentials(config, credentials_dir) | certs == names

    # config.toml.example shows the same paths on its "Fedora:" lines.
    example = EXAMPLE.read_text()
    assert f'# cert_dir = "{credentials_dir}"' in example
    for key in ("ca_cert", "keyfile", "certfile"):
        assert re.search(rf'^# {key} = "{re.escape(credentials_dir)}/[\w.-]+"$', example, re.M)


def test_the_example_documents_the_production_queue_of_the_configmap(tmp_path):
    """The commented production queue of config.toml.example is the ConfigMap's."""
    lines = EXAMPLE.read_text().splitlines()
    start = lines.index("# [queues.fedora-container-sync]")
    block = []
    for line in lines[start:]:
        if not line.startswith("# "):
            break
        block.append(line[2:])
    example = tomllib.loads("\n".join(block))["queues"]
    configmap = tomllib.loads(_configmap_config(tmp_path).read_text())["queues"]
    assert example == configmap
