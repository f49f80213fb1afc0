"""`make demo`: publish two sample composes to a throw-away local registry and show the gate.

Starts a CNCF distribution registry and an HTTP server for the compose trees on 127.0.0.1,
builds a small sample compose (fedora-toolbox, four arches), then replays two saved
messages through the real command line, exactly as an operator would:

1. Fedora-41-20241025.0 finished with every arch → per-arch tags and 41/latest published.
2. Fedora-41-20241026.0 finished, but its fedora-toolbox aarch64 build failed → per-arch tags
   of the other arches move, 41/latest of fedora-toolbox are held (exit 3), so no pull of
   fedora-toolbox:41 loses aarch64; fedora (every arch built) moves.

Then it audits the registry and writes the status page, .demo/status.html
(``--screenshot FILE`` also takes a screenshot of it in headless Chromium, for docs/).

Everything it starts is stopped at the end; files live in .demo/ (removed on the next run).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from fedora_container_sync.oci.platforms import sorted_arches  # noqa: E402
from support.compose import (  # noqa: E402
    ComposeImage,
    build_compose,
    finished_message,
    serialized_message,
)
from support.servers import FileServer, Registry  # noqa: E402

ARCHES = ("x86_64", "aarch64", "ppc64le", "s390x")
WORK = ROOT / ".demo"
#: The viewport of the screenshot in docs/: a laptop's screen (the demo page fits in it).
SCREENSHOT_SIZE = (1366, 900)


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


def audit(config: Path, page: Path) -> int:
    command = [
        str(Path(sys.executable).with_name("fedora-container-sync")),
        "audit",
        "--config",
        str(config),
        "--html",
        str(page),
    ]
    print(f"$ fedora-container-sync audit --config {config.name} --html {page.name}", flush=True)
    return subprocess.run(command, check=False).returncode


def screenshot(page: Path, png: Path) -> None:
    from support.browser import read_png, render

    width, height = SCREENSHOT_SIZE
    rendering = render(page.as_uri(), width=width, height=height)
    if rendering.errors:
        raise SystemExit(f"the page logged errors: {rendering.errors}")
    image = read_png(rendering.png)
    png.write_bytes(rendering.png)
    print(f"screenshot ({image.width}x{image.height}): {png}")


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
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--screenshot", metavar="FILE", type=Path, help="PNG of the status page")
    parser.add_argument(
        "--work", metavar="DIR", type=Path, default=WORK, help=f"where its files go ({WORK})"
    )
    args = parser.parse_args()
    work = args.work.resolve()
    page = work / "status.html"
    shutil.rmtree(work, ignore_errors=True)
    served = work / "composes"
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
                images=[ComposeImage("Container_Toolbox", arch) for arch in arches]
                + [ComposeImage("Container_Base", arch) for arch in ARCHES],
            )
            body = finished_message(
                compose_dir, served_root=served, base_url=server.url, status=status
            )
            path = work / f"{compose_id}.jsonl"
            path.write_text(serialized_message(body))
            messages.append(path)

        config = work / "config.toml"
        config.write_text(
            f"""[consumer_config.container]
compose_url_allowlist = ["{server.url}/"]
work_dir = "{work / "work"}"

[consumer_config.container.repos]
Container_Base = "fedora"
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

        banner("2. the next compose: fedora-toolbox's aarch64 build failed")
        second = replay(config, messages[1])
        print(f"exit code {second} (3 = finished, but the gate held a tag)")
        show_tags(registry, "fedora/fedora-toolbox")

        banner("what happened")
        print(
            "fedora-toolbox:41 and :latest still list all four arches (from the first compose);\n"
            "41-x86_64, 41-ppc64le and 41-s390x moved to the second compose's builds;\n"
            "41-aarch64 still serves the last good aarch64 build.\n"
            "fedora:41 and :latest moved: every arch of fedora built."
        )

        banner("3. the audit, and its status page")
        audited = audit(config, page)
        print(f"exit code {audited} (3 = findings: the held tags)")
    banner("registry and compose server stopped")
    if args.screenshot:
        screenshot(page, args.screenshot)
    print(f"status page: {page}")
    return 0 if (first, second, audited) == (0, 3, 3) else 1


if __name__ == "__main__":
    sys.exit(main())
