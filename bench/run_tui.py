"""The monitor's benchmark: `monitor tui` in a real terminal over a live hub, 5,000 agents.

    python bench/run_tui.py --record

What runs, each in its own process:

- the hub (``python -m monitor hub``), pinned to core 0;
- a publisher, pinned to core 0: ``--agents`` WebSocket connections, one per agent, each
  authenticated with a token that grants ``manual_status`` and ``onlineStatus`` to
  ``bench_team`` (and ``team``, with ``--teams``); it sets every agent's team
  (``team_00`` ... round robin over ``--teams``, default 10: the app shows them grouped
  under a header line per team) and status at start and reports some calls, then,
  while told to, changes statuses (CHANGE_ATTRIBUTE on the agent's own connection) and
  moves calls along (REST ``PUT /v1/calls/{id}``: Ringing -> Answered -> Ended, published
  on ALL_CALL_STATUS) at ``--rate`` topic messages per second, evenly spaced;
- ``python -m monitor tui`` itself, pinned to core 1, in a pseudo-terminal of ``--size``
  (160x50) that this script (core 0) reads as a terminal would (``pyte``), with a
  supervisor's token subscribing ``bench_team`` and ``ALL_CALL_STATUS``.

Two phases, one after the other on the same app process: ``idle`` (the grid loaded with
every agent, no message flowing: the baseline) and ``live`` (``--rate`` messages/s),
each ``--duration`` s. In both, a key is pressed every ``--key-interval`` s, cycling
through sort (``o``, ``r``), filter (``n``, ``c``) and cursor (``down``, or ``up`` at the
end of the list) keys.

Keypress -> screen latency: from writing the key's bytes to the terminal until the
terminal has read the end of the first frame that shows its effect. This script answers
the app's synchronized-output query, so every frame the app paints comes between
``CSI ? 2026 h`` and ``CSI ? 2026 l``; after each frame the screen is checked. A sort or
filter key is done when the view line says the new sort and filters (the grid and the
view line are updated by one reconcile and painted in one frame); a cursor key when the
highlighted row holds another agent. Keys are never overlapped: the next one waits for
the previous one's frame (or its ``--key-timeout``, counted as a timeout).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import fcntl
import json
import multiprocessing as mp
import os
import queue
import random
import re
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import termios
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import contextlib

import measure
import targets
import wsload

from monitor.tokens import mint_client_token

TEAM = "bench_team"
CALLS = "ALL_CALL_STATUS"
STATUSES = ("available", "break", "lunch", "after_call_work", "meeting", "training")
WEIGHTS = (45, 12, 10, 15, 10, 8)
FIRST = ("Ann", "Bob", "Chloé", "Dev", "Eve", "Femi", "Gus", "Hana", "Ivan", "Jade", "Kofi",
         "Lena", "Mia", "Noor", "Omar", "Pia", "Quinn", "Rui", "Sara", "Tom")
LAST = ("Lee", "Marley", "Durand", "Patel", "Adams", "Okafor", "Grant", "Sato", "Petrov",
        "Moreau", "Mensah", "Berg", "Rossi", "Khan", "Haddad", "Nowak", "Byrne", "Costa",
        "Silva", "Weber")
SYNC_START = b"\x1b[?2026h"
SYNC_END = b"\x1b[?2026l"
SYNC_QUERY = b"\x1b[?2026$p"
SYNC_REPLY = b"\x1b[?2026;2$y"
KEYS = {"o": b"o", "r": b"r", "n": b"n", "c": b"c", "down": b"\x1b[B", "up": b"\x1b[A"}
SCRIPT = ("o", "move", "move", "r", "n", "move", "n", "c", "c", "move")
"""The keys pressed, in a loop: sort next / reverse, online only, on a call only, and the
cursor one row (down, or up when the list is shown to its end: it can always move)."""
KIND = {"o": "sort", "r": "sort", "n": "filter", "c": "filter", "move": "cursor"}
SORT_LABELS = ("Agent", "Online", "Status", "For", "Call", "In call", "Changed")
TEAM_ATTRIBUTE = "team"

# the publisher's shared counters
RATE, STOP, READY, STATUS_SENT, STATUS_ACKED, CALLS_SENT, CALLS_OK, REFUSED, FAILED = range(9)


def agent_id(i: int) -> str:
    return f"agent_{i:04d}"


def agent_name(i: int) -> str:
    return f"{FIRST[i % len(FIRST)]} {LAST[(i // len(FIRST)) % len(LAST)]} {i:04d}"


# -- the publisher (another process) -------------------------------------------------------


def publisher_main(port: int, api_port: int, agents: int, call_share: float, seed: int,
                   shared: Any, teams: int = 0) -> None:
    os.sched_setaffinity(0, {targets.SERVER_CPU})
    targets.raise_fd_limit()
    grants = (("manual_status", TEAM), ("onlineStatus", TEAM), (TEAM_ATTRIBUTE, TEAM))
    tokens = [mint_client_token(targets.KEY_SID, targets.KEY_SECRET, agent_id(i),
                                attributes=grants, display_name=agent_name(i), ttl_s=6 * 3600)
              for i in range(agents)]
    try:
        import uvloop
        uvloop.run(_publish(port, api_port, agents, call_share, seed, tokens, shared,
                            teams))
    except ImportError:
        asyncio.run(_publish(port, api_port, agents, call_share, seed, tokens, shared,
                             teams))


async def _publish(port: int, api_port: int, agents: int, call_share: float, seed: int,
                   tokens: list[str], shared: Any, teams: int = 0) -> None:
    import httpx

    rng = random.Random(seed)
    stats = wsload.Stats()
    conns: list[wsload.Conn] = []
    status = [""] * agents
    request = [0]

    def on_reply(payload: bytes) -> None:
        if b'"service":103' not in payload:
            return
        shared[STATUS_ACKED] += 1
        if b'"r":0,' not in payload and b'"r":0}' not in payload:
            shared[REFUSED] += 1

    sem = asyncio.Semaphore(100)

    async def connect(i: int) -> wsload.Conn:
        async with sem:
            for attempt in range(5):
                try:
                    c = await wsload.open_conn("127.0.0.1", port, stats)
                    await wsload.hub_authen(c, tokens[i])
                    c.on_message = on_reply
                    return c
                except Exception:
                    if attempt == 4:
                        raise
                    await asyncio.sleep(0.5)
        raise AssertionError

    conns = list(await asyncio.gather(*(connect(i) for i in range(agents))))

    def set_status(i: int, value: str) -> None:
        request[0] += 1
        status[i] = value
        conns[i].send(b'{"service":103,"body":{"attribute":"manual_status","value":"%s",'
                      b'"requestId":%d}}' % (value.encode(), request[0]))
        shared[STATUS_SENT] += 1

    for i in range(agents):
        if teams:  # each agent's team, as a contact-centre's agents publish it
            request[0] += 1
            conns[i].send(b'{"service":103,"body":{"attribute":"%s","value":"team_%02d",'
                          b'"requestId":%d}}' % (TEAM_ATTRIBUTE.encode(), i % teams,
                                                 request[0]))
            shared[STATUS_SENT] += 1
        set_status(i, rng.choices(STATUSES, WEIGHTS)[0])
    while shared[STATUS_ACKED] < shared[STATUS_SENT]:
        await asyncio.sleep(0.05)

    api = httpx.AsyncClient(base_url=f"http://127.0.0.1:{api_port}",
                            headers={"X-STRINGEE-AUTH": targets.rest_token()},
                            limits=httpx.Limits(max_connections=8), timeout=30)
    calls: dict[str, tuple[int, str]] = {}  # callId -> (agent, status)
    busy: set[int] = set()
    pending: set[asyncio.Task[None]] = set()
    counter = [0]

    async def put_call(call_id: str, agent: int, value: str) -> None:
        shared[CALLS_SENT] += 1
        try:
            body: dict[str, Any] = {"status": value}
            if value == "Ringing":
                body.update({"from": f"+1555{rng.randrange(10**7):07d}", "to": agent_id(agent)})
            res = await api.put(f"/v1/calls/{call_id}", json=body)
            if res.status_code == 200:
                shared[CALLS_OK] += 1
            else:
                shared[REFUSED] += 1
        except Exception:
            shared[FAILED] += 1

    def call_event() -> None:
        if len(calls) < agents // 8 and (not calls or rng.random() < 0.4):
            agent = rng.randrange(agents)
            while agent in busy:
                agent = rng.randrange(agents)
            counter[0] += 1
            call_id = f"bench-{seed}-{counter[0]}"
            calls[call_id] = (agent, "Ringing")
            busy.add(agent)
            value = "Ringing"
        else:
            call_id = rng.choice(list(calls))
            agent, current = calls[call_id]
            value = "Answered" if current == "Ringing" and rng.random() < 0.85 else "Ended"
            if value == "Ended":
                del calls[call_id]
                busy.discard(agent)
            else:
                calls[call_id] = (agent, value)
        task = asyncio.ensure_future(put_call(call_id, agent, value))
        pending.add(task)
        task.add_done_callback(pending.discard)

    def status_event() -> None:
        i = rng.randrange(agents)
        value = status[i]
        while value == status[i]:
            value = rng.choices(STATUSES, WEIGHTS)[0]
        set_status(i, value)

    # some agents on calls before the monitor starts, so the idle grid has calls too
    for _ in range(agents // 20):
        call_event()
    if pending:
        await asyncio.wait(pending)
    for _ in range(agents // 40):
        call_event()
    if pending:
        await asyncio.wait(pending)
    shared[READY] = 1

    rate, t0, emitted = 0.0, time.monotonic(), 0
    while not shared[STOP]:
        if shared[RATE] != rate:
            rate, t0, emitted = shared[RATE], time.monotonic(), 0
        if rate > 0:
            due = int((time.monotonic() - t0) * rate) - emitted
            for _ in range(max(0, due)):
                emitted += 1
                if rng.random() < call_share:
                    call_event()
                else:
                    status_event()
        await asyncio.sleep(0.002)
    if pending:
        await asyncio.wait(pending, timeout=5)
    await api.aclose()
    for c in conns:
        c.close()
    await asyncio.sleep(0.2)


# -- the terminal ----------------------------------------------------------------------------


class Terminal:
    """A pseudo-terminal running one program, read through pyte as a terminal would."""

    def __init__(self, cols: int, rows: int) -> None:
        import pyte

        self.cols, self.rows = cols, rows
        self.screen = pyte.Screen(cols, rows)
        self.stream = pyte.ByteStream(self.screen)
        self.master, self.slave = os.openpty()
        self._winsize(cols, rows)
        self.proc: subprocess.Popen[bytes] | None = None
        self.reads: queue.Queue[tuple[float, bytes]] = queue.Queue()
        self.reader: threading.Thread | None = None
        self.pending = b""
        self.synced = False
        self.frames = 0
        self.bytes = 0

    def _winsize(self, cols: int, rows: int) -> None:
        fcntl.ioctl(self.slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))

    def spawn(self, argv: list[str], env: dict[str, str], cpu: int | None) -> int:
        def child() -> None:
            os.setsid()
            fcntl.ioctl(0, termios.TIOCSCTTY, 0)
            if cpu is not None:
                os.sched_setaffinity(0, {cpu})

        self.proc = subprocess.Popen(argv, stdin=self.slave, stdout=self.slave,
                                     stderr=self.slave, env=env, preexec_fn=child,
                                     close_fds=True)
        self.reader = threading.Thread(target=self._read_loop, daemon=True)
        self.reader.start()
        return self.proc.pid

    def _read_loop(self) -> None:
        """Read the terminal's output as it comes, with the time each piece arrived: the
        screen is fed elsewhere, so a frame's time does not wait for the previous one."""
        while True:
            try:
                data = os.read(self.master, 1 << 16)
            except OSError:  # the program is gone, the terminal closed
                break
            if not data:
                break
            self.reads.put((time.monotonic(), data))
        self.reads.put((time.monotonic(), b""))

    def send(self, data: bytes) -> None:
        os.write(self.master, data)

    def read(self, timeout: float) -> list[float]:
        """Take what was read (waiting up to ``timeout``); feed the screen frame by frame.
        Returns the arrival time of each frame completed (of each piece read when the
        program does not use synchronized output)."""
        try:
            chunks = [self.reads.get(timeout=max(0.0, timeout))]
        except queue.Empty:
            return []
        while True:
            try:
                chunks.append(self.reads.get_nowait())
            except queue.Empty:
                break
        done: list[float] = []
        for now, data in chunks:
            self.bytes += len(data)
            if SYNC_QUERY in data:
                self.send(SYNC_REPLY)
            if SYNC_START in data or self.synced:
                self.synced = True
                data = self.pending + data
                while True:
                    end = data.find(SYNC_END)
                    if end < 0:
                        break
                    end += len(SYNC_END)
                    self.stream.feed(data[:end])
                    data = data[end:]
                    self.frames += 1
                    done.append(now)
                self.pending = data
            elif data:
                self.stream.feed(data)
                done.append(now)
        return done

    def lines(self) -> list[str]:
        return list(self.screen.display)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            deadline = time.monotonic() + 5
            while self.proc.poll() is None and time.monotonic() < deadline:
                self.read(0.05)
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
        for fd in (self.slave, self.master):
            with contextlib.suppress(OSError):
                os.close(fd)
        if self.reader is not None:
            self.reader.join(5)


