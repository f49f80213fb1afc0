"""This project's own bus messages: fedora-messaging schemas for what release engineering
should hear about - a tag held (:class:`TagHeldV1`) and an audit finding
(:class:`AuditFindingV1`).

After a repository is published the consumer sends ``ContainerPublishedV1`` from
``fedora-image-uploader-messages`` (the schema Fedora's downstream consumers already listen
to); the classes here cover what that schema cannot say.

Adding a schema: subclass :class:`ContainerSyncMessage`, give it a versioned ``topic`` under
:data:`TOPIC_PREFIX`, a ``body_schema``, ``summary``, ``__str__`` and (for filter headers)
``containers``, and register it in pyproject.toml under ``[project.entry-points."fedora.messages"]``
with its topic as the entry point name. fedora-messaging refuses to send an unregistered class.
"""

from __future__ import annotations

from typing import Any, ClassVar

from fedora_messaging import message

from ..audit.report import FINDING_SCHEMA

APP_NAME = "fedora-container-sync"
#: every topic of this project starts with this (the broker adds ``topic_prefix`` in front)
TOPIC_PREFIX = "fedora_container_sync"
SCHEMA_URL = "https://fedoraproject.org/message-schema/fedora-container-sync"

_ARCH_LIST: dict[str, Any] = {
    "type": "array",
    "items": {"type": "string"},
    "description": "Fedora architecture names (x86_64, aarch64, ppc64le, s390x)",
}


class ContainerSyncMessage(message.Message):
    """Base of this project's messages: the app name; never sent itself."""

    @property
    def app_name(self) -> str:
        return APP_NAME


class TagHeldV1(ContainerSyncMessage):
    """An index tag was not moved to a finished compose's images.

    One message per registry, repository and tag. ``verdict`` says which guard kept it:

    * ``held`` (severity WARNING): the manifest gate - ``missing_arches`` are the arches the
      tag serves now (or this run failed to publish) that the new index would have lacked;
    * ``stale`` (severity INFO): the rollback guard - the tag serves ``newer_compose``, newer
      than this one; nothing is missing.

    Versioning: ``stale`` and ``newer_compose`` were added within v1. Every v1 message still
    validates against the first v1 schema (``verdict`` was a free string, and the new field
    is optional), and the first v1 messages validate against this one, so no consumer
    breaks; a consumer that acted on ``verdict == "held"`` now stops acting on tags that
    only served a newer compose, which is what "held" always meant. A change that removes or
    retypes a field, or makes one required, needs a ``tag.held.v2`` topic instead.
    """

    topic = f"{TOPIC_PREFIX}.tag.held.v1"
    severity = message.WARNING
    body_schema: ClassVar[dict[str, Any]] = {
        "$id": f"{SCHEMA_URL}/v1/{TOPIC_PREFIX}.tag.held.v1",
        "$schema": "https://json-schema.org/draft/2019-09/schema",
        "description": "Sent by fedora-container-sync when it does not move an index tag "
        "(e.g. fedora-toolbox:41) to a compose's images, so the tag keeps serving its arches.",
        "type": "object",
        "properties": {
            "compose_id": {"type": "string", "description": "The compose that was held back"},
            "release": {
                "type": "integer",
                "description": "The release number the compose's tags are for",
            },
            "registry": {
                "type": "string",
                "description": "Registry and optional namespace, e.g. quay.io/fedora",
            },
            "repository": {"type": "string", "description": "e.g. fedora-toolbox"},
            "tag": {"type": "string", "description": "The index tag that was not moved"},
            "verdict": {
                "type": "string",
                "enum": ["held", "stale"],
                "description": "Which guard kept the tag: held (the manifest gate: an arch "
                "would have been lost, or failed in this run) or stale (the rollback guard: "
                "the tag serves a newer compose)",
            },
            "newer_compose": {
                "type": "string",
                "description": "For verdict stale: the newer compose the tag serves",
            },
            "reason": {"type": "string", "description": "Why, in one line"},
            "missing_arches": {
                **_ARCH_LIST,
                "description": "Arches the tag would have lost (or that failed in this run)",
            },
            "current_arches": {**_ARCH_LIST, "description": "Arches the tag serves now"},
            "compose_arches": {
                **_ARCH_LIST,
                "description": "Arches this compose published to the registry",
            },
        },
        "required": [
            "compose_id",
            "release",
            "registry",
            "repository",
            "tag",
            "verdict",
            "reason",
            "missing_arches",
        ],
    }

    @property
    def reference(self) -> str:
        """``registry/repository:tag``"""
        return f"{self.body['registry']}/{self.body['repository']}:{self.body['tag']}"

    @property
    def containers(self) -> list[str]:
        return [self.reference]

    @property
    def summary(self) -> str:
        if self.body["verdict"] == "stale":
            newer = self.body.get("newer_compose") or "a newer compose"
            return (
                f"{APP_NAME} kept {self.reference} at {newer}, newer than compose "
                f"{self.body['compose_id']}"
            )
        missing = ", ".join(self.body["missing_arches"]) or "none"
        return (
            f"{APP_NAME} held {self.reference} for compose "
            f"{self.body['compose_id']}: missing {missing}"
        )

    def __str__(self) -> str:
        def arches(key: str) -> str:
            return ", ".join(self.body.get(key) or []) or "-"

        newer = self.body.get("newer_compose")
        return (
            f"The tag {self.reference} was not moved to compose {self.body['compose_id']}; "
            "it still serves its previous images.\n\n"
            f"\tVerdict: {self.body['verdict']}\n"
            + (f"\tNewer compose it serves: {newer}\n" if newer else "")
            + f"\tReason: {self.body['reason']}\n"
            f"\tMissing arches: {arches('missing_arches')}\n"
            f"\tArches served now: {arches('current_arches')}\n"
            f"\tArches in this compose: {arches('compose_arches')}\n"
        )


