"""``monitor ssh-serve``: the parser is cheap to build; asyncssh is imported only to run."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from pathlib import Path
from typing import Any

from monitor.ssh.limits import LOGIN_FAILURE_WINDOW_S, MAX_AUTH_TRIES, MAX_LOGIN_FAILURES

log = logging.getLogger("monitor.ssh")


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more, got {text}")
    return value


def _count(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {text}")
    return value


def _duration(text: str, flag: str) -> float:
    from monitor.config import ConfigError
    from monitor.tui.settings import parse_duration

    try:
        return parse_duration(text, flag)
    except ConfigError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def idle_seconds(text: str) -> float:
    if text.strip() in ("0", "0s", "never"):
        return 0.0
    return _duration(text, "--idle-timeout")


def _window(text: str) -> float:
    return _duration(text, "--login-failure-window")


def add_ssh_command(sub: Any) -> None:
    """Register ``monitor ssh-serve``."""
    from monitor.flags import add_config_flag

    ssh = sub.add_parser(
        "ssh-serve", help="let supervisors and agents in with nothing but ssh",
        description="An SSH server: each login gets the live monitor of its role, on a "
                    "pseudo-terminal of its own. The SSH user name is the hub userId; "
                    "the server mints that user's token from the roles file with the "
                    "project's API key. With --demo: a demo hub and agents, and anyone "
                    "may watch (ssh -p 2222 demo@host).")
    ssh.add_argument("--host", default="127.0.0.1",
                     help="address to listen on (default 127.0.0.1)")
    ssh.add_argument("--port", type=int, default=2222, help="port (default 2222)")
    ssh.add_argument("--host-key", metavar="FILE",
                     help="the server's private host key, made on first start (default: "
                          "ssh_host_ed25519_key in the user data dir)")
    ssh.add_argument("--authorized-keys", metavar="DIR|FILE",
                     help="users' public keys: a directory of <user>.pub files, or one "
                          "authorized_keys file whose keys name their users with "
                          "principals=\"user\"")
    ssh.add_argument("--roles", metavar="FILE",
                     help="who is a supervisor or an agent of which team (TOML)")
    ssh.add_argument("--hub", metavar="URL",
                     help="the hub's WebSocket URL (default: from the config's [hub])")
    ssh.add_argument("--max-sessions", type=_positive_int, default=20, metavar="N",
                     help="sessions at once; one more is told to come back later "
                          "(default 20)")
    ssh.add_argument("--idle-timeout", type=idle_seconds, default=3600.0, metavar="DURATION",
                     help="close a session after this long without a keystroke, e.g. 30m "
                          "(default 1h; 0: never)")
    ssh.add_argument("--max-auth-tries", type=_positive_int, default=MAX_AUTH_TRIES,
                     metavar="N",
                     help="failed attempts on one connection (keys refused, a change of "
                          f"user name) before it is cut (default {MAX_AUTH_TRIES})")
    ssh.add_argument("--max-login-failures", type=_count, default=MAX_LOGIN_FAILURES,
                     metavar="N",
                     help="failed logins from one address within --login-failure-window "
                          "before it is refused until they age out "
                          f"(default {MAX_LOGIN_FAILURES}; 0: no limit)")
    ssh.add_argument("--login-failure-window", type=_window,
                     default=LOGIN_FAILURE_WINDOW_S, metavar="DURATION",
                     help="how long a failed login counts against its address "
                          "(default 5m)")
    ssh.add_argument("--settings", metavar="FILE",
                     help="monitor.toml for every session (statuses, columns, theme); "
                          "default: built-in defaults")
    ssh.add_argument("--key", metavar="SID", help="API key to sign tokens with "
                                                  "(default: the config's first)")
    add_config_flag(ssh)
    ssh.add_argument("--demo", action="store_true",
                     help="run a demo hub and agents; anyone may log in and watch")
    ssh.add_argument("--demo-agents", type=_positive_int, default=40, metavar="N",
                     help="agents of the demo (default 40)")
    ssh.set_defaults(handler=cmd_ssh_serve)


def session_settings(path: str | None) -> str:
    """The checked monitor.toml for sessions (``os.devnull``: the defaults)."""
    from monitor.flags import UsageError
    from monitor.tui.settings import load_settings

    if path is None:
        return os.devnull
    settings_path = Path(path).expanduser()
    if not settings_path.is_file():
        raise UsageError(f"--settings {path}: no such file")
    settings = load_settings(settings_path)
    if settings.token_file:
        raise UsageError(f"{settings_path}: token_file is set; every session would use "
                         "that token instead of its user's")
    return str(settings_path.resolve())


def _door_options(args: argparse.Namespace) -> Any:
    from monitor.ssh.server import DoorOptions

    options = DoorOptions(host=args.host, port=args.port, max_sessions=args.max_sessions,
                          idle_timeout=args.idle_timeout, max_auth_tries=args.max_auth_tries,
                          max_login_failures=args.max_login_failures,
                          login_failure_window=args.login_failure_window)
    if args.host_key:
        options.host_key = Path(args.host_key).expanduser()
    return options


def _roles_door(args: argparse.Namespace) -> Any:
    """The door of a roles file, authorized keys and the config's API key."""
    from monitor.flags import UsageError, config_from_args
    from monitor.ssh.access import RolesPolicy, hub_url_from_config
    from monitor.ssh.keys import AuthorizedKeys
    from monitor.ssh.roles import load_roles
    from monitor.ssh.server import Door

    if not args.roles or not args.authorized_keys:
        raise UsageError("ssh-serve needs --roles FILE and --authorized-keys DIR|FILE "
                         "(or --demo)")
    roles_path = Path(args.roles).expanduser()
    roles = load_roles(roles_path)
    keys = AuthorizedKeys(Path(args.authorized_keys).expanduser())
    try:
        keys.check()
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"--authorized-keys: {exc}") from None
    config = config_from_args(args)
    if args.key:
        found = config.key(args.key)
        if found is None:
            raise UsageError(f"{config.source}: no API key with sid {args.key!r}")
        key = found[1]
    else:
        key = config.default_key()[1]
    hub_url = args.hub or hub_url_from_config(config.hub.host, config.hub.ws_port)
    policy = RolesPolicy(roles, key.sid, key.secret, path=roles_path)
    return Door(policy, hub_url, _door_options(args), authorized_keys=keys,
                settings_path=session_settings(args.settings))


