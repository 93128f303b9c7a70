"""The import layering of ``src/motte``, read from the source (``ast``; nothing is imported).

The rules (docs/development.md, "Layers"):

1. **The library never imports the CLI.** No module outside ``motte.cli`` imports
   ``motte.cli`` or anything under it: the library returns values, ``motte.cli`` formats them.
   ``motte.__main__`` (``python -m motte``) is the program, not the library.
2. **The manifest and the Steward do not depend on the Keep.** ``motte.manifest`` and
   ``motte.steward`` import nothing under ``motte.keep`` (what they share with it, such as
   the digest and ``Record``, lives in the base layer).
3. **A package's ``__init__`` is its only entrance.** An *area* is a top-level package
   ``motte.<area>`` with all its subpackages (``motte.attest``, ``motte.attest.snp`` and
   ``motte.attest.intel`` are one area): one team's code, reviewed together. A module whose
   dotted name has a ``_private`` part below ``motte.<area>`` may be imported only from inside
   that area. From anywhere else, import the package (or a public module such as
   ``motte.attest.errors``) and use the names in its ``__all__``. The top-level private
   modules ``motte._x`` (``motte._toml``, ``motte._digest``, ``motte._record`` ...) are the base
   layer: shared helpers every area may import; they import no area themselves.
4. **No import cycle between files.** The imports that run (at module level, including
   inside ``try``/``if`` there, and inside functions; not those under
   ``if TYPE_CHECKING:``) form no cycle between files. Imports inside functions count: they
   cannot meet a half-initialised module, but one that exists only to dodge a cycle is the
   cycle still, and the two files are one responsibility cut in two (``keep/serve`` had a
   six-file cycle held together that way). :data:`KNOWN_DEFERRED_CYCLES` lists the few left
   in packages being reworked, each closed only inside a function; no module-level cycle
   is allowed at all, and a known cycle that disappears must leave the list.

An import of a name a package defines (``from motte.keep import launch``) is an edge to the
package's ``__init__``; ``from motte.oci import _mediatypes`` (a submodule) is an edge to
that file only. Importing a module also runs its parents' ``__init__`` files; those
implicit edges are left out, or every package whose ``__init__`` imports its own modules
would be a cycle (Python finds the parent half-initialised and carries on).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
ROOT = "motte"
#: ``python -m motte``: the command line's entry point, not part of the library.
PROGRAM = "motte.__main__"

#: Known exceptions, each with the work that removes it. Each entry must still be needed:
#: a test below fails when one is no longer broken, so the list only shrinks.
#: Cycles whose back edge is an import inside a function, in packages being reworked:
#: attest's memo clears the caches of the modules that use it (issue 13's attest
#: pipeline); the power runner calls the agent client that imports it (issue 20); a remote
#: log returns the local log's entry type; the predicate summaries read the release model,
#: which imports the predicate's type name (issue 19).
KNOWN_DEFERRED_CYCLES = [
    ["motte.attest._memo", "motte.attest._x509", "motte.attest.snp._certs"],
    ["motte.power._agent", "motte.power._runner"],
    ["motte.sign._predicates", "motte.sign._release"],
    ["motte.tlog._log", "motte.tlog._remote"],
]


@dataclass(frozen=True)
class Import:
    source: str  # the importing module
    target: str  # the imported module (a file), as a dotted name
    line: int
    #: "module": runs when ``source`` is first imported; "function": runs when a function
    #: is called; "typing": under ``if TYPE_CHECKING:``, never runs.
    when: str

    @property
    def runs(self) -> bool:
        return self.when != "typing"


def _modules() -> dict[str, Path]:
    out = {}
    for path in sorted((SRC / ROOT).rglob("*.py")):
        parts = list(path.relative_to(SRC).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


MODULES = _modules()


def _is_package(name: str) -> bool:
    return MODULES.get(name, Path()).name == "__init__.py"


def _resolve(source: str, level: int, module: str | None) -> str:
    if level == 0:
        return module or ""
    base = source.split(".")
    if not _is_package(source):
        base = base[:-1]
    base = base[: len(base) - (level - 1)]
    return ".".join(base + ([module] if module else []))


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _walk(node: ast.AST, when: str) -> Iterator[tuple[ast.AST, str]]:
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
            yield from _walk(child, "typing" if when == "typing" else "function")
        elif isinstance(child, ast.If) and _is_type_checking(child.test):
            for stmt in child.body:
                yield stmt, "typing"
                yield from _walk(stmt, "typing")
            for stmt in child.orelse:
                yield stmt, when
                yield from _walk(stmt, when)
        else:
            yield child, when
            yield from _walk(child, when)


def _imports(source: str, path: Path) -> Iterator[Import]:
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    for node, when in _walk(tree, "module"):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == ROOT:
                    yield Import(source, _existing(alias.name), node.lineno, when)
        elif isinstance(node, ast.ImportFrom):
            base = _resolve(source, node.level, node.module)
            if base.split(".")[0] != ROOT:
                continue
            subs = [f"{base}.{alias.name}" for alias in node.names]
            for sub in subs:
                if sub in MODULES:
                    yield Import(source, sub, node.lineno, when)
            if not all(sub in MODULES for sub in subs):  # names defined by ``base`` itself
                yield Import(source, _existing(base), node.lineno, when)


def _existing(name: str) -> str:
    """The longest prefix of ``name`` that is a module (``import a.b.c`` of a name)."""
    parts = name.split(".")
    while parts and ".".join(parts) not in MODULES:
        parts.pop()
    return ".".join(parts)


IMPORTS = [imp for name, path in MODULES.items() for imp in _imports(name, path)]


def _area(name: str) -> str:
    """``motte.attest.snp._abi`` -> ``motte.attest``; ``motte._toml`` -> ``motte._toml``."""
    return ".".join(name.split(".")[:2])


def _is_base(name: str) -> bool:
    return name.count(".") == 1 and not _is_package(name)


def _where(imp: Import) -> str:
    return f"{MODULES[imp.source].relative_to(SRC.parent)}:{imp.line}: {imp.target}"


def _within(name: str, package: str) -> bool:
    return name == package or name.startswith(package + ".")


def test_the_walk_finds_the_imports_it_judges() -> None:
    """The rules below are only as good as the walk: it must see the modules and edges."""
    assert "motte.keep" in MODULES and "motte.cli" in MODULES and "motte.errors" in MODULES
    assert any(i.source == "motte.cli" and i.when == "function" for i in IMPORTS)
    assert any(i.target == "motte.errors" and i.when == "module" for i in IMPORTS)


def _library_to_cli(i: Import) -> bool:
    return (
        _within(i.target, "motte.cli")
        and not _within(i.source, "motte.cli")
        and i.source != PROGRAM
    )


def test_the_library_never_imports_the_cli() -> None:
    bad = [_where(i) for i in IMPORTS if _library_to_cli(i)]
    assert not bad, "library -> cli imports:\n" + "\n".join(bad)


@pytest.mark.parametrize("package", ["motte.manifest", "motte.steward"])
def test_the_manifest_and_the_steward_do_not_import_the_keep(package: str) -> None:
    bad = [
        _where(i) for i in IMPORTS if _within(i.source, package) and _within(i.target, "motte.keep")
    ]
    assert not bad, f"{package} -> motte.keep imports:\n" + "\n".join(bad)


def test_the_base_layer_imports_no_area() -> None:
    bad = [
        _where(i)
        for i in IMPORTS
        if _is_base(i.source)
        and i.source != PROGRAM
        and not _is_base(i.target)
        and i.target != ROOT
    ]
    assert not bad, "base modules importing an area:\n" + "\n".join(bad)


def _private_below_area(name: str) -> bool:
    return any(part.startswith("_") for part in name.split(".")[2:])


def test_no_module_imports_another_areas_private_modules() -> None:
    bad = [
        _where(i)
        for i in IMPORTS
        if _private_below_area(i.target) and _area(i.source) != _area(i.target)
    ]
    assert not bad, (
        "imports of another package's private module (export the name from its __init__):\n"
        + "\n".join(bad)
    )


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one file (Tarjan), or a self-loop."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in sorted(edges.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1 or v in edges.get(v, ()):
                out.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return out


def test_no_import_cycle_between_files() -> None:
    edges: dict[str, set[str]] = {}
    for i in IMPORTS:
        if i.runs and i.target != i.source:
            edges.setdefault(i.source, set()).add(i.target)
    cycles = [c for c in _cycles(edges) if c not in KNOWN_DEFERRED_CYCLES]
    assert not cycles, "import cycles between files:\n" + "\n".join(" <-> ".join(c) for c in cycles)


def test_no_module_level_import_cycle_at_all() -> None:
    """The known cycles above are closed only by imports inside functions."""
    edges: dict[str, set[str]] = {}
    for i in IMPORTS:
        if i.when == "module" and i.target != i.source:
            edges.setdefault(i.source, set()).add(i.target)
    assert _cycles(edges) == []


def test_every_known_exception_is_still_needed() -> None:
    edges: dict[str, set[str]] = {}
    for i in IMPORTS:
        if i.runs and i.target != i.source:
            edges.setdefault(i.source, set()).add(i.target)
    found = _cycles(edges)
    gone = [c for c in KNOWN_DEFERRED_CYCLES if c not in found]
    assert not gone, f"no longer a cycle, remove it from KNOWN_DEFERRED_CYCLES: {gone}"


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []
