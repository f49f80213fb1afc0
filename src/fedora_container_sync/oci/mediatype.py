"""Manifest media types. Pure."""

from __future__ import annotations

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"

INDEX_TYPES = frozenset({OCI_INDEX, DOCKER_LIST})
IMAGE_TYPES = frozenset({OCI_MANIFEST, DOCKER_MANIFEST})

#: Sent on every manifest read. Without the OCI index type, distribution answers 404 for a
#: tag holding an OCI index; without the list type it silently answers with the amd64 child.
MANIFEST_ACCEPT = ", ".join((OCI_INDEX, DOCKER_LIST, OCI_MANIFEST, DOCKER_MANIFEST))


def base(content_type: str) -> str:
    """The media type without parameters (``; charset=...``)."""
    return content_type.split(";", 1)[0].strip().lower()
