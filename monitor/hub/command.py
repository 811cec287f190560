"""``monitor hub``: the parser is cheap to build; the server is imported only to run."""

from __future__ import annotations

import argparse
import asyncio
import logging
from typing import Any

log = logging.getLogger("monitor.hub")


def cmd_hub(args: argparse.Namespace) -> int:
    """Serve the WebSocket endpoint and the REST API until SIGINT or SIGTERM."""
    from monitor.flags import config_from_args
    from monitor.hub.logs import setup_logging
    from monitor.hub.server import run_hub

    config = config_from_args(args)
    setup_logging(config.hub.log_level)
    if not config.projects:
        log.warning("event=no_projects source=%s hint='run monitor config init'",
                    config.source)
    try:
        import uvloop
    except ImportError:
        asyncio.run(run_hub(config))
    else:
        uvloop.run(run_hub(config))
    return 0


def add_hub_command(sub: Any) -> None:
    """Register ``monitor hub``."""
    from monitor.flags import add_config_flag, add_hub_setting_flags

    hub = sub.add_parser("hub", help="run the presence hub (WebSocket + REST)")
    add_config_flag(hub)
    hub.add_argument("--data", dest="setting_data_dir", metavar="DIR",
                     help="directory of the durable state (overrides data_dir)")
    hub.add_argument("--redis", dest="setting_redis_url", metavar="URL",
                     help="run as one node of many, sharing state through Redis, e.g. "
                          "redis://HOST:6379/0 (overrides redis_url)")
    add_hub_setting_flags(hub)
    hub.set_defaults(handler=cmd_hub)
