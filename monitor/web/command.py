"""``monitor web``: serve, invite, revoke. The parser is cheap to build; aiohttp and
textual-serve are imported only to serve."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from pathlib import Path
from typing import Any

DEFAULT_PORT = 8470  # the same as monitor.web.server.DEFAULT_PORT, without importing it


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more, got {text}")
    return value


def _idle(text: str) -> float:
    from monitor.ssh.command import idle_seconds

    return idle_seconds(text)


def _ttl(text: str) -> float:
    from monitor.web.invites import parse_ttl

    try:
        return parse_ttl(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def default_state_dir() -> Path:
    """Where the web door keeps its secret and revocations unless told otherwise."""
    from monitor.config import user_data_dir

    return user_data_dir() / "web"


def _add_state_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--state", metavar="DIR",
                        help="the door's secret, revocations and address "
                             "(default: web/ in the user data dir)")


def _state(args: argparse.Namespace) -> Any:
    from monitor.web.invites import WebState

    return WebState(Path(args.state).expanduser() if args.state else default_state_dir())


def add_web_command(sub: Any) -> None:
    """Register ``monitor web`` and its ``invite`` and ``revoke``."""
    from monitor.flags import add_config_flag

    web = sub.add_parser(
        "web", help="the monitor in a browser: serve it, invite users, revoke them",
        description="A web server: each browser session gets the live monitor of its "
                    "user's role (from the roles file, as for the SSH door), in a process "
                    "of its own. Users come in with an invitation link (monitor web "
                    "invite). With --demo: a demo hub and agents, and anyone may watch.")
    web.add_argument("--host", default="127.0.0.1",
                     help="address to listen on (default 127.0.0.1)")
    web.add_argument("--port", type=int, default=DEFAULT_PORT,
                     help=f"port (default {DEFAULT_PORT})")
    web.add_argument("--roles", metavar="FILE",
                     help="who is a supervisor or an agent of which team (TOML)")
    web.add_argument("--hub", metavar="URL",
                     help="the hub's WebSocket URL (default: from the config's [hub])")
    web.add_argument("--tls-cert", metavar="FILE", help="serve HTTPS with this certificate "
                                                        "chain (PEM)")
    web.add_argument("--tls-key", metavar="FILE", help="and this private key (PEM)")
    web.add_argument("--public-url", metavar="URL",
                     help="the address users open, e.g. https://monitor.example.com/ "
                          "behind a reverse proxy: invitations point there, and only "
                          "pages from there may open sessions")
    web.add_argument("--max-sessions", type=_positive_int, default=20, metavar="N",
                     help="sessions at once; one more is told to come back later "
                          "(default 20)")
    web.add_argument("--idle-timeout", type=_idle, default=3600.0, metavar="DURATION",
                     help="close a session after this long without a key or a click, "
                          "e.g. 30m (default 1h; 0: never, for a wallboard)")
    web.add_argument("--settings", metavar="FILE",
                     help="monitor.toml for every session (statuses, columns, theme); "
                          "default: built-in defaults")
    web.add_argument("--key", metavar="SID", help="API key to sign tokens with "
                                                  "(default: the config's first)")
    add_config_flag(web)
    _add_state_flag(web)
    web.add_argument("--demo", action="store_true",
                     help="run a demo hub and agents; anyone may watch")
    web.add_argument("--demo-agents", type=_positive_int, default=40, metavar="N",
                     help="agents of the demo (default 40)")
    web.set_defaults(handler=cmd_web)

    actions = web.add_subparsers(dest="web_command", metavar="ACTION")
    invite = actions.add_parser(
        "invite", help="print an invitation link for a user of the roles file",
        description="Prints a link that lets USER in, with the role the roles file gives "
                    "them, until it expires. Anyone holding the link can use it: send it "
                    "privately. monitor web revoke ends it early.")
    invite.add_argument("--user", required=True, help="the user (a name in the roles file)")
    invite.add_argument("--role", choices=("supervisor", "agent"),
                        help="refuse unless the roles file gives the user this role")
    invite.add_argument("--ttl", type=_ttl, default=8 * 3600.0, metavar="DURATION",
                        help="how long the link and the session it opens last, e.g. 8h, "
                             "30m, 7d (default 8h)")
    invite.add_argument("--roles", metavar="FILE",
                        help="the roles file (default: the one the door last started with)")
    invite.add_argument("--url", metavar="URL",
                        help="the door's address (default: where it last started)")
    _add_state_flag(invite)
    invite.set_defaults(handler=cmd_web_invite)

    revoke = actions.add_parser(
        "revoke", help="end a user's invitations and sessions",
        description="Every invitation and session of USER made until now stops working; "
                    "their open sessions end within a second. A new invitation lets them "
                    "in again.")
    who = revoke.add_mutually_exclusive_group(required=True)
    who.add_argument("--user", help="the user")
    who.add_argument("--all", action="store_true", help="everyone")
    _add_state_flag(revoke)
    revoke.set_defaults(handler=cmd_web_revoke)


# -- invite and revoke ----------------------------------------------------------------


def cmd_web_invite(args: argparse.Namespace) -> int:
    """Print an invitation URL."""
    import time

    from monitor.flags import UsageError
    from monitor.ssh.roles import load_roles
    from monitor.web.invites import INVITE

    state = _state(args)
    door = state.door()
    roles_path = args.roles or door.get("roles")
    url = args.url or door.get("url")
    if not roles_path:
        raise UsageError("invite needs --roles FILE (or a door started with --roles on this "
                         "--state)")
    if not url:
        raise UsageError("invite needs --url URL (or a door started on this --state)")
    roles = load_roles(Path(roles_path).expanduser())
    user = roles.users.get(args.user)
    if user is None:
        raise UsageError(f"{roles.source}: no user {args.user!r}")
    if args.role and user.role != args.role:
        raise UsageError(f"{roles.source}: {args.user}'s role is {user.role}, not {args.role}")
    expires = int(time.time() + args.ttl)
    token = state.signer().sign(INVITE, user.name, user.role, expires)
    if not url.endswith("/"):
        url += "/"
    print(f"{url}#invite={token}")
    print(f"  for {user.name} ({user.role}) until "
          f"{time.strftime('%Y-%m-%d %H:%M %Z', time.localtime(expires))}; anyone with "
          "this link gets in as them: send it privately.", file=sys.stderr)
    return 0


def cmd_web_revoke(args: argparse.Namespace) -> int:
    """Void a user's (or everyone's) invitations and sessions."""
    from monitor.web.invites import EVERYONE

    state = _state(args)
    state.revoke(EVERYONE if args.all else args.user)
    who = "everyone" if args.all else args.user
    print(f"revoked: {who}'s invitations and sessions until now; open sessions end within "
          "a second (if the door uses this --state)")
    return 0


# -- serve ----------------------------------------------------------------------------


def _options(args: argparse.Namespace) -> Any:
    from monitor.flags import UsageError
    from monitor.ssh.command import session_settings
    from monitor.web.server import WebOptions

    if bool(args.tls_cert) != bool(args.tls_key):
        raise UsageError("give both --tls-cert and --tls-key, or neither")
    if args.public_url:
        from urllib.parse import urlsplit

        parts = urlsplit(args.public_url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise UsageError(f"--public-url {args.public_url}: expected http://HOST/ or "
                             "https://HOST/")
        if parts.path not in ("", "/") or parts.query or parts.fragment:
            # the page's scripts, login and WebSocket are at the root of the host
            raise UsageError(f"--public-url {args.public_url}: the door must be at the root "
                             "of its host name, not under a path")
    options = WebOptions(host=args.host, port=args.port, max_sessions=args.max_sessions,
                         idle_timeout=args.idle_timeout, public_url=args.public_url,
                         settings_path=session_settings(args.settings))
    if args.tls_cert:
        options.tls_cert = Path(args.tls_cert).expanduser()
        options.tls_key = Path(args.tls_key).expanduser()
        for path in (options.tls_cert, options.tls_key):
            if not path.is_file():
                raise UsageError(f"{path}: no such file")
    return options


def _roles_door(args: argparse.Namespace) -> Any:
    """The door of a roles file and the config's API key."""
    from monitor.flags import UsageError, config_from_args
    from monitor.ssh.access import RolesPolicy, hub_url_from_config
    from monitor.ssh.roles import load_roles
    from monitor.web.server import InvitationGate, WebDoor

    if not args.roles:
        raise UsageError("web needs --roles FILE (or --demo)")
    options = _options(args)
    roles_path = Path(args.roles).expanduser().resolve()
    roles = load_roles(roles_path)
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
    state = _state(args)
    secure = bool(args.tls_cert) or (args.public_url or "").startswith("https://")
    gate = InvitationGate(policy, state, secure_cookie=secure)
    return WebDoor(gate, hub_url, options, state=state, roles_path=roles_path)


