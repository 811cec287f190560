"""``monitor demo``: an embedded hub, simulated agents and the monitor, in one process."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import shutil
import socket
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

import httpx

from monitor.client import HubClient, HubError
from monitor.config import Config, HubSettings, Project, new_api_key
from monitor.demo.agents import Agent, Clock, DemoStats, Switchboard
from monitor.demo.scenario import (
    CALL_TOPIC,
    SUPERVISOR_ID,
    TEAM_ATTRIBUTE,
    TEAMS,
    AgentProfile,
    make_agents,
    team_topic,
)
from monitor.hub.server import Hub
from monitor.tokens import AttributeGrant, mint_client_token, mint_rest_token

log = logging.getLogger("monitor.demo")
DEMO_PROJECT_ID = 1
TOKEN_TTL_S = 12 * 3600
SUPERVISOR_TOPIC = "supervisors"
GUEST_AGENT = AgentProfile("agent_guest", "You (guest agent)", TEAMS[0], 0, 0, False)


@dataclass
class DemoOptions:
    agents: int = 40
    speed: float = 1.0
    seed: int | None = None
    data: Path | None = None
    headless: bool = False
    duration: float | None = None  # stop by itself after so many seconds (headless runs)
    ssh_port: int | None = None  # also open the SSH door (monitor.ssh) on this port
    web_port: int | None = None  # also open the web door (monitor.web) on this port


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Demo:
    """The whole system on loopback: start, run, stop leaving nothing behind."""

    def __init__(self, options: DemoOptions) -> None:
        self.options = options
        self.rng = random.Random(options.seed)
        self.key = new_api_key()
        self._tmp: Path | None = None
        self.hub: Hub | None = None
        self.stats = DemoStats()
        self.agents: list[Agent] = []
        self._tasks: list[asyncio.Task[None]] = []

    # -- tokens ---------------------------------------------------------------------------

    def agent_token(self, profile: AgentProfile) -> str:
        topic = team_topic(profile.team)
        return mint_client_token(
            self.key.sid, self.key.secret, profile.user_id, ttl_s=TOKEN_TTL_S,
            display_name=profile.display_name,
            attributes=[AttributeGrant("manual_status", topic),
                        AttributeGrant("onlineStatus", topic),
                        AttributeGrant(TEAM_ATTRIBUTE, topic)])

    def supervisor_token(self, user_id: str = SUPERVISOR_ID,
                         display_name: str = "Supervisor") -> str:
        """The supervisor's token (another ``user_id``: a supervisor of the web door)."""
        return mint_client_token(
            self.key.sid, self.key.secret, user_id, ttl_s=TOKEN_TTL_S,
            display_name=display_name,
            subscribe=[*(team_topic(t) for t in TEAMS), CALL_TOPIC, SUPERVISOR_TOPIC],
            attributes=[AttributeGrant("manual_status", SUPERVISOR_TOPIC),
                        AttributeGrant("onlineStatus", SUPERVISOR_TOPIC)])

    def rest_token(self) -> str:
        return mint_rest_token(self.key.sid, self.key.secret, ttl_s=TOKEN_TTL_S)

    @property
    def ws_url(self) -> str:
        assert self.hub is not None
        return f"ws://127.0.0.1:{self.hub.config.hub.ws_port}/"

    @property
    def api_url(self) -> str:
        assert self.hub is not None
        return f"http://127.0.0.1:{self.hub.config.hub.api_port}"

    # -- lifecycle ------------------------------------------------------------------------

    async def start(self) -> None:
        """Start the hub, then the agents and the customer calls."""
        if self.options.data is not None:
            data_dir = self.options.data
        else:
            self._tmp = data_dir = Path(tempfile.mkdtemp(prefix="monitor-demo-"))
        # Every simulated agent signs in from 127.0.0.1: the per-address sign-in rate
        # is lifted for them (a hub facing the world keeps its own).
        settings = HubSettings(host="127.0.0.1", ws_port=free_port(), api_port=free_port(),
                               data_dir=str(data_dir), offline_grace_ms=3000,
                               log_level="warning", auth_rate_per_ip=5000,
                               auth_burst_per_ip=10000)
        config = Config(settings, (Project(DEMO_PROJECT_ID, "Demo contact centre",
                                           (self.key,)),), "<demo>")
        self.hub = Hub(config)
        await self.hub.start()
        clock = Clock(self.options.speed)
        profiles = make_agents(self.options.agents, self.rng)
        await self.provision(profiles)
        self.agents = [Agent(p, self.ws_url, self.agent_token(p), clock,
                             random.Random(self.rng.random()), self.stats,
                             lambda: self.agents) for p in profiles]
        switchboard = Switchboard(self.api_url, self.rest_token(), self.agents, clock,
                                  random.Random(self.rng.random()), self.stats)
        self._tasks = [asyncio.create_task(a.run(), name=a.user_id) for a in self.agents]
        self._tasks.append(asyncio.create_task(switchboard.run(), name="switchboard"))
        for task in self._tasks:
            task.add_done_callback(_log_crash)

    async def provision(self, profiles: list[AgentProfile]) -> None:
        """Make every agent known to the hub before anyone watches, as after an earlier
        shift: each signs in once and sets its team; those whose shift starts later are
        signed out at once (REST disconnect: offline without the grace period), so the
        monitor lists them as offline from its first snapshot."""
        gate = asyncio.Semaphore(50)
        async with httpx.AsyncClient(base_url=self.api_url, timeout=10,
                                     headers={"X-STRINGEE-AUTH": self.rest_token()}) as http:
            async def one(profile: AgentProfile) -> None:
                async with gate:
                    client = HubClient(self.ws_url, self.agent_token(profile),
                                       device_id=f"demo-{profile.user_id}-roster",
                                       reconnect=False)
                    try:
                        await client.connect()
                        await client.change_attribute(TEAM_ATTRIBUTE, profile.team)
                        if profile.shift_start_s > 0:
                            await http.post(f"/v1/users/{profile.user_id}/disconnect")
                    except (HubError, httpx.HTTPError) as exc:
                        log.warning("could not provision %s: %s", profile.user_id, exc)
                    finally:
                        await client.close()

            await asyncio.gather(*(one(p) for p in profiles))

    async def stop(self) -> None:
        """Stop agents (their clients close), then the hub; remove a temporary data dir."""
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        if self.hub is not None:
            await self.hub.stop()
            self.hub = None
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None

    def print_attach_help(self, out: TextIO) -> None:
        """How to watch this demo from elsewhere: URLs and ready-made tokens."""
        guest = self.agent_token(GUEST_AGENT)
        speed = self.options.speed
        print(f"""monitor demo: {len(self.agents)} agents in {len(TEAMS)} teams, speed {speed:g}x

  WebSocket  {self.ws_url}
  REST API   {self.api_url}   (OpenAPI: {self.api_url}/docs)

Watch as the supervisor, in another terminal:
  MONITOR_TOKEN={self.supervisor_token()} monitor tui --url {self.ws_url}

Set your own status as an agent:
  MONITOR_TOKEN={guest} monitor tui --url {self.ws_url}

REST token:
  {self.rest_token()}

Ctrl-C stops the demo.""", file=out, flush=True)

    def summary(self) -> str:
        calls = ", ".join(f"{k} {v}" for k, v in sorted(self.stats.calls_by_status.items()))
        return (f"demo summary: logins {self.stats.logins}, status changes "
                f"{self.stats.status_changes}, network drops {self.stats.drops}, "
                f"call reports: {calls or 'none'}")


