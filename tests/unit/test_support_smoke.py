"""Smoke tests for tests/support: the builders produce what real skopeo, productmd and
fedora-messaging accept, and the servers really serve."""

from __future__ import annotations

import hashlib
import io
import json
import lzma
import re
import subprocess
import tarfile
from pathlib import Path

import httpx
import pytest
from fedora_messaging import message as fm_message
from productmd.composeinfo import ComposeInfo
from productmd.images import Images

from support.compose import (
    RAWHIDE_METADATA,
    ComposeImage,
    build_compose,
    finished_message,
    real_rawhide_compose,
    serialized_message,
)
from support.images import (
    ARCHES,
    FEDORA_TO_OCI_ARCH,
    build_garbage_archive,
    build_image_archive,
    sha256_file,
)
from support.servers import OCI_INDEX, OCI_MANIFEST, FileServer, Registry, write_htpasswd

TRANSPORT = {"docker": "docker-archive", "oci": "oci-archive"}


def skopeo(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["skopeo", "--insecure-policy", *args], capture_output=True, text=True, check=False
    )


def inspect(path: Path, fmt: str, *extra: str) -> dict[str, object]:
    result = skopeo("inspect", *extra, f"{TRANSPORT[fmt]}:{path}")
    assert result.returncode == 0, result.stderr
    data: dict[str, object] = json.loads(result.stdout)
    return data


# --- images ---------------------------------------------------------------------------------------


@pytest.mark.integration
@pytest.mark.parametrize("arch", ARCHES)
@pytest.mark.parametrize("fmt", ["docker", "oci"])
def test_archive_inspects_with_skopeo(tmp_path: Path, fmt: str, arch: str) -> None:
    archive = build_image_archive(tmp_path / "img.tar.xz", arch=arch, fmt=fmt, build_id="b1")
    oci_arch, variant = FEDORA_TO_OCI_ARCH[arch]
    info = inspect(archive, fmt)
    assert (info["Architecture"], info["Os"]) == (oci_arch, "linux")
    config = inspect(archive, fmt, "--config")
    assert config.get("variant") == variant
    assert config["config"]["Labels"]["build-id"] == "b1"  # type: ignore[index]
    copied = skopeo("copy", "-q", f"{TRANSPORT[fmt]}:{archive}", f"oci:{tmp_path / 'out'}:img")
    assert copied.returncode == 0, copied.stderr


@pytest.mark.integration
@pytest.mark.parametrize(
    ("fmt", "compression"), [("docker", "none"), ("oci", "none"), ("oci", "gzip")]
)
def test_other_compressions_inspect(tmp_path: Path, fmt: str, compression: str) -> None:
    archive = build_image_archive(
        tmp_path / "img", arch="s390x", fmt=fmt, build_id="b1", compression=compression
    )
    assert inspect(archive, fmt)["Architecture"] == "s390x"


@pytest.mark.integration
def test_payload_image_is_streamed_and_valid(tmp_path: Path) -> None:
    size = 3 * 1024 * 1024
    for fmt in ("docker", "oci"):
        archive = build_image_archive(
            tmp_path / f"{fmt}.tar.xz", arch="x86_64", fmt=fmt, build_id="p", payload_size=size
        )
        assert archive.stat().st_size > size
        assert inspect(archive, fmt)["Architecture"] == "amd64"
    with tarfile.open(tmp_path / "docker.tar.xz") as outer:
        names = outer.getnames()
        layer_name = next(n for n in names if n.endswith("/layer.tar"))
        layer = outer.extractfile(layer_name)
        assert layer is not None
        with tarfile.open(fileobj=io.BytesIO(layer.read())) as inner:
            assert inner.getmember("payload.bin").size == size


def test_archives_are_deterministic(tmp_path: Path) -> None:
    for fmt in ("docker", "oci"):
        for compression in ("xz", "gzip", "none"):
            a, b, c = (
                build_image_archive(
                    tmp_path / f"{fmt}-{compression}-{n}",
                    arch="aarch64",
                    fmt=fmt,
                    build_id=bid,
                    compression=compression,
                )
                for n, bid in ((1, "one"), (2, "one"), (3, "two"))
            )
            assert a.read_bytes() == b.read_bytes()
            assert a.read_bytes() != c.read_bytes()


