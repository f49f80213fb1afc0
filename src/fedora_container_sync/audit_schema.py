"""The audit's bus message, and sending one per finding.

Schema ``fedora_container_sync.audit.finding.v1`` (entry point group ``fedora.messages``):
the body is one finding exactly as ``audit --json`` documents it
(:data:`~fedora_container_sync.audit.FINDING_SCHEMA`); the topic is
``fedora_container_sync.audit.finding.v1.<kind>`` (``held``, ``missing``, ``carried``,
``diverged``, ``unrecognized``), behind the ``topic_prefix`` of the fedora-messaging
configuration. Bind ``fedora_container_sync.audit.finding.v1.#`` for all of them.

Importing this module imports ``fedora_messaging.message`` (about 0.4 s): the CLI imports it
only when ``publish_amqp_messages`` is true.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

from fedora_messaging import message

from .audit import Finding, Severity
from .audit_report import FINDING_SCHEMA
from .errors import ConfigError, PermanentError, TransientError, one_line

_log = logging.getLogger(__name__)

#: The schema's name in the ``fedora.messages`` entry point group, and the class topic.
SCHEMA = "fedora_container_sync.audit.finding.v1"

_MESSAGE_SEVERITY = {
    Severity.ERROR: message.ERROR,
    Severity.WARNING: message.WARNING,
    Severity.INFO: message.INFO,
}


class AuditFindingV1(message.Message):
    """One audit finding: a tag that is held, missing an arch, carried, diverged or
    unrecognized."""

    topic = SCHEMA
    body_schema: ClassVar[dict[str, Any]] = {
        **FINDING_SCHEMA,
        "id": "https://pagure.io/fedora-container-sync/schemas/audit.finding.v1.json",
        "description": "A fedora-container-sync audit finding for one tag in one registry",
    }

    @property
    def app_name(self) -> str:
        return "fedora-container-sync"

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


def finding_message(finding: Finding) -> AuditFindingV1:
    return AuditFindingV1(
        body=finding.as_json(),
        topic=f"{SCHEMA}.{finding.kind.value}",
        severity=_MESSAGE_SEVERITY[finding.severity],
    )


def load_bus_config(path: Path) -> None:
    """Load fedora-messaging's own settings (broker URL, topic prefix, TLS) from ``path``."""
    from fedora_messaging import config, exceptions

    try:
        config.conf.load_config(str(path))
    except exceptions.ConfigurationException as error:
        raise ConfigError(f"config file {path}: {one_line(error)}") from None


def publish_findings(findings: Sequence[Finding], *, timeout: int = 30) -> int:
    """Send one message per finding (after :func:`load_bus_config`); return how many went.

    Stops at the first failure: a broker that does not answer would otherwise cost the timeout
    once per finding.
    """
    from fedora_messaging import api, exceptions
    from jsonschema import ValidationError as SchemaError

    sent = 0
    for finding in findings:
        outgoing = finding_message(finding)
        try:
            outgoing.validate()
            api.publish(outgoing, timeout=timeout)
        except (exceptions.PublishTimeout, exceptions.ConnectionException) as error:
            raise TransientError(
                f"audit messages: {sent} of {len(findings)} sent, then the broker failed: "
                f"{one_line(error)}"
            ) from None
        except (exceptions.BaseException, SchemaError) as error:  # returned, forbidden, invalid
            raise PermanentError(
                f"audit messages: {sent} of {len(findings)} sent, then: {one_line(error)}"
            ) from None
        _log.info("audit: sent %s (%s)", outgoing.summary, outgoing.id)
        sent += 1
    return sent
