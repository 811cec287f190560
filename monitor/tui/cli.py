"""``monitor tui``: the terminal monitor's command line."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from monitor.tui.settings import TOKEN_ENV, load_settings, read_token, settings_path


def add_tui_command(sub: Any) -> None:
    """Add ``monitor tui`` to the ``monitor`` command's subparsers."""
    tui = sub.add_parser(
        "tui", help="watch the agents live and set your own status (terminal app)",
        description="The live agent grid over your token's topics, and your own status. "
                    f"The token comes from --token-file or ${TOKEN_ENV}, never from the "
                    f"command line. Settings: {settings_path()}.")
    tui.add_argument("--url", help="hub WebSocket URL (default: settings, then "
                                   "ws://127.0.0.1:6899/)")
    tui.add_argument("--token-file", metavar="FILE",
                     help=f"file holding the access token (default: ${TOKEN_ENV})")
    tui.add_argument("--api-url", metavar="URL",
                     help="the hub's REST API, for the day's history and the Today screen "
                          "(default: the host of --url, port 6900)")
    tui.add_argument("--rest-token-file", metavar="FILE",
                     help="file holding a REST token for the history and reports "
                          "(default: $MONITOR_REST_TOKEN)")
    tui.add_argument("--theme", metavar="NAME", help="theme to start with")
    tui.add_argument("--read-only", action="store_true", default=None,
                     help="watch only: never change your status")
    tui.add_argument("--settings", metavar="FILE",
                     help=f"settings file (default: {settings_path()})")
    tui.set_defaults(handler=run_tui)


def run_tui(args: argparse.Namespace) -> int:
    """Load settings and the token, then run the app until it quits."""
    from monitor.tui.app import MonitorApp
    from monitor.tui.hubfeed import HubFeed

    settings = load_settings(Path(args.settings).expanduser() if args.settings else None,
                             url=args.url, theme=args.theme, read_only=args.read_only,
                             token_file=args.token_file, api_url=args.api_url,
                             rest_token_file=args.rest_token_file)
    token = read_token(settings.token_file or None)
    provider = (lambda: read_token(settings.token_file)) if settings.token_file else None
    feed = HubFeed(settings.url, token, token_provider=provider)
    MonitorApp(feed, settings).run()
    return 0