# -- what the screen says ------------------------------------------------------------------


def view_line(lines: list[str]) -> str:
    for line in lines:
        if line.strip().startswith("sort:"):
            return line.strip()
    return ""


def kind_of(key: str) -> str:
    return "cursor" if key in ("up", "down") else KIND[key]


def at_end(view: str) -> bool:
    """Whether the grid's window is at the end of its rows: the view line's ``rows a-b``
    ends where its count of rows (``of L``, when grouped: agents and team headers) or
    of agents does."""
    rows = re.search(r"rows (\d+)-(\d+)(?: of (\d+))?", view)
    if rows is None:
        return False
    if rows.group(3) is not None:
        return rows.group(2) == rows.group(3)
    count = re.search(r"(\d+) (?:of \d+ )?agents?", view)
    return count is not None and rows.group(2) == count.group(1)


def grid_rows(term: Terminal) -> list[int]:
    """Screen rows of the grid's body (below its header, above the footer)."""
    lines = term.lines()
    for y, line in enumerate(lines):
        if line.lstrip().startswith("Agent") and "Online" in line and "Status" in line:
            return list(range(y + 1, len(lines) - 1))
    return []


def cursor_row(term: Terminal) -> tuple[int, str] | None:
    """(screen row, agent or team name) of the highlighted grid row: the agent row
    painted in a background no other agent row has; else (the cursor is on a team's
    header line) the header painted unlike the other headers, or the only one."""
    rows = grid_rows(term)
    if len(rows) < 3:
        return None
    buffer = term.screen.buffer
    lines = term.lines()
    headers = [y for y in rows if lines[y].lstrip().startswith(("▾ ", "▸ "))]
    agents = [y for y in rows if y not in headers and lines[y].strip()]

    def unique(ys: list[int]) -> list[int]:
        backgrounds = {y: buffer[y][2].bg for y in ys}
        counts = Counter(backgrounds.values())
        return [y for y, bg in backgrounds.items() if counts[bg] == 1]

    found = unique(agents) if len(agents) >= 2 else []
    if not found:
        found = headers if len(headers) == 1 else unique(headers)
    if len(found) != 1:
        return None
    y = found[0]
    name = lines[y][:30].replace("⚠", "").strip()
    return y, name.split("  ")[0]


