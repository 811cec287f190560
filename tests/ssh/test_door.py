"""End to end: a real hub, ``monitor ssh-serve``, and the OpenSSH client in tmux."""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from monitor.client import HubClient
from tests.conftest import require_program
from tests.hubproc import HubProcess
from tests.ssh.door import DoorProcess, Tmux, make_key, process_gone, wait_until

pytestmark = pytest.mark.slow

ROLES = """
[[users]]
name = "sup"
role = "supervisor"
teams = ["sales"]
display_name = "Sue Park"

[[users]]
name = "agent_1"
role = "agent"
team = "sales"
display_name = "Ann Lee"

[[users]]
name = "agent_2"
role = "agent"
team = "sales"
"""


class Site:
    """A hub, a door in front of it (two sessions at most) and the users' keys."""

    def __init__(self, hub: HubProcess, workdir: Path) -> None:
        self.hub = hub
        self.workdir = workdir
        keys = workdir / "keys"
        keys.mkdir()
        self.key = {}
        for user in ("sup", "agent_1"):
            self.key[user] = workdir / f"{user}_key"
            (keys / f"{user}.pub").write_text(make_key(self.key[user]) + "\n")
        self.stranger_key = workdir / "stranger_key"
        make_key(self.stranger_key)
        (workdir / "roles.toml").write_text(ROLES)
        self.door = DoorProcess(workdir / "door", [
            "--config", str(hub.config_path), "--hub", hub.ws_url,
            "--roles", str(workdir / "roles.toml"), "--authorized-keys", str(keys),
            "--max-sessions", "2"])


