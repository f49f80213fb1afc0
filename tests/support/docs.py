"""Checks on the project's documentation, as plain functions over text. Pure.

* Links: every relative link of a Markdown file (``[text](path#anchor)``, images, reference
  links, and ``src``/``href`` of inline HTML) must name a file or directory of the repository,
  and an anchor a heading of the Markdown file it points into, by GitHub's rules for heading
  anchors. Absolute ``http(s)``/``mailto`` links are left alone (never fetched).
* Settings: every key ``config.toml.example`` names - commented out or not - must be documented
  in docs/configuration.md, in the table of its own TOML table; and every key documented there
  must be a field of the settings model (and every field documented).

Markdown is read with markdown-it-py (CommonMark, plus GFM tables), so code spans, code blocks
and escapes are what a renderer says they are, not what a regular expression guesses.
"""

from __future__ import annotations

import re
import tomllib
import types
import typing
from collections.abc import Iterable, Iterator, Mapping
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from markdown_it import MarkdownIt
from markdown_it.token import Token
from pydantic import BaseModel

_MARKDOWN = MarkdownIt("commonmark").enable("table")
#: Links that point outside the repository: not checked, never fetched.
EXTERNAL_SCHEMES = frozenset({"http", "https", "mailto"})


# -- headings and their anchors --------------------------------------------------------------


def github_slug(text: str) -> str:
    """The anchor GitHub gives a heading of this (rendered) text: lower case, every character
    but letters, digits, ``_``, ``-`` and spaces removed, each space a ``-``."""
    return re.sub(r"[^\w\- ]", "", text.lower()).replace(" ", "-")


def _plain_text(inline: Token) -> str:
    """A heading's text as rendered: code spans and link texts included, markup left out."""
    parts = []
    for child in inline.children or ():
        if child.type in ("text", "code_inline"):
            parts.append(child.content)
        elif child.type in ("softbreak", "hardbreak"):
            parts.append(" ")
    return "".join(parts)


def _headings(tokens: list[Token]) -> Iterator[tuple[int, str, Token]]:
    """(level, rendered text, inline token) of every heading, in order."""
    for index, token in enumerate(tokens):
        if token.type == "heading_open":
            inline = tokens[index + 1]
            yield int(token.tag[1:]), _plain_text(inline), inline


def anchors(markdown: str) -> set[str]:
    """Every heading anchor of a Markdown text; the second heading of the same text gets
    ``-1``, the third ``-2``, as on GitHub."""
    seen: dict[str, int] = {}
    found = set()
    for _, text, _ in _headings(_MARKDOWN.parse(markdown)):
        slug = github_slug(text)
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        found.add(slug if count == 0 else f"{slug}-{count}")
    return found


# -- links ----------------------------------------------------------------------------------


