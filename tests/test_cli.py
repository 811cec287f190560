"""The ``monitor`` command through its entry point, and once as a real process."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import jwt
import platformdirs
import pytest

from monitor import __version__
from monitor.cli import main
from monitor.config import load_config
from monitor.protocol import Result
from monitor.tokens import (
    AttributeGrant,
    mint_client_token,
    mint_rest_token,
    verify_client_token,
    verify_rest_token,
)

SID = "SKCLI0001"
SECRET = "cli-secret-" + "0123456789abcdef" * 3
SID2 = "SKCLI0002"
SECRET2 = "cli-secret-two-" + "fedcba9876543210" * 3
CONFIG = f"""
[hub]
ws_port = 7001

[[projects]]
id = 1
name = "Sales"
keys = [{{ sid = "{SID}", secret = "{SECRET}" }}, {{ sid = "{SID2}", secret = "{SECRET2}" }}]
"""


@pytest.fixture(autouse=True)
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """No user config, no MONITOR_* variables, an empty working directory."""
    monkeypatch.setattr(platformdirs, "user_config_dir",
                        lambda *a, **k: str(tmp_path / "userconf"))
    for name in list(os.environ):
        if name.startswith("MONITOR_"):
            monkeypatch.delenv(name)
    work = tmp_path / "cwd"
    work.mkdir()
    monkeypatch.chdir(work)
    return work


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    path = tmp_path / "hub.toml"
    path.write_text(CONFIG, encoding="utf-8")
    return path


def lookup(sid: str) -> str | None:
    return {SID: SECRET, SID2: SECRET2}.get(sid)


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def one_line_error(err: str) -> str:
    assert err.startswith("monitor: error: ")
    assert err.endswith("\n") and err.count("\n") == 1, err
    return err.removeprefix("monitor: error: ").strip()


# -- token client -----------------------------------------------------------------------


def test_token_client(capsys: pytest.CaptureFixture[str], config_file: Path) -> None:
    code, out, err = run(capsys, "token", "client", "--config", str(config_file),
                         "--user", "alice", "--subscribe", "team1, ALL_CALL_STATUS,,",
                         "--publish", "status=team1", "--publish", "onlineStatus=team1",
                         "--display-name", "Alice A.", "--ttl", "120")
    assert (code, err) == (0, "")
    token = out.strip()
    assert out == token + "\n"
    result = verify_client_token(token, lookup)
    assert result.key_sid == SID
    assert result.user_id == "alice"
    assert result.display_name == "Alice A."
    assert result.grants.subscribe == ("team1", "ALL_CALL_STATUS")
    assert result.grants.attributes == (AttributeGrant("status", "team1"),
                                        AttributeGrant("onlineStatus", "team1"))
    assert abs(result.expires_at - (time.time() + 120)) <= 2
    payload = jwt.decode(token, SECRET, algorithms=["HS256"])
    assert payload["subscribe"] == "team1,ALL_CALL_STATUS"
    assert jwt.get_unverified_header(token)["cty"] == "stringee-api;v=1"


def test_token_client_role(capsys: pytest.CaptureFixture[str], config_file: Path) -> None:
    code, out, err = run(capsys, "token", "client", "--config", str(config_file),
                         "--user", "sup_1", "--role", "supervisor")
    assert (code, err) == (0, "")
    assert jwt.decode(out.strip(), SECRET, algorithms=["HS256"])["role"] == "supervisor"
    verify_client_token(out.strip(), lookup)  # the hub takes it, role and all


@pytest.mark.parametrize("role", ["", "  ", "x" * 65, "sup\x1b[2J", "sup\u202e"])
def test_token_client_refuses_a_role_no_monitor_could_show(
        capsys: pytest.CaptureFixture[str], config_file: Path, role: str) -> None:
    code, out, err = run(capsys, "token", "client", "--config", str(config_file),
                         "--user", "sup_1", "--role", role)
    assert (code, out) == (2, "")
    assert one_line_error(err).startswith("--role: 1-64 characters")


def test_token_client_help_names_every_claim(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["token", "client", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for flag in ("--user", "--subscribe", "--publish", "--display-name", "--supervise",
                 "--role", "--ttl", "--key"):
        assert flag in text
    assert "`role` claim" in text and "not_agents" in text


def test_token_client_minimal(capsys: pytest.CaptureFixture[str], config_file: Path) -> None:
    code, out, _ = run(capsys, "token", "client", "--config", str(config_file), "--user", "u")
    assert code == 0
    payload = jwt.decode(out.strip(), SECRET, algorithms=["HS256"])
    assert set(payload) == {"jti", "iss", "exp", "userId"}
    assert payload["exp"] - int(payload["jti"].rpartition("-")[2]) == 3600


def test_token_client_with_a_chosen_key(capsys: pytest.CaptureFixture[str],
                                        config_file: Path) -> None:
    code, out, _ = run(capsys, "token", "client", "--config", str(config_file),
                       "--user", "u", "--key", SID2)
    assert code == 0
    assert verify_client_token(out.strip(), lookup).key_sid == SID2
    jwt.decode(out.strip(), SECRET2, algorithms=["HS256"])


def test_token_client_unknown_key(capsys: pytest.CaptureFixture[str], config_file: Path) -> None:
    code, out, err = run(capsys, "token", "client", "--config", str(config_file),
                         "--user", "u", "--key", "SKNOPE")
    assert (code, out) == (2, "")
    assert one_line_error(err) == f"{config_file}: no API key with sid 'SKNOPE'"


def test_token_client_finds_hub_toml_in_the_working_directory(
        capsys: pytest.CaptureFixture[str], isolated: Path) -> None:
    (isolated / "hub.toml").write_text(CONFIG, encoding="utf-8")
    code, out, _ = run(capsys, "token", "client", "--user", "u")
    assert code == 0
    assert verify_client_token(out.strip(), lookup).key_sid == SID


def test_token_client_finds_the_user_config(capsys: pytest.CaptureFixture[str],
                                            tmp_path: Path) -> None:
    (tmp_path / "userconf").mkdir()
    (tmp_path / "userconf" / "hub.toml").write_text(CONFIG, encoding="utf-8")
    code, out, _ = run(capsys, "token", "client", "--user", "u")
    assert code == 0
    assert verify_client_token(out.strip(), lookup).user_id == "u"


def test_token_client_uses_monitor_config(capsys: pytest.CaptureFixture[str], config_file: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MONITOR_CONFIG", str(config_file))
    code, out, _ = run(capsys, "token", "client", "--user", "u")
    assert code == 0
    assert verify_client_token(out.strip(), lookup).key_sid == SID


@pytest.mark.parametrize("publish", ["status", "=team1", "status=", "=", "status:team1", ""])
def test_publish_parsing_errors(capsys: pytest.CaptureFixture[str], config_file: Path,
                                publish: str) -> None:
    code, out, err = run(capsys, "token", "client", "--config", str(config_file),
                         "--user", "u", "--publish", "ok=team1", "--publish", publish)
    assert (code, out) == (2, "")
    assert one_line_error(err) == f"--publish {publish!r}: expected ATTRIBUTE=TOPIC"


@pytest.mark.parametrize(("args", "problem"), [
    (["--publish", "status=bad topic"], "invalid topic name 'bad topic'"),
    (["--publish", "status=a=b"], "invalid topic name 'a=b'"),
    (["--publish", "bad name=t"], "invalid attribute name 'bad name'"),
    (["--publish", "status=ALL_CALL_STATUS"], "cannot publish to ALL_CALL_STATUS"),
    (["--subscribe", "ok,not ok"], "invalid topic name 'not ok'"),
    (["--user", " padded"], "userId"),
])
def test_token_client_refuses_what_the_hub_would_refuse(
        capsys: pytest.CaptureFixture[str], config_file: Path, args: list[str],
        problem: str) -> None:
    argv = ["token", "client", "--config", str(config_file), "--user", "u", *args]
    code, out, err = run(capsys, *argv)
    assert (code, out) == (2, "")
    assert problem in one_line_error(err)


def test_token_client_user_id_too_long(capsys: pytest.CaptureFixture[str],
                                       config_file: Path) -> None:
    code, out, err = run(capsys, "token", "client", "--config", str(config_file),
                         "--user", "u" * 129)
    assert (code, out) == (2, "")
    assert "userId" in one_line_error(err)


# -- token rest ---------------------------------------------------------------------------


def test_token_rest(capsys: pytest.CaptureFixture[str], config_file: Path) -> None:
    code, out, err = run(capsys, "token", "rest", "--config", str(config_file), "--ttl", "60")
    assert (code, err) == (0, "")
    result = verify_rest_token(out.strip(), lookup)
    assert result.key_sid == SID
    assert abs(result.expires_at - (time.time() + 60)) <= 2
    assert jwt.decode(out.strip(), SECRET, algorithms=["HS256"])["rest_api"] is True


def test_token_rest_with_a_chosen_key(capsys: pytest.CaptureFixture[str],
                                      config_file: Path) -> None:
    code, out, _ = run(capsys, "token", "rest", "--config", str(config_file), "--key", SID2)
    assert code == 0
    assert verify_rest_token(out.strip(), lookup).key_sid == SID2


# -- missing or bad config -------------------------------------------------------------------


@pytest.mark.parametrize("kind", [["client", "--user", "u"], ["rest"]])
def test_no_config_anywhere(capsys: pytest.CaptureFixture[str], kind: list[str]) -> None:
    code, out, err = run(capsys, "token", *kind)
    assert (code, out) == (2, "")
    message = one_line_error(err)
    assert "no project with an API key" in message
    assert "monitor config init" in message


def test_missing_config_file(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    path = tmp_path / "nope.toml"
    code, out, err = run(capsys, "token", "client", "--config", str(path), "--user", "u")
    assert (code, out) == (2, "")
    assert one_line_error(err) == f"{path}: file not found"


def test_missing_config_file_from_env(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MONITOR_CONFIG", str(tmp_path / "nope.toml"))
    code, _, err = run(capsys, "token", "rest")
    assert code == 2
    assert one_line_error(err) == f"{tmp_path / 'nope.toml'}: file not found"


def test_bad_config_file(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text("[hub]\nws_port = 99999\n", encoding="utf-8")
    code, _, err = run(capsys, "config", "show", "--config", str(path))
    assert code == 2
    assert one_line_error(err) == f"{path}: ws_port: not a port number: 99999"


def test_bad_env_setting(capsys: pytest.CaptureFixture[str], config_file: Path,
                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MONITOR_API_PORT", "http")
    code, _, err = run(capsys, "token", "rest", "--config", str(config_file))
    assert code == 2
    assert one_line_error(err) == "environment: api_port: expected an integer, got 'http'"


# -- token decode -----------------------------------------------------------------------------


def decode(capsys: pytest.CaptureFixture[str], config_file: Path | None,
           token: str) -> tuple[int, str, str]:
    argv = ["token", "decode", token]
    if config_file is not None:
        argv += ["--config", str(config_file)]
    return run(capsys, *argv)


def shown(out: str) -> tuple[dict[str, object], dict[str, object]]:
    """The header and payload JSON that decode prints."""
    head_text = out.split("header:", 1)[1].split("payload:", 1)[0]
    payload_text = out.split("payload:", 1)[1].split("\nverifies:", 1)[0]
    return json.loads(head_text), json.loads(payload_text)


def verdict(out: str) -> str:
    lines = [line for line in out.splitlines() if line.startswith("verifies: ")]
    assert len(lines) == 1, out
    return lines[0]


def test_decode_a_good_client_token(capsys: pytest.CaptureFixture[str],
                                    config_file: Path) -> None:
    token = mint_client_token(SID, SECRET, "alice", subscribe=["t1"],
                              attributes=[("status", "t1")])
    code, out, err = decode(capsys, config_file, token)
    assert (code, err) == (0, "")
    header, payload = shown(out)
    assert header == {"typ": "JWT", "alg": "HS256", "cty": "stringee-api;v=1"}
    assert payload == jwt.decode(token, SECRET, algorithms=["HS256"])
    assert verdict(out) == f"verifies: yes (key {SID} in {config_file})"


def test_decode_a_good_rest_token(capsys: pytest.CaptureFixture[str], config_file: Path) -> None:
    code, out, _ = decode(capsys, config_file, mint_rest_token(SID2, SECRET2))
    assert code == 0
    assert shown(out)[1]["rest_api"] is True
    assert verdict(out).startswith(f"verifies: yes (key {SID2} ")


def test_decode_shows_controls_in_a_token_escaped(capsys: pytest.CaptureFixture[str],
                                                  config_file: Path) -> None:
    hostile = "Eve\x9b2J\u202e\x1b]0;TITLE\x07"
    token = jwt.encode({"iss": SID, "exp": 2**31, "userId": "eve", "displayName": hostile},
                       SECRET, algorithm="HS256")
    _, out, _ = decode(capsys, config_file, token)
    assert not any(ch in out for ch in "\x1b\x07\x9b\u202e"), repr(out)
    assert shown(out)[1]["displayName"] == "Eve\\x9b2J\\u202e\\x1b]0;TITLE\\x07"
    assert verdict(out).startswith("verifies: no")  # a displayName with controls: r = 7


def test_decode_strips_whitespace(capsys: pytest.CaptureFixture[str], config_file: Path) -> None:
    token = mint_client_token(SID, SECRET, "alice")
    code, out, _ = decode(capsys, config_file, f"  {token}\n")
    assert code == 0
    assert verdict(out).startswith("verifies: yes")


@pytest.mark.parametrize(("token", "r"), [
    (lambda: mint_client_token(SID, "wrong-secret-" + "x" * 40, "alice"), Result.TOKEN_SIGNATURE),
    (lambda: mint_client_token("SKNOPE", SECRET, "alice"), Result.KEY_NOT_FOUND),
    (lambda: mint_client_token(SID, SECRET, "alice", now=1_700_000_000), Result.TOKEN_EXPIRED),
    (lambda: mint_rest_token(SID, SECRET, now=1_700_000_000), Result.TOKEN_EXPIRED),
    (lambda: jwt.encode({"iss": SID, "exp": 9999999999, "userId": "u"}, None, algorithm="none"),
     Result.TOKEN_ALGORITHM),
    (lambda: jwt.encode({"iss": SID, "exp": 9999999999}, SECRET, algorithm="HS256"),
     Result.TOKEN_PAYLOAD),
])
def test_decode_a_token_that_does_not_verify(capsys: pytest.CaptureFixture[str],
                                             config_file: Path, token, r: Result) -> None:
    code, out, _ = decode(capsys, config_file, token())
    assert code == 1
    shown(out)  # header and payload are still shown
    assert verdict(out).startswith(f"verifies: no (r={int(r)}: ")


def test_decode_without_any_config(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = decode(capsys, None, mint_client_token(SID, SECRET, "alice"))
    assert code == 1
    assert shown(out)[1]["userId"] == "alice"
    assert verdict(out).startswith(f"verifies: no (r={int(Result.KEY_NOT_FOUND)}: ")


def test_decode_with_a_missing_config(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, out, _ = decode(capsys, tmp_path / "nope.toml", mint_client_token(SID, SECRET, "a"))
    assert code == 1
    assert verdict(out) == f"verifies: unknown ({tmp_path / 'nope.toml'}: file not found)"


@pytest.mark.parametrize("token", ["garbage", "a.b.c", "", "x.y", "!!.!!.!!"])
def test_decode_garbage(capsys: pytest.CaptureFixture[str], config_file: Path,
                        token: str) -> None:
    code, out, err = decode(capsys, config_file, token)
    assert (code, out) == (1, "")
    assert err.startswith("cannot decode: ")
    assert err.count("\n") == 1


# -- config init ---------------------------------------------------------------------------


def test_config_init_default_path(capsys: pytest.CaptureFixture[str], isolated: Path) -> None:
    code, out, err = run(capsys, "config", "init")
    assert (code, err) == (0, "")
    path = isolated / "hub.toml"
    config = load_config(str(path), environ={})
    project, key = config.default_key()
    assert (project.id, project.name) == (1, "Contact centre")
    assert out == (f"wrote hub.toml (project 1, API key {key.sid}; the hub keeps its state "
                   f"in {isolated.resolve() / 'data'})\n")
    assert key.secret not in out
    # The state is the file's own, wherever the hub is started from.
    assert config.hub.data_dir == str(isolated.resolve() / "data")
    code, out, _ = run(capsys, "config", "show", "--config", str(isolated / "hub.toml"))
    assert code == 0 and json.loads(out)["hub"]["data_dir"] == str(isolated.resolve() / "data")


def test_config_init_path_and_name(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    path = tmp_path / "deep" / "er" / "hub.toml"
    code, out, _ = run(capsys, "config", "init", str(path), "--name", 'Support "B" \\ team')
    assert code == 0
    assert out.startswith(f"wrote {path} (project 1, API key SK")
    assert load_config(str(path), environ={}).projects[0].name == 'Support "B" \\ team'


def test_config_init_then_tokens_work(capsys: pytest.CaptureFixture[str], isolated: Path) -> None:
    assert run(capsys, "config", "init")[0] == 0
    code, out, _ = run(capsys, "token", "client", "--user", "alice")
    assert code == 0
    code, out, _ = decode(capsys, None, out.strip())
    assert code == 0
    assert verdict(out).startswith("verifies: yes (key SK")


def test_config_init_refuses_to_overwrite(capsys: pytest.CaptureFixture[str],
                                          isolated: Path) -> None:
    path = isolated / "hub.toml"
    path.write_text("# keep me\n", encoding="utf-8")
    code, out, err = run(capsys, "config", "init")
    assert (code, out) == (2, "")
    assert one_line_error(err) == "hub.toml: already exists; not overwritten"
    assert path.read_text(encoding="utf-8") == "# keep me\n"


def test_config_init_twice(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    path = tmp_path / "hub.toml"
    assert run(capsys, "config", "init", str(path))[0] == 0
    before = path.read_text(encoding="utf-8")
    code, _, err = run(capsys, "config", "init", str(path), "--name", "Other")
    assert code == 2
    assert one_line_error(err) == f"{path}: already exists; not overwritten"
    assert path.read_text(encoding="utf-8") == before


def test_config_init_where_it_cannot_write(capsys: pytest.CaptureFixture[str],
                                           tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("", encoding="utf-8")
    path = blocker / "hub.toml"
    code, out, err = run(capsys, "config", "init", str(path))
    assert (code, out) == (2, "")
    message = one_line_error(err)
    assert message.startswith(f"{path}: cannot write")
    assert not path.exists()


# -- config show ---------------------------------------------------------------------------


def test_config_show_masks_secrets(capsys: pytest.CaptureFixture[str],
                                   config_file: Path) -> None:
    code, out, err = run(capsys, "config", "show", "--config", str(config_file))
    assert (code, err) == (0, "")
    assert SECRET not in out and SECRET2 not in out
    assert SECRET[4:12] not in out
    shown_config = json.loads(out)
    assert shown_config["source"] == str(config_file)
    assert shown_config["hub"]["ws_port"] == 7001
    assert shown_config["hub"]["api_port"] == 6900
    project = shown_config["projects"][0]
    assert (project["id"], project["name"]) == (1, "Sales")
    assert [k["sid"] for k in project["keys"]] == [SID, SID2]
    for key, secret in zip(project["keys"], (SECRET, SECRET2), strict=True):
        assert key["secret"] != secret
        assert len(key["secret"]) < 8


def test_config_show_precedence(capsys: pytest.CaptureFixture[str], config_file: Path,
                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MONITOR_WS_PORT", "7100")
    monkeypatch.setenv("MONITOR_HISTORY_SIZE", "5")
    code, out, _ = run(capsys, "config", "show", "--config", str(config_file),
                       "--ws-port", "7200", "--log-level", "DEBUG")
    assert code == 0
    hub = json.loads(out)["hub"]
    assert hub["ws_port"] == 7200  # flag over env over file
    assert hub["history_size"] == 5  # env over default
    assert hub["log_level"] == "debug"
    assert hub["host"] == "127.0.0.1"


def test_config_show_defaults(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "config", "show")
    assert code == 0
    shown_config = json.loads(out)
    assert shown_config["source"] == "<defaults>"
    assert shown_config["projects"] == []
    assert shown_config["hub"]["ws_port"] == 6899


@pytest.mark.parametrize(("flag", "value", "problem"), [
    ("--ws-port", "abc", "command line: ws_port: expected an integer, got 'abc'"),
    ("--api-port", "0", "command line: api_port: must be positive, got 0"),
    ("--log-level", "loud", "command line: log_level: must be one of"),
])
def test_config_show_bad_flag(capsys: pytest.CaptureFixture[str], flag: str, value: str,
                              problem: str) -> None:
    code, out, err = run(capsys, "config", "show", flag, value)
    assert (code, out) == (2, "")
    assert one_line_error(err).startswith(problem)


# -- argument parsing -------------------------------------------------------------------------


@pytest.mark.parametrize("argv", [
    [], ["token"], ["token", "client"], ["token", "mint"], ["config"], ["nope"],
    ["token", "client", "--user", "u", "--ttl", "soon"], ["token", "decode"],
])
def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str], argv: list[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    assert "usage: monitor" in capsys.readouterr().err


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0
    assert capsys.readouterr().out == f"monitor {__version__}\n"


# -- a real process ------------------------------------------------------------------------


def clean_env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MONITOR_")}
    env.update(HOME=str(tmp_path / "home"), XDG_CONFIG_HOME=str(tmp_path / "xdg"))
    return env


def console_script() -> str:
    script = Path(sys.executable).with_name("monitor")
    if script.exists():
        return str(script)
    found = shutil.which("monitor")
    if found is None:
        pytest.fail("the monitor console script is not installed next to the interpreter")
    return found


def test_console_script_and_python_m(tmp_path: Path) -> None:
    env = clean_env(tmp_path)
    cwd = tmp_path / "cwd"
    init = subprocess.run([sys.executable, "-m", "monitor", "config", "init"], cwd=cwd,
                          env=env, capture_output=True, text=True, timeout=60)
    assert init.returncode == 0, init.stderr
    assert init.stdout.startswith("wrote hub.toml (project 1, API key SK")

    client = subprocess.run([console_script(), "token", "client", "--user", "alice",
                             "--subscribe", "t1", "--publish", "status=t1"],
                            cwd=cwd, env=env, capture_output=True, text=True, timeout=60)
    assert client.returncode == 0, client.stderr
    token = client.stdout.strip()
    config = load_config(str(cwd / "hub.toml"), environ={})
    _, key = config.default_key()
    assert jwt.decode(token, key.secret, algorithms=["HS256"])["userId"] == "alice"

    shown_out = subprocess.run([sys.executable, "-m", "monitor", "token", "decode", token],
                               cwd=cwd, env=env, capture_output=True, text=True, timeout=60)
    assert shown_out.returncode == 0, shown_out.stderr
    assert f"verifies: yes (key {key.sid} in {cwd / 'hub.toml'})" in shown_out.stdout

    again = subprocess.run([console_script(), "config", "init"], cwd=cwd, env=env,
                           capture_output=True, text=True, timeout=60)
    assert again.returncode == 2
    assert again.stdout == ""
    assert again.stderr == "monitor: error: hub.toml: already exists; not overwritten\n"


def test_python_m_missing_config(tmp_path: Path) -> None:
    cwd = tmp_path / "cwd"
    done = subprocess.run([sys.executable, "-m", "monitor", "token", "rest"], cwd=cwd,
                          env=clean_env(tmp_path), capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr.startswith("monitor: error: <defaults>: no project with an API key")
    assert done.stderr.count("\n") == 1
