"""The audit run (``fedora-container-sync audit``): read every registry, find, then report.

Read: :mod:`.inventory` reads what every configured registry serves (GET requests only).
Decide: :mod:`.findings` finds what is held, missing, carried, diverged or unrecognized (pure).
Report: the CLI prints the table or JSON document (:mod:`.report`); :func:`deliver` writes the
status page (:mod:`.html`) and sends one bus message per finding (:mod:`..bus.notify`).
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from pathlib import Path

from ..config.settings import Settings
from ..errors import SyncError, UsageError
from .findings import AuditResult, audit
from .inventory import read_registries, repositories
from .state import RepositoryState

_log = logging.getLogger(__name__)


def check_page_path(path: Path) -> None:
    """Refuse, before reading any registry, a page path that can never be written."""
    if path.is_dir():
        raise UsageError(f"--html {path}: is a directory")
    if not path.parent.is_dir():
        raise UsageError(f"--html {path}: directory {path.parent} does not exist")


def audit_registries(
    settings: Settings, *, max_age_hours: float | None
) -> tuple[AuditResult, list[RepositoryState]]:
    """What every configured registry serves, and what the audit finds in it."""
    states, failures = read_registries(settings)
    result = audit(
        states,
        settings.releases,
        now=datetime.now(UTC),
        registries=[registry.url for registry in settings.registries],
        repositories=repositories(settings),
        failures=failures,
        max_age_hours=max_age_hours,
    )
    return result, states


def deliver(
    result: AuditResult, states: list[RepositoryState], settings: Settings, *, html: Path | None
) -> None:
    """Write the status page to ``html`` (if given) and send the findings to the bus (if
    ``publish_amqp_messages``); a page that cannot be written is raised after the findings
    went out."""
    page_error = None
    if html is not None:
        from .html import render_html, write_atomically

        try:
            write_atomically(html, render_html(result, states, settings.releases))
            _log.info("audit: status page written to %s", html)
        except SyncError as error:  # the findings still go to the bus
            page_error = error
    if settings.publish_amqp_messages and result.findings:
        from ..bus.notify import publish_findings

        sent = publish_findings(result.findings)
        _log.info("audit: %d finding messages sent", sent)
    if page_error is not None:
        raise page_error
