"""What other tools leave in a registry, built from scratch: images pushed with real skopeo
(OCI or Docker schema2, as the legacy releng script pushed them), buildkit-style attestation
manifests, and indexes or Docker manifest lists PUT over the registry HTTP API with real
children (distribution refuses an index whose children it does not hold)."""

from __future__ import annotations

import hashlib
import json
import subprocess
from dataclasses import dataclass
from pathlib import Path
from string import Template
from typing import Any

import httpx

from support.images import FEDORA_TO_OCI_ARCH, build_image_archive
from support.servers import OCI_INDEX, OCI_MANIFEST, Registry

__all__ = ["Child", "ForeignChildren", "put_blob", "put_manifest"]

IN_TOTO = "application/vnd.in-toto+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"


@dataclass(frozen=True)
class Child:
    """A manifest the registry holds, as an index entry would describe it."""

    media_type: str
    digest: str
    size: int

    def entry(self, platform: dict[str, Any] | None = None, **more: Any) -> dict[str, Any]:
        """An index entry for this child (``platform`` None: no platform at all)."""
        entry: dict[str, Any] = {"mediaType": self.media_type, "digest": self.digest}
        entry["size"] = self.size
        if platform is not None:
            entry["platform"] = platform
        return {**entry, **more}


def put_blob(registry: Registry, repo: str, data: bytes) -> str:
    """Upload ``data`` as a blob (monolithic POST + PUT); its digest."""
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    with registry.client() as client:
        started = client.post(f"/v2/{repo}/blobs/uploads/")
        started.raise_for_status()
        # The upload URL carries its own query (_state): add the digest to it.
        location = httpx.URL(started.headers["location"]).copy_add_param("digest", digest)
        done = client.put(
            location,
            content=data,
            headers={"Content-Type": "application/octet-stream"},
        )
        done.raise_for_status()
    return digest


def put_manifest(
    registry: Registry, repo: str, reference: str, media_type: str, body: bytes
) -> str:
    """PUT ``body`` at ``repo:reference`` (a tag or its digest); the digest the registry says."""
    with registry.client() as client:
        response = client.put(
            f"/v2/{repo}/manifests/{reference}", content=body, headers={"Content-Type": media_type}
        )
    if response.status_code >= 400:
        raise AssertionError(f"PUT {repo}:{reference} -> {response.status_code} {response.text}")
    return response.headers["docker-content-digest"]


def platform(arch: str) -> dict[str, str]:
    """The platform a tool would normally write for a Fedora arch (arm64 without a variant)."""
    architecture, _variant = FEDORA_TO_OCI_ARCH[arch]
    return {"architecture": architecture, "os": "linux"}


