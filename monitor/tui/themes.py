"""Themes as files: TOML in ``themes/`` and the user config dir, validated into Textual themes.

A theme file holds Textual's base colours and this app's state colours::

    name = "monitor-dark"
    dark = true
    primary = "#3d8fd6"
    background = "#14181f"
    # secondary, accent, warning, error, success, foreground, surface, panel, boost: optional
    ansi = false                  # true: colours are ansi_* names (16-colour terminals)

    [states]                      # optional; each falls back to a base colour
    online = "#4ebf71"
    breach = "#e5534b"

    [variables]                   # optional: any other Textual theme variable
    footer-key-foreground = "#3d8fd6"

State colours become theme variables named ``state-<name>`` (``$state-online`` in CSS).
A file that does not validate is reported and skipped; it never stops the app.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.color import Color as RichColor
from textual.color import Color, ColorParseError
from textual.theme import Theme

from monitor.config import user_config_dir
from monitor.tui.settings import read_toml

# State -> the base colour of the theme it falls back to.
STATE_FALLBACKS: dict[str, str] = {
    "online": "success",
    "offline": "foreground-darken-3",
    "unknown": "foreground-darken-2",
    "available": "success",
    "away": "warning",
    "ringing": "accent",
    "talking": "primary",
    "idle": "foreground-darken-2",
    "breach": "error",
    "stale": "warning",
}
STATES = tuple(STATE_FALLBACKS)
BASE_COLOURS = ("primary", "secondary", "accent", "warning", "error", "success",
                "foreground", "background", "surface", "panel", "boost")
_KNOWN_KEYS = {"name", "dark", "ansi", "luminosity_spread", "text_alpha", "states",
               "variables", *BASE_COLOURS}


class ThemeError(Exception):
    """A theme file that cannot be used; ``str()`` names the file and the problem."""


def shipped_themes_dir() -> Path:
    """The shipped theme files: the ``themes/`` folder, installed as ``monitor.themes``."""
    # monitor.themes is a namespace package (theme files only): its folder is in its spec.
    spec = importlib.util.find_spec("monitor.themes")
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    if locations:
        return Path(locations[0])
    return Path(__file__).resolve().parents[2] / "themes"  # a source tree, not installed


def user_themes_dir() -> Path:
    """Where a user's own theme files go."""
    return user_config_dir() / "themes"


def _colour(value: object, where: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ThemeError(f"{where}: expected a colour string, got {value!r}")
    try:
        Color.parse(value.strip())
    except ColorParseError:
        raise ThemeError(f"{where}: not a colour: {value!r}") from None
    return value.strip()


def parse_theme(data: Mapping[str, Any], source: str) -> Theme:
    """Validate a parsed theme file into a Textual theme; raise :class:`ThemeError`."""
    unknown = sorted(set(data) - _KNOWN_KEYS)
    if unknown:
        raise ThemeError(f"{source}: {unknown[0]}: unknown key")
    name = data.get("name")
    if not isinstance(name, str) or not name.strip() or any(c.isspace() for c in name):
        raise ThemeError(f"{source}: name: expected a name without spaces, got {name!r}")
    if "primary" not in data:
        raise ThemeError(f"{source}: primary: required")
    base: dict[str, Any] = {key: _colour(data[key], f"{source}: {key}")
                            for key in BASE_COLOURS if key in data}
    flags: dict[str, Any] = {}
    for key in ("dark", "ansi"):
        if key in data:
            if not isinstance(data[key], bool):
                raise ThemeError(f"{source}: {key}: expected true or false")
            flags[key] = data[key]
    for key in ("luminosity_spread", "text_alpha"):
        if key in data:
            value = data[key]
            if isinstance(value, bool) or not isinstance(value, int | float) \
                    or not 0 <= value <= 1:
                raise ThemeError(f"{source}: {key}: expected a number from 0 to 1")
            flags[key] = float(value)
    variables: dict[str, str] = {}
    extra = data.get("variables", {})
    if not isinstance(extra, dict):
        raise ThemeError(f"{source}: variables: expected a table")
    for key, value in extra.items():
        where = f"{source}: variables.{key}"
        if key.endswith("text-style"):  # the one kind of variable that is not a colour
            if not isinstance(value, str) or not value.strip():
                raise ThemeError(f"{where}: expected a text style such as \"bold\"")
            variables[key] = value.strip()
        else:
            variables[key] = _colour(value, where)
    states = data.get("states", {})
    if not isinstance(states, dict):
        raise ThemeError(f"{source}: states: expected a table")
    for key, value in states.items():
        if key not in STATE_FALLBACKS:
            raise ThemeError(f"{source}: states.{key}: unknown state "
                             f"(known: {', '.join(STATES)})")
        variables[f"state-{key}"] = _colour(value, f"{source}: states.{key}")
    theme = Theme(name=name.strip(), variables=variables, **base, **flags)
    try:
        theme.to_color_system().generate()
    except (ColorParseError, ValueError) as exc:
        raise ThemeError(f"{source}: {exc}") from None
    return theme


def load_theme_file(path: Path) -> Theme:
    """One theme file; raise :class:`ThemeError` naming the file."""
    return parse_theme(read_toml(path, ThemeError), str(path))


@dataclass(frozen=True)
class LoadedThemes:
    """The themes that validated, by name, and one line per file that did not."""

    themes: dict[str, Theme]
    errors: list[str]


def load_themes(dirs: Iterable[Path] | None = None) -> LoadedThemes:
    """Every ``*.toml`` in ``dirs`` (later folders override earlier ones by name)."""
    if dirs is None:
        dirs = (shipped_themes_dir(), user_themes_dir())
    themes: dict[str, Theme] = {}
    errors: list[str] = []
    for folder in dirs:
        if not folder.is_dir():
            continue
        for path in sorted(folder.glob("*.toml")):
            try:
                theme = load_theme_file(path)
            except ThemeError as exc:
                errors.append(str(exc))
                continue
            themes[theme.name] = theme
    return LoadedThemes(themes, errors)


def state_colours(theme: Theme) -> dict[str, str]:
    """The colour of every state in ``theme``: its own, or the base colour it falls back to.

    Works for any Textual theme, including built-in ones that know nothing of states.
    """
    generated = theme.to_color_system().generate()
    merged = {**generated, **theme.variables}
    return {state: merged.get(f"state-{state}") or generated[fallback]
            for state, fallback in STATE_FALLBACKS.items()}


def rich_colour(colour: str) -> RichColor:
    """A theme colour (hex, name or ``ansi_*``) as a Rich colour, for styled table cells."""
    return Color.parse(colour).rich_color
