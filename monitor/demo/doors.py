"""The demo's doors: anyone may watch it over SSH (``ssh demo@host``) or in a browser,
with no key and no invitation. The doors know nothing of the demo; these policies are
what makes them the demo's."""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from monitor.config import ConfigError
from monitor.demo.scenario import SUPERVISOR_ID
from monitor.ssh.roles import Access
from monitor.ssh.server import Door, DoorOptions
from monitor.web.server import Visitor, WebDoor, WebOptions

if TYPE_CHECKING:
    from aiohttp import web


class Demo(Protocol):
    """What the doors need of a running demo (:class:`monitor.demo.run.Demo`)."""

    @property
    def ws_url(self) -> str: ...

    def supervisor_token(self, user_id: str = SUPERVISOR_ID,
                         display_name: str = "Supervisor") -> str: ...


@dataclass
class DemoPolicy:
    """The SSH door's policy: anyone, the demo's supervisor view, read-only."""

    demo: Demo

    def access(self, login: str) -> Access | None:
        return Access(SUPERVISOR_ID, display_name="Supervisor", read_only=True)

    def mint(self, access: Access) -> str:
        return self.demo.supervisor_token()


class DemoGate:
    """The web door's gate: anyone, each browser session a supervisor ``web_N`` of its
    own (who may set their own status)."""

    needs_invitation = False
    secure_cookie = False

    def __init__(self, demo: Demo) -> None:
        self.demo = demo
        self._numbers = itertools.count(1)

    def visitor(self, request: web.Request) -> Visitor:
        number = next(self._numbers)
        return Visitor(Access(f"web_{number}", display_name=f"Web visitor {number}"))

    def still_in(self, visitor: Visitor) -> tuple[int, str, str] | None:
        return None

    def mint(self, access: Access) -> str:
        return self.demo.supervisor_token(access.user_id, access.display_name or "Visitor")


async def open_demo_door(demo: Demo, port: int, host: str = "127.0.0.1",
                         host_key: Path | None = None, max_sessions: int = 20) -> Door:
    """The SSH door onto a running demo: anyone, read-only supervisor view."""
    options = DoorOptions(host=host, port=port, max_sessions=max_sessions)
    if host_key is not None:
        options.host_key = host_key
    try:
        return await Door(DemoPolicy(demo), demo.ws_url, options, authorized_keys=None).start()
    except OSError as exc:  # the port is taken, the host key unreadable
        raise ConfigError(f"--ssh {port}: {exc.strerror or exc}") from None


async def open_demo_web(demo: Demo, port: int, host: str = "127.0.0.1",
                        max_sessions: int = 20) -> WebDoor:
    """The web door onto a running demo: anyone, each a supervisor ``web_N``."""
    options = WebOptions(host=host, port=port, max_sessions=max_sessions)
    try:
        return await WebDoor(DemoGate(demo), demo.ws_url, options).start()
    except OSError as exc:  # the port is taken
        raise ConfigError(f"--web {port}: {exc.strerror or exc}") from None