class _HTMLLinks(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.targets: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            if name in ("src", "href") and value is not None:
                self.targets.append(value)


def _html_targets(html: str) -> list[str]:
    parser = _HTMLLinks()
    parser.feed(html)
    parser.close()
    return parser.targets


def links(markdown: str) -> list[tuple[int, str]]:
    """(line number, target) of every link and image of a Markdown text, inline HTML included;
    nothing inside code spans or code blocks."""
    found = []
    for token in _MARKDOWN.parse(markdown):
        line = token.map[0] + 1 if token.map else 0
        if token.type == "html_block":
            found += [(line, target) for target in _html_targets(token.content)]
        for child in token.children or ():
            if child.type == "link_open":
                found.append((line, str(child.attrs["href"])))
            elif child.type == "image":
                found.append((line, str(child.attrs["src"])))
            elif child.type == "html_inline":
                found += [(line, target) for target in _html_targets(child.content)]
    return found


def link_problems(root: Path, source: Path, target: str) -> str | None:
    """What is wrong with one link of the Markdown file ``source``, or None."""
    parts = urlsplit(target)
    if parts.scheme or parts.netloc:
        if parts.scheme in EXTERNAL_SCHEMES and (parts.netloc or parts.scheme == "mailto"):
            return None
        return "not a relative link nor an http(s) URL"
    if parts.path.startswith("/"):
        return "an absolute path; write it relative to this file"
    path = unquote(parts.path)
    resolved = (source.parent / path).resolve() if path else source.resolve()
    if not resolved.is_relative_to(root.resolve()):
        return "leads outside the repository"
    if not resolved.exists():
        return "no such file or directory"
    if parts.fragment:
        if resolved.suffix != ".md" or not resolved.is_file():
            return "an anchor into a file that is not Markdown"
        if unquote(parts.fragment) not in anchors(resolved.read_text(encoding="utf-8")):
            return f"{resolved.name} has no heading with the anchor #{unquote(parts.fragment)}"
    return None


def broken_links(root: Path, files: Iterable[Path]) -> list[str]:
    """One line per broken relative link in ``files``: ``path:line: target: what is wrong``."""
    problems = []
    for source in files:
        for line, target in links(source.read_text(encoding="utf-8")):
            problem = link_problems(root, source, target)
            if problem:
                problems.append(f"{source.relative_to(root)}:{line}: {target}: {problem}")
    return problems


# -- settings: config.toml.example -----------------------------------------------------------

_HEADER = re.compile(r"^\[\[?\s*([A-Za-z0-9_.-]+)\s*\]\]?\s*(?:#.*)?$")
_KEY = re.compile(r"^([A-Za-z0-9_-]+)\s*=\s*\S")


def example_keys(text: str, *, commented: bool = True) -> set[tuple[str, str]]:
    """Every ``(table, key)`` a TOML example names: ``table`` is the dotted path of the
    ``[table]`` or ``[[array]]`` header above the key (``""`` at the top level).

    Commented-out lines count like the others (with ``commented``): ``# key = value``,
    ``# Fedora: key = value`` and ``# [table]`` are read as if uncommented; prose comments are
    no ``key = value`` and no ``[header]`` alone on a line, so they are not.
    """
    table = ""
    found = set()
    for raw in text.splitlines():
        line = raw.strip()
        if line.startswith("#"):
            if not commented:
                continue
            line = re.sub(r"^Fedora:\s*", "", line.lstrip("#").strip())
        header = _HEADER.match(line)
        if header:
            table = header.group(1)
            continue
        key = _KEY.match(line)
        if key:
            found.add((table, key.group(1)))
    return found


def toml_keys(text: str) -> set[tuple[str, str]]:
    """``(table, key)`` of every value of a TOML document, as :func:`example_keys` names them,
    read by tomllib: the check that the line reader understands the file."""
    found: set[tuple[str, str]] = set()

    def walk(table: str, document: Mapping[str, Any]) -> None:
        for key, value in document.items():
            path = f"{table}.{key}" if table else key
            if isinstance(value, dict):
                walk(path, value)
            elif isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
                for item in value:
                    walk(path, item)
            else:
                found.add((table, key))

    walk("", tomllib.loads(text))
    return found


# -- settings: the model ---------------------------------------------------------------------


def _sub_model(annotation: Any) -> type[BaseModel] | None:
    """The model a field holds (also in a list or an optional), or None for a plain value."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    origin = typing.get_origin(annotation)
    if origin in (list, typing.Union, types.UnionType):
        models = [m for m in map(_sub_model, typing.get_args(annotation)) if m is not None]
        return models[0] if len(models) == 1 else None
    return None


def model_tables(model: type[BaseModel], table: str) -> dict[str, set[str]]:
    """TOML table -> its settings, for a settings model rooted at ``table``: a field that holds
    another model is a table of its own (and a setting of its parent)."""
    tables = {table: set(model.model_fields)}
    for name, field in model.model_fields.items():
        sub = _sub_model(field.annotation)
        if sub is not None:
            tables.update(model_tables(sub, f"{table}.{name}"))
    return tables


def setting_of(model: type[BaseModel], root: str, table: str, key: str) -> tuple[str, str] | None:
    """The setting ``(table, key)`` a key of the TOML file sets under ``root``: itself, or the
    field that holds it as data (an entry of ``[root.repos]`` sets ``(root, "repos")``); None
    when no field of the model takes it."""
    parts = [*table.removeprefix(root).strip(".").split("."), key] if table != root else [key]
    current, where = model, root
    for index, part in enumerate(parts):
        field = current.model_fields.get(part)
        if field is None:
            return None
        sub = _sub_model(field.annotation)
        if sub is None or index == len(parts) - 1:
            return where, part
        current, where = sub, f"{where}.{part}"
    return None


# -- settings: the configuration page --------------------------------------------------------

_TABLE_NAME = re.compile(r"^\[\[?([A-Za-z0-9_.-]+)\]\]?$")


def _section_name(inline: Token, text: str) -> str:
    """A section's name: the TOML table its heading names as a code span (``[a.b]`` or
    ``[[a.b]]``), else the heading's anchor."""
    for child in inline.children or ():
        if child.type == "code_inline":
            table = _TABLE_NAME.match(child.content)
            if table:
                return table.group(1)
    return github_slug(text)


def documented_keys(markdown: str) -> dict[str, set[str]]:
    """Section name -> the keys its tables document: every table row whose first cell is one
    code span and nothing else. Sections as :func:`_section_name` names them."""
    tokens = _MARKDOWN.parse(markdown)
    found: dict[str, set[str]] = {}
    section = ""
    for index, token in enumerate(tokens):
        if token.type == "heading_open":
            inline = tokens[index + 1]
            section = _section_name(inline, _plain_text(inline))
            found.setdefault(section, set())
        elif token.type == "tr_open" and tokens[index + 1].type == "td_open":
            cell = [c for c in tokens[index + 2].children or () if c.content.strip()]
            if len(cell) == 1 and cell[0].type == "code_inline":
                found.setdefault(section, set()).add(cell[0].content)
    return found


def undocumented_settings(example: str, page: str, model: type[BaseModel], root: str) -> list[str]:
    """Keys the example names under ``root`` that the page does not document in the table of
    their own TOML table, or that are no setting at all; one line each."""
    documented = documented_keys(page)
    problems = []
    for table, key in sorted(example_keys(example)):
        if table != root and not table.startswith(root + "."):
            continue
        setting = setting_of(model, root, table, key)
        if setting is None:
            problems.append(f"[{table}] {key}: not a setting")
        elif setting[1] not in documented.get(setting[0], set()):
            problems.append(f"[{setting[0]}] {setting[1]}: not documented")
    return problems


def page_against_model(page: str, model: type[BaseModel], root: str) -> list[str]:
    """Where the page's tables under ``root`` and the model's fields differ: a documented key or
    table that is no setting, a setting not documented; one line each."""
    documented = {
        table: keys
        for table, keys in documented_keys(page).items()
        if table == root or table.startswith(root + ".")
    }
    expected = model_tables(model, root)
    problems = [f"[{table}]: no such table of settings" for table in documented.keys() - expected]
    for table in sorted(expected):
        keys = documented.get(table, set())
        problems += [f"[{table}] {key}: not a setting" for key in sorted(keys - expected[table])]
        problems += [f"[{table}] {key}: not documented" for key in sorted(expected[table] - keys)]
    return sorted(problems)
