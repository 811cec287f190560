"""The monitor uses Textual through its public API only (a minor Textual release must not
break it silently): no ``textual._*`` module, no private member of a Textual class.

Walks the source of ``monitor/`` (every package, not only the TUI): imports, classes
built on Textual's, and attribute access of names private to Textual's classes."""

from __future__ import annotations

import ast
import importlib
import inspect
import pkgutil
import sys
from functools import cache
from pathlib import Path

import textual

MONITOR = Path(__file__).resolve().parents[2] / "monitor"
OLD_GRID_PRIVATES = frozenset({
    "_data", "_row_locations", "_column_locations", "_row_renderable_cache",
    "_cell_render_cache", "_row_render_cache", "_line_cache", "_render_line_in_row",
    "_render_line", "_update_count", "_pseudo_class_state", "_header_row_key",
    "_labelled_row_exists", "_show_hover_cursor", "_set_hover_cursor",
    "_get_styles_to_render_cell", "_should_highlight", "_on_mouse_scroll_down",
    "_on_mouse_scroll_up", "_on_resize", "_on_click", "_types", "_compositor",
    "_background_screens", "_notifications"})
"""What the agent grid used of DataTable's (and the app's) insides before it was a
widget of its own, named so that none of it can come back."""


def sources() -> list[tuple[Path, ast.Module]]:
    return [(path, ast.parse(path.read_text(encoding="utf-8"), str(path)))
            for path in sorted(MONITOR.rglob("*.py"))]


def private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


@cache
def textual_classes() -> dict[str, type]:
    """Every class of Textual's, by ``module.Name``: its public modules are imported, and
    every widget (which loads the private modules that implement them)."""
    for info in pkgutil.walk_packages(textual.__path__, "textual."):
        if any(private(part) for part in info.name.split(".")) \
                or ".demo" in info.name or "tree_sitter" in info.name:
            continue
        try:
            importlib.import_module(info.name)
        except Exception:  # optional extras (syntax highlighting...)
            continue
    widgets = importlib.import_module("textual.widgets")
    for name in widgets.__all__:
        getattr(widgets, name)
    found: dict[str, type] = {}
    for module_name, module in list(sys.modules.items()):
        if module_name == "textual" or module_name.startswith("textual."):
            for name, value in list(vars(module).items()):
                if inspect.isclass(value) and value.__module__.startswith("textual"):
                    found[f"{value.__module__}.{name}"] = value
    return found


@cache
def assigned_to_self(module_name: str) -> dict[str, frozenset[str]]:
    """Per class of a Textual module: the private names its methods set or read on
    ``self`` (instance attributes live nowhere else)."""
    try:
        path = inspect.getsourcefile(importlib.import_module(module_name))
        tree = ast.parse(Path(path or "").read_text(encoding="utf-8"))
    except (OSError, TypeError, SyntaxError, ImportError):
        return {}
    names: dict[str, frozenset[str]] = {}
    for cls in (n for n in ast.walk(tree) if isinstance(n, ast.ClassDef)):
        names[cls.name] = frozenset(
            node.attr for node in ast.walk(cls)
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
            and node.value.id == "self" and private(node.attr))
    return names


@cache
def private_members(cls: type) -> frozenset[str]:
    """The private names a Textual class and its Textual ancestors define: class
    attributes and methods, and what their methods assign to ``self``."""
    names: set[str] = set()
    for klass in cls.__mro__:
        if klass.__module__.startswith("textual"):
            names.update(n for n in vars(klass) if private(n))
            names |= assigned_to_self(klass.__module__).get(klass.__name__, frozenset())
    return frozenset(names)


@cache
def every_textual_private() -> frozenset[str]:
    names: set[str] = set()
    for cls in textual_classes().values():
        names |= private_members(cls)
    return frozenset(names)


def textual_bases(module: ast.Module) -> dict[str, type]:
    """Names bound in ``module`` to Textual classes (``from textual.x import Y``)."""
    known = textual_classes()
    bound: dict[str, type] = {}
    for node in ast.walk(module):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("textual"):
            for alias in node.names:
                cls = known.get(f"{node.module}.{alias.name}") or next(
                    (c for k, c in known.items() if k.endswith(f".{alias.name}")
                     and c.__module__.startswith(node.module or "")), None)
                if cls is not None:
                    bound[alias.asname or alias.name] = cls
    return bound


def test_no_module_of_monitor_imports_a_private_textual_module() -> None:
    found = []
    for path, module in sources():
        for node in ast.walk(module):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            found += [f"{path}:{node.lineno}: {name}" for name in names
                      if name.startswith("textual") and any(
                          private(part) for part in name.split("."))]
    assert not found, "\n".join(found)


def test_the_old_grids_datatable_internals_are_gone() -> None:
    found = []
    for path, module in sources():
        for node in ast.walk(module):
            name = node.attr if isinstance(node, ast.Attribute) else \
                node.name if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) else None
            if name in OLD_GRID_PRIVATES:
                found.append(f"{path}:{node.lineno}: {name}")
    assert not found, "\n".join(found)


def test_no_private_member_of_a_textual_class_is_used_or_overridden() -> None:
    """A class built on a Textual class neither defines nor touches (``self._x``) a
    private name of that class or its ancestors; and no code anywhere reads a name
    private to some Textual class from another object (``widget._x``)."""
    everywhere = every_textual_private()
    assert {"_data", "_compositor", "_nodes", "_render_line_in_row"} <= everywhere
    own: set[str] = set()  # private names monitor's own classes define
    for _, module in sources():
        bases = textual_bases(module)
        for cls in (n for n in ast.walk(module) if isinstance(n, ast.ClassDef)):
            if any(isinstance(b, ast.Name) and b.id in bases for b in cls.bases):
                continue
            for node in ast.walk(cls):
                if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                    own.add(node.name)
                elif isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) \
                        and node.value.id == "self":
                    own.add(node.attr)
    found = []
    for path, module in sources():
        bases = textual_bases(module)
        for cls in (n for n in ast.walk(module) if isinstance(n, ast.ClassDef)):
            textual_parents = [bases[b.id] for b in cls.bases
                               if isinstance(b, ast.Name) and b.id in bases]
            if not textual_parents:
                continue
            forbidden = frozenset().union(*(private_members(c) for c in textual_parents))
            for node in ast.walk(cls):
                name = None
                if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                    name = node.name
                elif isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) \
                        and node.value.id == "self":
                    name = node.attr
                if name is not None and name in forbidden:
                    found.append(f"{path}:{node.lineno}: {cls.name}.{name} is Textual's")
        for node in ast.walk(module):
            if isinstance(node, ast.Attribute) and private(node.attr) \
                    and not (isinstance(node.value, ast.Name)
                             and node.value.id in ("self", "cls")) \
                    and node.attr in everywhere and node.attr not in own:
                found.append(f"{path}:{node.lineno}: .{node.attr} is private to Textual")
    assert not found, "\n".join(found)