async def _serve(args: argparse.Namespace, door: Any) -> int:
    from monitor.demo.command import serve_demo_door, wait_for_signal

    if door is not None:
        await door.start()
        try:
            print(f"monitor web: {door.url}  (invite users with: monitor web invite "
                  "--user NAME); Ctrl-C stops.", flush=True)
            await wait_for_signal()
        finally:
            await door.close()
        return 0

    from monitor.demo.doors import DemoGate
    from monitor.web.server import WebDoor

    async def open_door(demo: Any) -> Any:
        return await WebDoor(DemoGate(demo), demo.ws_url, _options(args)).start()

    return await serve_demo_door(args.demo_agents, open_door,
                                 lambda door, _: f"monitor demo in a browser: {door.url}")


def cmd_web(args: argparse.Namespace) -> int:
    """Serve until SIGINT or SIGTERM."""
    from monitor.hub.logs import setup_logging

    # Bad flags and files are reported before anything starts or logs.
    door = None if args.demo else _roles_door(args)
    if args.demo:
        _options(args)
    setup_logging("info")
    if args.demo:  # the demo's own hub and agents: only their trouble is news
        for name in ("monitor.hub", "monitor.client", "monitor.demo"):
            logging.getLogger(name).setLevel(logging.WARNING)
    try:
        return asyncio.run(_serve(args, door))
    except OSError as exc:
        # the port is taken, a TLS file unreadable, ...
        print(f"monitor: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
