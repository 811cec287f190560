"""Configuration: defaults, hub.toml, MONITOR_* variables, flags, and one-line errors."""

from __future__ import annotations

import dataclasses
import os
import re
import stat
from pathlib import Path

import platformdirs
import pytest

from monitor.config import (
    ApiKey,
    Config,
    ConfigError,
    HubSettings,
    Project,
    apply_overrides,
    env_overrides,
    find_config_file,
    load_config,
    new_api_key,
    parse_config,
    user_config_dir,
    write_initial_config,
)
from monitor.protocol import MESSAGES, Result

SECRET = "s" * 16
VALID = f"""
[hub]
host = "0.0.0.0"
ws_port = 7001
api_port = 7002
log_level = "debug"
history_size = 50

[[projects]]
id = 1
name = "Sales"
keys = [{{ sid = "SK1", secret = "{SECRET}" }}, {{ sid = "SK2", secret = "{"t" * 40}" }}]

[[projects]]
id = 7
keys = [{{ sid = "SK7", secret = "{"u" * 16}" }}]
"""


@pytest.fixture
def user_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty user config dir; the working directory an empty dir too."""
    conf = tmp_path / "userconf"
    monkeypatch.setattr(platformdirs, "user_config_dir", lambda *a, **k: str(conf))
    work = tmp_path / "cwd"
    work.mkdir()
    monkeypatch.chdir(work)
    for name in list(os.environ):
        if name.startswith("MONITOR_"):
            monkeypatch.delenv(name)
    return conf


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def error_of(path: Path, text: str) -> str:
    """The one-line ConfigError of loading ``text`` from ``path``."""
    write(path, text)
    with pytest.raises(ConfigError) as info:
        load_config(str(path), environ={})
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"{path}: ")
    return message


# -- defaults and file values -----------------------------------------------------------


def test_defaults_without_any_file(user_dir: Path, tmp_path: Path) -> None:
    config = load_config(environ={}, cwd=tmp_path / "cwd")
    assert config == Config()
    assert config.source == "<defaults>"
    assert config.projects == ()
    hub = config.hub
    assert (hub.host, hub.ws_port, hub.api_port) == ("127.0.0.1", 6899, 6900)
    assert hub.offline_grace_ms == 3000
    assert hub.ping_after_ms == 15000
    assert hub.history_size == 1000
    assert hub.send_buffer_limit == 4 * 1024 * 1024
    assert hub.log_level == "info"
    assert hub.data_dir == ""


def test_no_key_without_projects() -> None:
    with pytest.raises(ConfigError, match=r"^<defaults>: no project with an API key"):
        Config().default_key()


def test_file_values(tmp_path: Path) -> None:
    path = write(tmp_path / "hub.toml", VALID)
    config = load_config(str(path), environ={})
    assert config.source == str(path)
    assert config.hub.host == "0.0.0.0"
    assert (config.hub.ws_port, config.hub.api_port) == (7001, 7002)
    assert config.hub.log_level == "debug"
    assert config.hub.history_size == 50
    assert config.hub.offline_grace_ms == 3000  # not in the file: default
    assert config.projects == (
        Project(1, "Sales", (ApiKey("SK1", SECRET), ApiKey("SK2", "t" * 40))),
        Project(7, "project 7", (ApiKey("SK7", "u" * 16),)),
    )


def test_key_lookup_and_default_key(tmp_path: Path) -> None:
    config = load_config(str(write(tmp_path / "hub.toml", VALID)), environ={})
    project, key = config.key("SK7")  # type: ignore[misc]
    assert (project.id, key.secret) == (7, "u" * 16)
    assert config.key("SK2")[1].secret == "t" * 40  # type: ignore[index]
    assert config.key("nope") is None
    assert config.default_key() == (config.projects[0], ApiKey("SK1", SECRET))


def test_default_key_skips_projects_without_keys(tmp_path: Path) -> None:
    text = (f'[[projects]]\nid = 1\n\n[[projects]]\nid = 2\n'
            f'keys = [{{sid = "K", secret = "{SECRET}"}}]\n')
    config = load_config(str(write(tmp_path / "hub.toml", text)), environ={})
    assert config.default_key()[0].id == 2
    only_empty = load_config(str(write(tmp_path / "e.toml", "[[projects]]\nid = 1\n")),
                             environ={})
    with pytest.raises(ConfigError, match="no project with an API key"):
        only_empty.default_key()


def test_empty_file_is_defaults(tmp_path: Path) -> None:
    config = load_config(str(write(tmp_path / "hub.toml", "")), environ={})
    assert config.hub == HubSettings()
    assert config.projects == ()


def test_log_level_case_insensitive(tmp_path: Path) -> None:
    path = write(tmp_path / "hub.toml", '[hub]\nlog_level = "WARNING"\n')
    assert load_config(str(path), environ={}).hub.log_level == "warning"


def test_resolved_data_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(platformdirs, "user_data_dir", lambda *a, **k: str(tmp_path / "data"))
    assert HubSettings().resolved_data_dir() == tmp_path / "data"
    assert HubSettings(data_dir=str(tmp_path / "x")).resolved_data_dir() == tmp_path / "x"
    monkeypatch.setenv("HOME", str(tmp_path))
    assert HubSettings(data_dir="~/state").resolved_data_dir() == tmp_path / "state"


# -- precedence: defaults < file < env < flags ------------------------------------------


def test_env_overrides_defaults(user_dir: Path) -> None:
    config = load_config(environ={"MONITOR_WS_PORT": "7100", "MONITOR_LOG_LEVEL": "error",
                                  "MONITOR_HOST": "::1", "MONITOR_DATA_DIR": "/srv/x"})
    assert config.hub.ws_port == 7100
    assert config.hub.log_level == "error"
    assert config.hub.host == "::1"
    assert config.hub.data_dir == "/srv/x"
    assert config.hub.api_port == 6900


def test_env_overrides_file_and_flags_override_env(tmp_path: Path) -> None:
    path = write(tmp_path / "hub.toml", VALID)
    env = {"MONITOR_WS_PORT": "7200", "MONITOR_HISTORY_SIZE": "60"}
    config = load_config(str(path), environ=env, flags={"ws_port": "7300", "api_port": None})
    assert config.hub.ws_port == 7300  # flag beats env beats file
    assert config.hub.history_size == 60  # env beats file
    assert config.hub.api_port == 7002  # None flag skipped: file value kept
    assert config.hub.host == "0.0.0.0"  # file beats default
    assert config.hub.ping_after_ms == 15000  # default
    assert config.projects[0].keys[0].sid == "SK1"


def test_flags_override_defaults_with_ints_and_strings(user_dir: Path) -> None:
    config = load_config(environ={}, flags={"ws_port": 8000, "history_size": " 5 ",
                                            "log_level": "Debug"})
    assert (config.hub.ws_port, config.hub.history_size, config.hub.log_level) == (
        8000, 5, "debug")


def test_env_overrides_only_known_names() -> None:
    env = {"MONITOR_WS_PORT": "1", "MONITOR_CONFIG": "x", "MONITOR_NOPE": "2",
           "monitor_api_port": "3", "WS_PORT": "4"}
    assert env_overrides(env) == {"ws_port": "1"}


def test_bad_env_value_names_the_environment(user_dir: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(environ={"MONITOR_WS_PORT": "seven"})
    assert str(info.value) == "environment: ws_port: expected an integer, got 'seven'"


def test_bad_flag_value_names_the_command_line(user_dir: Path) -> None:
    with pytest.raises(ConfigError, match=r"^command line: api_port: not a port number: 70000$"):
        load_config(environ={}, flags={"api_port": "70000"})
    with pytest.raises(ConfigError, match=r"^command line: bogus: unknown setting"):
        load_config(environ={}, flags={"bogus": "1"})


def test_apply_overrides_returns_a_new_settings() -> None:
    base = HubSettings()
    changed = apply_overrides(base, {"offline_grace_ms": "0"}, "test")
    assert changed.offline_grace_ms == 0  # zero allowed where not required positive
    assert base.offline_grace_ms == 3000
    assert apply_overrides(base, {}, "test") == base


# -- finding the file -------------------------------------------------------------------


def test_find_explicit_first(user_dir: Path, tmp_path: Path) -> None:
    write(user_dir / "hub.toml", "")
    write(tmp_path / "cwd" / "hub.toml", "")
    env = {"MONITOR_CONFIG": str(tmp_path / "env.toml")}
    assert find_config_file("given.toml", env, tmp_path / "cwd") == Path("given.toml")


def test_find_env_before_cwd(user_dir: Path, tmp_path: Path) -> None:
    write(tmp_path / "cwd" / "hub.toml", "")
    env = {"MONITOR_CONFIG": str(tmp_path / "env.toml")}
    assert find_config_file(None, env, tmp_path / "cwd") == tmp_path / "env.toml"


def test_find_empty_env_is_ignored(user_dir: Path, tmp_path: Path) -> None:
    write(tmp_path / "cwd" / "hub.toml", "")
    assert find_config_file(None, {"MONITOR_CONFIG": ""}, tmp_path / "cwd") == (
        tmp_path / "cwd" / "hub.toml")


def test_find_cwd_before_user_dir(user_dir: Path, tmp_path: Path) -> None:
    write(user_dir / "hub.toml", "")
    other = tmp_path / "elsewhere"
    write(other / "hub.toml", "")
    assert find_config_file(None, {}, other) == other / "hub.toml"


def test_find_cwd_defaults_to_the_working_directory(user_dir: Path, tmp_path: Path) -> None:
    write(tmp_path / "cwd" / "hub.toml", "")
    assert find_config_file(None, {}).resolve() == (tmp_path / "cwd" / "hub.toml").resolve()


def test_find_cwd_directory_named_hub_toml_is_skipped(user_dir: Path, tmp_path: Path) -> None:
    (tmp_path / "cwd" / "hub.toml").mkdir()
    write(user_dir / "hub.toml", "")
    assert find_config_file(None, {}, tmp_path / "cwd") == user_dir / "hub.toml"


def test_find_user_config_dir(user_dir: Path, tmp_path: Path) -> None:
    assert user_config_dir() == user_dir
    assert find_config_file(None, {}, tmp_path / "cwd") is None
    write(user_dir / "hub.toml", "")
    assert find_config_file(None, {}, tmp_path / "cwd") == user_dir / "hub.toml"


def test_load_reads_the_file_it_finds(user_dir: Path, tmp_path: Path) -> None:
    write(user_dir / "hub.toml", "[hub]\nws_port = 7501\n")
    assert load_config(environ={}, cwd=tmp_path / "cwd").hub.ws_port == 7501
    write(tmp_path / "cwd" / "hub.toml", "[hub]\nws_port = 7502\n")
    assert load_config(environ={}, cwd=tmp_path / "cwd").hub.ws_port == 7502
    write(tmp_path / "env.toml", "[hub]\nws_port = 7503\n")
    env = {"MONITOR_CONFIG": str(tmp_path / "env.toml")}
    assert load_config(environ=env, cwd=tmp_path / "cwd").hub.ws_port == 7503
    write(tmp_path / "flag.toml", "[hub]\nws_port = 7504\n")
    assert load_config(str(tmp_path / "flag.toml"), environ=env,
                       cwd=tmp_path / "cwd").hub.ws_port == 7504


def test_load_uses_os_environ_by_default(user_dir: Path, tmp_path: Path,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    write(tmp_path / "env.toml", "[hub]\napi_port = 7600\n")
    monkeypatch.setenv("MONITOR_CONFIG", str(tmp_path / "env.toml"))
    monkeypatch.setenv("MONITOR_WS_PORT", "7601")
    config = load_config()
    assert (config.hub.api_port, config.hub.ws_port) == (7600, 7601)


# -- bad files: one line naming file, key and problem ----------------------------------


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "absent.toml"
    with pytest.raises(ConfigError) as info:
        load_config(str(path), environ={})
    assert str(info.value) == f"{path}: file not found"


def test_missing_file_named_by_env(tmp_path: Path) -> None:
    path = tmp_path / "absent.toml"
    with pytest.raises(ConfigError, match=r"absent\.toml: file not found$"):
        load_config(environ={"MONITOR_CONFIG": str(path)})


def test_directory_instead_of_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(str(tmp_path), environ={})
    assert str(info.value).startswith(f"{tmp_path}: cannot read")
    assert "\n" not in str(info.value)


def test_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "hub.toml"
    path.write_bytes(b'[hub]\nhost = "\xff"\n')
    with pytest.raises(ConfigError, match=r"hub.toml: not UTF-8 text$"):
        load_config(str(path), environ={})


@pytest.mark.parametrize("text", [
    "[hub\nws_port = 1\n",
    "[hub]\nws_port = \n",
    "[hub]\nws_port = 1\nws_port = 2\n",
    'keys = [{ sid = "a", secret = "b" }\n',
    "this is not toml",
])
def test_bad_toml(tmp_path: Path, text: str) -> None:
    message = error_of(tmp_path / "hub.toml", text)
    assert ": invalid TOML: " in message


@pytest.mark.parametrize(("text", "key", "problem"), [
    ('[hub]\nws_port = "x"\n', "ws_port", "expected an integer, got 'x'"),
    ("[hub]\nws_port = 1.5\n", "ws_port", "expected an integer, got 1.5"),
    ("[hub]\nhistory_size = true\n", "history_size", "expected an integer, got True"),
    ("[hub]\nws_port = [1]\n", "ws_port", "expected an integer"),
    ("[hub]\nhost = 1\n", "host", "expected a string, got 1"),
    ("[hub]\ndata_dir = false\n", "data_dir", "expected a string, got False"),
    ('[hub]\nlog_level = "loud"\n', "log_level", "must be one of debug, info, warning, error"),
    ("[hub]\noffline_grace_ms = -1\n", "offline_grace_ms", "must be >= 0, got -1"),
    ("[hub]\nhistory_size = 0\n", "history_size", "must be positive, got 0"),
])
def test_wrong_types_and_values(tmp_path: Path, text: str, key: str, problem: str) -> None:
    message = error_of(tmp_path / "hub.toml", text)
    assert f": {key}: " in message
    assert problem in message


@pytest.mark.parametrize(("value", "problem"), [
    ("0", "must be positive, got 0"),
    ("-80", "must be positive, got -80"),
    ("65536", "not a port number: 65536"),
    ("100000", "not a port number: 100000"),
])
@pytest.mark.parametrize("key", ["ws_port", "api_port"])
def test_bad_port(tmp_path: Path, key: str, value: str, problem: str) -> None:
    message = error_of(tmp_path / "hub.toml", f"[hub]\n{key} = {value}\n")
    assert message == f"{tmp_path / 'hub.toml'}: {key}: {problem}"


def test_port_bounds_accepted(tmp_path: Path) -> None:
    path = write(tmp_path / "hub.toml", "[hub]\nws_port = 1\napi_port = 65535\n")
    hub = load_config(str(path), environ={}).hub
    assert (hub.ws_port, hub.api_port) == (1, 65535)


def test_unknown_hub_key(tmp_path: Path) -> None:
    message = error_of(tmp_path / "hub.toml", "[hub]\nws_prot = 1\n")
    assert ": ws_prot: unknown setting" in message
    assert "ws_port" in message  # lists the known ones


@pytest.mark.parametrize(("text", "name"), [
    ("[server]\nport = 1\n", "server"),
    ("port = 1\n", "port"),
    ("[[project]]\nid = 1\n", "project"),
])
def test_unknown_top_level_key(tmp_path: Path, text: str, name: str) -> None:
    message = error_of(tmp_path / "hub.toml", text)
    assert message.endswith(f": {name}: unknown table or key")


def test_hub_not_a_table(tmp_path: Path) -> None:
    assert "hub: expected a [hub] table" in error_of(tmp_path / "hub.toml", "hub = 1\n")


def test_projects_not_tables(tmp_path: Path) -> None:
    assert "projects: expected [[projects]] tables" in error_of(
        tmp_path / "hub.toml", "projects = 1\n")
    assert "projects[0]: expected a table" in error_of(tmp_path / "hub.toml", "projects = [1]\n")


@pytest.mark.parametrize(("text", "where", "problem"), [
    ("[[projects]]\nname = 'x'\n", "projects[0].id", "expected a non-negative integer, got None"),
    ("[[projects]]\nid = -1\n", "projects[0].id", "expected a non-negative integer, got -1"),
    ("[[projects]]\nid = '1'\n", "projects[0].id", "expected a non-negative integer, got '1'"),
    ("[[projects]]\nid = true\n", "projects[0].id", "expected a non-negative integer, got True"),
    ("[[projects]]\nid = 1\nname = 2\n", "projects[0].name", "expected a string, got 2"),
    ("[[projects]]\nid = 1\nkeys = 'k'\n", "projects[0].keys", "expected an array"),
    ("[[projects]]\nid = 1\nkeys = ['k']\n", "projects[0].keys[0]", "expected a {sid, secret}"),
    ("[[projects]]\nid = 1\nkeys = [{secret = 'ssssssssssssssss'}]\n", "projects[0].keys[0].sid",
     "expected a non-empty string"),
    ("[[projects]]\nid = 1\nkeys = [{sid = '', secret = 'ssssssssssssssss'}]\n",
     "projects[0].keys[0].sid", "expected a non-empty string"),
    ("[[projects]]\nid = 1\nkeys = [{sid = 'K'}]\n", "projects[0].keys[0].secret",
     "expected a string of 16 or more characters"),
    ("[[projects]]\nid = 1\nkeys = [{sid = 'K', secret = 123456789012345678}]\n",
     "projects[0].keys[0].secret", "expected a string of 16 or more characters"),
])
def test_bad_projects(tmp_path: Path, text: str, where: str, problem: str) -> None:
    message = error_of(tmp_path / "hub.toml", text)
    assert f": {where}: {problem}" in message


def test_short_secret(tmp_path: Path) -> None:
    text = "[[projects]]\nid = 1\nkeys = [{sid = 'K', secret = '" + "s" * 15 + "'}]\n"
    message = error_of(tmp_path / "hub.toml", text)
    assert message.endswith("projects[0].keys[0].secret: expected a string of 16 or more "
                            "characters")
    assert "s" * 15 not in message  # the secret itself is never echoed


def test_duplicate_project_ids(tmp_path: Path) -> None:
    text = "[[projects]]\nid = 3\n\n[[projects]]\nid = 4\n\n[[projects]]\nid = 3\n"
    message = error_of(tmp_path / "hub.toml", text)
    assert message.endswith("projects[2].id: duplicate project id 3")


def test_duplicate_sids_in_one_project(tmp_path: Path) -> None:
    text = (f"[[projects]]\nid = 1\nkeys = [{{sid = 'K', secret = '{SECRET}'}}, "
            f"{{sid = 'K', secret = '{'x' * 20}'}}]\n")
    assert error_of(tmp_path / "hub.toml", text).endswith(
        "projects[0].keys[1].sid: duplicate key sid 'K'")


def test_duplicate_sids_across_projects(tmp_path: Path) -> None:
    text = (f"[[projects]]\nid = 1\nkeys = [{{sid = 'K', secret = '{SECRET}'}}]\n\n"
            f"[[projects]]\nid = 2\nkeys = [{{sid = 'K', secret = '{SECRET}'}}]\n")
    assert error_of(tmp_path / "hub.toml", text).endswith(
        "projects[1].keys[0].sid: duplicate key sid 'K'")


@pytest.mark.parametrize(("text", "where"), [
    ("[[projects]]\nid = 1\nnmae = 'Sales'\n", "projects[0].nmae"),
    (f"[[projects]]\nid = 1\nkeys = [{{sid = 'K', secret = '{SECRET}', secert = 'x'}}]\n",
     "projects[0].keys[0].secert"),
    (f"[[projects]]\nid = 1\nkey = [{{sid = 'K', secret = '{SECRET}'}}]\n", "projects[0].key"),
])
def test_unknown_project_keys(tmp_path: Path, text: str, where: str) -> None:
    message = error_of(tmp_path / "hub.toml", text)
    assert f": {where}: unknown key" in message


def test_parse_config_directly() -> None:
    config = parse_config({"hub": {"ws_port": 1234}, "projects": [
        {"id": 0, "keys": [{"sid": "A", "secret": SECRET}]}]}, "mem")
    assert config.source == "mem"
    assert config.hub.ws_port == 1234
    assert config.projects == (Project(0, "project 0", (ApiKey("A", SECRET),)),)
    with pytest.raises(ConfigError, match=r"^mem: extra: unknown table or key$"):
        parse_config({"extra": 1}, "mem")


# -- writing the first config ------------------------------------------------------------


def test_new_api_key_shape() -> None:
    one, two = new_api_key(), new_api_key()
    assert one.sid.startswith("SK") and len(one.sid) == 18
    assert one.sid[2:] == one.sid[2:].upper()
    int(one.sid[2:], 16)
    assert len(one.secret) >= 32
    assert one.sid != two.sid and one.secret != two.secret


def test_write_initial_config_is_loadable(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "dir" / "hub.toml"
    key = write_initial_config(path, "Support")
    assert path.is_file()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    config = load_config(str(path), environ={})
    # The template spells out the defaults, but for the state's folder: its own.
    assert config.hub == HubSettings(data_dir=str(path.parent.resolve() / "data"))
    assert config.projects == (Project(1, "Support", (key,)),)
    assert config.default_key() == (config.projects[0], key)
    assert len(key.secret) >= 16


def test_write_initial_config_writes_every_setting_with_a_comment(tmp_path: Path) -> None:
    """Operators and load tests find every [hub] setting, limits included, in the file
    `monitor config init` writes, each under a comment that says what it does."""
    path = tmp_path / "hub.toml"
    write_initial_config(path)
    lines = path.read_text().splitlines()
    for setting in dataclasses.fields(HubSettings):
        found = [i for i, line in enumerate(lines)
                 if line.startswith((f"{setting.name} = ", f"# {setting.name} = "))]
        assert len(found) == 1, setting.name
        i = found[0] - 1
        while " = " in lines[i] and not lines[i].startswith("# "):  # a group, one comment
            i -= 1
        assert lines[i].startswith("# "), setting.name


def test_write_initial_config_keeps_the_state_next_to_the_file(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two hubs set up in two folders never share a database (nor its users)."""
    monkeypatch.chdir(tmp_path)
    write_initial_config(Path("a/hub.toml"))
    write_initial_config(tmp_path / "b" / "hub.toml")
    write_initial_config(tmp_path / "odd \\ \"dir\"" / "hub.toml")
    monkeypatch.chdir("/")  # where the hub runs from does not move its state
    dirs = [load_config(str(tmp_path / d / "hub.toml"), environ={}).hub.resolved_data_dir()
            for d in ("a", "b", 'odd \\ "dir"')]
    assert dirs == [tmp_path.resolve() / d / "data" for d in ("a", "b", 'odd \\ "dir"')]


