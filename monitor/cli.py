"""The ``monitor`` command: one entry point, a subcommand per job."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from dataclasses import fields
from pathlib import Path
from typing import Any

from monitor import __version__
from monitor.config import (
    CONFIG_FILE_NAME,
    ConfigError,
    HubSettings,
    load_config,
    new_webhook_secret,
    user_config_dir,
    write_initial_config,
)
from monitor.demo.command import add_demo_command
from monitor.flags import UsageError, add_config_flag, add_hub_setting_flags, config_from_args
from monitor.hub.command import add_hub_command
from monitor.protocol import has_hidden_chars
from monitor.report import add_report_command
from monitor.ssh.command import add_ssh_command
from monitor.tokens import (
    AttributeGrant,
    TokenError,
    decode_unverified,
    mint_client_token,
    mint_rest_token,
    verify_client_token,
    verify_rest_token,
)
from monitor.tui.cli import add_tui_command
from monitor.tui.text import safe_data
from monitor.web.command import add_web_command

Handler = Callable[[argparse.Namespace], int]
MAX_ROLE_CHARS = 64

# -- token ---------------------------------------------------------------------------


def _parse_publish(items: Sequence[str]) -> list[AttributeGrant]:
    grants = []
    for item in items:
        attribute, sep, topic = item.partition("=")
        if not sep or not attribute or not topic:
            raise UsageError(f"--publish {item!r}: expected ATTRIBUTE=TOPIC")
        grants.append(AttributeGrant(attribute, topic))
    return grants


def _signing_key(args: argparse.Namespace) -> tuple[str, str]:
    config = config_from_args(args)
    if args.key:
        found = config.key(args.key)
        if found is None:
            raise UsageError(f"{config.source}: no API key with sid {args.key!r}")
        return found[1].sid, found[1].secret
    _, key = config.default_key()
    return key.sid, key.secret


def cmd_token_client(args: argparse.Namespace) -> int:
    """Print a client access token."""
    sid, secret = _signing_key(args)
    subscribe = [t.strip() for t in (args.subscribe or "").split(",") if t.strip()]
    supervise = [t.strip() for t in (args.supervise or "").split(",") if t.strip()]
    role = args.role
    if role is not None and (not role.strip() or len(role) > MAX_ROLE_CHARS
                             or has_hidden_chars(role)):
        raise UsageError(f"--role: 1-{MAX_ROLE_CHARS} characters, none of them control "
                         "or format characters")
    token = mint_client_token(sid, secret, args.user, subscribe=subscribe,
                              attributes=_parse_publish(args.publish), ttl_s=args.ttl,
                              display_name=args.display_name, supervise=supervise,
                              role=role)
    # Verify what we made, so a bad topic name is reported here, not at AUTHEN time.
    verify_client_token(token, lambda s: secret if s == sid else None)
    print(token)
    return 0


def cmd_token_rest(args: argparse.Namespace) -> int:
    """Print a REST API token."""
    sid, secret = _signing_key(args)
    print(mint_rest_token(sid, secret, ttl_s=args.ttl))
    return 0


def cmd_token_decode(args: argparse.Namespace) -> int:
    """Show a token's header and payload and whether it verifies with the config's keys."""
    token = args.token.strip()
    try:
        header, payload = decode_unverified(token)
    except Exception as exc:  # pyjwt raises several types for garbage
        print(f"cannot decode: {exc}", file=sys.stderr)
        return 1
    # A token is anyone's text: controls a terminal would act on are shown escaped.
    print("header:  " + json.dumps(safe_data(header), indent=2, ensure_ascii=False))
    print("payload: " + json.dumps(safe_data(payload), indent=2, ensure_ascii=False))
    try:
        config = config_from_args(args)
    except ConfigError as exc:
        print(f"verifies: unknown ({exc})")
        return 1

    def secret_for(sid: str) -> str | None:
        found = config.key(sid)
        return found[1].secret if found else None

    verify = verify_rest_token if payload.get("rest_api") is True else verify_client_token
    try:
        verify(token, secret_for)
    except TokenError as exc:
        print(f"verifies: no (r={int(exc.code)}: {exc.message})")
        return 1
    print(f"verifies: yes (key {payload.get('iss')} in {config.source})")
    return 0


# -- config --------------------------------------------------------------------------


def cmd_config_init(args: argparse.Namespace) -> int:
    """Write a commented hub.toml with one project and a new API key."""
    path = Path(args.path) if args.path else Path(CONFIG_FILE_NAME)
    try:
        key = write_initial_config(path, args.name)
    except OSError as exc:
        # FileExistsError also comes from a parent directory that is a file.
        problem = ("already exists; not overwritten" if path.exists()
                   else f"cannot write: {exc.strerror}")
        raise UsageError(f"{path}: {problem}") from None
    print(f"wrote {path} (project 1, API key {key.sid}; the hub keeps its state in "
          f"{load_config(str(path), environ={}).hub.resolved_data_dir()})")
    return 0


def cmd_config_show(args: argparse.Namespace) -> int:
    """Print the effective configuration, secrets masked."""
    config = config_from_args(args)
    out: dict[str, Any] = {
        "source": config.source,
        "hub": {f.name: getattr(config.hub, f.name) for f in fields(HubSettings)},
        "projects": [{"id": p.id, "name": p.name,
                      "keys": [{"sid": k.sid, "secret": k.secret[:4] + "…"} for k in p.keys],
                      "webhooks": [{"url": w.url, "secret": w.secret[:10] + "…"}
                                   for w in p.webhooks]}
                     for p in config.projects],
    }
    print(json.dumps(out, indent=2, ensure_ascii=False))
    return 0


def cmd_webhook_secret(args: argparse.Namespace) -> int:
    """Print a new Standard Webhooks secret for a [[projects.webhooks]] table."""
    print(new_webhook_secret())
    return 0


# -- parser --------------------------------------------------------------------------

def _add_token_commands(sub: Any) -> None:
    token = sub.add_parser("token", help="mint and inspect access tokens")
    tsub = token.add_subparsers(dest="token_command", required=True, metavar="KIND")

    client = tsub.add_parser("client", help="print a client access token")
    client.add_argument("--user", required=True, help="userId of the token")
    client.add_argument("--subscribe", metavar="T1,T2",
                        help="topics the client receives, comma separated")
    client.add_argument("--publish", action="append", default=[], metavar="ATTR=TOPIC",
                        help="publish changes of ATTR to TOPIC (repeatable)")
    client.add_argument("--display-name", help="name shown for the user")
    client.add_argument("--supervise", metavar="T1,T2",
                        help="supervisor actions (set a user's status, log a user out) on "
                             "the users who publish to these topics; * for everyone")
    client.add_argument("--role", metavar="NAME",
                        help="the user's role, a `role` claim (supervisor, agent...): the "
                             "monitor shows a user whose role is in its not_agents setting "
                             "(default: supervisor) but leaves them out of every count")
    client.set_defaults(handler=cmd_token_client)

    rest = tsub.add_parser("rest", help="print a REST API token")
    rest.set_defaults(handler=cmd_token_rest)

    for p in (client, rest):
        p.add_argument("--ttl", type=int, default=3600, metavar="S",
                       help="seconds until the token expires (default 3600)")
        p.add_argument("--key", metavar="SID", help="API key to sign with (default: first)")
        add_config_flag(p)

    decode = tsub.add_parser("decode", help="show a token and whether it verifies")
    decode.add_argument("token")
    add_config_flag(decode)
    decode.set_defaults(handler=cmd_token_decode)


def _add_config_commands(sub: Any) -> None:
    config = sub.add_parser("config", help="write and show hub.toml")
    csub = config.add_subparsers(dest="config_command", required=True, metavar="ACTION")
    init = csub.add_parser("init", help="write a commented hub.toml with a new API key")
    init.add_argument("path", nargs="?",
                      help=f"where to write (default ./{CONFIG_FILE_NAME}; user config dir: "
                           f"{user_config_dir() / CONFIG_FILE_NAME})")
    init.add_argument("--name", default="Contact centre", help="the project's name")
    init.set_defaults(handler=cmd_config_init)
    show = csub.add_parser("show", help="print the effective configuration, secrets masked")
    add_config_flag(show)
    add_hub_setting_flags(show)
    show.set_defaults(handler=cmd_config_show)


def _add_webhook_commands(sub: Any) -> None:
    webhook = sub.add_parser("webhook", help="webhooks (docs/webhooks.md)")
    wsub = webhook.add_subparsers(dest="webhook_command", required=True, metavar="ACTION")
    secret = wsub.add_parser("secret", help="print a new webhook secret (whsec_...) for "
                                            "a [[projects.webhooks]] table")
    secret.set_defaults(handler=cmd_webhook_secret)


def build_parser() -> argparse.ArgumentParser:
    """The full ``monitor`` argument parser."""
    parser = argparse.ArgumentParser(
        prog="monitor",
        description="Real-time presence hub for contact centres, and its terminal monitor.")
    parser.add_argument("--version", action="version", version=f"monitor {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_token_commands(sub)
    _add_config_commands(sub)
    _add_webhook_commands(sub)
    add_hub_command(sub)
    add_tui_command(sub)
    add_demo_command(sub)
    add_ssh_command(sub)
    add_web_command(sub)
    add_report_command(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``monitor`` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.handler(args) or 0)
    except (ConfigError, UsageError, TokenError) as exc:
        message = exc.message if isinstance(exc, TokenError) else str(exc)
        print(f"monitor: error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
