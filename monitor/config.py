"""Hub configuration: ``hub.toml`` plus ``MONITOR_*`` environment variables plus flags.

Precedence, lowest first: built-in defaults, the file, the environment, command-line flags.
The file is found from ``--config``, then ``MONITOR_CONFIG``, then ``./hub.toml``, then
the user config dir.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import json
import os
import re
import secrets
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import platformdirs

APP_NAME = "monitor"
ENV_PREFIX = "MONITOR_"
CONFIG_FILE_NAME = "hub.toml"


class ConfigError(Exception):
    """A bad setting; ``str()`` is one line naming the source, the key and the problem."""


def user_config_dir() -> Path:
    """Where the user's ``hub.toml``, ``monitor.toml`` and themes live."""
    return Path(platformdirs.user_config_dir(APP_NAME))


def user_data_dir() -> Path:
    """Default home of the hub's durable state."""
    return Path(platformdirs.user_data_dir(APP_NAME))


@dataclass(frozen=True)
class HubSettings:
    """The ``[hub]`` table. Each field is also ``MONITOR_<NAME>`` and ``--<name>``."""

    host: str = "127.0.0.1"
    ws_port: int = 6899
    api_port: int = 6900
    data_dir: str = ""
    offline_grace_ms: int = 3000
    ping_after_ms: int = 15000
    ping_timeout_extra_ms: int = 15000
    auth_timeout_ms: int = 10000
    history_size: int = 1000
    send_buffer_limit: int = 4 * 1024 * 1024
    call_no_answer_ms: int = 30000
    sqlite_synchronous: str = "normal"
    auth_rate_per_ip: int = 200
    auth_burst_per_ip: int = 1000
    # What one client can make the hub hold or do (SECURITY.md, docs/protocol.md).
    max_attributes_per_user: int = 64
    change_rate_per_connection: int = 2000
    change_burst_per_connection: int = 2000
    max_connections_per_user: int = 32
    rest_change_rate_per_key: int = 5000
    rest_change_burst_per_key: int = 5000
    rest_body_timeout_ms: int = 10000
    # A user a supervisor logged out may not log in again for this long (AUTHEN r = 11).
    logout_hold_ms: int = 60000
    log_level: str = "info"
    # History and reports (docs/protocol.md): how long the event log keeps events, and
    # the attribute whose value splits an agent's online time in the agents report.
    history_retention_days: int = 35
    status_attribute: str = "manual_status"
    # Webhooks' dead letters (docs/webhooks.md): each project keeps at most so many, and
    # none older than so many days.
    webhook_dead_letters_max: int = 10000
    webhook_dead_letters_days: int = 30
    # Many nodes: Redis holds the state and carries topic messages (docs/scaling.md).
    redis_url: str = ""
    node_lease_ms: int = 10000

    def resolved_data_dir(self) -> Path:
        """``data_dir`` or the user data dir when unset."""
        return Path(self.data_dir).expanduser() if self.data_dir else user_data_dir()


_POSITIVE = {"ws_port", "api_port", "ping_after_ms", "auth_timeout_ms", "history_size",
             "send_buffer_limit", "call_no_answer_ms", "auth_rate_per_ip", "auth_burst_per_ip",
             "node_lease_ms", "max_attributes_per_user", "change_rate_per_connection",
             "change_burst_per_connection", "max_connections_per_user",
             "rest_change_rate_per_key", "rest_change_burst_per_key", "rest_body_timeout_ms",
             "webhook_dead_letters_max", "webhook_dead_letters_days"}
_PORTS = {"ws_port", "api_port"}
LOG_LEVELS = ("debug", "info", "warning", "error")
MAX_SETTING = 2**31 - 1
SYNC_MODES = ("normal", "full")


@dataclass(frozen=True)
class ApiKey:
    """An API key of a project: tokens are signed with ``secret`` and name ``sid`` as iss."""

    sid: str
    secret: str


