"""``monitor demo``: the parser is cheap to build; the demo is imported only to run."""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any


async def wait_for_signal() -> None:
    """Until SIGINT, SIGTERM or SIGHUP: how a door's command runs."""
    import signal

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()


async def serve_demo_door(agents: int, open_door: Callable[[Any], Awaitable[Any]],
                          banner: Callable[[Any, Any], str]) -> int:
    """A headless demo of ``agents`` agents and the door ``open_door(demo)`` starts onto
    it, until a signal (``ssh-serve --demo``, ``web --demo``); ``banner(door, demo)``
    says where to come in."""
    from monitor.demo.run import Demo, DemoOptions

    demo = Demo(DemoOptions(agents=agents, headless=True))
    await demo.start()
    try:
        door = await open_door(demo)
        try:
            print(f"{banner(door, demo)}\n  {len(demo.agents)} agents, hub {demo.ws_url}; "
                  "Ctrl-C stops.", flush=True)
            await wait_for_signal()
        finally:
            await door.close()
    finally:
        await demo.stop()
    return 0


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return value


def _agent_count(text: str) -> int:
    value = int(text)
    if not 1 <= value <= 2000:
        raise argparse.ArgumentTypeError(f"must be 1-2000, got {text}")
    return value


def cmd_demo(args: argparse.Namespace) -> int:
    from monitor.demo.run import DemoOptions, run_demo

    options = DemoOptions(agents=args.agents, speed=args.speed, seed=args.seed,
                          data=Path(args.data).expanduser() if args.data else None,
                          headless=args.headless, duration=args.duration,
                          ssh_port=args.ssh, web_port=args.web)
    try:
        return asyncio.run(run_demo(options))
    except KeyboardInterrupt:
        return 130


def add_demo_command(sub: Any) -> None:
    """Register ``monitor demo``."""
    demo = sub.add_parser("demo", help="a live contact centre on this machine, in one command",
                          description="Starts a hub on 127.0.0.1, simulated agents (real "
                                      "clients over real sockets) and the monitor as their "
                                      "supervisor. Quit the monitor (q) to stop everything.")
    demo.add_argument("--agents", type=_agent_count, default=40, help="agents (default 40)")
    demo.add_argument("--speed", type=_positive_float, default=1.0,
                      help="time compression: 10 runs ten times faster (default 1)")
    demo.add_argument("--seed", type=int, help="make the run repeatable")
    demo.add_argument("--data", metavar="DIR",
                      help="keep the hub's state here (default: a temporary dir, removed)")
    demo.add_argument("--headless", action="store_true",
                      help="no monitor: print the URLs and tokens to attach one, and run")
    demo.add_argument("--duration", type=_positive_float, metavar="S",
                      help="stop after S seconds (default: until Ctrl-C or q)")
    demo.add_argument("--ssh", type=int, metavar="PORT",
                      help="also let anyone watch over SSH: ssh -p PORT demo@127.0.0.1")
    demo.add_argument("--web", type=int, metavar="PORT",
                      help="also let anyone watch in a browser: http://127.0.0.1:PORT/")
    demo.set_defaults(handler=cmd_demo)
