"""`make demo`: publish two sample composes to a throw-away local registry and show the gate.

Starts a CNCF distribution registry and an HTTP server for the compose trees on 127.0.0.1,
builds a small sample compose (fedora-toolbox, four arches), then replays two saved
messages through the real command line, exactly as an operator would:

1. Fedora-41-20241025.0 finished with every arch → per-arch tags and 41/latest published.
2. Fedora-41-20241026.0 finished, but its aarch64 build failed → per-arch tags of the other
   arches move, 41/latest are held (exit 3), so no pull of fedora-toolbox:41 loses aarch64.

Everything it starts is stopped at the end; files live in .demo/ (removed on the next run).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from fedora_container_sync.platforms import sorted_arches  # noqa: E402
from support.compose import (  # noqa: E402
    ComposeImage,
    build_compose,
    finished_message,
    serialized_message,
)
from support.servers import FileServer, Registry  # noqa: E402

ARCHES = ("x86_64", "aarch64", "ppc64le", "s390x")
WORK = ROOT / ".demo"


def banner(text: str) -> None:
    print(f"\n=== {text} ===", flush=True)


def replay(config: Path, messages: Path) -> int:
    command = [
        str(Path(sys.executable).with_name("fedora-container-sync")),
        "replay",
        "--config",
        str(config),
        str(messages),
    ]
    print("$ fedora-container-sync replay --config", config.name, messages.name, flush=True)
    return subprocess.run(command, check=False).returncode


def show_tags(registry: Registry, repository: str) -> None:
    for tag in registry.tags(repository):
        found = registry.get_manifest(repository, tag)
        if found is None:
            continue
        _, digest, body = found
        document = json.loads(body)
        if "manifests" in document:
            arches = sorted_arches(
                entry["annotations"].get("org.fedoraproject.arch", "?")
                for entry in document["manifests"]
            )
            source = document.get("annotations", {}).get("org.fedoraproject.compose.id", "?")
            print(f"  {repository}:{tag:<12} index  {digest[:19]}  {source}  [{', '.join(arches)}]")
        else:
            print(f"  {repository}:{tag:<12} image  {digest[:19]}")


def main() -> int:
    shutil.rmtree(WORK, ignore_errors=True)
    served = WORK / "composes"
    served.mkdir(parents=True)
    with Registry() as registry, FileServer(served) as server:
        banner(f"registry on {registry.host}, composes served from {server.url}")
        composes = [
            ("Fedora-41-20241025.0", ARCHES, "FINISHED"),
            ("Fedora-41-20241026.0", ("x86_64", "ppc64le", "s390x"), "FINISHED_INCOMPLETE"),
        ]
        messages = []
        for compose_id, arches, status in composes:
            compose_dir = build_compose(
                served,
                compose_id=compose_id,
                release_version="41",
                images=[ComposeImage("Container_Toolbox", arch) for arch in arches],
            )
            body = finished_message(
                compose_dir, served_root=served, base_url=server.url, status=status
            )
            path = WORK / f"{compose_id}.jsonl"
            path.write_text(serialized_message(body))
            messages.append(path)

        config = WORK / "config.toml"
        config.write_text(
            f"""[consumer_config.container]
compose_url_allowlist = ["{server.url}/"]
work_dir = "{WORK / "work"}"

[consumer_config.container.repos]
Container_Toolbox = "fedora-toolbox"

[consumer_config.container.releases]
latest = 41
rawhide = 43

[[consumer_config.container.registries]]
url = "{registry.host}/fedora"
tls_verify = false
"""
        )

        banner("1. a complete compose: every arch built")
        first = replay(config, messages[0])
        print(f"exit code {first}")
        show_tags(registry, "fedora/fedora-toolbox")

        banner("2. the next compose: aarch64 failed to build")
        second = replay(config, messages[1])
        print(f"exit code {second} (3 = finished, but the gate held a tag)")
        show_tags(registry, "fedora/fedora-toolbox")

        banner("what happened")
        print(
            "fedora-toolbox:41 and :latest still list all four arches (from the first compose);\n"
            "41-x86_64, 41-ppc64le and 41-s390x moved to the second compose's builds;\n"
            "41-aarch64 still serves the last good aarch64 build."
        )
    banner("registry and compose server stopped")
    return 0 if (first, second) == (0, 3) else 1


if __name__ == "__main__":
    sys.exit(main())