@dataclass(frozen=True)
class Webhook:
    """A ``[[projects.webhooks]]`` endpoint (docs/webhooks.md): every logged event of the
    project that passes the filters is POSTed to ``url``, signed with ``secret``."""

    url: str
    secret: str  # whsec_<base64>
    attributes: tuple[str, ...] = ()  # empty: every attribute
    topics: tuple[str, ...] = ()  # empty: changes whatever their topics
    max_in_flight: int = 16  # requests at once to this endpoint
    timeout_ms: int = 10000  # connect, and a whole request with its answer
    retry_base_ms: int = 1000  # the first retry's wait (at most; full jitter)
    retry_max_ms: int = 3_600_000  # no wait between attempts longer than this
    retry_for_s: int = 86_400  # then the event is dead-lettered


@dataclass(frozen=True)
class Project:
    """A tenant: its users, topics and attributes are invisible to every other project."""

    id: int
    name: str
    keys: tuple[ApiKey, ...]
    webhooks: tuple[Webhook, ...] = ()


@dataclass(frozen=True)
class Config:
    """Everything the hub and the token tool need."""

    hub: HubSettings = field(default_factory=HubSettings)
    projects: tuple[Project, ...] = ()
    source: str = "<defaults>"

    def key(self, sid: str) -> tuple[Project, ApiKey] | None:
        """The project and key with SID ``sid``."""
        for project in self.projects:
            for key in project.keys:
                if key.sid == sid:
                    return project, key
        return None

    def default_key(self) -> tuple[Project, ApiKey]:
        """The first key of the first project (what the token tool signs with)."""
        for project in self.projects:
            if project.keys:
                return project, project.keys[0]
        raise ConfigError(f"{self.source}: no project with an API key "
                          "(run `monitor config init` to make one)")


# -- parsing -----------------------------------------------------------------------


_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")
ATTRIBUTE_NAME = re.compile(r"[A-Za-z0-9_.\-]{1,64}")  # as monitor.protocol checks them


def _key(key: object) -> str:
    """A key as TOML would write it: bare when it can be, else quoted with escapes, so
    that a key holding a newline or a quote keeps the message on one readable line."""
    text = str(key)
    return text if _BARE_KEY.fullmatch(text) else json.dumps(text)


def _coerce(source: str, key: str, expected: type, value: Any) -> Any:
    """Convert ``value`` (from TOML, env or a flag) to the field's type or raise."""
    if expected is int:
        if isinstance(value, bool):
            raise ConfigError(f"{source}: {key}: expected an integer, got {value!r}")
        if isinstance(value, str):
            try:
                value = int(value.strip())
            except ValueError:
                raise ConfigError(f"{source}: {key}: expected an integer, got {value!r}") from None
        if not isinstance(value, int):
            raise ConfigError(f"{source}: {key}: expected an integer, got {value!r}")
        if value < 0 or (key in _POSITIVE and value == 0):
            bound = "positive" if key in _POSITIVE else ">= 0"
            raise ConfigError(f"{source}: {key}: must be {bound}, got {value}")
        if key in _PORTS and value > 65535:
            raise ConfigError(f"{source}: {key}: not a port number: {value}")
        if value > MAX_SETTING:  # beyond, timers and buffers overflow when the hub starts
            raise ConfigError(f"{source}: {key}: must be at most {MAX_SETTING}, got {value}")
        return value
    if not isinstance(value, str):
        raise ConfigError(f"{source}: {key}: expected a string, got {value!r}")
    if key == "sqlite_synchronous" and value.lower() not in SYNC_MODES:
        raise ConfigError(f"{source}: {key}: must be one of {', '.join(SYNC_MODES)}, "
                          f"got {value!r}")
    if key == "status_attribute" and not ATTRIBUTE_NAME.fullmatch(value):
        raise ConfigError(f"{source}: {key}: not an attribute name ([A-Za-z0-9_.-], 1-64 "
                          f"characters): {value!r}")
    if key == "log_level" and value.lower() not in LOG_LEVELS:
        raise ConfigError(f"{source}: {key}: must be one of {', '.join(LOG_LEVELS)}, got {value!r}")
    return value.lower() if key in ("log_level", "sqlite_synchronous") else value