class ForeignChildren:
    """Real manifests in one repository for foreign indexes to point at, made on first use.

    Template names (``$amd64_digest``, ``$amd64_size``, ``$amd64_entry`` ...; see
    :meth:`values`): ``amd64`` and ``amd64b`` (two OCI images built for x86_64), ``arm64``
    (an OCI image built for aarch64), ``amd64_v2s2`` and ``arm64_v2s2`` (Docker schema2
    images, as the legacy releng script pushed them), ``arm64_index`` (an OCI index holding
    ``arm64``), ``attestation`` (a buildkit-style attestation manifest of ``amd64``).
    """

    def __init__(self, registry: Registry, repo: str, work: Path) -> None:
        self.registry, self.repo, self.work = registry, repo, work
        self._made: dict[str, Child] = {}

    def __getitem__(self, name: str) -> Child:
        if name not in self._made:
            self._made[name] = self._make(name)
        return self._made[name]

    def _make(self, name: str) -> Child:
        images = {
            "amd64": ("x86_64", "oci", "foreign-a"),
            "amd64b": ("x86_64", "oci", "foreign-b"),
            "arm64": ("aarch64", "oci", "foreign-a"),
            "amd64_v2s2": ("x86_64", "v2s2", "legacy"),
            "arm64_v2s2": ("aarch64", "v2s2", "legacy"),
        }
        if name in images:
            return self.push_image(*images[name])
        if name == "arm64_index":
            body = json.dumps(
                {
                    "schemaVersion": 2,
                    "mediaType": OCI_INDEX,
                    "manifests": [self["arm64"].entry(platform("aarch64"))],
                }
            ).encode()
            return self._put_by_digest(OCI_INDEX, body)
        if name == "attestation":
            return self.attestation(self["amd64"].digest)
        raise KeyError(name)

    def push_image(self, arch: str, fmt: str, build_id: str) -> Child:
        """A real image pushed with skopeo (``fmt`` ``oci`` or ``v2s2``) under a scratch tag."""
        archive = self.work / f"{build_id}-{arch}.tar"
        build_image_archive(archive, arch=arch, fmt="docker", build_id=build_id, name=build_id)
        scratch = f"src-{build_id}-{arch}-{fmt}"
        subprocess.run(
            ["skopeo", "copy", "--quiet", "--format", fmt, "--dest-tls-verify=false",
             f"docker-archive:{archive}",
             f"docker://{self.registry.host}/{self.repo}:{scratch}"],
            check=True, capture_output=True, timeout=60,
        )  # fmt: skip
        found = self.registry.get_manifest(self.repo, scratch)
        assert found is not None
        media_type, digest, body = found
        return Child(media_type, digest, len(body))

    def attestation(self, subject: str) -> Child:
        """An attestation manifest as buildkit stores one: an OCI image manifest with an
        ``unknown/unknown`` config and one in-toto layer about ``subject``."""
        statement = json.dumps(
            {
                "_type": "https://in-toto.io/Statement/v0.1",
                "predicateType": "https://spdx.dev/Document",
                "subject": [{"name": "_", "digest": {"sha256": subject.split(":", 1)[1]}}],
                "predicate": {"spdxVersion": "SPDX-2.3"},
            }
        ).encode()
        layer = put_blob(self.registry, self.repo, statement)
        config = json.dumps(
            {
                "architecture": "unknown",
                "os": "unknown",
                "config": {},
                "rootfs": {"type": "layers", "diff_ids": [layer]},
            }
        ).encode()
        config_digest = put_blob(self.registry, self.repo, config)
        body = json.dumps(
            {
                "schemaVersion": 2,
                "mediaType": OCI_MANIFEST,
                "config": {"mediaType": OCI_CONFIG, "digest": config_digest, "size": len(config)},
                "layers": [
                    {
                        "mediaType": IN_TOTO,
                        "digest": layer,
                        "size": len(statement),
                        "annotations": {"in-toto.io/predicate-type": "https://spdx.dev/Document"},
                    }
                ],
            }
        ).encode()
        return self._put_by_digest(OCI_MANIFEST, body)

    def _put_by_digest(self, media_type: str, body: bytes) -> Child:
        digest = "sha256:" + hashlib.sha256(body).hexdigest()
        assert put_manifest(self.registry, self.repo, digest, media_type, body) == digest
        return Child(media_type, digest, len(body))

    def values(self, template: Template) -> dict[str, str]:
        """The values ``template`` names: ``<child>_digest``, ``<child>_size``,
        ``<child>_media_type``; each child is made when first named."""
        values = {}
        for name in template.get_identifiers():
            child, _, field = name.rpartition("_")
            if field == "type" and child.endswith("_media"):
                child, field = child.removesuffix("_media"), "media_type"
            values[name] = str(getattr(self[child], field))
        return values

    def put_index(self, tag: str, text: str) -> str:
        """Fill in the template ``text``, PUT it at ``tag`` with the media type it declares;
        the digest."""
        template = Template(text)
        body = template.substitute(self.values(template)).encode()
        media_type = json.loads(body)["mediaType"]
        return put_manifest(self.registry, self.repo, tag, media_type, body)
