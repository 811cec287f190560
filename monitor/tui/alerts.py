"""Alerts: an agent crossing a threshold fires one alert, which clears when the agent
leaves that state. Pure: the app rings the bell and sends the desktop notification.

The thresholds are the settings' ``[thresholds.*]`` (a status, a call state or an online
state held too long). A threshold only marks a row; an alert is the moment it is crossed,
told once: in the alert list, with a bell and, where the terminal shows them, a desktop
notification. A new stay in the same state that runs over is a new alert.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace

from monitor.tui.model import CALL_WORDS, Limit, status_words
from monitor.tui.text import safe_text

NOTIFIERS = ("osc9", "osc777")


@dataclass(frozen=True)
class Alert:
    """An agent over a threshold: since ``since + limit``, until ``cleared``."""

    user_id: str
    kind: str
    """``status``, ``call`` or ``online``."""
    state: str
    limit: float
    since: float
    """When the agent entered the state (epoch seconds)."""
    cleared: float | None = None

    @property
    def fired(self) -> float:
        """When the threshold was crossed."""
        return self.since + self.limit

    def what(self, labels: Mapping[str, str] | None = None) -> str:
        """``after call work over 2:00``: the state and its limit, in words."""
        if self.kind == "call":
            state = CALL_WORDS.get(self.state, self.state)
        elif self.kind == "status":
            state = status_words(self.state, labels)
        else:
            state = self.state
        return f"{state} over {_clock(self.limit)}"


def _clock(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


class AlertBook:
    """The alerts now active and those cleared lately."""

    def __init__(self, cleared_kept: int = 200) -> None:
        self.active: dict[tuple[str, str, str, float], Alert] = {}
        self.cleared: deque[Alert] = deque(maxlen=cleared_kept)
        self.version = 0
        """Bumped whenever an alert fires or clears."""

    def update(self, breaching: Iterable[tuple[str, Limit]], now: float
               ) -> tuple[list[Alert], list[Alert]]:
        """Take every (userId, limit) over its threshold now; return the alerts that
        fired and those that cleared since the last call."""
        current: dict[tuple[str, str, str, float], float] = {}
        for user_id, (kind, state, since, limit) in breaching:
            current[(user_id, kind, state, since)] = limit
        fired = []
        for key, limit in current.items():
            if key not in self.active:
                alert = self.active[key] = Alert(key[0], key[1], key[2], limit, key[3])
                fired.append(alert)
        cleared = []
        for key in [k for k in self.active if k not in current]:
            alert = replace(self.active.pop(key), cleared=now)
            self.cleared.append(alert)
            cleared.append(alert)
        if fired or cleared:
            self.version += 1
        return fired, cleared

    def listed(self) -> list[Alert]:
        """Active alerts, latest first, then the cleared ones, latest cleared first."""
        active = sorted(self.active.values(), key=lambda a: a.fired, reverse=True)
        return active + list(reversed(self.cleared))


def pick_notifier(setting: str, environ: Mapping[str, str] | None = None) -> str | None:
    """The escape sequence family for desktop notifications (``osc9`` or ``osc777``),
    or ``None``. ``auto`` picks one only for terminals known to show it."""
    if setting == "off":
        return None
    if setting in NOTIFIERS:
        return setting
    env = os.environ if environ is None else environ
    program = env.get("TERM_PROGRAM", "")
    term = env.get("TERM", "")
    if program in ("iTerm.app", "WezTerm", "ghostty") or term == "xterm-kitty":
        return "osc9"
    if term.startswith(("foot", "rxvt")):
        return "osc777"
    return None


def notification(notifier: str, title: str, body: str) -> str:
    """The escape sequence that asks the terminal for a desktop notification. Text from
    the hub is made safe first: no control character can end the sequence early or
    start another, and ``;`` cannot split OSC 777's fields."""
    title, body = safe_text(title), safe_text(body)
    if notifier == "osc777":
        return f"\x1b]777;notify;{title.replace(';', ',')};{body.replace(';', ',')}\x07"
    return f"\x1b]9;{title}: {body}\x07"
