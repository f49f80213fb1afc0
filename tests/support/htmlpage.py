"""Reading the audit's status page the way a browser's parser sees it (html.parser), to check
its content cell by cell and that nothing in it is markup it should not be."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from html.parser import HTMLParser

_VOID = frozenset(
    {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "wbr"}
)

#: Every element and attribute the page's template writes; anything else got in from data.
PAGE_ELEMENTS = frozenset(
    {
        "#document",
        "html",
        "head",
        "meta",
        "title",
        "style",
        "body",
        "header",
        "main",
        "footer",
        "section",
        "h1",
        "h2",
        "p",
        "strong",
        "span",
        "code",
        "ul",
        "li",
        "div",
        "table",
        "thead",
        "tbody",
        "tr",
        "th",
        "td",
    }
)
PAGE_ATTRIBUTES = frozenset(
    {
        "lang",
        "charset",
        "http-equiv",
        "content",
        "name",
        "class",
        "id",
        "colspan",
        "rowspan",
        "scope",
        "data-registry",
        "data-repository",
        "data-tag",
        "data-arch",
    }
)


@dataclass
class Element:
    tag: str
    attrs: dict[str, str | None] = field(default_factory=dict)
    children: list[Element | str] = field(default_factory=list)

    @property
    def classes(self) -> set[str]:
        return set((self.attrs.get("class") or "").split())

    def text(self) -> str:
        return "".join(c if isinstance(c, str) else c.text() for c in self.children)

    def walk(self) -> Iterator[Element]:
        yield self
        for child in self.children:
            if isinstance(child, Element):
                yield from child.walk()

    def all(self, tag: str | None = None, **attrs: str) -> list[Element]:
        """Descendants (and self) with ``tag`` whose attributes equal ``attrs`` (``class_``:
        has that class; ``data_x``: attribute ``data-x``)."""
        return [e for e in self.walk() if _matches(e, tag, attrs)]

    def one(self, tag: str | None = None, **attrs: str) -> Element:
        found = self.all(tag, **attrs)
        assert len(found) == 1, f"{len(found)} <{tag}> with {attrs}"
        return found[0]

    def filter(self, predicate: Callable[[Element], bool]) -> list[Element]:
        return [e for e in self.walk() if predicate(e)]


def _matches(element: Element, tag: str | None, attrs: dict[str, str]) -> bool:
    if tag is not None and element.tag != tag:
        return False
    for key, value in attrs.items():
        if key == "class_":
            if value not in element.classes:
                return False
        elif element.attrs.get(key.replace("_", "-")) != value:
            return False
    return True


class _TreeBuilder(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.root = Element("#document")
        self.stack = [self.root]
        self.declarations: list[str] = []

    def handle_decl(self, decl: str) -> None:
        self.declarations.append(decl)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        element = Element(tag, dict(attrs))
        self.stack[-1].children.append(element)
        if tag not in _VOID:
            self.stack.append(element)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.stack[-1].children.append(Element(tag, dict(attrs)))

    def handle_endtag(self, tag: str) -> None:
        for depth in range(len(self.stack) - 1, 0, -1):
            if self.stack[depth].tag == tag:
                del self.stack[depth:]
                return

    def handle_data(self, data: str) -> None:
        self.stack[-1].children.append(data)


def parse(html: str) -> Element:
    builder = _TreeBuilder()
    builder.feed(html)
    builder.close()
    return builder.root


def foreign_markup(root: Element) -> list[str]:
    """Elements and attributes the template never writes: markup that came in with data."""
    found = [f"<{e.tag}>" for e in root.walk() if e.tag not in PAGE_ELEMENTS]
    found += [
        f"<{e.tag} {name}>" for e in root.walk() for name in e.attrs if name not in PAGE_ATTRIBUTES
    ]
    found += [f"{len(root.all('style'))} <style> elements"] if len(root.all("style")) != 1 else []
    return found


def cell(section: Element, repository: str, tag: str, arch: str | None) -> Element:
    """The cell of ``repository``'s ``tag`` (``arch`` None: its index column): on the line of
    that repository and tag."""
    row = section.one("tr", data_repository=repository, data_tag=tag)
    return row.one("td", data_tag=tag, data_arch=arch or "")


def status(cell: Element) -> str:
    """The cell's status class (the one besides ``cell`` and ``index``)."""
    (found,) = cell.classes - {"cell", "index"}
    return found
