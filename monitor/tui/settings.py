"""The monitor's settings: ``monitor.toml`` in the user config dir, then flags.

Example::

    url = "ws://127.0.0.1:6899/"
    token_file = "~/.config/monitor/agent.token"
    theme = "monitor-dark"
    statuses = ["available", "break", "lunch", "after_call_work", "meeting"]
    available_status = "available"
    columns = ["name", "online", "status", "status_time", "call", "call_time", "last_change"]

    [thresholds.status]
    break = "15m"
    after_call_work = "2m"

    [thresholds.call]
    Ringing = "20s"
"""

from __future__ import annotations

import dataclasses
import os
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from monitor.config import ConfigError, user_config_dir
from monitor.protocol import is_attribute_name
from monitor.tui.model import (
    BUILTIN_COLUMNS,
    DEFAULT_COLUMNS,
    DEFAULT_GROUP_ATTRIBUTE,
    DEFAULT_STATUS_ATTRIBUTE,
    Thresholds,
)

SETTINGS_FILE_NAME = "monitor.toml"
TOKEN_ENV = "MONITOR_TOKEN"
DEFAULT_URL = "ws://127.0.0.1:6899/"
DEFAULT_STATUSES = ("available", "break", "lunch", "after_call_work", "meeting", "training")
DEFAULT_THRESHOLDS = Thresholds(status={"break": 900.0, "after_call_work": 120.0},
                                call={"Ringing": 20.0})
NOTIFICATIONS = ("auto", "osc9", "osc777", "off")


@dataclass(frozen=True)
class Settings:
    """What the monitor reads from ``monitor.toml`` (every key optional)."""

    url: str = DEFAULT_URL
    token_file: str = ""
    api_url: str = ""
    """The hub's REST API, for the day's history and reports (default: the host of
    ``url``, port 6900)."""
    rest_token_file: str = ""
    """A REST token for the history and reports (else ``$MONITOR_REST_TOKEN``); without
    one, the agent detail shows what this monitor saw and the Today screen says how."""
    theme: str = "monitor-dark"
    read_only: bool = False
    status_attribute: str = DEFAULT_STATUS_ATTRIBUTE
    statuses: tuple[str, ...] = DEFAULT_STATUSES
    available_status: str = "available"
    after_call_status: str = "after_call_work"
    """The status of after-call work (the wallboard counts it apart from breaks)."""
    status_labels: Mapping[str, str] = field(default_factory=dict)
    """How a status reads on screen (default: its name, with spaces for underscores)."""
    columns: tuple[str, ...] = DEFAULT_COLUMNS
    """Built-in columns shown, left to right; custom attributes follow."""
    group_attribute: str = DEFAULT_GROUP_ATTRIBUTE
    """The attribute agents are grouped by (a team, a queue, a skill)."""
    group_by: bool = True
    """Start with the grid grouped (``g`` switches)."""
    not_agents: tuple[str, ...] = ("supervisor",)
    """User ids and roles (a ``role`` attribute, or the role claim of your own token) of
    users who are shown but not counted in any total."""
    alert_bell: bool = True
    desktop_notifications: str = "auto"
    """``auto`` (where the terminal is known to show them), ``osc9``, ``osc777``, ``off``."""
    hidden_attributes: tuple[str, ...] = ()
    """Custom attributes never given a column."""
    thresholds: Thresholds = field(default_factory=lambda: DEFAULT_THRESHOLDS)
    history_minutes: int = 10
    refresh_per_second: float = 4.0
    event_log_size: int = 200
    source: str = "<defaults>"


def settings_path() -> Path:
    """Where ``monitor.toml`` lives."""
    return user_config_dir() / SETTINGS_FILE_NAME


_DURATION_RE = re.compile(r"(?:(\d+(?:\.\d+)?)h)?(?:(\d+(?:\.\d+)?)m)?(?:(\d+(?:\.\d+)?)s?)?")


def parse_duration(value: object, where: str) -> float:
    """Seconds from a number or a string such as ``"90"``, ``"20s"``, ``"15m"``, ``"1h30m"``."""
    if isinstance(value, bool):
        raise ConfigError(f"{where}: expected a duration, got {value!r}")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str) and value.strip():
        match = _DURATION_RE.fullmatch(value.strip().lower().replace(" ", ""))
        if match is None or not any(match.groups()):
            raise ConfigError(f"{where}: expected a duration like 20s, 15m or 1h30m, "
                              f"got {value!r}")
        hours, minutes, secs = (float(g) if g else 0.0 for g in match.groups())
        seconds = hours * 3600 + minutes * 60 + secs
    else:
        raise ConfigError(f"{where}: expected a duration, got {value!r}")
    if seconds <= 0:
        raise ConfigError(f"{where}: must be positive, got {value!r}")
    return seconds


def _string(value: object, where: str) -> str:
    if not isinstance(value, str):
        raise ConfigError(f"{where}: expected a string, got {value!r}")
    return value


