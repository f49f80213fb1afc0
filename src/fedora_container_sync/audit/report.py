"""What an audit found, for people and for monitoring: the table and the JSON document. Pure.

The table: one line per finding, sorted by severity then age, readable in a terminal and in a
mail. The JSON document (format ``fedora-container-sync-audit/v1``) is stable and described by
:data:`DOCUMENT_SCHEMA`; each finding in it is :data:`FINDING_SCHEMA`, which is also the body of
the audit's bus message.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from .findings import EXIT_CLEAN, EXIT_FINDINGS, EXIT_UNREADABLE, AuditResult, Kind, Severity

#: The ``format`` of the JSON document; bumped only on incompatible changes.
DOCUMENT_FORMAT = "fedora-container-sync-audit/v1"


def format_age(hours: int | None) -> str:
    if hours is None:
        return "?"
    if hours < 24:
        return f"{hours}h"
    return f"{hours // 24}d{hours % 24:02d}h"


def render_table(result: AuditResult) -> str:
    """For a terminal or a mail: a header, one line per finding, one line per failure."""
    limit = (
        f"; findings older than {_hours(result.max_age_hours)}h"
        if result.max_age_hours is not None
        else ""
    )
    lines = [
        f"audit of {len(result.registries)} registr{'y' if len(result.registries) == 1 else 'ies'}"
        f", {len(result.repositories)} repositor"
        f"{'y' if len(result.repositories) == 1 else 'ies'} at {_timestamp(result.generated_at)}"
        f"{limit}"
    ]
    if result.findings:
        rows = [("severity", "kind", "age", "tag", "arch", "detail")]
        rows += [
            (
                f.severity.value,
                f.kind.value,
                format_age(f.age_hours),
                f.where,
                f.arch or "-",
                f.summary,
            )
            for f in result.findings
        ]
        widths = [max(len(row[i]) for row in rows) for i in range(5)]
        for row in rows:
            cells = [cell.ljust(width) for cell, width in zip(row[:5], widths, strict=True)]
            lines.append("  " + "  ".join([*cells, row[5]]).rstrip())
    lines.extend(f"  unreadable: {failure.name}: {failure.error}" for failure in result.failures)
    lines.append(f"result: {_result_line(result)}")
    return "\n".join(lines)


def _result_line(result: AuditResult) -> str:
    counts = ", ".join(
        f"{n} {severity.value}"
        for severity in Severity
        if (n := sum(1 for f in result.findings if f.severity is severity))
    )
    found = f"{len(result.findings)} finding{'s' if len(result.findings) != 1 else ''}"
    if counts:
        found += f" ({counts})"
    if result.younger:
        found += f"; {result.younger} younger not counted"
    if result.failures:
        registries = sum(1 for failure in result.failures if failure.repository is None)
        repositories = len(result.failures) - registries
        parts = [
            f"{n} {word if n == 1 else plural}"
            for n, word, plural in (
                (registries, "registry", "registries"),
                (repositories, "repository", "repositories"),
            )
            if n
        ]
        return f"UNREADABLE ({', '.join(parts)}); {found}"
    return ("FINDINGS: " if result.findings else "CLEAN: ") + found


def as_document(result: AuditResult) -> dict[str, Any]:
    """The stable JSON document (DOCUMENT_SCHEMA)."""
    return {
        "format": DOCUMENT_FORMAT,
        "generated_at": _timestamp(result.generated_at),
        "max_age_hours": result.max_age_hours,
        "registries": list(result.registries),
        "repositories": list(result.repositories),
        "result": result.result,
        "exit_code": result.exit_code,
        "counts": result.counts(),
        "younger": result.younger,
        "errors": [
            {"registry": f.registry, "repository": f.repository, "error": f.error}
            for f in result.failures
        ],
        "findings": [finding.as_json() for finding in result.findings],
    }


def render_json(result: AuditResult) -> str:
    return json.dumps(as_document(result), indent=2, sort_keys=False)


def _timestamp(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _hours(value: float | None) -> str:
    return "" if value is None else f"{value:g}"


_NULLABLE_STRING = {"type": ["string", "null"]}

#: JSON Schema of one finding: an element of the document's ``findings`` and the body of an
#: audit bus message.
FINDING_SCHEMA: dict[str, Any] = {
    "$schema": "http://json-schema.org/draft-07/schema#",
    "title": "fedora-container-sync audit finding",
    "type": "object",
    "required": [
        "kind",
        "severity",
        "registry",
        "repository",
        "tag",
        "arch",
        "compose_id",
        "newer_compose_id",
        "index_compose_id",
        "reference_registry",
        "digest",
        "since",
        "age_hours",
        "summary",
    ],
    "additionalProperties": False,
    "properties": {
        "kind": {"type": "string", "enum": [kind.value for kind in Kind]},
        "severity": {"type": "string", "enum": [severity.value for severity in Severity]},
        "registry": {"type": "string", "description": "host[:port][/namespace] as configured"},
        "repository": {"type": "string"},
        "tag": {"type": "string"},
        "arch": {**_NULLABLE_STRING, "description": "Fedora arch, for per-arch findings"},
        "compose_id": {
            **_NULLABLE_STRING,
            "description": "the compose the tag (or the index entry for arch) serves now",
        },
        "newer_compose_id": {
            **_NULLABLE_STRING,
            "description": "the newer compose it lags behind (held, missing, diverged)",
        },
        "index_compose_id": {
            **_NULLABLE_STRING,
            "description": "the compose the index tag was last moved to",
        },
        "reference_registry": {
            **_NULLABLE_STRING,
            "description": "diverged: the registry serving the newer content",
        },
        "digest": {
            **_NULLABLE_STRING,
            "description": "the manifest digest the tag serves here; null: no such tag",
        },
        "since": {
            **_NULLABLE_STRING,
            "description": "YYYY-MM-DD: the compose date the age counts from",
        },
        "age_hours": {"type": ["integer", "null"], "minimum": 0},
        "summary": {"type": "string"},
    },
}

#: JSON Schema of the document ``audit --json`` prints.
DOCUMENT_SCHEMA: dict[str, Any] = {
    "$schema": "http://json-schema.org/draft-07/schema#",
    "title": "fedora-container-sync audit",
    "type": "object",
    "required": [
        "format",
        "generated_at",
        "max_age_hours",
        "registries",
        "repositories",
        "result",
        "exit_code",
        "counts",
        "younger",
        "errors",
        "findings",
    ],
    "additionalProperties": False,
    "properties": {
        "format": {"const": DOCUMENT_FORMAT},
        "generated_at": {"type": "string"},
        "max_age_hours": {"type": ["number", "null"]},
        "registries": {"type": "array", "items": {"type": "string"}},
        "repositories": {"type": "array", "items": {"type": "string"}},
        "result": {"enum": ["clean", "findings", "unreadable"]},
        "exit_code": {"enum": [EXIT_CLEAN, EXIT_UNREADABLE, EXIT_FINDINGS]},
        "counts": {
            "type": "object",
            "required": [kind.value for kind in Kind],
            "additionalProperties": False,
            "properties": {kind.value: {"type": "integer"} for kind in Kind},
        },
        "younger": {"type": "integer"},
        "errors": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["registry", "repository", "error"],
                "additionalProperties": False,
                "properties": {
                    "registry": {"type": "string"},
                    "repository": _NULLABLE_STRING,
                    "error": {"type": "string"},
                },
            },
        },
        "findings": {"type": "array", "items": FINDING_SCHEMA},
    },
}