def test_archive_layouts(tmp_path: Path) -> None:
    docker = build_image_archive(tmp_path / "d.tar.xz", arch="x86_64", fmt="docker", build_id="x")
    with tarfile.open(docker) as tar:
        manifest = json.load(tar.extractfile("manifest.json"))  # type: ignore[arg-type]
        assert manifest[0]["RepoTags"] == ["fedora-test:latest"]
        config = json.load(tar.extractfile(manifest[0]["Config"]))  # type: ignore[arg-type]
        layer = tar.extractfile(manifest[0]["Layers"][0])
        assert layer is not None
        diff_id = "sha256:" + hashlib.sha256(layer.read()).hexdigest()
        assert config["rootfs"]["diff_ids"] == [diff_id]
    oci = build_image_archive(tmp_path / "o.tar.xz", arch="aarch64", fmt="oci", build_id="x")
    with tarfile.open(oci) as tar:
        assert json.load(tar.extractfile("oci-layout")) == {"imageLayoutVersion": "1.0.0"}  # type: ignore[arg-type]
        index = json.load(tar.extractfile("index.json"))  # type: ignore[arg-type]
        (desc,) = index["manifests"]
        assert desc["platform"] == {"architecture": "arm64", "os": "linux", "variant": "v8"}
        assert desc["annotations"]["org.opencontainers.image.ref.name"] == "latest"
        blob = tar.extractfile("blobs/sha256/" + desc["digest"].removeprefix("sha256:"))
        assert blob is not None
        assert json.loads(blob.read())["mediaType"] == OCI_MANIFEST


def test_garbage_archives(tmp_path: Path) -> None:
    plain = build_garbage_archive(tmp_path / "plain.tar.xz", "plain-tar")
    with tarfile.open(plain) as tar:
        names = set(tar.getnames())
    assert names and not names & {"manifest.json", "index.json"}
    truncated = build_garbage_archive(tmp_path / "trunc.tar.xz", "truncated-xz")
    with pytest.raises(lzma.LZMAError, match="ended before the end-of-stream"):
        lzma.decompress(truncated.read_bytes())
    not_xz = build_garbage_archive(tmp_path / "bytes.tar.xz", "not-xz")
    with pytest.raises(lzma.LZMAError):
        lzma.decompress(not_xz.read_bytes())
    assert build_garbage_archive(tmp_path / "empty", "empty").stat().st_size == 0


# --- compose --------------------------------------------------------------------------------------


def _load_images(compose_dir: Path) -> Images:
    images = Images()
    images.load(str(compose_dir / "metadata" / "images.json"))
    return images


def test_build_compose_roundtrips_through_productmd(tmp_path: Path) -> None:
    wanted = [ComposeImage("Container_Base", arch) for arch in ARCHES]
    wanted.append(ComposeImage("Container_Minimal_Base", "x86_64", fmt="oci"))
    compose_dir = build_compose(
        tmp_path, compose_id="Fedora-40-20240101.n.2", release_version="40", images=wanted
    )
    assert compose_dir == tmp_path / "Fedora-40-20240101.n.2" / "compose"
    info = ComposeInfo()
    info.load(str(compose_dir / "metadata" / "composeinfo.json"))
    assert (info.compose.type, info.compose.date, info.compose.respin) == ("nightly", "20240101", 2)
    assert info.release.version == "40"
    assert sorted(info.variants.variants) == ["Cloud", "Container"]

    images = _load_images(compose_dir)
    found = []
    for variant, arches in images.images.items():
        for arch, entries in arches.items():
            for image in entries:
                path = compose_dir / image.path
                assert image.size == path.stat().st_size
                assert image.checksums == {"sha256": sha256_file(path)}
                found.append((variant, arch, image.type, image.subvariant))
    docker = sorted(f for f in found if f[2] == "docker")
    assert docker == sorted(("Container", i.arch, "docker", i.subvariant) for i in wanted)
    assert ("Cloud", "x86_64", "qcow2", "Cloud_Base") in found
    x86 = images.images["Container"]["x86_64"]
    assert {i.path.rsplit("/", 1)[1] for i in x86} == {
        "Fedora-Container-Base-40-20240101.n.2.x86_64.tar.xz",
        "Fedora-Container-Minimal-Base-40-20240101.n.2.x86_64.tar.xz",
    }


