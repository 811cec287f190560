"""The roles file: who may come in through the SSH door, and what their token grants.

Example (TOML)::

    # A team's topic is this prefix and the team's name (the demo's convention).
    topic_prefix = "team_"

    [[users]]
    name = "alice"              # the SSH user name, which is the hub userId
    role = "supervisor"         # watches her teams and every call
    teams = ["sales", "support"]
    display_name = "Alice Moreau"

    [[users]]
    name = "agent_007"
    role = "agent"              # sets his own status; it is published to his team
    team = "sales"

A supervisor subscribes to her teams' topics and ``ALL_CALL_STATUS`` and watches read-only.
An agent subscribes to nothing (the monitor shows his own status screen) and publishes
``manual_status`` and ``onlineStatus`` to his teams' topics.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from monitor.config import ConfigError
from monitor.protocol import ALL_CALL_STATUS, MAX_TOPICS, MAX_USER_ID_CHARS, is_topic_name
from monitor.tokens import AttributeGrant

SUPERVISOR = "supervisor"
AGENT = "agent"
ROLES = (SUPERVISOR, AGENT)
AGENT_ATTRIBUTES = ("manual_status", "onlineStatus")
DEFAULT_TOPIC_PREFIX = "team_"


@dataclass(frozen=True)
class Access:
    """What one user gets: the grants of the token the door mints, and the monitor's mode."""

    user_id: str
    subscribe: tuple[str, ...] = ()
    attributes: tuple[AttributeGrant, ...] = ()
    display_name: str | None = None
    read_only: bool = False


@dataclass(frozen=True)
class User:
    """One ``[[users]]`` entry."""

    name: str
    role: str
    teams: tuple[str, ...]
    display_name: str | None = None


@dataclass(frozen=True)
class Roles:
    """The parsed roles file."""

    users: dict[str, User]
    topic_prefix: str = DEFAULT_TOPIC_PREFIX
    source: str = "<roles>"

    def team_topic(self, team: str) -> str:
        """The topic a team's agents publish to."""
        return self.topic_prefix + team

    def access(self, name: str) -> Access | None:
        """What ``name`` may do, or ``None`` when the file does not know the user."""
        user = self.users.get(name)
        if user is None:
            return None
        topics = tuple(self.team_topic(t) for t in user.teams)
        if user.role == SUPERVISOR:
            return Access(user.name, subscribe=(*topics, ALL_CALL_STATUS),
                          display_name=user.display_name, read_only=True)
        grants = tuple(AttributeGrant(attribute, topic)
                       for topic in topics for attribute in AGENT_ATTRIBUTES)
        return Access(user.name, attributes=grants, display_name=user.display_name)


def valid_user_name(name: object) -> bool:
    """True for a name the hub accepts as userId (and an SSH client can type)."""
    return (isinstance(name, str) and 1 <= len(name) <= MAX_USER_ID_CHARS
            and name == name.strip() and " " not in name
            and not any(unicodedata.category(ch) in ("Cc", "Cf", "Cs") for ch in name))


def _teams(where: str, item: dict[str, Any], prefix: str) -> tuple[str, ...]:
    if "team" in item and "teams" in item:
        raise ConfigError(f"{where}: give team or teams, not both")
    raw = item.get("teams", [item["team"]] if "team" in item else [])
    if not isinstance(raw, list) or not all(isinstance(t, str) and t for t in raw):
        raise ConfigError(f"{where}.teams: expected a list of team names")
    if not raw:
        raise ConfigError(f"{where}: no team (give team = \"name\" or teams = [...])")
    if len(raw) >= MAX_TOPICS:
        raise ConfigError(f"{where}.teams: at most {MAX_TOPICS - 1} teams")
    for team in raw:
        if not is_topic_name(prefix + team):
            raise ConfigError(f"{where}.teams: {prefix + team!r} is not a valid topic name")
    return tuple(dict.fromkeys(raw))


def parse_roles(data: dict[str, Any], source: str) -> Roles:
    """Build :class:`Roles` from a parsed TOML document; errors name the file and entry."""
    unknown = sorted(set(data) - {"topic_prefix", "users"})
    if unknown:
        raise ConfigError(f"{source}: {unknown[0]}: unknown key (known: topic_prefix, users)")
    prefix = data.get("topic_prefix", DEFAULT_TOPIC_PREFIX)
    if not isinstance(prefix, str):
        raise ConfigError(f"{source}: topic_prefix: expected a string")
    raw_users = data.get("users", [])
    if not isinstance(raw_users, list):
        raise ConfigError(f"{source}: users: expected [[users]] tables")
    users: dict[str, User] = {}
    for i, item in enumerate(raw_users):
        where = f"{source}: users[{i}]"
        if not isinstance(item, dict):
            raise ConfigError(f"{where}: expected a table")
        extra = sorted(set(item) - {"name", "role", "team", "teams", "display_name"})
        if extra:
            raise ConfigError(f"{where}.{extra[0]}: unknown key "
                              "(known: display_name, name, role, team, teams)")
        name = item.get("name")
        if not valid_user_name(name):
            raise ConfigError(f"{where}.name: expected a user name of 1-{MAX_USER_ID_CHARS} "
                              f"characters without spaces, got {name!r}")
        assert isinstance(name, str)
        if name in users:
            raise ConfigError(f"{where}.name: {name!r} appears twice")
        role = item.get("role")
        if role not in ROLES:
            raise ConfigError(f"{where}.role: expected {' or '.join(ROLES)}, got {role!r}")
        display_name = item.get("display_name")
        if display_name is not None and not isinstance(display_name, str):
            raise ConfigError(f"{where}.display_name: expected a string")
        users[name] = User(name, role, _teams(where, item, prefix), display_name or None)
    return Roles(users, prefix, source)


def load_roles(path: Path) -> Roles:
    """Read and check a roles file."""
    from monitor.tui.settings import read_toml

    return parse_roles(read_toml(path, ConfigError), str(path))
