"""``monitor report agents|calls|history``: the hub's history and reports on the command line.

A terminal table by default (Rich), CSV for spreadsheets, or the hub's JSON. Times are
local ISO times (``2026-12-05T08:00``), ``now``, ``today``, ``yesterday`` or epoch
milliseconds. The REST token comes from ``--token-file``, else is minted from the
config's API key (like ``monitor token rest``), never from the command line.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from collections.abc import Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import IO, Any

from monitor.flags import UsageError, add_config_flag, config_from_args

FORMATS = ("table", "csv", "json")
INTERVALS = ("15m", "30m", "1h", "1d")


# -- arguments -------------------------------------------------------------------------


def parse_time(text: str, now: datetime | None = None) -> int:
    """Epoch ms of ``text``: ``now``, ``today``, ``yesterday`` (local midnight), digits
    (epoch ms), or an ISO date or time (local unless it says its offset)."""
    now = now or datetime.now().astimezone()
    word = text.strip().lower()
    midnight = now.replace(hour=0, minute=0, second=0, microsecond=0)
    if word == "now":
        moment = now
    elif word == "today":
        moment = midnight
    elif word == "yesterday":
        moment = midnight - timedelta(days=1)
    elif word.isdigit():
        return int(word)
    else:
        try:
            moment = datetime.fromisoformat(text.strip())
        except ValueError:
            raise UsageError(f"{text!r}: not a time (2026-12-05T08:00, now, today, "
                             "yesterday or epoch ms)") from None
        if moment.tzinfo is None:
            moment = moment.astimezone()  # local time
    return int(moment.timestamp() * 1000)


def _api_url(args: argparse.Namespace) -> str:
    if args.url:
        return str(args.url).rstrip("/")
    settings = config_from_args(args).hub
    host = "127.0.0.1" if settings.host in ("0.0.0.0", "::", "") else settings.host
    return f"http://{host}:{settings.api_port}"


def _rest_token(args: argparse.Namespace) -> str:
    if args.token_file:
        path = Path(args.token_file).expanduser()
        try:
            token = path.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise UsageError(f"{path}: cannot read the token: {exc.strerror}") from None
        if not token:
            raise UsageError(f"{path}: the token file is empty")
        return token
    from monitor.tokens import mint_rest_token

    config = config_from_args(args)
    if args.key:
        found = config.key(args.key)
        if found is None:
            raise UsageError(f"{config.source}: no API key with sid {args.key!r}")
        key = found[1]
    else:
        _, key = config.default_key()
    return mint_rest_token(key.sid, key.secret, ttl_s=300)


# -- output ----------------------------------------------------------------------------


def duration(ms: int) -> str:
    """``1:02:03`` (hours, minutes, seconds) of a duration in ms."""
    seconds = round(ms / 1000)
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


def clock(ms: int) -> str:
    """A local time of day (with the date when not today)."""
    moment = datetime.fromtimestamp(ms / 1000).astimezone()
    if moment.date() == datetime.now().date():
        return moment.strftime("%H:%M:%S")
    return moment.strftime("%Y-%m-%d %H:%M:%S")


def _text(value: Any) -> str:
    if isinstance(value, str):
        return value
    return "" if value is None else json.dumps(value, ensure_ascii=False)


def agents_rows(body: dict[str, Any]) -> tuple[list[str], list[list[Any]], list[str]]:
    """Header, rows (raw numbers) and the status values of an agents report."""
    statuses = sorted({s for a in body["agents"] for s in a["statusMs"]})
    grouped = any("group" in a for a in body["agents"])
    header = ["userId", "displayName", *(["group"] if grouped else []), "onlineMs",
              *[f"status:{s}" for s in statuses], "handled", "missed", "ringMs", "talkMs",
              "ahtMs", "occupancy"]
    rows = []
    for a in body["agents"]:
        calls = a["calls"]
        aht = round(calls["talkMs"] / calls["handled"]) if calls["handled"] else 0
        rows.append([a["userId"], a["displayName"], *([a.get("group")] if grouped else []),
                     a["onlineMs"], *[a["statusMs"].get(s, 0) for s in statuses],
                     calls["handled"], calls["missed"], calls["ringMs"], calls["talkMs"],
                     aht, a["occupancy"]])
    return header, rows, statuses


def calls_rows(body: dict[str, Any]) -> tuple[list[str], list[list[Any]]]:
    header = ["start", "offered", "answered", "abandoned", "answeredWithinSla",
              "avgSpeedOfAnswerMs", "avgHandleMs"]
    return header, [[i[k] for k in header] for i in body["intervals"]]


def history_rows(body: dict[str, Any]) -> tuple[list[str], list[list[Any]]]:
    header = ["timestamp", "attribute", "oldValue", "value", "callId"]
    return header, [[e["timestamp"], e["attribute"], e.get("oldValue"), e.get("value"),
                     e.get("callId")] for e in body["events"]]


def write_csv(out: IO[str], header: Sequence[str], rows: Sequence[Sequence[Any]],
              safe: bool) -> None:
    """CSV; text from the hub escaped when ``safe`` (the output is a terminal)."""
    from monitor.tui.text import safe_text

    writer = csv.writer(out)
    writer.writerow(header)
    for row in rows:
        writer.writerow([safe_text(_text(v)) if safe else _text(v) for v in row])


def write_table(out: IO[str], kind: str, body: dict[str, Any]) -> None:
    """A Rich table: durations as h:mm:ss, times of day, text from the hub escaped."""
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    from monitor.tui.text import safe_text

    def cell(value: Any) -> Text:
        return Text(safe_text(_text(value)))

    # A terminal's own width; piped, wide enough that columns are not cut.
    console = Console(file=out, highlight=False, width=None if out.isatty() else 200)
    title = f"{clock(body['from'])} → {clock(body['to'])}" if "from" in body else ""
    if body.get("clipped"):
        title += " (clipped to the history kept)"
    if kind == "agents":
        header, rows, statuses = agents_rows(body)
        table = Table(title=f"Agents, {title}")
        grouped = "group" in header
        for name in ("agent", "name", *(["group"] if grouped else []), "online",
                     *statuses, "handled", "missed", "ring", "talk", "AHT", "occupancy"):
            table.add_column(Text(safe_text(name) if name else "(none)"),
                             justify="left" if name in ("agent", "name", "group") else "right")
        for row in rows:
            fixed = 3 if grouped else 2
            times = row[fixed:fixed + 1 + len(statuses)]
            handled, missed, ring, talk, aht, occupancy = row[fixed + 1 + len(statuses):]
            table.add_row(*[cell(v) for v in row[:fixed]],
                          *[Text(duration(t)) for t in times],
                          Text(str(handled)), Text(str(missed)), Text(duration(ring)),
                          Text(duration(talk)), Text(duration(aht)),
                          Text(f"{occupancy:.0%}"))
    elif kind == "calls":
        header, rows = calls_rows(body)
        table = Table(title=f"Calls, {title} (SLA {body.get('slaSeconds', 20)} s)")
        for name in ("from", "offered", "answered", "abandoned", "within SLA",
                     "service level", "ASA", "AHT"):
            table.add_column(name, justify="left" if name == "from" else "right")
        for start, offered, answered, abandoned, within, asa, aht in rows:
            level = f"{within / offered:.0%}" if offered else "-"
            table.add_row(clock(start), str(offered), str(answered), str(abandoned),
                          str(within), level, duration(asa), duration(aht))
    else:
        header, rows = history_rows(body)
        table = Table(title=f"{safe_text(body['userId'])}, {title}")
        for name in ("time", "attribute", "from", "to", "call"):
            table.add_column(name)
        for stamp, attribute, old, new, call_id in rows:
            table.add_row(clock(stamp), cell(attribute), cell(old), cell(new), cell(call_id))
    console.print(table)


# -- the command -----------------------------------------------------------------------


def cmd_report(args: argparse.Namespace) -> int:
    """Ask the hub for a report and print it."""
    from monitor.client import HubError, RestClient

    start = parse_time(args.from_)
    end = parse_time(args.to)
    if start >= end:
        raise UsageError("--from must be before --to")
    kind = args.report_kind
    try:
        with RestClient(_api_url(args), _rest_token(args)) as client:
            if kind == "agents":
                body = client.agents_report(start, end, group_attribute=args.group,
                                            group=args.group_value)
            elif kind == "calls":
                body = client.calls_report(start, end, interval=args.interval,
                                           sla_seconds=args.sla)
            else:
                events = client.user_history(args.user, start, end, attribute=args.attribute)
                body = {"userId": args.user, "from": start, "to": end, "events": events}
    except HubError as exc:
        raise UsageError(f"the hub answered: {exc}") from None
    out = sys.stdout
    if args.format == "json":
        # ASCII only: no text from the hub reaches a terminal raw, and it stays JSON.
        out.write(json.dumps(body, indent=2, ensure_ascii=True) + "\n")
    elif args.format == "csv":
        rows: Sequence[Sequence[Any]]
        if kind == "agents":
            header, rows, _ = agents_rows(body)
        elif kind == "calls":
            header, rows = calls_rows(body)
        else:
            header, rows = history_rows(body)
        write_csv(out, header, rows, safe=out.isatty())
    else:
        write_table(out, kind, body)
    return 0


def add_report_command(sub: Any) -> None:
    """Register ``monitor report``."""
    report = sub.add_parser(
        "report", help="history and reports from the hub (agents, calls, a user's history)",
        description="Ask the hub's REST API for a report. The REST token comes from "
                    "--token-file, else is minted from the config's API key.")
    kinds = report.add_subparsers(dest="report_kind", required=True, metavar="REPORT")
    agents = kinds.add_parser("agents", help="per agent: online time by status, calls "
                                             "handled and missed, AHT, occupancy")
    agents.add_argument("--group", metavar="ATTR",
                        help="show each agent's value of this attribute (e.g. team)")
    agents.add_argument("--group-value", metavar="VALUE",
                        help="only the agents whose --group attribute has this value")
    calls = kinds.add_parser("calls", help="per interval: calls offered, answered, "
                                           "abandoned, service level, ASA, AHT")
    calls.add_argument("--interval", choices=INTERVALS, default="1h",
                       help="length of each interval (default 1h)")
    calls.add_argument("--sla", type=int, default=20, metavar="S",
                       help="answered within this many seconds counts toward the service "
                            "level (default 20)")
    history = kinds.add_parser("history", help="one user's changes, oldest first")
    history.add_argument("--user", required=True, help="the user's id")
    history.add_argument("--attribute", metavar="NAME", help="only this attribute")
    for p in (agents, calls, history):
        p.add_argument("--from", dest="from_", required=True, metavar="TIME",
                       help="start: 2026-12-05T08:00 (local), today, yesterday, now or "
                            "epoch ms")
        p.add_argument("--to", default="now", metavar="TIME", help="end (default now)")
        p.add_argument("--format", choices=FORMATS, default="table",
                       help="table (default), csv or json")
        p.add_argument("--url", help="the hub's REST API (default: http://HOST:API_PORT "
                                     "of the config)")
        p.add_argument("--token-file", metavar="FILE", help="file holding a REST token")
        p.add_argument("--key", metavar="SID", help="API key to mint the token with "
                                                     "(default: the config's first)")
        add_config_flag(p)
        p.set_defaults(handler=cmd_report)
