"""Every log record's message through :func:`..shown.shown`: redacted and escaped, one line.

Installed as :mod:`logging`'s record factory by the CLI and the consumer when they start, so
the libraries' records (httpx logs each request's URL) go through it as well as ours.
"""

from __future__ import annotations

import logging

from .shown import shown


class _ShownRecord(logging.LogRecord):
    """A log record whose message is :func:`..shown.shown`."""

    def getMessage(self) -> str:
        return shown(super().getMessage())


def install() -> None:
    """Every log record made from now on is shown (idempotent)."""
    if logging.getLogRecordFactory() is not _ShownRecord:
        logging.setLogRecordFactory(_ShownRecord)