@pytest.fixture(scope="module")
def site(module_hub: HubProcess, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    require_program("ssh", "openssh-client")
    site = Site(module_hub, tmp_path_factory.mktemp("ssh"))
    site.door.start()
    try:
        yield site
    finally:
        site.door.stop()


@pytest.fixture
def tmux(site: Site) -> Iterator[Tmux]:
    mux = Tmux(require_program("tmux", "tmux"), f"monitor-ssh-{uuid.uuid4().hex[:12]}")
    try:
        yield mux
    finally:
        mux.stop()


def login(tmux: Tmux, site: Site, window: str, user: str, *extra: str) -> None:
    # TERM set here is what the client asks the door's pty for
    tmux.start(window, ["env", "TERM=xterm-256color",
                        *site.door.ssh_args(user, site.key[user], "-tt", *extra)], 110, 30)


def session_of(site: Site, user: str, event: str = "session_start") -> dict[str, str]:
    found = [e for e in site.door.events(event) if e.get("user") == user]
    return found[-1] if found else {}


def test_without_a_terminal_the_door_explains_in_one_line(site: Site) -> None:
    done = site.door.ssh("sup", site.key["sup"], "-T")
    assert done.returncode == 1
    assert done.stdout.strip() == ("monitor: this door shows the live monitor, which needs "
                                   "a terminal: connect with `ssh -t`.")
    done = site.door.ssh("sup", site.key["sup"], "-T", command=["cat", "/etc/passwd"])
    assert done.returncode == 1
    assert "runs only the live monitor, no commands" in done.stdout
    assert "root:" not in done.stdout


def test_refused_logins_are_logged_with_the_reason(site: Site) -> None:
    cases = [("sup", site.stranger_key, "key_not_authorized"),
             ("mallory", site.key["sup"], "unknown_user"),
             ("agent_2", site.key["agent_1"], "no_authorized_keys")]
    for user, key, reason in cases:
        done = site.door.ssh(user, key, "-T")
        assert done.returncode == 255, (user, done)
        assert "Permission denied" in done.stderr
        wait_until(lambda u=user: any(e.get("user") == u
                                      for e in site.door.events("login_refused")),
                   f"the refusal of {user}", 10, site.door.log)
        refusal = [e for e in site.door.events("login_refused") if e["user"] == user][-1]
        assert refusal["reason"] == reason
    # the stranger's key is named by its fingerprint
    stranger = [e for e in site.door.events("login_refused") if e["user"] == "sup"][-1]
    assert stranger["keys_tried"].startswith("SHA256:")
    # the unknown and the keyless never got in
    assert not [e for e in site.door.events("login") if e["user"] in ("mallory", "agent_2")]


async def test_agent_status_reaches_the_supervisor_and_the_door_cleans_up(
        site: Site, tmux: Tmux) -> None:
    # A teammate already on a break: the supervisor's grid has a row from the start.
    grants = [("manual_status", "team_sales"), ("onlineStatus", "team_sales")]
    teammate = HubClient(site.hub.ws_url, site.hub.client_token(
        "agent_9", attributes=grants, display_name="Bob Stone"))
    await teammate.connect()
    await teammate.change_attribute("manual_status", "break")
    try:
        await asyncio.to_thread(_supervisor_and_agent, site, tmux)
    finally:
        await teammate.close()


def _supervisor_and_agent(site: Site, tmux: Tmux) -> None:
    login(tmux, site, "sup", "sup", "-o", "SetEnv=COLORTERM=truecolor SECRET=x")
    wait_until(lambda: "● connected" in tmux.screen("sup") and "Bob Stone" in tmux.screen("sup"),
               "the supervisor's grid", explain=lambda: tmux.screen("sup") + site.door.log())
    screen = tmux.screen("sup")
    assert "you: Sue Park (sup)" in screen and "read-only" in screen
    assert "◐ break" in screen

    # The child: TERM from the client, UTF-8, and the token neither in its arguments nor
    # in its environment.
    sup = session_of(site, "sup")
    assert sup["term"] == "xterm-256color" and sup["size"] == "110x30"
    pid = int(sup["pid"])
    cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    environ = dict(item.split("=", 1) for item in
                   Path(f"/proc/{pid}/environ").read_text().split("\0") if "=" in item)
    assert environ["TERM"] == "xterm-256color" and environ["LANG"] == "C.UTF-8"
    assert environ["COLORTERM"] == "truecolor" and "SECRET" not in environ
    assert not any(k.startswith("MONITOR_") for k in environ)
    assert environ["HOME"] == os.readlink(f"/proc/{pid}/cwd")  # a private dir of its own
    token_file = Path(cmdline[cmdline.index(b"--token-file") + 1].decode())
    token = token_file.read_text().strip()
    assert token.count(".") == 2 and all(token.encode() not in arg for arg in cmdline)
    assert token_file.stat().st_mode & 0o777 == 0o600
    assert token_file.parent.stat().st_mode & 0o777 == 0o700
    assert str(token_file.parent) == environ["HOME"]

    # The agent sees his own screen and sets his status with a key.
    login(tmux, site, "agent_1", "agent_1")
    wait_until(lambda: "My status:" in tmux.screen("agent_1"), "the agent's screen",
               explain=lambda: tmux.screen("agent_1"))
    assert "you: Ann Lee (agent_1)" in tmux.screen("agent_1")
    tmux.keys("agent_1", "3")  # the third status: lunch
    wait_until(lambda: "lunch  ◀ current" in tmux.screen("agent_1"), "the agent's change",
               explain=lambda: tmux.screen("agent_1"))
    wait_until(lambda: any("Ann Lee" in line and "lunch" in line
                           for line in tmux.screen("sup").splitlines()),
               "the change on the supervisor's grid", explain=lambda: tmux.screen("sup"))
    with site.hub.rest() as rest:
        user = rest.get("/v1/users/agent_1").json()
    assert {a["attribute"]: a.get("value") for a in user["attributes"]}["manual_status"] \
        == "lunch"

    # Resize: the supervisor's monitor redraws at the new size.
    tmux.resize("sup", 64, 16)
    wait_until(lambda: "columns hidden" in tmux.screen("sup"), "the narrow grid",
               explain=lambda: tmux.screen("sup"))
    narrow = tmux.screen("sup").splitlines()
    assert max(len(line) for line in narrow) <= 64
    assert narrow[-1].lstrip().startswith("q Quit")  # the footer on the last of 16 rows

    # Two sessions are the cap: a third is told so, and the refusal is logged.
    login(tmux, site, "third", "sup")
    wait_until(lambda: "[ssh exited" in tmux.screen("third"), "the third session's end",
               explain=lambda: tmux.screen("third"))
    assert "all 2 sessions are in use; try again later." in tmux.screen("third")
    assert "[ssh exited 1]" in tmux.screen("third")
    assert any(e.get("reason") == "session_cap" for e in site.door.events("login_refused"))

    # The agent's laptop goes away: his process (and its group) and token file go too.
    agent_pid = int(session_of(site, "agent_1")["pid"])
    agent_cmd = Path(f"/proc/{agent_pid}/cmdline").read_bytes().split(b"\0")
    agent_token = Path(agent_cmd[agent_cmd.index(b"--token-file") + 1].decode())
    tmux.close("agent_1")
    wait_until(lambda: session_of(site, "agent_1", "session_end").get("reason") == "disconnect",
               "the agent's session end", explain=site.door.log)
    wait_until(lambda: process_gone(agent_pid), "the agent's process to go")
    assert not agent_token.parent.exists()

    # The supervisor quits with q: the session ends with the monitor's exit status.
    tmux.keys("sup", "q")
    wait_until(lambda: "[ssh exited 0]" in tmux.screen("sup"), "the supervisor's exit",
               explain=lambda: tmux.screen("sup"))
    assert session_of(site, "sup", "session_end")["reason"] == "quit"
    assert process_gone(pid) and not token_file.parent.exists()


def test_idle_sessions_time_out_and_a_stopping_door_ends_its_sessions(
        site: Site, tmux: Tmux, tmp_path: Path) -> None:
    door = DoorProcess(tmp_path / "idle", [
        "--config", str(site.hub.config_path), "--hub", site.hub.ws_url,
        "--roles", str(site.workdir / "roles.toml"),
        "--authorized-keys", str(site.workdir / "keys"), "--idle-timeout", "4s"]).start()
    try:
        for window in ("idle", "busy"):
            tmux.start(window, door.ssh_args("sup", site.key["sup"], "-tt"), 100, 24)
        wait_until(lambda: all("● connected" in tmux.screen(w) for w in ("idle", "busy")),
                   "both monitors", explain=lambda: tmux.screen("idle") + door.log())
        first = {e["pid"] for e in door.events("session_start")}
        # keystrokes keep one session busy; the other gets none
        deadline = time.monotonic() + 20
        while "[ssh exited" not in tmux.screen("idle") and time.monotonic() < deadline:
            tmux.keys("busy", "o")
            time.sleep(0.5)
        screen = tmux.screen("idle")
        assert "monitor: session closed: no input for 4 seconds." in screen
        assert "[ssh exited 0]" in screen
        assert "[ssh exited" not in tmux.screen("busy")
        ends = door.events("session_end")
        assert [e["reason"] for e in ends] == ["idle"]
    finally:
        assert door.stop() == 0
    # the busy session was told, and no process of the door is left
    wait_until(lambda: "[ssh exited" in tmux.screen("busy"), "the busy session's end",
               explain=lambda: tmux.screen("busy"))
    assert "session closed: the server is shutting down." in tmux.screen("busy")
    assert all(process_gone(int(pid)) for pid in first)
