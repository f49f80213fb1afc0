"""The audit's status page as a file: one self-contained HTML document, rendered from
:func:`~.page.page_of`'s data and written atomically (reads the template, writes the page).

The template (``templates/audit.html.j2``, package data) is rendered by Jinja2 with
autoescaping: every tag, annotation and compose ID came from a registry and is text on the
page, never markup.

A web server serving the page must never send a half-written one: the new text goes to a
temporary file in the same directory, is flushed to disk, and is renamed over the old file in
one step, so a reader opens either the old page or the new one.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path

import jinja2

from ..config.settings import Releases
from ..errors import PermanentError
from .findings import AuditResult
from .page import Page, page_of
from .state import RepositoryState


def render_html(
    result: AuditResult,
    states: Sequence[RepositoryState],
    releases: Releases,
    *,
    messages: bool = False,
) -> str:
    """The whole page: one HTML document with inline CSS, no script, no external asset.
    ``messages``: the audit sends its findings to the bus too (the page says so)."""
    return render_page(dataclasses.replace(page_of(result, states, releases), messages=messages))


def render_page(page: Page) -> str:
    return _template().render(page=page)


@functools.cache
def _template() -> jinja2.Template:
    environment = jinja2.Environment(
        loader=jinja2.PackageLoader("fedora_container_sync", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    return environment.get_template("audit.html.j2")


def write_atomically(path: Path, text: str, *, mode: int = 0o644) -> None:
    """Replace ``path`` with ``text`` (UTF-8) in one rename; ``mode`` 0644 lets a web server
    running as another user read it, whatever the umask."""
    directory = path.parent
    try:
        descriptor, temporary = tempfile.mkstemp(
            prefix=f".{path.name}.", suffix=".tmp", dir=directory
        )
    except OSError as error:
        raise PermanentError(f"{path}: cannot write: {error.strerror or error}") from None
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8") as file:
            file.write(text)
            file.flush()
            os.fchmod(file.fileno(), mode)
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except OSError as error:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise PermanentError(f"{path}: cannot write: {error.strerror or error}") from None
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise
    _sync_directory(directory)


def _sync_directory(directory: Path) -> None:
    """Make the rename itself durable (best effort: some filesystems refuse)."""
    try:
        descriptor = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return
    try:
        with contextlib.suppress(OSError):
            os.fsync(descriptor)
    finally:
        os.close(descriptor)