def test_real_rawhide_compose(tmp_path: Path) -> None:
    compose_dir = real_rawhide_compose(tmp_path)
    original = json.loads((RAWHIDE_METADATA / "images.json").read_text())
    rewritten = json.loads((compose_dir / "metadata" / "images.json").read_text())
    assert (compose_dir / "metadata" / "composeinfo.json").read_bytes() == (
        RAWHIDE_METADATA / "composeinfo.json"
    ).read_bytes()
    docker = 0
    for variant, arches in original["payload"]["images"].items():
        for arch, entries in arches.items():
            new_entries = rewritten["payload"]["images"][variant][arch]
            for old, new in zip(entries, new_entries, strict=True):
                if old["type"] != "docker":
                    assert new == old
                    continue
                docker += 1
                path = compose_dir / new["path"]
                assert new["size"] == path.stat().st_size
                assert new["checksums"]["sha256"] == sha256_file(path)
                strip = ("size", "checksums")
                assert {k: v for k, v in new.items() if k not in strip} == {
                    k: v for k, v in old.items() if k not in strip
                }
    assert docker == 12
    assert len(_load_images(compose_dir).images["Container"]["s390x"]) == 3


def test_finished_message_serializes(tmp_path: Path) -> None:
    compose_dir = build_compose(
        tmp_path / "compose" / "branched",
        compose_id="Fedora-39-20231101.0",
        release_version="39",
        label="RC-1.2",
        images=[ComposeImage("Container_Base", "x86_64")],
    )
    body = finished_message(compose_dir, served_root=tmp_path, base_url="http://127.0.0.1:1/")
    assert body == {
        "status": "FINISHED",
        "compose_id": "Fedora-39-20231101.0",
        "location": "http://127.0.0.1:1/compose/branched/Fedora-39-20231101.0/compose",
        "compose_date": "20231101",
        "compose_type": "production",
        "compose_respin": 0,
        "compose_label": "RC-1.2",
        "release_short": "Fedora",
        "release_name": "Fedora",
        "release_version": "39",
        "release_type": "ga",
        "release_is_layered": False,
    }
    line = serialized_message(body)
    assert line.endswith("\n") and line.count("\n") == 1
    (msg,) = fm_message.loads(line)
    assert msg.topic == "org.fedoraproject.prod.pungi.compose.status.change"
    assert msg.body == body


# --- servers --------------------------------------------------------------------------------------


def test_file_server_serves_and_records(tmp_path: Path) -> None:
    (tmp_path / "dir").mkdir()
    (tmp_path / "dir" / "f.bin").write_bytes(b"x" * 100_000)
    with FileServer(tmp_path) as server, httpx.Client(base_url=server.url) as client:
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+", server.url)
        r = client.get("/dir/f.bin")
        assert r.status_code == 200 and r.content == b"x" * 100_000
        h = client.head("/dir/f.bin")
        assert h.status_code == 200 and h.headers["content-length"] == "100000"
        assert client.get("/missing").status_code == 404
        assert server.requests == [
            ("GET", "/dir/f.bin", 200),
            ("HEAD", "/dir/f.bin", 200),
            ("GET", "/missing", 404),
        ]


