"""``monitor report agents|calls|history`` against a real hub."""

from __future__ import annotations

import csv
import io
import json
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest

from monitor.cli import main
from monitor.report import duration, parse_time
from tests.hub.wire import hub_with, login
from tests.hubproc import HubProcess


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HubProcess]:
    process = hub_with(tmp_path_factory.mktemp("report"), offline_grace_ms=0)
    try:
        yield process
    finally:
        process.kill()


def run(capsys: pytest.CaptureFixture[str], hub: HubProcess, *argv: str) -> tuple[int, str]:
    code = main(["report", *argv, "--config", str(hub.config_path)])
    return code, capsys.readouterr().out


async def test_reports_as_json_csv_and_tables(hub: HubProcess,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    start = str(int(time.time() * 1000) - 1)
    wire = await login(hub, hub.client_token("dan", display_name="Dan",
                                             attributes=[("manual_status", "t"),
                                                         ("team", "t")]))
    assert (await wire.change("team", "sales"))["r"] == 0
    assert (await wire.change("manual_status", "ready\u202e"))["r"] == 0
    with hub.rest() as rest:
        for status in ("Ringing", "Answered", "Ended"):
            assert rest.put("/v1/calls/r1", json={"from": "+1", "to": "dan",
                                                  "status": status}).status_code == 200

    code, out = run(capsys, hub, "agents", "--from", start, "--group", "team",
                    "--format", "json")
    assert code == 0
    (dan,) = json.loads(out)["agents"]
    assert dan["group"] == "sales" and dan["calls"]["handled"] == 1
    assert "\u202e" not in out  # JSON, ASCII only

    code, out = run(capsys, hub, "agents", "--from", start, "--format", "csv")
    rows = list(csv.DictReader(io.StringIO(out)))
    assert rows[0]["userId"] == "dan" and rows[0]["handled"] == "1"
    assert int(rows[0]["status:ready\u202e"]) > 0  # as it is: not a terminal

    code, out = run(capsys, hub, "agents", "--from", start)
    assert code == 0 and "Dan" in out and "\u202e" not in out
    assert "\\u202e" in out  # shown escaped

    code, out = run(capsys, hub, "calls", "--from", start, "--interval", "1d",
                    "--format", "csv")
    (day,) = list(csv.DictReader(io.StringIO(out)))
    assert (day["offered"], day["answered"], day["abandoned"]) == ("1", "1", "0")
    code, out = run(capsys, hub, "calls", "--from", start, "--interval", "1d")
    assert code == 0 and "100%" in out

    code, out = run(capsys, hub, "history", "--user", "dan", "--from", start,
                    "--format", "json")
    events = json.loads(out)["events"]
    assert [e["attribute"] for e in events] == ["onlineStatus", "team", "manual_status",
                                                "call", "call", "call"]
    code, out = run(capsys, hub, "history", "--user", "dan", "--from", start)
    assert code == 0 and "manual_status" in out and "\u202e" not in out
    await wire.close()


def test_token_file_and_mistakes(hub: HubProcess, tmp_path: Path,
                                 capsys: pytest.CaptureFixture[str]) -> None:
    token = tmp_path / "rest.token"
    token.write_text(hub.rest_token() + "\n")
    code = main(["report", "agents", "--from", "today", "--url", hub.api_url,
                 "--token-file", str(token), "--format", "json"])
    assert code == 0 and "agents" in json.loads(capsys.readouterr().out)
    token.write_text(hub.rest_token(other_project=True))
    assert main(["report", "history", "--user", "nobody", "--from", "today", "--url",
                 hub.api_url, "--token-file", str(token)]) == 2
    assert "not found" in capsys.readouterr().err
    assert main(["report", "agents", "--from", "soon", "--config",
                 str(hub.config_path)]) == 2
    assert "not a time" in capsys.readouterr().err
    assert main(["report", "agents", "--from", "now", "--to", "today", "--config",
                 str(hub.config_path)]) == 2


def test_times_and_durations() -> None:
    now = datetime(2026, 12, 5, 14, 30).astimezone()
    assert parse_time("now", now) == int(now.timestamp() * 1000)
    assert parse_time("today", now) == int(datetime(2026, 12, 5).astimezone().timestamp()
                                           * 1000)
    assert parse_time("yesterday", now) == int(
        datetime(2026, 12, 4).astimezone().timestamp() * 1000)
    assert parse_time("2026-12-05T08:00", now) == int(
        datetime(2026, 12, 5, 8).astimezone().timestamp() * 1000)
    assert parse_time("2026-12-05T08:00+00:00", now) == 1796457600000
    assert parse_time("1796457600000", now) == 1796457600000
    assert duration(3_723_400) == "1:02:03"