def _strings(value: object, where: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise ConfigError(f"{where}: expected a list of non-empty strings")
    return tuple(dict.fromkeys(value))


def _thresholds(raw: object, source: str) -> Thresholds:
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: thresholds: expected a table")
    tables: dict[str, dict[str, float]] = {"status": {}, "call": {}, "online": {}}
    for kind, limits in raw.items():
        if kind not in tables:
            raise ConfigError(f"{source}: thresholds.{kind}: unknown (known: status, call, "
                              "online)")
        if not isinstance(limits, dict):
            raise ConfigError(f"{source}: thresholds.{kind}: expected a table")
        for state, limit in limits.items():
            tables[kind][state] = parse_duration(limit, f"{source}: thresholds.{kind}.{state}")
    return Thresholds(**tables)


def parse_settings(data: Mapping[str, Any], source: str) -> Settings:
    """Build :class:`Settings` from a parsed ``monitor.toml``."""
    changes: dict[str, Any] = {"source": source}
    for key, value in data.items():
        where = f"{source}: {key}"
        if key in ("url", "token_file", "theme", "status_attribute", "available_status",
                   "after_call_status", "api_url", "rest_token_file"):
            changes[key] = _string(value, where)
        elif key == "group_attribute":
            changes[key] = _string(value, where)
            if not is_attribute_name(value):
                raise ConfigError(f"{where}: not a valid attribute name: {value!r}")
        elif key == "desktop_notifications":
            if value not in NOTIFICATIONS:
                raise ConfigError(f"{where}: expected one of {', '.join(NOTIFICATIONS)}, "
                                  f"got {value!r}")
            changes[key] = value
        elif key == "status_labels":
            if not isinstance(value, dict) or not all(
                    isinstance(v, str) and v for v in value.values()):
                raise ConfigError(f"{where}: expected a table of status = \"label\"")
            changes[key] = dict(value)
        elif key in ("read_only", "group_by", "alert_bell"):
            if not isinstance(value, bool):
                raise ConfigError(f"{where}: expected true or false, got {value!r}")
            changes[key] = value
        elif key in ("statuses", "hidden_attributes", "not_agents"):
            changes[key] = _strings(value, where)
        elif key == "columns":
            columns = _strings(value, where)
            unknown = [c for c in columns if c not in BUILTIN_COLUMNS]
            if unknown:
                raise ConfigError(f"{where}: unknown column {unknown[0]!r} "
                                  f"(known: {', '.join(BUILTIN_COLUMNS)})")
            if "name" not in columns:
                columns = ("name", *columns)
            changes[key] = columns
        elif key == "thresholds":
            changes[key] = _thresholds(value, source)
        elif key in ("history_minutes", "event_log_size"):
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ConfigError(f"{where}: expected a positive integer, got {value!r}")
            changes[key] = value
        elif key == "refresh_per_second":
            if isinstance(value, bool) or not isinstance(value, int | float) \
                    or not 0.5 <= value <= 30:
                raise ConfigError(f"{where}: expected a number from 0.5 to 30, got {value!r}")
            changes[key] = float(value)
        else:
            raise ConfigError(f"{where}: unknown setting")
    settings = dataclasses.replace(Settings(), **changes)
    if not is_attribute_name(settings.status_attribute):
        raise ConfigError(f"{source}: status_attribute: not a valid attribute name: "
                          f"{settings.status_attribute!r}")
    if not settings.statuses:
        raise ConfigError(f"{source}: statuses: expected at least one status")
    return settings


def read_toml(path: Path, error: Callable[[str], Exception]) -> dict[str, Any]:
    """A TOML file's data; any failure raised as ``error("<path>: <problem>")``."""
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise error(f"{path}: cannot read: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise error(f"{path}: not UTF-8 text") from None
    except tomllib.TOMLDecodeError as exc:
        raise error(f"{path}: invalid TOML: {exc}") from None


def load_settings(path: Path | None = None, **flags: Any) -> Settings:
    """The settings file (``path`` or the user config dir's, if there), then ``flags``.

    Flags whose value is ``None`` are skipped.
    """
    path = path or settings_path()
    settings = Settings()
    if path.is_file():
        settings = parse_settings(read_toml(path, ConfigError), str(path))
    overrides = {k: v for k, v in flags.items() if v is not None}
    return dataclasses.replace(settings, **overrides) if overrides else settings


def read_token(token_file: str | None, environ: Mapping[str, str] | None = None) -> str:
    """The access token: from ``token_file``, else ``$MONITOR_TOKEN``.

    It never comes from the command line itself, where other users could read it.
    """
    environ = os.environ if environ is None else environ
    if token_file:
        path = Path(token_file).expanduser()
        try:
            token = path.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ConfigError(f"{path}: cannot read the token: {exc.strerror}") from None
        if not token:
            raise ConfigError(f"{path}: the token file is empty")
        return token
    token = environ.get(TOKEN_ENV, "").strip()
    if not token:
        raise ConfigError(f"no access token: give --token-file FILE, set {TOKEN_ENV}, "
                          f"or set token_file in {settings_path()}")
    return token
