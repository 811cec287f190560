"""monitor.toml, the token's sources, theme files, and the pure cell formatting."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from textual.theme import BUILTIN_THEMES

from monitor.config import ConfigError
from monitor.tui.cells import (
    BUILTIN,
    custom_column,
    fit_columns,
    format_age,
    format_clock,
    format_duration,
    row_cells,
    sparkline,
)
from monitor.tui.model import AgentTable, Thresholds
from monitor.tui.settings import (
    BUILTIN_COLUMNS,
    DEFAULT_COLUMNS,
    Settings,
    load_settings,
    parse_duration,
    read_token,
)
from monitor.tui.themes import (
    STATES,
    load_themes,
    shipped_themes_dir,
    state_colours,
)
from tests.tui.scenario import NOW, calls_snapshot, team_snapshot

# -- settings ----------------------------------------------------------------------------


def test_defaults_without_a_file(tmp_path: Path) -> None:
    settings = load_settings(tmp_path / "missing.toml")
    assert settings == Settings()
    assert settings.columns == DEFAULT_COLUMNS == BUILTIN_COLUMNS[:-1]  # no user id


def test_file_then_flags(tmp_path: Path) -> None:
    path = tmp_path / "monitor.toml"
    path.write_text("""
url = "ws://hub.example:7000/"
theme = "monitor-light"
statuses = ["ready", "away", "ready"]
available_status = "ready"
columns = ["online", "status"]
hidden_attributes = ["secret"]
read_only = true