def _warn_about(door: Any) -> None:
    """Log what in the roles and keys lets nobody in."""
    roles = door.policy.roles
    if not roles.users:
        log.warning("event=no_users roles=%s", roles.source)
    for number in door.authorized_keys.unbound_lines():
        log.warning("event=authorized_key_ignored path=%s line=%d "
                    "reason='no principals=\"user\" option'", door.authorized_keys.path, number)


async def _serve(args: argparse.Namespace, door: Any) -> int:
    from monitor.demo.command import serve_demo_door, wait_for_signal

    if door is not None:
        await door.start()
        try:
            await wait_for_signal()
        finally:
            await door.close()
        return 0

    from monitor.demo.doors import DemoPolicy
    from monitor.ssh.server import Door

    async def open_door(demo: Any) -> Any:
        return await Door(DemoPolicy(demo), demo.ws_url, _door_options(args),
                          authorized_keys=None,
                          settings_path=session_settings(args.settings)).start()

    host = "HOST" if args.host in ("0.0.0.0", "::") else args.host
    return await serve_demo_door(
        args.demo_agents, open_door,
        lambda door, _: f"monitor demo over SSH: ssh -p {door.port} demo@{host}")


def cmd_ssh_serve(args: argparse.Namespace) -> int:
    """Serve until SIGINT or SIGTERM."""
    from monitor.hub.logs import setup_logging

    # Bad flags and files are reported before anything starts or logs.
    door = None if args.demo else _roles_door(args)
    if args.demo:
        session_settings(args.settings)
    setup_logging("info")
    if door is not None:
        _warn_about(door)
    if args.demo:  # the demo's own hub and agents: only their trouble is news
        for name in ("monitor.hub", "monitor.client", "monitor.demo"):
            logging.getLogger(name).setLevel(logging.WARNING)
    try:
        return asyncio.run(_serve(args, door))
    except OSError as exc:
        # the port is taken, the host key unreadable, ...
        print(f"monitor: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130