class ViewState:
    """The sort and filters the harness expects the view line to show."""

    def __init__(self, labels: tuple[str, ...] = SORT_LABELS) -> None:
        self.labels = labels
        """The columns ``o`` cycles through (the team's column follows the built-in ones)."""
        self.column = 0
        self.reverse = False
        self.online = False
        self.on_call = False

    def press(self, key: str) -> None:
        if key == "o":
            self.column = (self.column + 1) % len(self.labels)
            self.reverse = False
        elif key == "r":
            self.reverse = not self.reverse
        elif key == "n":
            self.online = not self.online
        elif key == "c":
            self.on_call = not self.on_call

    def expected(self) -> str:
        text = f"sort: {self.labels[self.column]} {'▼' if self.reverse else '▲'}"
        filters = [f for f, on in (("online only", self.online), ("on a call", self.on_call))
                   if on]
        if filters:
            text += " │ filter: " + " · ".join(filters)
        return text + " │ "


def wait_for(term: Terminal, check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        term.read(0.1)
        if check():
            return
        if term.proc is not None and term.proc.poll() is not None:
            raise RuntimeError(f"the app exited {term.proc.returncode}: "
                               + "\n".join(term.lines()))
    raise TimeoutError(f"{what} not on screen within {timeout} s:\n" + "\n".join(term.lines()))


# -- one phase -------------------------------------------------------------------------------


def run_phase(name: str, term: Terminal, view: ViewState, args: argparse.Namespace,
              shared: Any, hub_pid: int, pub_pid: int, profile: Path | None,
              key_index: list[int]) -> dict[str, Any]:
    assert term.proc is not None
    app_pid = term.proc.pid
    latencies: dict[str, list[int]] = {"sort": [], "filter": [], "cursor": []}
    timeouts = 0
    cpu = measure.CpuMeter([app_pid, hub_pid, pub_pid])
    cores = measure.CoreMeter()
    sent0, calls0 = shared[STATUS_ACKED], shared[CALLS_OK]
    frames0, bytes0 = term.frames, term.bytes
    prof = measure.start_profile(app_pid, args.duration, profile) if profile else None
    cpu.start()
    cores.start()
    start = time.monotonic()
    end = start + args.duration
    next_key = start + args.key_interval
    pending: tuple[str, float, Callable[[], bool]] | None = None
    while True:
        now = time.monotonic()
        if now >= end and pending is None:
            break
        if pending is None and now >= next_key:
            key = SCRIPT[key_index[0] % len(SCRIPT)]
            key_index[0] += 1
            if KIND[key] == "cursor":
                key = "up" if at_end(view_line(term.lines())) else "down"
                before = cursor_row(term)

                def moved(before: tuple[int, str] | None = before) -> bool:
                    after = cursor_row(term)
                    return after is not None and after[1] != (before or (0, ""))[1]
                check = moved
            else:
                view.press(key)
                want = view.expected()

                def shows(want: str = want) -> bool:
                    return view_line(term.lines()).startswith(want)
                check = shows
            term.send(KEYS[key])
            pending = (key, time.monotonic(), check)
            next_key += args.key_interval
        wait = 0.05 if pending else max(0.0, min(next_key, end) - time.monotonic())
        for frame_at in term.read(min(0.05, wait)):
            if pending is not None and pending[2]():
                latencies[kind_of(pending[0])].append(int((frame_at - pending[1]) * 1e9))
                if args.verbose:
                    print(f"{name} {pending[0]:5} {1000 * (frame_at - pending[1]):8.1f} ms",
                          flush=True)
                pending = None
                break
        if pending is not None and time.monotonic() - pending[1] > args.key_timeout:
            timeouts += 1
            if args.verbose:
                print(f"{name} {pending[0]:5} timed out; screen:", *term.lines(), sep="\n")
            latencies[kind_of(pending[0])].append(int(args.key_timeout * 1e9))
            pending = None
        if term.proc.poll() is not None:
            raise RuntimeError(f"the app exited {term.proc.returncode}")
    wall = time.monotonic() - start
    cpu.stop()
    busy = cores.stop()
    mem = measure.memory_kb(app_pid)
    every = [v for values in latencies.values() for v in values]
    row: dict[str, Any] = {
        "phase": name, "agents": args.agents,
        "msgs_per_s": (shared[STATUS_ACKED] - sent0 + shared[CALLS_OK] - calls0) / wall,
        "keys": len(every), "timeouts": timeouts,
        **{k: v for k, v in measure.percentiles(every).items() if k != "samples"},
        "p90_ms": sorted(every)[int(0.9 * len(every))] / 1e6 if every else float("nan"),
        "app_cpu_pct": 100.0 * cpu.used[app_pid] / wall,
        "app_rss_mib": mem.get("VmRSS", 0) / 1024, "app_peak_rss_mib": mem.get("VmHWM", 0) / 1024,
        "frames_per_s": (term.frames - frames0) / wall,
        "out_kib_per_s": (term.bytes - bytes0) / 1024 / wall,
        "hub_cpu_pct": 100.0 * cpu.used[hub_pid] / wall,
        "pub_cpu_pct": 100.0 * cpu.used[pub_pid] / wall,
        "core0_busy_pct": busy.get("cpu0", 0.0), "core1_busy_pct": busy.get("cpu1", 0.0),
        "wall_s": wall,
    }
    for kind, values in latencies.items():
        p = measure.percentiles(values)
        row[f"{kind}_p50_ms"], row[f"{kind}_p99_ms"] = p["p50_ms"], p["p99_ms"]
        row[f"{kind}_keys"] = len(values)
    if prof is not None and profile is not None:
        measure.finish_profile(prof, profile)
    return row


# -- the run ---------------------------------------------------------------------------------


def settings_file(workdir: Path, url: str, token_path: Path, refresh: float) -> Path:
    path = workdir / "monitor.toml"
    path.write_text(f'url = "{url}"\ntoken_file = "{token_path}"\n'
                    f"refresh_per_second = {refresh}\n")
    return path


def run(args: argparse.Namespace) -> list[dict[str, Any]]:
    cols, rows = (int(v) for v in args.size.split("x"))
    if not args.no_pin:  # the terminal (this process) beside the hub and the publisher
        os.sched_setaffinity(0, {targets.SERVER_CPU})
    workdir = Path(tempfile.mkdtemp(prefix="bench-tui-"))
    hub = targets.Target("hub", hub_settings=args.hub_settings)
    term: Terminal | None = None
    pub: mp.Process | None = None
    shared = mp.Array("d", 16, lock=False)
    results: list[dict[str, Any]] = []
    try:
        hub.start()
        ctx = mp.get_context("fork")
        pub = ctx.Process(target=publisher_main, args=(
            hub.port, hub.api_port, args.agents, args.call_share, args.seed, shared,
            args.teams),
            daemon=True)
        pub.start()
        print(f"publisher: {args.agents} agents connecting…", flush=True)
        deadline = time.monotonic() + 300
        while not shared[READY]:
            if not pub.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the publisher did not get ready:\n" + hub.log())
            time.sleep(0.2)
        print(f"publisher ready: {int(shared[STATUS_ACKED])} statuses, "
              f"{int(shared[CALLS_OK])} call reports", flush=True)
        token = mint_client_token(
            targets.KEY_SID, targets.KEY_SECRET, "supervisor", subscribe=(TEAM, CALLS),
            attributes=(("manual_status", "supervisors"),), display_name="Sam Super",
            ttl_s=6 * 3600)
        token_path = workdir / "supervisor.token"
        token_path.write_text(token)
        token_path.chmod(0o600)
        config = settings_file(workdir, f"ws://127.0.0.1:{hub.port}/", token_path,
                               args.refresh)
        env = {k: v for k, v in os.environ.items() if not k.startswith("TEXTUAL")}
        env.update(TERM="xterm-256color", COLORTERM="truecolor", LANG="C.UTF-8",
                   XDG_CONFIG_HOME=str(workdir / "config"), PYTHONUNBUFFERED="1")
        term = Terminal(cols, rows)
        app_pid = term.spawn([sys.executable, "-m", "monitor", "tui", "--settings",
                              str(config)], env, None if args.no_pin else targets.CLIENT_CPU)
        loaded = time.monotonic()
        want = f"{args.agents} agents" if args.agents != 1 else "1 agent"
        wait_for(term, lambda: want in view_line(term.lines())
                 and any("● connected" in line for line in term.lines()), 120,
                 f"“{want}”")
        print(f"app {app_pid} shows {want} after {time.monotonic() - loaded:.1f} s", flush=True)
        wait_for(term, lambda: cursor_row(term) is not None, 10, "the cursor row")
        view = ViewState(SORT_LABELS + ((TEAM_ATTRIBUTE,) if args.teams else ()))
        key_index = [0]
        settle_until = time.monotonic() + args.settle
        while time.monotonic() < settle_until:
            term.read(0.1)
        busy = measure.wait_quiet(args.quiet_wait)
        for phase in ("idle", "live"):
            if phase == "live":
                shared[RATE] = args.rate
                warm = time.monotonic() + args.warmup
                while time.monotonic() < warm:
                    term.read(0.05)
            profile = Path(args.profile) / f"tui-{phase}.txt" if args.profile else None
            row = run_phase(phase, term, view, args, shared, hub.pid, pub.pid or 0, profile,
                            key_index)
            row["machine_busy_before_pct"] = busy
            results.append(row)
            print({k: (round(v, 2) if isinstance(v, float) else v) for k, v in row.items()},
                  flush=True)
        shared[RATE] = 0
        results[-1]["refused"] = int(shared[REFUSED])
        results[-1]["failed"] = int(shared[FAILED])
        base = results[0]
        for row in results[1:]:
            for key in ("p99_ms", "app_cpu_pct"):
                if base.get(key):
                    row[f"{key}_x_idle"] = row[key] / base[key]
    finally:
        shared[STOP] = 1
        if term is not None:
            if term.proc is not None and term.proc.poll() is None:
                term.send(b"q")
                deadline = time.monotonic() + 5
                while term.proc.poll() is None and time.monotonic() < deadline:
                    term.read(0.05)
            term.stop()
        if pub is not None:
            pub.join(15)
            if pub.is_alive():
                pub.kill()
                pub.join()
        hub.stop()
        shutil.rmtree(hub.workdir, ignore_errors=True)
        shutil.rmtree(workdir, ignore_errors=True)
    return results


COLUMNS = [("phase", "phase"), ("agents", "agents"), ("msgs_per_s", "msgs/s"),
           ("keys", "keys"), ("timeouts", "timeouts"), ("p50_ms", "p50 ms"),
           ("p90_ms", "p90 ms"), ("p99_ms", "p99 ms"), ("max_ms", "max ms"),
           ("sort_p99_ms", "sort p99 ms"), ("filter_p99_ms", "filter p99 ms"),
           ("cursor_p99_ms", "cursor p99 ms"), ("app_cpu_pct", "app CPU %"),
           ("app_rss_mib", "app RSS MiB"), ("app_peak_rss_mib", "app peak RSS MiB"),
           ("frames_per_s", "frames/s"), ("out_kib_per_s", "output KiB/s"),
           ("hub_cpu_pct", "hub CPU %"), ("pub_cpu_pct", "publisher CPU %"),
           ("core0_busy_pct", "core 0 busy %"), ("core1_busy_pct", "core 1 busy %"),
           ("p99_ms_x_idle", "p99 × idle"), ("app_cpu_pct_x_idle", "CPU × idle"),
           ("machine_busy_before_pct", "machine busy before %")]


def record(section: str, rows: list[dict[str, Any]]) -> Path:
    """The run's table at the end of the Monitor section of docs/benchmarks.md (made if
    missing, before "Recorded runs"); the raw rows in bench/results/."""
    measure.RESULTS.mkdir(exist_ok=True)
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y%m%dT%H%M%S")
    path = measure.RESULTS / f"{stamp}-tui.json"
    path.write_text(json.dumps({"machine": measure.machine(), "commit": measure.commit(),
                                "rows": rows}, indent=1, default=str))
    text = measure.DOC.read_text()
    head = "\n## Monitor\n"
    if head not in text:
        anchor = text.find("\n## Recorded runs")
        anchor = len(text) if anchor < 0 else anchor
        text = text[:anchor].rstrip("\n") + "\n" + head + "\n" + text[anchor:].lstrip("\n")
    start = text.index(head) + len(head)
    nxt = text.find("\n## ", start)
    nxt = len(text) if nxt < 0 else nxt
    body = text[:nxt].rstrip("\n") + "\n\n" + section.rstrip("\n") + "\n"
    rest = text[nxt:]
    measure.DOC.write_text(body + (("\n" + rest.lstrip("\n")) if rest else ""))
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--agents", type=int, default=5000)
    parser.add_argument("--rate", type=float, default=200.0,
                        help="topic messages per second in the live phase")
    parser.add_argument("--call-share", type=float, default=0.25,
                        help="part of the messages that are call reports (the rest: statuses)")
    parser.add_argument("--duration", type=float, default=60.0, help="s per phase")
    parser.add_argument("--warmup", type=float, default=3.0,
                        help="s of live messages before the live phase is measured")
    parser.add_argument("--settle", type=float, default=3.0,
                        help="s after the grid is loaded before the idle phase")
    parser.add_argument("--key-interval", type=float, default=0.5)
    parser.add_argument("--key-timeout", type=float, default=5.0)
    parser.add_argument("--size", default="160x50", help="terminal COLSxROWS")
    parser.add_argument("--refresh", type=float, default=4.0,
                        help="the app's refresh_per_second setting")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--teams", type=int, default=10,
                        help="agents publish a team (team_00, team_01...): the app groups "
                             "them under a header line per team (0: no team, no groups)")
    parser.add_argument("--hub-settings", default="")
    parser.add_argument("--no-pin", action="store_true",
                        help="let every process run on any core (default: the app on core "
                             "1, the hub, the publisher and the terminal on core 0)")
    parser.add_argument("--profile", metavar="DIR",
                        help="py-spy the app during each phase, stacks into DIR")
    parser.add_argument("--quiet-wait", type=float, default=30.0,
                        help="before the phases, wait up to this many s for an idle machine")
    parser.add_argument("--verbose", action="store_true", help="print every key's latency")
    parser.add_argument("--record", action="store_true")
    args = parser.parse_args(argv)
    rows = run(args)
    text = measure.table(rows, COLUMNS)
    print()
    print(text)
    if args.record:
        cmd = "python bench/run_tui.py " + " ".join(argv if argv is not None else sys.argv[1:])
        section = measure.header(f"Monitor: {args.agents:,} agents, {args.rate:g} msgs/s",
                                 cmd) + "\n" + text + "\n"
        print("recorded raw rows in", record(section, rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
