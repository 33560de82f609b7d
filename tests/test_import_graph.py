"""The package's import graph has no circles (DESIGN.md: each module imports only modules to its left).

The graph is read from the source text (nothing is imported): an edge ``A -> B`` for every
``import``/``from ... import`` in module ``A`` that names a module ``B`` of the package, plus an
edge to every package ``__init__`` on ``B``'s path that is not one of ``A``'s own parents (Python
runs those on the way to ``B``; ``A``'s parents have already run when ``A`` is imported).

``test_no_module_level_import_cycles`` reads the imports that run when a module is imported (its
top level, including ``if``/``try`` blocks there); ``test_no_import_cycles`` also reads the ones
inside functions, which run later but still tie the modules together.

``test_function_level_imports_say_why`` keeps the top of each file showing what it depends on: an
import of the package's own modules inside a function must say why it is lazy (a comment with the
word ``lazy`` on its line or within the two lines above, e.g. ``# lazy: see module docstring``).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = "mystyle_pl"
PACKAGE_ROOT = Path(__file__).resolve().parents[1] / PACKAGE

# A package import inside a function needs a comment with this word on its line or the lines above.
LAZY_WORD = "lazy"
LAZY_COMMENT_LINES_ABOVE = 2

# Circles through function-level imports that are tolerated for now: none. Nothing may be added.
KNOWN_LAZY_CYCLES: list[frozenset[str]] = []


def package_modules(root: Path = PACKAGE_ROOT) -> dict[str, tuple[Path, bool]]:
    """Dotted module name -> (file, is a package ``__init__``) for every ``.py`` file below ``root``."""
    modules = {}
    for path in sorted(root.rglob("*.py")):
        parts = list(path.relative_to(root.parent).with_suffix("").parts)
        is_package = parts[-1] == "__init__"
        modules[".".join(parts[:-1] if is_package else parts)] = (path, is_package)
    return modules


def _top_level_nodes(tree: ast.Module):
    """The statements that run on import: the module body, and what ``if`` / ``try`` / ``with`` hold."""
    stack = list(tree.body)
    while stack:
        node = stack.pop()
        yield node
        if isinstance(node, (ast.If, ast.Try, ast.With)):
            for field in ("body", "orelse", "finalbody", "handlers"):
                stack.extend(getattr(node, field, []))
        elif isinstance(node, ast.ExceptHandler):
            stack.extend(node.body)


def import_graph(lazy: bool, root: Path = PACKAGE_ROOT) -> dict[str, set[str]]:
    """Module -> the package modules it imports (``lazy=True``: also inside functions and classes)."""
    modules = package_modules(root)
    graph: dict[str, set[str]] = {name: set() for name in modules}

    def add(importer: str, target: str) -> None:
        graph[importer].add(target)
        parts = target.split(".")
        for k in range(1, len(parts)):
            parent = ".".join(parts[:k])
            if parent in modules and not (importer == parent or importer.startswith(parent + ".")):
                graph[importer].add(parent)

    for name, (path, is_package) in modules.items():
        tree = ast.parse(path.read_text(), filename=str(path))
        nodes = ast.walk(tree) if lazy else _top_level_nodes(tree)
        for node in nodes:
            if isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name in modules:
                        add(name, alias.name)
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = name.split(".") if is_package else name.split(".")[:-1]
                    base = base[: len(base) - (node.level - 1)]
                    target = ".".join(base + ([node.module] if node.module else []))
                else:
                    target = node.module or ""
                if target != PACKAGE and not target.startswith(PACKAGE + "."):
                    continue
                for alias in node.names:
                    submodule = f"{target}.{alias.name}"
                    if submodule in modules:
                        add(name, submodule)
                    elif target in modules:
                        add(name, target)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[frozenset[str]]:
    """The strongly connected components of more than one module (or a module importing itself)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[frozenset[str]] = []

    def visit(node: str) -> None:  # Tarjan; the package graph is shallow enough for recursion
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for succ in sorted(graph[node]):
            if succ not in index:
                visit(succ)
                low[node] = min(low[node], low[succ])
            elif succ in on_stack:
                low[node] = min(low[node], index[succ])
        if low[node] == index[node]:
            component = set()
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.add(member)
                if member == node:
                    break
            if len(component) > 1 or node in graph[node]:
                found.append(frozenset(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def _describe(found: list[frozenset[str]], graph: dict[str, set[str]]) -> str:
    lines = []
    for component in found:
        edges = sorted(f"{a} -> {b}" for a in component for b in graph[a] if b in component)
        lines.append("circle of " + ", ".join(sorted(component)) + ":\n  " + "\n  ".join(edges))
    return "\n".join(lines)


def test_the_graph_sees_known_edges():
    graph = import_graph(lazy=False)
    assert "mystyle_pl.generators.formats.native" in graph["mystyle_pl.generators.formats"]
    assert "mystyle_pl.generators.mobilestylegan" in graph["mystyle_pl.generators.formats.openvino_ir"]
    # importing a module runs the __init__ of every package on its path but the importer's own parents
    assert {"mystyle_pl.generators.fileutil", "mystyle_pl.generators"} <= graph["mystyle_pl.assets"]
    assert "mystyle_pl.generators" not in graph["mystyle_pl.generators.formats.openvino_ir"]


def test_cycle_finder_finds_a_circle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [frozenset("abc")]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_module_level_import_cycles():
    graph = import_graph(lazy=False)
    found = cycles(graph)
    assert not found, _describe(found, graph)


def test_no_import_cycles():
    graph = import_graph(lazy=True)
    found = cycles(graph)
    new = [c for c in found if c not in KNOWN_LAZY_CYCLES]
    assert not new, _describe(new, graph)


@pytest.mark.parametrize("package", ["generators"])
def test_leftmost_packages_import_nothing_to_their_right(package):
    """``generators`` imports nothing from the rest of the package (DESIGN.md)."""
    graph = import_graph(lazy=True)
    prefix = f"{PACKAGE}.{package}"
    outside = sorted(
        f"{a} -> {b}"
        for a, targets in graph.items()
        if a == prefix or a.startswith(prefix + ".")
        for b in targets
        if not (b == prefix or b.startswith(prefix + ".")) and b != PACKAGE
    )
    assert not outside, "\n".join(outside)


def _is_package_import(node: ast.Import | ast.ImportFrom) -> bool:
    if isinstance(node, ast.ImportFrom):
        return bool(node.level) or node.module == PACKAGE or (node.module or "").startswith(PACKAGE + ".")
    return any(a.name == PACKAGE or a.name.startswith(PACKAGE + ".") for a in node.names)


def unexplained_lazy_imports(root: Path = PACKAGE_ROOT) -> list[str]:
    """``file:line: import`` for every import of the package's own modules inside a function (at any
    depth) without a ``# ... lazy ...`` comment on its line or within the two lines above."""
    found = []
    for path in sorted(root.rglob("*.py")):
        text = path.read_text()
        lines = text.splitlines()

        def visit(node: ast.AST, in_function: bool) -> None:
            for child in ast.iter_child_nodes(node):
                if in_function and isinstance(child, (ast.Import, ast.ImportFrom)) and _is_package_import(child):
                    first = max(0, child.lineno - 1 - LAZY_COMMENT_LINES_ABOVE)
                    near = lines[first : child.end_lineno]
                    comments = [line.split("#", 1)[1] for line in near if "#" in line]
                    if not any(LAZY_WORD in c.lower() for c in comments):
                        where = path.relative_to(root.parent)
                        found.append(f"{where}:{child.lineno}: {lines[child.lineno - 1].strip()}")
                inside = in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef))
                visit(child, inside)

        visit(ast.parse(text, filename=str(path)), False)
    return found


def test_lazy_import_finder_sees_an_unexplained_import(tmp_path):
    package = tmp_path / PACKAGE
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "a.py").write_text(
        "from . import b  # at the top: fine\n"
        "def f():\n"
        "    from .b import x\n"
        "    # lazy: the reason\n"
        "    from .b import y\n"
        "    import mystyle_pl.b  # lazy: on the line\n"
        "    import json\n"
        "    x = 1\n"
        "    from . import c\n"
        "    # an unrelated comment\n"
        "    from mystyle_pl.b import z\n"
    )
    assert unexplained_lazy_imports(package) == [
        f"{PACKAGE}/a.py:3: from .b import x",
        f"{PACKAGE}/a.py:9: from . import c",
        f"{PACKAGE}/a.py:11: from mystyle_pl.b import z",
    ]


def test_function_level_imports_say_why():
    """The top of a file shows what it depends on: a package import inside a function is there for a reason
    (start-up time of ``mystyle-pl --help``, an optional dependency) that a ``# lazy: ...`` comment states;
    otherwise it belongs at the top of the module."""
    found = unexplained_lazy_imports()
    assert not found, "move these imports to the top of their module, or say why they are lazy:\n" + "\n".join(found)