#: The audit finding's schema name in the ``fedora.messages`` entry point group, and the class
#: topic. A finding goes out as ``<it>.<kind>`` (``held``, ``missing``, ``carried``,
#: ``diverged``, ``unrecognized``), behind the ``topic_prefix`` of the fedora-messaging
#: configuration: bind ``fedora_container_sync.audit.finding.v1.#`` for all of them. The body
#: is one finding exactly as ``audit --json`` documents it (``FINDING_SCHEMA``).
AUDIT_FINDING = "fedora_container_sync.audit.finding.v1"


class AuditFindingV1(ContainerSyncMessage):
    """One audit finding: a tag that is held, missing an arch, carried, diverged or
    unrecognized."""

    topic = AUDIT_FINDING
    body_schema: ClassVar[dict[str, Any]] = {
        **FINDING_SCHEMA,
        "id": "https://pagure.io/fedora-container-sync/schemas/audit.finding.v1.json",
        "description": "A fedora-container-sync audit finding for one tag in one registry",
    }

    @property
    def containers(self) -> list[str]:
        """``registry/repository:tag``: fedora-messaging adds a filter header for it."""
        body = self.body
        return [f"{body['registry']}/{body['repository']}:{body['tag']}"]

    @property
    def summary(self) -> str:
        body = self.body
        arch = f" {body['arch']}" if body.get("arch") else ""
        return (
            f"{body['kind']}: {body['registry']}/{body['repository']}:{body['tag']}{arch}: "
            f"{body['summary']}"
        )

    def __str__(self) -> str:
        body = self.body
        age = body.get("age_hours")
        lines = [
            f"Audit finding ({body['severity']}): {body['kind']}",
            f"Tag: {body['registry']}/{body['repository']}:{body['tag']}",
        ]
        fields = (
            ("Arch", body.get("arch")),
            ("Serves", body.get("compose_id")),
            ("Newer", body.get("newer_compose_id")),
            ("Index compose", body.get("index_compose_id")),
            ("Other registry", body.get("reference_registry")),
            ("Since", body.get("since")),
            ("Age", f"{age} hours" if age is not None else None),
        )
        lines += [f"{name}: {value}" for name, value in fields if value]
        lines.append(str(body["summary"]))
        return "\n".join(lines)
