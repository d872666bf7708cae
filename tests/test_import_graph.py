"""The package's import graph, read statically from the source with ``ast``, has no cycle.

Every ``import fcm…``, ``from fcm… import …`` and relative import in every module under ``fcm/`` counts, wherever it
stands (a function-level import that only defers a cycle is still one); imports under ``if TYPE_CHECKING:`` do not.
``from fcm.x import y`` is an edge to ``fcm.x.y`` where that is a module, else to ``fcm.x``; ``import fcm.x.y`` is an
edge to ``fcm.x.y``. Importing ``fcm.x.y`` first runs ``fcm/x/__init__.py``, so it is an edge to the package
``fcm.x`` as well — unless the importer lies inside ``fcm.x``: a package is always initialised (or being initialised)
before its own submodules run, so for them that implicit step does nothing.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = "fcm"
ROOT = Path(__file__).resolve().parents[1] / PACKAGE


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(ROOT.rglob("*.py"))}


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(tree: ast.AST) -> list[ast.Import | ast.ImportFrom]:
    """Every import statement in ``tree``, at any depth, except those in the body of an ``if TYPE_CHECKING:``."""
    found: list[ast.Import | ast.ImportFrom] = []

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.Import | ast.ImportFrom):
            found.append(node)
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            for child in node.orelse:  # the else branch runs
                visit(child)
            return
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return found


def _resolve(name: str, modules: dict[str, Path]) -> str | None:
    """``name`` or its nearest enclosing package that is a module of ours."""
    while name and name not in modules:
        name = name.rpartition(".")[0]
    return name or None


def import_graph() -> dict[str, set[str]]:
    modules = _modules()
    graph: dict[str, set[str]] = {m: set() for m in modules}
    tree_of: dict[str, ast.AST] = {}
    for mod, path in modules.items():
        is_pkg = path.name == "__init__.py"
        tree_of[mod] = tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        for node in _imports(tree):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names if a.name == PACKAGE or a.name.startswith(PACKAGE + ".")]
            else:
                if node.level:
                    base = mod.split(".") if is_pkg else mod.split(".")[:-1]
                    base = base[: len(base) - (node.level - 1)]
                    source = ".".join(base + ([node.module] if node.module else []))
                else:
                    source = node.module or ""
                if source != PACKAGE and not source.startswith(PACKAGE + "."):
                    continue
                for alias in node.names:
                    sub = f"{source}.{alias.name}"
                    targets.append(sub if sub in modules else source)
            ancestors = {".".join(mod.split(".")[:i]) for i in range(1, mod.count(".") + (2 if is_pkg else 1))}
            for target in targets:
                resolved = _resolve(target, modules)
                if resolved is None:
                    continue
                parts = resolved.split(".")
                # the packages initialised on the way to the target, then the target itself
                implicit = {".".join(parts[:i]) for i in range(1, len(parts))} - ancestors
                graph[mod] |= {m for m in implicit if m in modules} | {resolved}
            for target in _dynamic_targets(tree_of[mod], mod, modules):  # importlib.import_module(f"fcm.x.{name}")
                graph[mod].add(target)
            graph[mod].discard(mod)
    return graph


def _dynamic_targets(tree: ast.AST, mod: str, modules: dict[str, Path]) -> set[str]:
    """Modules an ``importlib.import_module(...)`` call in ``tree`` may load: a constant name, or every module under
    the constant prefix of an f-string (``f"{__name__}.{m}"`` inside a package: all of its submodules)."""
    found: set[str] = set()
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Call) and node.args):
            continue
        func = node.func
        name = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""
        if name != "import_module":
            continue
        arg = node.args[0]
        prefix = ""
        if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
            prefix = arg.value
        elif isinstance(arg, ast.JoinedStr):
            for part in arg.values:
                if isinstance(part, ast.Constant):
                    prefix += str(part.value)
                elif isinstance(part.value, ast.Name) and part.value.id == "__name__":
                    prefix += mod
                else:
                    break
        if prefix == PACKAGE or prefix.startswith(PACKAGE + "."):
            found |= {
                m
                for m in modules
                if m == prefix or (prefix.endswith(".") and m.startswith(prefix) and not m.endswith(".__main__"))
            }  # a __main__ module is run, never imported
    return found


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of ``graph`` as ``[a, b, …, a]``, or None."""
    white, grey, black = 0, 1, 2
    color = dict.fromkeys(graph, white)
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        color[node] = grey
        stack.append(node)
        for nxt in sorted(graph[node]):
            if color[nxt] == grey:
                return stack[stack.index(nxt) :] + [nxt]
            if color[nxt] == white and (cycle := visit(nxt)) is not None:
                return cycle
        stack.pop()
        color[node] = black
        return None

    for node in sorted(graph):
        if color[node] == white and (cycle := visit(node)) is not None:
            return cycle
    return None


def test_the_package_has_no_import_cycle() -> None:
    graph = import_graph()
    assert len(graph) > 50, "the scan found too few modules: is ROOT the package?"
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " → ".join(cycle or [])


def test_the_scan_sees_deferred_and_relative_imports(tmp_path: Path, monkeypatch) -> None:
    """The checker itself: a cycle made only by a function-level import, or by a relative import, is found; one
    made only under ``if TYPE_CHECKING:`` is not."""
    pkg = tmp_path / PACKAGE
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "a.py").write_text("def f():\n    from fcm.b import g\n")
    (pkg / "b.py").write_text("from . import a\n")
    (pkg / "sub" / "c.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from fcm.sub.d import x\n"
    )
    (pkg / "sub" / "d.py").write_text("from .c import y\n")
    (pkg / "plug").mkdir()
    (pkg / "plug" / "__init__.py").write_text(
        "import importlib\nfor m in ('p',):\n    importlib.import_module(f'{__name__}.{m}')\n"
    )
    (pkg / "plug" / "p.py").write_text("import fcm.plug\n")
    monkeypatch.setitem(globals(), "ROOT", pkg)
    graph = import_graph()
    assert graph["fcm.a"] == {"fcm.b"}
    assert graph["fcm.b"] == {"fcm.a"}
    assert graph["fcm.sub.c"] == set()
    assert graph["fcm.sub.d"] == {"fcm.sub.c"}
    assert graph["fcm.plug"] == {"fcm.plug.p"}  # a registry filling itself by import_module is seen
    assert graph["fcm.plug.p"] == {"fcm.plug"}
    del graph["fcm.plug"], graph["fcm.plug.p"]
    assert find_cycle(graph) in (["fcm.a", "fcm.b", "fcm.a"], ["fcm.b", "fcm.a", "fcm.b"])
    del graph["fcm.a"], graph["fcm.b"]
    assert find_cycle(graph) is None
