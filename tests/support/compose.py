"""Build Pungi-like compose trees on disk, and the fedora-messaging messages announcing them.

Metadata is written with productmd's own classes (``ComposeInfo``/``Images`` + ``.dump()``), so
it is exactly what Pungi would write. Container images are small but real archives built by
:func:`support.images.build_image_archive`; other images are small placeholder files.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final
from urllib.parse import quote

from fedora_messaging import message as fm_message
from productmd.composeinfo import ComposeInfo, Variant, get_date_type_respin
from productmd.images import Image, Images

from support.images import build_image_archive, sha256_file

__all__ = [
    "CONTAINER_IMAGE_TYPES",
    "DEFAULT_EXTRA_IMAGES",
    "PUNGI_TOPIC",
    "RAWHIDE_COMPOSE_ID",
    "RAWHIDE_METADATA",
    "ComposeImage",
    "build_compose",
    "finished_message",
    "image_filename",
    "real_rawhide_compose",
    "serialized_message",
]

PUNGI_TOPIC: Final = "org.fedoraproject.prod.pungi.compose.status.change"
RAWHIDE_COMPOSE_ID: Final = "Fedora-Rawhide-20230502.n.0"
#: A copy of the real metadata of Fedora-Rawhide-20230502.n.0 (from the project's shared data).
RAWHIDE_METADATA: Final = (
    Path(__file__).resolve().parents[1] / "data" / "fedora-rawhide-20230502.n.0" / "metadata"
)

#: productmd image types whose files are container image archives
CONTAINER_IMAGE_TYPES: Final = frozenset(
    {"docker", "container", "ociarchive", "bootable-container"}
)

#: image ``format`` -> compression of the archive built for it
_FORMAT_COMPRESSION: Final = {"tar.xz": "xz", "tar.gz": "gzip"}


@dataclass(frozen=True)
class ComposeImage:
    """One image of a compose. ``fmt`` is the archive layout ("docker" or "oci") of container
    images; ``type``/``format`` are the productmd fields. Images whose ``type`` is not a container
    type get a small placeholder file."""

    subvariant: str
    arch: str
    fmt: str = "docker"
    type: str = "docker"
    format: str = "tar.xz"
    variant: str = "Container"


#: Non-container images added to every :func:`build_compose` tree (so selection is exercised).
DEFAULT_EXTRA_IMAGES: Final[tuple[ComposeImage, ...]] = (
    ComposeImage("Cloud_Base", "x86_64", type="qcow2", format="qcow2", variant="Cloud"),
    ComposeImage("Cloud_Base", "aarch64", type="raw-xz", format="raw.xz", variant="Cloud"),
)


def image_filename(
    image: ComposeImage, *, release_version: str, date: str, type_suffix: str, respin: int
) -> str:
    """``Fedora-Container-Base-Rawhide-20230502.n.0.x86_64.tar.xz`` style name."""
    sub = image.subvariant.replace("_", "-")
    return (
        f"Fedora-{sub}-{release_version}-{date}{type_suffix}.{respin}.{image.arch}.{image.format}"
    )


def _write_image_file(path: Path, image: ComposeImage, *, build_id: str, payload_size: int) -> None:
    if image.type in CONTAINER_IMAGE_TYPES:
        build_image_archive(
            path,
            arch=image.arch,
            fmt=image.fmt,
            build_id=build_id,
            compression=_FORMAT_COMPRESSION.get(image.format, "none"),
            payload_size=payload_size,
            name="fedora-" + image.subvariant.lower().replace("_", "-"),
        )
    else:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(
            f"placeholder {image.type} image {image.subvariant} {image.arch} {build_id}\n".encode()
        )


def build_compose(
    root: Path,
    *,
    compose_id: str,
    release_version: str,
    images: Iterable[ComposeImage],
    build_id: str | None = None,
    compose_type: str | None = None,
    label: str | None = None,
    release_short: str = "Fedora",
    extra_images: Iterable[ComposeImage] = DEFAULT_EXTRA_IMAGES,
    payload_size: int = 0,
) -> Path:
    """Write ``<root>/<compose_id>/compose/`` with metadata and image files; return that
    ``compose/`` directory (the message's ``location``).

    date/type/respin are parsed from ``compose_id`` (``.n.`` = nightly, no suffix = production);
    ``compose_type``, if given, must agree with it. ``label`` (e.g. "RC-1.2") is only valid for
    production composes in productmd's eyes, as in Pungi. ``build_id`` (default ``compose_id``) is
    baked into every container image so different composes give different digests. Also writes
    ``<root>/<compose_id>/STATUS`` = FINISHED.
    """
    date, parsed_type, respin = get_date_type_respin(compose_id)
    if date is None:
        raise ValueError(f"cannot parse a date from compose id {compose_id!r}")
    if compose_type is not None and compose_type != parsed_type:
        raise ValueError(
            f"compose_type {compose_type!r} disagrees with compose id {compose_id!r} "
            f"({parsed_type})"
        )
    build_id = build_id or compose_id
    all_images = [*images, *extra_images]
    topdir = Path(root) / compose_id
    compose_dir = topdir / "compose"
    metadata_dir = compose_dir / "metadata"
    metadata_dir.mkdir(parents=True, exist_ok=True)

    ci = ComposeInfo()
    ci.release.name = release_short
    ci.release.short = release_short
    ci.release.version = release_version
    ci.release.type = "ga"
    ci.release.is_layered = False
    ci.release.internal = False
    ci.compose.id = compose_id
    ci.compose.date = date
    ci.compose.type = parsed_type
    ci.compose.respin = respin
    ci.compose.label = label
    ci.compose.final = False

    arches_by_variant: dict[str, set[str]] = {}
    for image in all_images:
        arches_by_variant.setdefault(image.variant, set()).add(image.arch)
    for uid, arches in sorted(arches_by_variant.items()):
        variant = Variant(ci)
        variant.id = variant.uid = variant.name = uid
        variant.type = "variant"
        variant.arches = set(arches)
        variant.paths.images = {arch: f"{uid}/{arch}/images" for arch in sorted(arches)}
        ci.variants.add(variant)

    im = Images()
    im.compose.id = compose_id
    im.compose.date = date
    im.compose.type = parsed_type
    im.compose.respin = respin
    im.compose.label = label
    im.compose.final = False
    for image in all_images:
        rel = f"{image.variant}/{image.arch}/images/" + image_filename(
            image,
            release_version=release_version,
            date=date,
            type_suffix=ci.compose.type_suffix,
            respin=respin,
        )
        path = compose_dir / rel
        _write_image_file(path, image, build_id=build_id, payload_size=payload_size)
        st = path.stat()
        img = Image(im)
        img.path = rel
        img.mtime = int(st.st_mtime)
        img.size = st.st_size
        img.volume_id = None
        img.type = image.type
        img.format = image.format
        img.arch = image.arch
        img.disc_number = 1
        img.disc_count = 1
        img.checksums = {"sha256": sha256_file(path)}
        img.implant_md5 = None
        img.bootable = False
        img.subvariant = image.subvariant
        im.add(image.variant, image.arch, img)

    ci.dump(str(metadata_dir / "composeinfo.json"))
    im.dump(str(metadata_dir / "images.json"))
    (topdir / "STATUS").write_text("FINISHED\n")
    return compose_dir


def _productmd_json(data: Any) -> str:
    return json.dumps(data, indent=4, sort_keys=True, separators=(",", ": "))


def real_rawhide_compose(root: Path, *, fmt: str = "docker", payload_size: int = 0) -> Path:
    """Copy the real Fedora-Rawhide-20230502.n.0 metadata under ``<root>/<id>/compose/metadata``,
    build small archives (``fmt``, tar.xz) at the paths of its 12 ``docker`` images, and rewrite
    only their ``checksums.sha256`` and ``size`` in images.json. Returns the ``compose/`` dir.

    The other 69 images are listed but have no files, like a partial mirror.
    """
    compose_dir = Path(root) / RAWHIDE_COMPOSE_ID / "compose"
    metadata_dir = compose_dir / "metadata"
    metadata_dir.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(RAWHIDE_METADATA / "composeinfo.json", metadata_dir / "composeinfo.json")
    raw = (RAWHIDE_METADATA / "images.json").read_text()
    data = json.loads(raw)
    trailer = raw[len(_productmd_json(data)) :]
    if _productmd_json(data) + trailer != raw:
        raise AssertionError("images.json formatting is not productmd's; cannot round-trip it")
    for variants in data["payload"]["images"].values():
        for entries in variants.values():
            for entry in entries:
                if entry["type"] != "docker":
                    continue
                path = compose_dir / entry["path"]
                build_image_archive(
                    path,
                    arch=entry["arch"],
                    fmt=fmt,
                    build_id=RAWHIDE_COMPOSE_ID,
                    payload_size=payload_size,
                    name="fedora-" + entry["subvariant"].lower().replace("_", "-"),
                )
                entry["checksums"]["sha256"] = sha256_file(path)
                entry["size"] = path.stat().st_size
    (metadata_dir / "images.json").write_text(_productmd_json(data) + trailer)
    (compose_dir.parent / "STATUS").write_text("FINISHED\n")
    return compose_dir


def finished_message(
    compose_dir: Path, *, served_root: Path, base_url: str, status: str = "FINISHED"
) -> dict[str, Any]:
    """The body Pungi sends on ``pungi.compose.status.change`` for the compose at
    ``compose_dir`` (a ``compose/`` directory under ``served_root``, which ``base_url`` serves)."""
    ci = ComposeInfo()
    ci.load(str(Path(compose_dir) / "metadata" / "composeinfo.json"))
    rel = Path(compose_dir).resolve().relative_to(Path(served_root).resolve()).as_posix()
    return {
        "status": status,
        "compose_id": ci.compose.id,
        "location": base_url.rstrip("/") + "/" + quote(rel),
        "compose_date": ci.compose.date,
        "compose_type": ci.compose.type,
        "compose_respin": ci.compose.respin,
        "compose_label": ci.compose.label,
        "release_short": ci.release.short,
        "release_name": ci.release.name,
        "release_version": ci.release.version,
        "release_type": ci.release.type,
        "release_is_layered": bool(ci.release.is_layered),
    }


def serialized_message(body: Mapping[str, Any], topic: str = PUNGI_TOPIC) -> str:
    """One message in fedora-messaging's serialized format (``fedora-messaging publish FILE`` /
    ``message.loads``): a single JSON line, terminated by a newline."""
    msg = fm_message.Message(topic=topic, body=dict(body))
    return fm_message.dumps(msg)