def _log_crash(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("demo task %s crashed", task.get_name(), exc_info=task.exception())


def _quiet_logs(data_dir: Path | None) -> Path:
    """Send the hub's and clients' logs to a file: the terminal belongs to the monitor."""
    path = (data_dir or Path(tempfile.gettempdir())) / "monitor-demo.log"
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter(
        "ts=%(asctime)s level=%(levelname)s logger=%(name)s %(message)s"))
    for name in ("monitor", "websockets", "uvicorn", "httpx"):
        logger = logging.getLogger(name)
        logger.handlers[:] = [handler]
        logger.propagate = False
        logger.setLevel(logging.WARNING)
    return path


async def run_demo(options: DemoOptions) -> int:
    """Run until the monitor quits, Ctrl-C, or ``duration`` runs out."""
    _quiet_logs(options.data)
    demo = Demo(options)
    await demo.start()
    door = web = None
    try:
        if options.ssh_port is not None:
            from monitor.demo.doors import open_demo_door

            door = await open_demo_door(demo, options.ssh_port)
        if options.web_port is not None:
            from monitor.demo.doors import open_demo_web

            web = await open_demo_web(demo, options.web_port)
        if options.headless:
            demo.print_attach_help(sys.stdout)
            if door is not None:
                print(f"Over SSH: ssh -p {door.port} demo@127.0.0.1", flush=True)
            if web is not None:
                print(f"In a browser: {web.url}", flush=True)
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            import signal

            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, stop.set)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), options.duration)
        else:
            from monitor.tui.app import MonitorApp
            from monitor.tui.history import HistorySource
            from monitor.tui.hubfeed import HubFeed
            from monitor.tui.settings import load_settings

            settings = load_settings(None, url=demo.ws_url)
            app = MonitorApp(HubFeed(demo.ws_url, demo.supervisor_token()), settings)
            app.use_history(HistorySource(demo.api_url, demo.rest_token))  # the day, Today
            await app.run_async()
    finally:
        if web is not None:
            await web.close()
        if door is not None:
            await door.close()
        await demo.stop()
    print(demo.summary(), flush=True)
    return 0