def test_write_initial_config_says_in_words_what_a_limit_does(tmp_path: Path) -> None:
    """Each result code in a comment comes with what is refused and the code's words,
    not as a bare shorthand such as "(r = 26 beyond)"."""
    path = tmp_path / "hub.toml"
    write_initial_config(path)
    text = " ".join(line.removeprefix("#").strip()
                    for line in path.read_text().splitlines() if line.startswith("#"))
    codes = re.findall(r"(refused with (?:HTTP \d+, )?)?r = (\d+)( \(\"[^\"]*\")?", text)
    assert len(codes) >= 6
    for refused, code, words in codes:
        assert refused and words == f' ("{MESSAGES[Result(int(code))]}"', (code, text)
    assert "beyond)" not in text and "Beyond:" not in text


def test_write_initial_config_default_name(tmp_path: Path) -> None:
    write_initial_config(tmp_path / "hub.toml")
    assert load_config(str(tmp_path / "hub.toml"),
                       environ={}).projects[0].name == "Contact centre"


@pytest.mark.parametrize("name", [
    'The "A" team', "Sales \\ Support", "C:\\temp\\x", "tab\there", "line\nbreak",
    "Trung tâm liên lạc", "emoji 📞", "del\x7fchar", "",
])
def test_write_initial_config_any_project_name(tmp_path: Path, name: str) -> None:
    path = tmp_path / "hub.toml"
    write_initial_config(path, name)
    assert load_config(str(path), environ={}).projects[0].name == name


def test_write_initial_config_never_overwrites(tmp_path: Path) -> None:
    path = write(tmp_path / "hub.toml", "# mine\n")
    with pytest.raises(FileExistsError):
        write_initial_config(path)
    assert path.read_text() == "# mine\n"


def test_write_initial_config_twice_keeps_the_first_key(tmp_path: Path) -> None:
    path = tmp_path / "hub.toml"
    first = write_initial_config(path)
    with pytest.raises(FileExistsError):
        write_initial_config(path)
    assert load_config(str(path), environ={}).default_key()[1] == first


def test_settings_are_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        HubSettings().ws_port = 1  # type: ignore[misc]