def test_compose_server_serves_message_location(
    served_root: Path, compose_server: FileServer
) -> None:
    compose_dir = build_compose(
        served_root / "smoke",
        compose_id="Fedora-Rawhide-20240102.n.0",
        release_version="Rawhide",
        images=[ComposeImage("Container_Base", "ppc64le")],
    )
    body = finished_message(compose_dir, served_root=served_root, base_url=compose_server.url)
    r = httpx.get(body["location"] + "/metadata/images.json")
    assert r.status_code == 200
    assert r.json()["payload"]["compose"]["id"] == "Fedora-Rawhide-20240102.n.0"


def test_namespace_is_a_valid_path_component(namespace: str) -> None:
    assert re.fullmatch(r"[a-z0-9]+(?:-[a-z0-9]+)*", namespace)
    assert namespace.startswith("namespace-is-a-valid-path-component-")


@pytest.mark.integration
def test_registry_push_and_read(registry: Registry, namespace: str, tmp_path: Path) -> None:
    assert httpx.get(f"{registry.url}/v2/").status_code == 200
    repo = f"{namespace}/fedora"
    digests = {}
    for arch in ("x86_64", "aarch64"):
        archive = build_image_archive(
            tmp_path / f"{arch}.tar.xz", arch=arch, fmt="oci", build_id=arch
        )
        digestfile = tmp_path / f"{arch}.digest"
        pushed = skopeo(
            "copy", "-q", "--dest-tls-verify=false", "--digestfile", str(digestfile),
            f"oci-archive:{archive}", f"docker://{registry.host}/{repo}:{arch}",
        )  # fmt: skip
        assert pushed.returncode == 0, pushed.stderr
        digests[arch] = digestfile.read_text()

    found = registry.get_manifest(repo, "x86_64")
    assert found is not None
    content_type, digest, body = found
    assert content_type == OCI_MANIFEST
    assert digest == digests["x86_64"] == "sha256:" + hashlib.sha256(body).hexdigest()
    assert registry.image_config(repo, "aarch64")["variant"] == "v8"
    assert registry.get_manifest(repo, "nope") is None
    assert registry.tags(repo) == ["aarch64", "x86_64"]
    assert registry.tags(f"{namespace}/missing") == []

    index = {
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [
            {
                "mediaType": OCI_MANIFEST,
                "digest": digests[arch],
                "size": len(registry.get_manifest(repo, digests[arch])[2]),  # type: ignore[index]
                "platform": {"architecture": oci, "os": "linux", **({"variant": v} if v else {})},
            }
            for arch in ("x86_64", "aarch64")
            for oci, v in [FEDORA_TO_OCI_ARCH[arch]]
        ],
    }
    with registry.client() as client:
        r = client.put(
            f"/v2/{repo}/manifests/latest",
            content=json.dumps(index).encode(),
            headers={"Content-Type": OCI_INDEX},
        )
    assert r.status_code == 201
    assert registry.index_arches(repo, "latest") == {"x86_64", "aarch64"}
    assert f'"PUT /v2/{repo}/manifests/latest HTTP/1.1" 201' in registry.log_text()


@pytest.mark.integration
def test_registry_with_htpasswd(tmp_path: Path) -> None:
    htpasswd = write_htpasswd(tmp_path / "htpasswd", {"tester": "s3cret"})
    with Registry(htpasswd=htpasswd, credentials=("tester", "s3cret")) as reg:
        assert httpx.get(f"{reg.url}/v2/").status_code == 401
        archive = build_image_archive(
            tmp_path / "i.tar.xz", arch="x86_64", fmt="docker", build_id="a"
        )
        denied = skopeo(
            "copy", "-q", "--dest-tls-verify=false",
            f"docker-archive:{archive}", f"docker://{reg.host}/auth/img:1",
        )  # fmt: skip
        assert denied.returncode == 1 and "authentication required" in denied.stderr
        pushed = skopeo(
            "copy", "-q", "--dest-tls-verify=false", "--dest-creds", "tester:s3cret",
            f"docker-archive:{archive}", f"docker://{reg.host}/auth/img:1",
        )  # fmt: skip
        assert pushed.returncode == 0, pushed.stderr
        assert reg.tags("auth/img") == ["1"]
    assert "level=info" in reg.log_text()