_FIELD_TYPES = {f.name: (int if f.type in ("int", int) else str) for f in fields(HubSettings)}


def apply_overrides(settings: HubSettings, values: Mapping[str, Any], source: str) -> HubSettings:
    """``settings`` with ``values`` (name -> raw value) applied; unknown names refused."""
    changes: dict[str, Any] = {}
    for key, value in values.items():
        if key not in _FIELD_TYPES:
            raise ConfigError(f"{source}: {_key(key)}: unknown setting "
                              f"(known: {', '.join(sorted(_FIELD_TYPES))})")
        changes[key] = _coerce(source, key, _FIELD_TYPES[key], value)
    return dataclasses.replace(settings, **changes)


def env_overrides(environ: Mapping[str, str]) -> dict[str, str]:
    """The ``MONITOR_<SETTING>`` variables present in ``environ``."""
    return {name: environ[ENV_PREFIX + name.upper()] for name in _FIELD_TYPES
            if ENV_PREFIX + name.upper() in environ}


def _parse_projects(source: str, raw: object) -> tuple[Project, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise ConfigError(f"{source}: projects: expected [[projects]] tables")
    projects: list[Project] = []
    seen_ids: set[int] = set()
    seen_sids: set[str] = set()
    for i, item in enumerate(raw):
        where = f"{source}: projects[{i}]"
        if not isinstance(item, dict):
            raise ConfigError(f"{where}: expected a table")
        extra = sorted(set(item) - {"id", "name", "keys", "webhooks"})
        if extra:
            raise ConfigError(f"{where}.{_key(extra[0])}: unknown key "
                              "(known: id, keys, name, webhooks)")
        pid = item.get("id")
        if not isinstance(pid, int) or isinstance(pid, bool) or pid < 0:
            raise ConfigError(f"{where}.id: expected a non-negative integer, got {pid!r}")
        if pid in seen_ids:
            raise ConfigError(f"{where}.id: duplicate project id {pid}")
        seen_ids.add(pid)
        name = item.get("name", f"project {pid}")
        if not isinstance(name, str):
            raise ConfigError(f"{where}.name: expected a string, got {name!r}")
        keys_raw = item.get("keys", [])
        if not isinstance(keys_raw, list):
            raise ConfigError(f"{where}.keys: expected an array of {{sid, secret}} tables")
        keys: list[ApiKey] = []
        for j, key in enumerate(keys_raw):
            kwhere = f"{where}.keys[{j}]"
            if not isinstance(key, dict):
                raise ConfigError(f"{kwhere}: expected a {{sid, secret}} table")
            extra = sorted(set(key) - {"sid", "secret"})
            if extra:
                raise ConfigError(f"{kwhere}.{_key(extra[0])}: unknown key (known: secret, sid)")
            sid, secret = key.get("sid"), key.get("secret")
            if not isinstance(sid, str) or not sid:
                raise ConfigError(f"{kwhere}.sid: expected a non-empty string")
            if not isinstance(secret, str) or len(secret) < 16:
                raise ConfigError(f"{kwhere}.secret: expected a string of 16 or more characters")
            if sid in seen_sids:
                raise ConfigError(f"{kwhere}.sid: duplicate key sid {sid!r}")
            seen_sids.add(sid)
            keys.append(ApiKey(sid, secret))
        hooks = _parse_webhooks(where, item.get("webhooks", []))
        projects.append(Project(pid, name, tuple(keys), hooks))
    return tuple(projects)


_WEBHOOK_INTS = {"max_in_flight": 1, "timeout_ms": 1, "retry_base_ms": 1, "retry_max_ms": 1,
                 "retry_for_s": 0}
WEBHOOK_SECRET_PREFIX = "whsec_"


def webhook_secret_bytes(secret: str) -> bytes | None:
    """The key of a ``whsec_<base64>`` secret (16 to 64 bytes), or None if it is not one."""
    if not secret.startswith(WEBHOOK_SECRET_PREFIX):
        return None
    try:
        key = base64.b64decode(secret[len(WEBHOOK_SECRET_PREFIX):], validate=True)
    except (ValueError, binascii.Error):
        return None
    return key if 16 <= len(key) <= 64 else None


def new_webhook_secret() -> str:
    """A fresh Standard Webhooks secret: ``whsec_`` and 32 random bytes in base64."""
    return WEBHOOK_SECRET_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()


def _strings(where: str, raw: object, check: re.Pattern[str] | None) -> tuple[str, ...]:
    if not isinstance(raw, list) or not all(isinstance(x, str) and x for x in raw):
        raise ConfigError(f"{where}: expected an array of non-empty strings")
    for x in raw:
        if check is not None and not check.fullmatch(x):
            raise ConfigError(f"{where}: not an attribute name: {x!r}")
    return tuple(raw)


def _parse_webhooks(where: str, raw: object) -> tuple[Webhook, ...]:
    if not isinstance(raw, list):
        raise ConfigError(f"{where}.webhooks: expected [[projects.webhooks]] tables")
    out: list[Webhook] = []
    known = {f.name for f in fields(Webhook)}
    for j, item in enumerate(raw):
        w = f"{where}.webhooks[{j}]"
        if not isinstance(item, dict):
            raise ConfigError(f"{w}: expected a table")
        extra = sorted(set(item) - known)
        if extra:
            raise ConfigError(f"{w}.{_key(extra[0])}: unknown key "
                              f"(known: {', '.join(sorted(known))})")
        url = item.get("url")
        if not isinstance(url, str) or not re.fullmatch(r"https?://[^/?#\s@]+[^\s]*", url):
            raise ConfigError(f"{w}.url: expected an http:// or https:// URL, got {url!r}")
        if any(h.url == url for h in out):
            raise ConfigError(f"{w}.url: duplicate webhook url in this project")
        secret = item.get("secret")
        if not isinstance(secret, str) or webhook_secret_bytes(secret) is None:
            raise ConfigError(f"{w}.secret: expected whsec_ and 16-64 bytes in base64 "
                              "(run `monitor webhook secret` to make one)")
        ints = {}
        for name, low in _WEBHOOK_INTS.items():
            value = item.get(name, getattr(Webhook, name))
            if not isinstance(value, int) or isinstance(value, bool) or not \
                    low <= value <= MAX_SETTING:
                raise ConfigError(f"{w}.{name}: expected an integer from {low}, got {value!r}")
            ints[name] = value
        out.append(Webhook(url, secret,
                           _strings(f"{w}.attributes", item.get("attributes", []),
                                    ATTRIBUTE_NAME),
                           _strings(f"{w}.topics", item.get("topics", []), None), **ints))
    return tuple(out)


def check_webhooks(config: Config) -> None:
    """Webhooks read the event log: refuse a hub that would leave them silent."""
    if not any(p.webhooks for p in config.projects):
        return
    if config.hub.history_retention_days <= 0:
        raise ConfigError(f"{config.source}: projects.webhooks: need the event log "
                          "(history_retention_days > 0)")


def parse_config(data: Mapping[str, Any], source: str) -> Config:
    """Build a :class:`Config` from a parsed TOML document."""
    unknown = set(data) - {"hub", "projects"}
    if unknown:
        raise ConfigError(f"{source}: {_key(sorted(unknown)[0])}: unknown table or key")
    hub_raw = data.get("hub", {})
    if not isinstance(hub_raw, dict):
        raise ConfigError(f"{source}: hub: expected a [hub] table")
    hub = apply_overrides(HubSettings(), hub_raw, source)
    return Config(hub, _parse_projects(source, data.get("projects")), source)


def find_config_file(explicit: str | None, environ: Mapping[str, str],
                     cwd: Path | None = None) -> Path | None:
    """The config file to read, or ``None`` when there is none to be found."""
    if explicit:
        return Path(explicit)
    if environ.get(ENV_PREFIX + "CONFIG"):
        return Path(environ[ENV_PREFIX + "CONFIG"])
    local = (cwd or Path.cwd()) / CONFIG_FILE_NAME
    if local.is_file():
        return local
    user = user_config_dir() / CONFIG_FILE_NAME
    return user if user.is_file() else None


def load_config(explicit: str | None = None, environ: Mapping[str, str] | None = None,
                flags: Mapping[str, Any] | None = None, cwd: Path | None = None) -> Config:
    """Defaults, then the file, then the environment, then ``flags`` (``None`` values skipped)."""
    environ = os.environ if environ is None else environ
    path = find_config_file(explicit, environ, cwd)
    config = Config()
    if path is not None:
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(f"{path}: file not found") from None
        except OSError as exc:
            raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None
        except UnicodeDecodeError:
            raise ConfigError(f"{path}: not UTF-8 text") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: invalid TOML: {exc}") from None
        except RecursionError:
            raise ConfigError(f"{path}: invalid TOML: nested too deeply") from None
        config = parse_config(data, str(path))
    hub = apply_overrides(config.hub, env_overrides(environ), "environment")
    if flags:
        hub = apply_overrides(hub, {k: v for k, v in flags.items() if v is not None},
                              "command line")
    return dataclasses.replace(config, hub=hub)


# -- writing -----------------------------------------------------------------------

TEMPLATE = """\
# monitor hub configuration. Every [hub] setting can also be set with an environment
# variable MONITOR_<NAME> (e.g. MONITOR_WS_PORT=7000) or a flag (--ws-port 7000).

[hub]
# Address to listen on. Keep 127.0.0.1 unless a TLS proxy or firewall fronts the hub.
host = "127.0.0.1"
# WebSocket endpoint (clients, Stringee SDKs) and REST API.
ws_port = 6899
api_port = 6900
# Durable state (SQLite): a folder next to this file, so that each hub keeps its own.
# Empty: the user's data dir, which every hub of the user run without one shares.
data_dir = "{data_dir}"
# A user who reconnects within this many ms after the last connection drops stays online.
offline_grace_ms = 3000
# The hub pings every connection this often; silent for ping_after_ms +
# ping_timeout_extra_ms, it is closed.
ping_after_ms = 15000
ping_timeout_extra_ms = 15000
# A connection must complete its WebSocket upgrade, then authenticate, within this many
# ms (a REST connection must send its request header within it).
auth_timeout_ms = 10000
# Messages kept per topic so reconnecting clients can resume without a snapshot.
history_size = 1000
# A connection whose unsent bytes exceed this is dropped as a slow consumer.
send_buffer_limit = 4194304
# normal: an acknowledged change survives a crash of the hub (kill -9); full: also a power
# cut, at the price of an fsync per batch (written on a thread of its own).
sqlite_synchronous = "normal"
# A call between two clients that nobody answers ends after this many ms ("no answer").
call_no_answer_ms = 30000
# AUTHEN attempts allowed per client IP: a burst, then so many per second; beyond it the
# attempt is refused with r = 26 ("rate limited") and its connection closed.
auth_rate_per_ip = 200
auth_burst_per_ip = 1000
# Custom attributes one user may hold (onlineStatus and call not counted); a change that
# would pass it is refused with r = 23 ("attribute name or value invalid").
max_attributes_per_user = 64
# Requests one connection may make (attribute changes, call control, snapshots; PING
# not counted): a burst, then so many per second; beyond it the request is refused with
# r = 26 ("rate limited") and retryAfterMs, the milliseconds until one more would pass.
change_rate_per_connection = 2000
change_burst_per_connection = 2000
# Connections one user may hold on this node; one more login is refused with r = 26
# ("rate limited") and its connection closed (code 4001).
max_connections_per_user = 32
# REST changes (PUT /v1/users/{{id}}/attributes, ...) per API key: a burst, then so many
# per second; beyond it the request is refused with HTTP 429, r = 26 ("rate limited")
# and a Retry-After header (seconds).
rest_change_rate_per_key = 5000
rest_change_burst_per_key = 5000
# A REST request body must arrive within this many ms of its header; later, the request
# is refused with HTTP 408 and its connection closed.
rest_body_timeout_ms = 10000
# A user a supervisor logged out cannot log in again for this many ms: each login is
# refused with r = 11 ("logged out by a supervisor", with the reason), and clients that
# reconnect by themselves (Stringee's Web SDK) then stop. 0: no hold.
logout_hold_ms = 60000
# debug, info, warning or error.
log_level = "info"
# Days the event log keeps every change (history, reports); older ones are pruned in the
# background. 0: no event log at all (no history, no reports).
history_retention_days = 35
# The attribute whose value splits an agent's online time in the agents report
# (statusMs): the agent's own status, such as available, break or lunch.
status_attribute = "manual_status"
# Webhooks' dead letters (events given up on, docs/webhooks.md): each project keeps at
# most this many, the oldest dropped first, and none dead-lettered longer ago than this
# many days.
webhook_dead_letters_max = 10000
webhook_dead_letters_days = 30
# Several nodes behind a load balancer share state through Redis (docs/scaling.md):
# redis_url = "redis://127.0.0.1:6379/0"
# A node that stops renewing its lease for this long is presumed dead; its users go offline.
# node_lease_ms = 10000

# One [[projects]] table per tenant. Projects never see each other's users.
[[projects]]
id = 1
name = "{name}"
# Tokens are signed with a key's secret and name its sid as `iss`. Keep secrets secret;
# add a second key to rotate, then remove the old one.
keys = [{{ sid = "{sid}", secret = "{secret}" }}]
# Webhooks (docs/webhooks.md): each logged change POSTed, signed the Standard Webhooks
# way, at least once, in order per user. `monitor webhook secret` makes a secret.
# [[projects.webhooks]]
# url = "https://crm.example.com/hooks/presence"
# secret = "whsec_..."
# attributes = ["onlineStatus", "call", "manual_status"]   # empty: every attribute
# topics = []                 # or only changes published to these topics
# max_in_flight = 16          # requests at once to this endpoint
# timeout_ms = 10000          # connect, and the whole request with its answer
# retry_for_s = 86400         # retried with backoff this long, then dead-lettered
"""


def new_api_key() -> ApiKey:
    """A fresh API key: a readable SID and a 256-bit secret."""
    return ApiKey("SK" + secrets.token_hex(8).upper(), secrets.token_urlsafe(32))


def _toml_text(text: str) -> str:
    """``text`` escaped for a TOML basic string (quotes, backslashes, control characters)."""
    return "".join(ch if ch.isprintable() and ch not in '"\\' else f"\\U{ord(ch):08x}"
                   for ch in text)


def write_initial_config(path: Path, project_name: str = "Contact centre") -> ApiKey:
    """Write a commented ``hub.toml`` with one project and a new key, whose state lives
    in ``data/`` next to it; never overwrite."""
    key = new_api_key()
    # Absolute: the hub resolves a relative data_dir against its working directory.
    data_dir = path.parent.resolve() / "data"
    text = TEMPLATE.format(name=_toml_text(project_name), sid=key.sid, secret=key.secret,
                           data_dir=_toml_text(str(data_dir)))
    path.parent.mkdir(parents=True, exist_ok=True)
    # "x": fail rather than overwrite, even if the file appears meanwhile.
    with path.open("x", encoding="utf-8") as out:
        out.write(text)
    path.chmod(0o600)
    return key
