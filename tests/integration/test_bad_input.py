"""The bad-input corpus (tests/data/bad/, see its README): every case gives the documented exit
code, one clear line naming what is wrong, no traceback, and nothing pushed."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import tarfile
from collections.abc import Iterator
from pathlib import Path
from string import Template
from typing import Any

import pytest

from fedora_container_sync.config.settings import Credentials
from fedora_container_sync.registry.auth import RegistryAuth
from support.auth import PASSWORD, USER
from support.foreign import ForeignChildren
from support.harness import REPOS, Harness
from support.images import build_garbage_archive, build_image_archive
from support.servers import Registry
from support.tokens import TokenRequest, TokenServer

pytestmark = pytest.mark.integration

CORPUS = Path(__file__).parents[1] / "data" / "bad"
CASES = sorted(path for path in CORPUS.iterdir() if (path / "case.json").is_file())
COMPOSE = "Fedora-41-20241025.0"


def test_the_corpus_has_at_least_30_cases():
    assert len(CASES) >= 30


def _tar_xz(
    members: list[tuple[tarfile.TarInfo, bytes]], pax_headers: dict[str, str] | None = None
) -> bytes:
    import lzma

    buffer = io.BytesIO()
    with tarfile.open(
        fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT, pax_headers=pax_headers
    ) as tar:
        for info, data in members:
            info.size = len(data) if info.isfile() else 0
            tar.addfile(info, io.BytesIO(data) if info.isfile() else None)
    return lzma.compress(buffer.getvalue(), format=lzma.FORMAT_XZ)


def _member(name: str, kind: bytes = tarfile.REGTYPE, link: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = link
    info.mode = 0o644
    return info


def write_bad_image(path: Path, kind: str) -> None:
    manifest = (_member("manifest.json"), b"[]")
    if kind in ("truncated-xz", "not-xz", "empty", "plain-tar"):
        build_garbage_archive(path, kind)
    elif kind == "corrupt-gzip":
        path.write_bytes(gzip.compress(b"x" * 4096)[:10] + os.urandom(2048))
    elif kind == "member-climbs-out":
        path.write_bytes(_tar_xz([manifest, (_member("../escaped"), b"owned\n")]))
    elif kind == "member-absolute":
        path.write_bytes(_tar_xz([manifest, (_member("/etc/cron.d/x"), b"* * * * * root id\n")]))
    elif kind == "symlink-out":
        path.write_bytes(_tar_xz([manifest, (_member("x", tarfile.SYMTYPE, "/etc/shadow"), b"")]))
    elif kind == "device":
        path.write_bytes(_tar_xz([manifest, (_member("dev-null", tarfile.CHRTYPE), b"")]))
    elif kind == "link-chain-out":  # each link inside as text; "gone" is the parent of the root
        here, gone = (
            _member("here", tarfile.SYMTYPE, "."),
            _member("gone", tarfile.SYMTYPE, "here/.."),
        )
        path.write_bytes(_tar_xz([manifest, (here, b""), (gone, b""), (_member("gone/x"), b"x")]))
    elif kind == "hardlink-to-symlink":  # a second copy of "d/s -> ..", one level higher
        up, copy = _member("d/s", tarfile.SYMTYPE, ".."), _member("t", tarfile.LNKTYPE, "d/s")
        path.write_bytes(_tar_xz([manifest, (up, b""), (copy, b"")]))
    elif kind == "member-through-link":
        link = _member("l", tarfile.SYMTYPE, "sub")
        path.write_bytes(_tar_xz([manifest, (link, b""), (_member("l/x"), b"x")]))
    elif kind == "member-twice":
        path.write_bytes(_tar_xz([manifest, (_member("./manifest.json"), b"[{}]")]))
    elif kind == "link-loop":
        a, b = _member("a", tarfile.SYMTYPE, "b/x"), _member("b", tarfile.SYMTYPE, "a/y")
        path.write_bytes(_tar_xz([manifest, (a, b""), (b, b"")]))
    elif kind == "unsupported-type":
        path.write_bytes(_tar_xz([manifest, (_member("volume", b"V"), b"")]))
    elif kind == "global-pax-header":  # renames every member for tarfile, not for Go
        path.write_bytes(_tar_xz([manifest], pax_headers={"path": "manifest.json"}))
    elif kind == "decompression-bomb":  # 10 KB that checks out and holds 64 MiB of zeros
        path.write_bytes(_tar_xz([manifest, (_member("zeros"), bytes(64 << 20))]))
    elif kind == "wrong-arch":
        build_image_archive(path, arch="aarch64", fmt="docker", build_id="wrong-arch")
    elif kind == "size-plus-one":
        pass  # the file stays; only images.json's size changes
    else:
        raise ValueError(f"unknown image_file kind {kind!r}")


def set_path(document: Any, path: str, value: Any) -> None:
    *parents, last = path.split("/")
    for part in parents:
        document = document[int(part)] if isinstance(document, list) else document[part]
    if isinstance(document, list):
        document[int(last)] = value
    else:
        document[last] = value


@pytest.fixture(scope="module")
def corpus_tokens(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TokenServer]:
    with TokenServer(tmp_path_factory.mktemp("corpus-tokens"), {USER: PASSWORD}) as server:
        yield server


@pytest.fixture(scope="module")
def corpus_token_registry(corpus_tokens: TokenServer) -> Iterator[Registry]:
    auth = RegistryAuth(Credentials(USER, PASSWORD), registry="test", allow_http_realm=True)
    with Registry(token_auth=corpus_tokens.registry_auth_config(), http_auth=auth) as registry:
        yield registry


def behind_token_service(
    request: pytest.FixtureRequest, harness: Harness, answer: str
) -> tuple[Harness, TokenServer]:
    """The harness with a token-auth registry instead, whose token service answers our client
    with ``answer`` (``$token``: the token it would have sent); its own reads get real ones."""
    tokens: TokenServer = request.getfixturevalue("corpus_tokens")
    registry: Registry = request.getfixturevalue("corpus_token_registry")
    monkeypatch: pytest.MonkeyPatch = request.getfixturevalue("monkeypatch")
    harness.registries = [registry]
    harness.registry_entries[registry.host] = (
        f'url = "{registry.host}/{harness.namespace}"\ntls_verify = false\n'
        'credential_prefix = "CORPUS_"\n'
    )
    monkeypatch.setenv("CORPUS_USER", USER)
    monkeypatch.setenv("CORPUS_PASSWORD", PASSWORD)

    def hand_out(token_request: TokenRequest, document: dict[str, Any]) -> dict[str, Any] | bytes:
        if not token_request.user_agent.startswith("fedora-container-sync"):
            return document
        text = Template(answer).substitute(token=document["token"])
        tokens.issued.append(text)  # all of it counts as secret
        return text.encode()

    tokens.answer = hand_out
    request.addfinalizer(lambda: setattr(tokens, "answer", None))
    return harness, tokens


@pytest.mark.parametrize("case", CASES, ids=lambda path: path.name)
def test_bad_input(
    case: Path, harness: Harness, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
) -> None:
    spec = json.loads((case / "case.json").read_text())
    tokens = None
    if "token_answer" in spec:
        harness, tokens = behind_token_service(
            request, harness, (case / spec["token_answer"]).read_text()
        )
    body = harness.compose(COMPOSE, arches=("x86_64",))
    compose_dir = harness.compose_dir(body)
    metadata = compose_dir / "metadata"
    values = {
        "location": body["location"],
        "host": harness.server.url.removeprefix("http://"),
        "ns": harness.namespace,
        "compose_id": COMPOSE,
        "allowlist": f"{harness.server.url}/{harness.namespace}/",
        "work_dir": str(harness.tmp / "work"),
        "registry": f"{harness.registries[0].host}/{harness.namespace}",
    }

    def template(text: str) -> str:
        return Template(text).substitute(values)

    # the message
    for key, value in spec.get("body", {}).items():
        body[key] = template(value) if isinstance(value, str) else value
    for key in spec.get("body_delete", []):
        del body[key]
    message_file = harness.message_file(body)
    if "messages" in spec:
        message_file.write_text(template((case / spec["messages"]).read_text()))
    # the config
    harness.extra_config = spec.get("config_add", "")
    config = harness.config()
    if "config" in spec:
        config.write_text(template((case / spec["config"]).read_text()))
    for name, value in spec.get("env", {}).items():
        if value is None:
            monkeypatch.delenv(name, raising=False)
        else:
            monkeypatch.setenv(name, value)
    if spec.get("work_dir") == "file":
        (harness.tmp / "work").write_text("not a directory\n")
    # the compose
    for name in ("images_json", "composeinfo_json"):
        if name in spec:
            target = metadata / name.replace("_json", ".json")
            target.write_bytes((case / spec[name]).read_bytes())
    edits: dict[str, dict[str, Any]] = dict(spec.get("metadata_set", {}))
    if "image_file" in spec:
        images = json.loads((metadata / "images.json").read_text())
        entry = images["payload"]["images"]["Container"]["x86_64"][0]
        image = compose_dir / entry["path"]
        write_bad_image(image, spec["image_file"])
        data = image.read_bytes()
        size = len(data) + (1 if spec["image_file"] == "size-plus-one" else 0)
        prefix = "payload/images/Container/x86_64/0"
        edits.setdefault("images.json", {}).update(
            {
                f"{prefix}/size": size,
                f"{prefix}/checksums": {"sha256": hashlib.sha256(data).hexdigest()},
            }
        )
    for name, changes in edits.items():
        document = json.loads((metadata / name).read_text())
        for path, value in changes.items():
            set_path(document, path, value)
        (metadata / name).write_text(json.dumps(document, indent=4))

    # the registry: a foreign index at the index tag, with real children
    held = None
    if "registry_index" in spec:
        toolbox = harness.repo(REPOS["Container_Toolbox"])
        children = ForeignChildren(harness.registries[0], toolbox, harness.tmp)
        held = children.put_index("41", (case / spec["registry_index"]).read_text())

    result = harness.run("replay", "--config", str(config), str(message_file))

    assert result.code == spec["exit"], result.err
    assert "Traceback" not in result.err + result.out
    for secret in spec.get("absent", []):
        assert secret not in result.err + result.out
    for token in tokens.issued if tokens is not None else []:
        for piece in (token, token[: len(token) // 2], token[len(token) // 2 :]):
            assert len(piece) < 16 or piece not in result.err + result.out
    if spec["exit"] == 2:
        assert result.out == ""
        lines = result.err.splitlines()
        assert len(lines) == 1, result.err
        assert lines[0].startswith("fedora-container-sync: error: ")
    elif spec["exit"] in (1, 3):
        level = ": ERROR: " if spec["exit"] == 1 else ": WARNING: "
        lines = [line for line in result.err.splitlines() if level in line]
        others = [line for line in result.err.splitlines() if line not in lines]
        assert len(lines) == 1, result.err
        # Besides the error (or the held tag), only progress lines (the steps the run
        # finished, including the tags it kept because of the error): nothing else at
        # warning level or above.
        assert all(": INFO: " in line for line in others), result.err
    else:
        assert result.err == ""
        lines = [line for line in result.out.splitlines() if line.startswith("ignored")]
        assert len(lines) == 1, result.out
    assert spec["error"] in lines[0], lines[0]
    if held is not None:  # the index tag still holds exactly the foreign index
        assert harness.digest(REPOS["Container_Toolbox"], "41") == held
        return
    for repository in REPOS.values():
        assert harness.registries[0].tags(harness.repo(repository)) == []
