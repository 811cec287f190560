"""The layers of ``monitor/``, checked over its import graph (every import counts: at the
top of a module, inside a function, or for type checking only).

- no import loops;
- ``monitor.cli`` is the top of the house: nothing imports it;
- the hub's pure core (state, calls, the vocabulary below it) imports nothing above it;
- the hub's edges (WebSocket endpoint, REST API, call service, cluster) never import the
  server: they are given a ``HubPort``;
- the hub knows nothing of the apps (monitor, SSH door, demo, web door, client SDK), and
  the client SDK nothing of the hub;
- nothing reaches into Textual's private modules.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "monitor"


def _modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(ROOT).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path
    return found


MODULES = _modules()


def _imported(module: str, node: ast.Import | ast.ImportFrom) -> Iterator[str]:
    """The names an import statement imports, made absolute."""
    if isinstance(node, ast.Import):
        yield from (alias.name for alias in node.names)
        return
    base = node.module or ""
    if node.level:
        package = module.split(".")
        if MODULES[module].name != "__init__.py":
            package = package[:-1]
        package = package[:len(package) - (node.level - 1)]
        base = ".".join([*package, base] if base else package)
    for alias in node.names:
        yield f"{base}.{alias.name}"


def _owner(name: str) -> str | None:
    """The module of ``monitor`` that ``name`` is, or is in."""
    while name:
        if name in MODULES:
            return name
        name = name.rpartition(".")[0]
    return None


def _graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {name: set() for name in MODULES}
    for name, path in MODULES.items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import | ast.ImportFrom):
                for imported in _imported(name, node):
                    owner = _owner(imported)
                    # A module's own package (its __init__) does not count.
                    if owner and owner != name and not name.startswith(owner + "."):
                        graph[name].add(owner)
    return graph


GRAPH = _graph()


def _loops() -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    loops: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(GRAPH[v]):
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
            if len(component) > 1:
                loops.append(sorted(component))

    for v in sorted(GRAPH):
        if v not in index:
            visit(v)
    return loops


def _reaches(module: str) -> set[str]:
    """Every module ``module`` imports, directly or not."""
    seen: set[str] = set()
    todo = [module]
    while todo:
        for w in GRAPH[todo.pop()]:
            if w not in seen:
                seen.add(w)
                todo.append(w)
    return seen


def test_the_graph_sees_the_package() -> None:
    assert {"monitor.cli", "monitor.hub.state", "monitor.hub.server"} <= set(MODULES)
    assert "monitor.hub.state" in GRAPH["monitor.hub.server"]


def test_no_import_loops() -> None:
    assert _loops() == []


def test_nothing_imports_the_top_level_command() -> None:
    importers = {m for m, targets in GRAPH.items() if "monitor.cli" in targets}
    # Entry points of their own: `python -m monitor`, and the door's child processes.
    assert importers <= {"monitor.__main__", "monitor.ssh.child", "monitor.web.child"}


CORE = ["monitor.protocol", "monitor.tokens", "monitor.hub.state", "monitor.hub.calls",
        "monitor.hub.supervision", "monitor.hub.history"]


@pytest.mark.parametrize("module", CORE)
def test_the_core_imports_only_the_vocabulary(module: str) -> None:
    allowed = {"monitor", "monitor.protocol", "monitor.tokens", "monitor.hub.state",
               "monitor.hub.calls", "monitor.hub.supervision", "monitor.hub.history"}
    assert _reaches(module) <= allowed


@pytest.mark.parametrize("edge", ["monitor.hub.ws", "monitor.hub.rest",
                                  "monitor.hub.callservice", "monitor.hub.supervisors",
                                  "monitor.hub.pipeline", "monitor.hub.cluster.node"])
def test_the_edges_do_not_import_the_server(edge: str) -> None:
    assert "monitor.hub.server" not in _reaches(edge)


APPS = ("monitor.tui", "monitor.ssh", "monitor.demo", "monitor.web", "monitor.client")


def test_the_hub_knows_nothing_of_the_apps() -> None:
    for module in MODULES:
        if module.startswith("monitor.hub"):
            reached = _reaches(module)
            assert not [m for m in reached if m.startswith(APPS)], module


def test_the_client_sdk_knows_nothing_of_the_hub() -> None:
    for module in MODULES:
        if module.startswith("monitor.client"):
            assert not [m for m in _reaches(module) if m.startswith("monitor.hub")], module


def test_no_private_textual_module_is_imported() -> None:
    offenders = []
    for name, path in MODULES.items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import | ast.ImportFrom):
                for imported in _imported(name, node):
                    if imported.startswith("textual.") and any(
                            part.startswith("_") for part in imported.split(".")[1:]):
                        offenders.append(f"{name}: {imported}")
    assert offenders == []