[thresholds.status]
away = "1h30m"
[thresholds.call]
Ringing = 20
""", encoding="utf-8")
    settings = load_settings(path, theme="monitor-ansi16", url=None)
    assert settings.url == "ws://hub.example:7000/"
    assert settings.theme == "monitor-ansi16"          # the flag wins
    assert settings.statuses == ("ready", "away")      # de-duplicated
    assert settings.columns == ("name", "online", "status")  # the name always stays
    assert settings.thresholds.status == {"away": 5400.0}
    assert settings.thresholds.call == {"Ringing": 20.0}
    assert settings.read_only is True
    assert settings.source == str(path)


@pytest.mark.parametrize(("text", "complaint"), [
    ("colour = 1", "colour: unknown setting"),
    ("columns = ['name', 'mood']", "unknown column 'mood'"),
    ("statuses = []", "at least one status"),
    ("statuses = 'break'", "list of non-empty strings"),
    ("read_only = 'yes'", "true or false"),
    ("status_attribute = 'has space'", "not a valid attribute name"),
    ("[thresholds.mood]\nx = 1", "thresholds.mood: unknown"),
    ("[thresholds.status]\nbreak = 'soon'", "duration like"),
    ("[thresholds.status]\nbreak = -5", "must be positive"),
    ("refresh_per_second = 100", "0.5 to 30"),
    ("url = [", "invalid TOML"),
])
def test_bad_settings_are_reported_with_file_and_key(tmp_path: Path, text: str,
                                                     complaint: str) -> None:
    path = tmp_path / "monitor.toml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_settings(path)
    assert complaint in str(caught.value) and str(path) in str(caught.value)


@pytest.mark.parametrize(("raw", "seconds"), [
    (90, 90.0), (2.5, 2.5), ("20s", 20.0), ("15m", 900.0), ("1h30m", 5400.0),
    ("90", 90.0), ("2m30s", 150.0), ("1h", 3600.0)])
def test_durations(raw: object, seconds: float) -> None:
    assert parse_duration(raw, "x") == seconds


def test_token_from_file_then_environment(tmp_path: Path) -> None:
    token_file = tmp_path / "agent.token"
    token_file.write_text("  abc.def.ghi\n", encoding="utf-8")
    assert read_token(str(token_file), {"MONITOR_TOKEN": "env"}) == "abc.def.ghi"
    assert read_token(None, {"MONITOR_TOKEN": " env.tok.en "}) == "env.tok.en"
    with pytest.raises(ConfigError, match="no access token"):
        read_token(None, {})
    with pytest.raises(ConfigError, match="cannot read the token"):
        read_token(str(tmp_path / "missing"), {})
    (tmp_path / "empty").write_text("\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="empty"):
        read_token(str(tmp_path / "empty"), {})


# -- themes ------------------------------------------------------------------------------


def test_shipped_themes_all_load() -> None:
    loaded = load_themes([shipped_themes_dir()])
    assert loaded.errors == []
    assert {"monitor-dark", "monitor-light", "monitor-high-contrast",
            "monitor-ansi16"} <= set(loaded.themes)
    for theme in loaded.themes.values():
        colours = state_colours(theme)
        assert set(colours) == set(STATES)
        # every shipped theme names every state itself, rather than relying on fallbacks
        assert all(f"state-{s}" in theme.variables for s in STATES), theme.name
    ansi = loaded.themes["monitor-ansi16"]
    assert ansi.ansi is True
    assert all(c.startswith("ansi_") for c in state_colours(ansi).values())


def test_bad_theme_files_are_reported_and_skipped(tmp_path: Path) -> None:
    (tmp_path / "good.toml").write_text('name = "mine"\nprimary = "#112233"\n',
                                        encoding="utf-8")
    bad = {
        "no-primary.toml": 'name = "x"\n',
        "bad-colour.toml": 'name = "y"\nprimary = "not-a-colour"\n',
        "bad-state.toml": 'name = "z"\nprimary = "#fff"\n[states]\nmood = "#fff"\n',
        "bad-toml.toml": 'name = \n',
        "bad-key.toml": 'name = "w"\nprimary = "#fff"\nfont = "x"\n',
        "spaces.toml": 'name = "has space"\nprimary = "#fff"\n',
    }
    for name, text in bad.items():
        (tmp_path / name).write_text(text, encoding="utf-8")
    loaded = load_themes([tmp_path])
    assert list(loaded.themes) == ["mine"]
    assert len(loaded.errors) == len(bad)
    joined = "\n".join(loaded.errors)
    for name in bad:
        assert name in joined
    assert "primary: required" in joined and "not a colour" in joined
    assert "states.mood: unknown state" in joined


def test_user_dir_overrides_shipped_theme_by_name(tmp_path: Path) -> None:
    (tmp_path / "dark.toml").write_text(
        'name = "monitor-dark"\nprimary = "#ff0000"\n[states]\nonline = "#010203"\n',
        encoding="utf-8")
    loaded = load_themes([shipped_themes_dir(), tmp_path])
    assert loaded.themes["monitor-dark"].primary == "#ff0000"
    assert state_colours(loaded.themes["monitor-dark"])["online"] == "#010203"


def test_state_colours_fall_back_for_builtin_themes() -> None:
    theme = BUILTIN_THEMES["textual-dark"]
    base = theme.to_color_system().generate()
    colours = state_colours(theme)
    assert colours["breach"] == base["error"]
    assert colours["online"] == base["success"]
    assert colours["away"] == base["warning"]


# -- cells -------------------------------------------------------------------------------


@pytest.mark.parametrize(("seconds", "text"), [
    (None, "–"), (0, "0:00"), (59.9, "0:59"), (61, "1:01"), (3600, "1:00:00"),
    (86400 + 7200, "1d02h")])
def test_format_duration(seconds: float | None, text: str) -> None:
    assert format_duration(seconds) == text


def test_format_age_and_clock() -> None:
    assert [format_age(s) for s in (0, 59, 60, 3599, 7200)] == \
        ["0 s", "59 s", "1 min", "59 min", "2 h"]
    assert format_clock(NOW, dt.UTC) == "08:53:20"
    assert format_clock(None, dt.UTC) == "–"


def test_sparkline_scales_to_its_maximum() -> None:
    assert sparkline([], 5) == ""
    assert sparkline([0, 0], 5) == "▁▁"
    assert sparkline([0, 4, 8], 5) == "▁▅█"
    assert sparkline(list(range(10)), 3) == "▆▇█"


def test_columns_drop_lowest_priority_first_and_name_grows() -> None:
    columns = [BUILTIN[c] for c in DEFAULT_COLUMNS] + [custom_column("skill")]
    wide = fit_columns(columns, 200)
    assert [c.key for c in wide] == [*DEFAULT_COLUMNS, "skill"]
    assert wide[0].width == 28  # the name took spare room up to its limit
    narrow = [c.key for c in fit_columns(columns, 79)]
    assert narrow == ["name", "online", "status", "status_time", "call", "call_time"]
    assert [c.key for c in fit_columns(columns, 40)] == ["name", "status", "status_time"]
    assert [c.key for c in fit_columns(columns, 1)] == ["name"]


def test_row_cells_say_the_state_in_words_and_symbols() -> None:
    table = AgentTable(thresholds=Thresholds(status={"break": 900}, call={"Ringing": 20}))
    table.apply_snapshot("t", team_snapshot().values, now=NOW)
    table.apply_snapshot("c", calls_snapshot().values, now=NOW)
    columns = [*BUILTIN_COLUMNS, "skill"]
    bob = row_cells(table, table.agents["agent_2"], columns, NOW, dt.UTC)
    assert bob["name"] == ("⚠ Bob <b>[bold]Marley", "breach")  # wire text kept verbatim
    assert bob["status"] == ("◐ break", "away")
    assert bob["status_time"] == ("⚠ 16:40", "breach")
    assert bob["call"] == ("· idle", "idle")
    assert bob["call_time"] == ("–", "")
    assert bob["skill"] == ("–", "")
    eve = row_cells(table, table.agents["agent_5"], columns, NOW, dt.UTC)
    assert eve["online"] == ("● online", "online")
    assert eve["status"] == ("✔ available", "available")
    assert eve["call"] == ("▶ talking ← +15550100", "talking")
    assert eve["call_time"] == ("1:35", "")
    six = row_cells(table, table.agents["agent_6"], columns, NOW, dt.UTC)
    assert six["call"] == ("☎ ringing → Ann Lee", "ringing")  # a user: by name
    assert six["call_time"] == ("⚠ 0:25", "breach")
    dev = row_cells(table, table.agents["agent_4"], columns, NOW, dt.UTC)
    assert dev["online"] == ("○ offline", "offline")
    assert dev["last_change"] == ("07:23:20", "")
