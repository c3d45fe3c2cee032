"""Imports between st_deploy's files go one way: any cycle fails, imports inside functions included
(only those under `if TYPE_CHECKING:` are left out, as they never run)."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "st_deploy"


def module_name(path: Path) -> str:
    parts = ("st_deploy", *path.relative_to(PACKAGE).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported(path: Path, modules: set[str]) -> set[str]:
    """The package's modules that the file imports (the longest known prefix of each name)."""
    tree = ast.parse(path.read_text(), str(path))
    skipped = {id(node) for top in ast.walk(tree) if isinstance(top, ast.If) and "TYPE_CHECKING" in ast.unparse(top.test)
               for stmt in top.body for node in ast.walk(stmt)}
    me = module_name(path)
    package = me if path.name == "__init__.py" else me.rpartition(".")[0]
    names: list[str] = []
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package
                for _ in range(node.level - 1):
                    base = base.rpartition(".")[0]
                base = f"{base}.{node.module}" if node.module else base
            else:
                base = node.module or ""
            names += [base] + [f"{base}.{a.name}" for a in node.names]
    out = set()
    for name in names:
        while name and name not in modules:
            name = name.rpartition(".")[0]
        if name and name != me:
            out.add(name)
    return out


def import_graph() -> dict[str, set[str]]:
    files = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    return {m: imported(p, set(files)) for m, p in files.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan's algorithm, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found = []
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            v, edges = work[-1]
            for w in edges:
                if w not in index:
                    index[w] = low[w] = len(index)
                    stack.append(w)
                    on_stack.add(w)
                    work.append((w, iter(sorted(graph[w]))))
                    break
                if w in on_stack:
                    low[v] = min(low[v], index[w])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[v])
                if low[v] == index[v]:
                    component = []
                    while True:
                        w = stack.pop()
                        on_stack.discard(w)
                        component.append(w)
                        if w == v:
                            break
                    if len(component) > 1:
                        found.append(sorted(component))
    return found


def test_the_detector_finds_a_cycle_through_a_function_level_import(tmp_path: Path) -> None:
    # The check itself, on a graph built the same way: a -> b at the top, b -> a inside a function.
    (tmp_path / "a.py").write_text("from st_deploy import b\n")
    (tmp_path / "b.py").write_text("def f():\n    from .a import x\n")
    (tmp_path / "c.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .a import x\n")
    global PACKAGE
    real, PACKAGE = PACKAGE, tmp_path
    try:
        graph = import_graph()
    finally:
        PACKAGE = real
    assert graph == {"st_deploy.a": {"st_deploy.b"}, "st_deploy.b": {"st_deploy.a"}, "st_deploy.c": set()}
    assert cycles(graph) == [["st_deploy.a", "st_deploy.b"]]


def test_st_deploy_has_no_import_cycle() -> None:
    graph = import_graph()
    assert len(graph) > 50 and graph["st_deploy.runtime.runner"]  # the walk saw the package
    found = cycles(graph)
    assert not found, "import cycles between st_deploy's files:\n" + "\n".join(" <-> ".join(c) for c in found)
