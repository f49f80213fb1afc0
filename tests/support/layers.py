"""The import rule of docs/architecture.md, checked with ``ast`` over the source of every module.

Every module belongs to one layer: ``pure`` (decisions and value types), ``io`` (adapters:
network, registry, subprocess, filesystem, broker, the process), ``orchestration`` (the publish
pipeline, the audit run) or ``entry`` (the command line, the consumer). A module imports modules
of this package from its own layer or the ones below it, never from a layer above. A pure module
also

* imports from outside this package only :data:`PURE_IMPORTS` (the standard library's modules
  that do no I/O, and pydantic and productmd for parsing) - of ``os`` and ``posixpath`` only
  the names in :data:`RESTRICTED`;
* calls no builtin that does I/O (:data:`IO_BUILTINS`) and no method that reads or writes the
  filesystem, the environment or the clock (:data:`IO_METHODS`), on whatever object.

Every import counts, wherever it is written: inside a function, under ``TYPE_CHECKING``.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

PACKAGE = "fedora_container_sync"

LAYERS = ("pure", "io", "orchestration", "entry")
_RANK = {layer: rank for rank, layer in enumerate(LAYERS)}

#: What a pure module may import from outside this package.
PURE_IMPORTS = frozenset(
    {
        "__future__",
        "base64",
        "collections",
        "collections.abc",
        "dataclasses",
        "datetime",
        "enum",
        "functools",
        "hashlib",
        "ipaddress",
        "itertools",
        "json",
        "lzma",
        "math",
        "os",  # only RESTRICTED["os"]
        "pathlib",  # Path as a value; IO_METHODS are refused
        "posixpath",  # only RESTRICTED["posixpath"]
        "re",
        "string",
        "typing",
        "unicodedata",
        "urllib.parse",
        "uuid",  # only RESTRICTED["uuid"]
        "zlib",
        "pydantic",
        "productmd.composeinfo",
        "productmd.images",
    }
)
#: The only names a pure module may use of these modules: the machine's CPU count (a default
#: setting), path arithmetic on strings, and name-based UUIDs (uuid5; not uuid1/uuid4).
RESTRICTED = {
    "os": frozenset({"cpu_count", "PathLike"}),
    "posixpath": frozenset({"normpath", "join", "split", "basename", "dirname", "splitext"}),
    "uuid": frozenset({"UUID", "uuid5"}),
}
IO_BUILTINS = frozenset({"open", "print", "input", "breakpoint", "exec", "eval", "__import__"})
IO_METHODS = frozenset(
    {
        # pathlib.Path and os.path
        "read_text",
        "read_bytes",
        "write_text",
        "write_bytes",
        "open",
        "touch",
        "mkdir",
        "makedirs",
        "rmdir",
        "rmtree",
        "unlink",
        "rename",
        "iterdir",
        "listdir",
        "scandir",
        "walk",
        "glob",
        "rglob",
        "exists",
        "lexists",
        "is_dir",
        "is_file",
        "is_symlink",
        "stat",
        "lstat",
        "chmod",
        "symlink_to",
        "hardlink_to",
        "readlink",
        "realpath",
        "samefile",
        "expanduser",
        "home",
        "cwd",
        # the environment and the clock
        "getenv",
        "now",
        "today",
        "utcnow",
    }
)


@dataclass(frozen=True)
class Module:
    """One module's source; a package's is its ``__init__.py``."""

    source: str
    is_package: bool = False


@dataclass(frozen=True)
class Violation:
    module: str
    line: int
    what: str

    def __str__(self) -> str:
        return f"{self.module}:{self.line}: {self.what}"


def check(modules: Mapping[str, Module], layers: Mapping[str, str]) -> list[Violation]:
    """Every violation of the rule in ``modules`` (dotted name -> source), with ``layers``
    classifying each module (dotted name -> layer)."""
    found: list[Violation] = []
    for name in sorted(modules):
        layer = layers.get(name)
        if layer not in _RANK:
            found.append(Violation(name, 1, f"not classified (layer {layer!r})"))
            continue
        module = modules[name]
        tree = ast.parse(module.source)
        for line, imported in _imports(tree, name, module.is_package, modules):
            found += _judge_import(name, layer, line, imported, layers)
        if layer == "pure":
            found += _judge_calls(name, tree)
    return found


def _imports(
    tree: ast.AST, name: str, is_package: bool, modules: Mapping[str, Module]
) -> Iterator[tuple[int, str]]:
    """(line, imported module) for every import, relative ones resolved."""
    package = name if is_package else name.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")
                base = parts[: len(parts) - (node.level - 1)]
                origin = ".".join(base + ([node.module] if node.module else []))
            else:
                origin = node.module or ""
            for alias in node.names:
                submodule = f"{origin}.{alias.name}"
                yield node.lineno, submodule if submodule in modules else origin


def _judge_import(
    module: str, layer: str, line: int, name: str, layers: Mapping[str, str]
) -> list[Violation]:
    if name == PACKAGE or name.startswith(PACKAGE + "."):
        target = layers.get(name)
        if target is None:
            return [Violation(module, line, f"imports {name}, which is not classified")]
        if _RANK[target] > _RANK[layer]:
            return [Violation(module, line, f"{layer} module imports {name} ({target})")]
        return []
    if layer != "pure":
        return []
    if name in PURE_IMPORTS:
        return []
    return [Violation(module, line, f"pure module imports {name}")]


def _judge_calls(module: str, tree: ast.AST) -> list[Violation]:
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            func = node.func
            if isinstance(func, ast.Name) and func.id in IO_BUILTINS:
                found.append(Violation(module, node.lineno, f"pure module calls {func.id}()"))
            elif isinstance(func, ast.Attribute) and func.attr in IO_METHODS:
                found.append(Violation(module, node.lineno, f"pure module calls .{func.attr}()"))
        if (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id in RESTRICTED
            and node.attr not in RESTRICTED[node.value.id]
        ):
            used = f"{node.value.id}.{node.attr}"
            found.append(Violation(module, node.lineno, f"pure module uses {used}"))
        if isinstance(node, ast.ImportFrom) and not node.level and node.module in RESTRICTED:
            for alias in node.names:
                if alias.name not in RESTRICTED[node.module]:
                    used = f"{node.module}.{alias.name}"
                    found.append(Violation(module, node.lineno, f"pure module uses {used}"))
    return found
