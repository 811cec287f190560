"""The door's pieces without a network: roles, authorized keys, the host key, the child's
environment and the command line."""

from __future__ import annotations

import asyncio
import logging
import os
from pathlib import Path

import asyncssh
import pytest

from monitor.cli import main
from monitor.config import ConfigError
from monitor.ssh.keys import AuthorizedKeys, load_or_create_host_key
from monitor.ssh.roles import load_roles, parse_roles
from monitor.ssh.session import child_env
from monitor.tokens import AttributeGrant, verify_client_token
from tests.ssh.door import make_key

ROLES = """
topic_prefix = "t."

[[users]]
name = "sue"
role = "supervisor"
teams = ["sales", "support"]
display_name = "Sue Park"

[[users]]
name = "ann"
role = "agent"
team = "sales"
"""


def test_supervisors_watch_their_teams_and_calls_agents_publish_their_status(
        tmp_path: Path) -> None:
    path = tmp_path / "roles.toml"
    path.write_text(ROLES)
    roles = load_roles(path)
    sue = roles.access("sue")
    assert sue is not None
    assert sue.subscribe == ("t.sales", "t.support", "ALL_CALL_STATUS")
    assert sue.attributes == () and sue.read_only and sue.display_name == "Sue Park"
    ann = roles.access("ann")
    assert ann is not None
    assert ann.subscribe == () and not ann.read_only
    assert ann.attributes == (AttributeGrant("manual_status", "t.sales"),
                              AttributeGrant("onlineStatus", "t.sales"))
    assert roles.access("mallory") is None


def test_the_minted_token_carries_the_role(tmp_path: Path) -> None:
    from monitor.ssh.server import RolesPolicy

    roles = parse_roles({"users": [{"name": "sue", "role": "supervisor", "team": "a"}]}, "x")
    policy = RolesPolicy(roles, "SK1", "s" * 32)
    access = policy.access("sue")
    assert access is not None
    claims = verify_client_token(policy.mint(access), lambda sid: "s" * 32)
    assert claims.user_id == "sue"
    assert claims.grants.subscribe == ("team_a", "ALL_CALL_STATUS")
    assert claims.expires_at > 0


@pytest.mark.parametrize(("data", "problem"), [
    ({"users": [{"name": "a", "role": "boss", "team": "x"}]}, "users[0].role: expected"),
    ({"users": [{"name": "a b", "role": "agent", "team": "x"}]}, "users[0].name"),
    ({"users": [{"name": "a", "role": "agent"}]}, "users[0]: no team"),
    ({"users": [{"name": "a", "role": "agent", "team": "x", "teams": ["y"]}]}, "not both"),
    ({"users": [{"name": "a", "role": "agent", "team": "x y"}]}, "not a valid topic name"),
    ({"users": [{"name": "a", "role": "agent", "team": "x"},
                {"name": "a", "role": "agent", "team": "x"}]}, "users[1].name: 'a' appears"),
    ({"users": [{"name": "a", "role": "agent", "team": "x", "tema": 1}]}, "tema: unknown"),
    ({"user": []}, "user: unknown key"),
])
def test_a_bad_roles_file_is_refused_naming_the_entry(data: dict, problem: str) -> None:
    with pytest.raises(ConfigError, match=r"^roles\.toml: ") as caught:
        parse_roles(data, "roles.toml")
    assert problem in str(caught.value)


def test_authorized_keys_from_a_directory_of_user_files(tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    keys.mkdir()
    ann = make_key(tmp_path / "ann")
    (keys / "ann.pub").write_text(ann + "\n")
    (tmp_path / "secret.pub").write_text(ann + "\n")
    store = AuthorizedKeys(keys)
    found = store.for_user("ann")
    assert found is not None
    key = asyncssh.import_public_key(ann)
    assert found.validate(key, "localhost", "127.0.0.1") is not None
    assert store.for_user("bob") is None
    # a user name never reaches outside the directory
    assert store.for_user("../secret") is None and store.for_user(".hidden") is None


def test_one_authorized_keys_file_binds_keys_to_users_with_principals(
        tmp_path: Path) -> None:
    ann, bob, anyone = (make_key(tmp_path / n) for n in ("ann", "bob", "anyone"))
    path = tmp_path / "authorized_keys"
    path.write_text(f'# the team\nprincipals="ann" {ann}\n'
                    f'principals="bob,carol",from="127.0.0.1" {bob}\n{anyone}\n')
    store = AuthorizedKeys(path)
    ann_key, bob_key = asyncssh.import_public_key(ann), asyncssh.import_public_key(bob)
    ann_keys = store.for_user("ann")
    assert ann_keys is not None
    assert ann_keys.validate(ann_key, "h", "127.0.0.1") is not None
    assert ann_keys.validate(bob_key, "h", "127.0.0.1") is None
    carol = store.for_user("carol")
    assert carol is not None
    assert carol.validate(bob_key, "h", "127.0.0.1") is not None
    assert carol.validate(bob_key, "h", "10.0.0.1") is None  # from= still applies
    # a key naming no user lets nobody in, and is reported
    assert store.unbound_lines() == [4]
    assert store.for_user("anyone") is None


def test_the_host_key_is_made_once_private_and_kept(tmp_path: Path) -> None:
    path = tmp_path / "dir" / "host_key"
    first = load_or_create_host_key(path)
    assert path.stat().st_mode & 0o777 == 0o600
    assert (tmp_path / "dir" / "host_key.pub").read_bytes() == first.export_public_key()
    again = load_or_create_host_key(path)
    assert again.get_fingerprint() == first.get_fingerprint()


def test_the_child_environment_is_fresh_utf8_and_honours_term(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MONITOR_TOKEN", "the-door-operator's")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "x")
    monkeypatch.setenv("COLUMNS", "40")
    monkeypatch.setenv("HOME", "/home/door")
    monkeypatch.delenv("XDG_CONFIG_HOME", raising=False)
    env = child_env("screen-256color", {"COLORTERM": "truecolor", "LC_ALL": "C"}, "/s/1")
    # its own home (what it saves stays in the session's directory), the door's themes
    assert env["HOME"] == "/s/1" and env["XDG_CONFIG_HOME"] == "/home/door/.config"
    assert env["TERM"] == "screen-256color" and env["COLORTERM"] == "truecolor"
    assert env["LANG"] == "C.UTF-8" and env["PYTHONUTF8"] == "1" and "LC_ALL" not in env
    assert not {"MONITOR_TOKEN", "AWS_SECRET_ACCESS_KEY", "COLUMNS"} & set(env)
    # a missing or strange TERM becomes a safe default
    assert child_env("", {}, "/s/1")["TERM"] == "xterm-256color"
    assert child_env("x\x1b]0;evil", {}, "/s/1")["TERM"] == "xterm-256color"
    assert "COLORTERM" not in child_env("xterm", {"COLORTERM": "$(reboot)"}, "/s/1")


def test_ssh_serve_without_roles_or_keys_is_a_usage_error(
        capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert main(["ssh-serve", "--port", "0", "--host-key", str(tmp_path / "k")]) == 2
    assert "needs --roles FILE and --authorized-keys" in capsys.readouterr().err
    assert not (tmp_path / "k").exists()
    roles = tmp_path / "roles.toml"
    roles.write_text(ROLES)
    assert main(["ssh-serve", "--roles", str(roles), "--authorized-keys",
                 str(tmp_path / "missing"), "--host-key", str(tmp_path / "k")]) == 2
    assert "--authorized-keys" in capsys.readouterr().err
    assert os.listdir(tmp_path) == ["roles.toml"]


def test_an_edited_roles_file_applies_at_the_next_login_and_a_broken_one_is_ignored(
        tmp_path: Path) -> None:
    from monitor.ssh.server import RolesPolicy

    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append  # type: ignore[method-assign]

    path = tmp_path / "roles.toml"
    path.write_text(ROLES)
    policy = RolesPolicy(load_roles(path), "SK1", "s" * 32, path=path)
    assert policy.access("bob") is None
    path.write_text(ROLES + '\n[[users]]\nname = "bob"\nrole = "agent"\nteam = "billing"\n')
    bob = policy.access("bob")
    assert bob is not None and bob.attributes[0].topic == "t.billing"
    path.write_text(ROLES + "\n[[users]]\nname = \"carol\"\n")  # no role: refused
    logging.getLogger("monitor.ssh").addHandler(handler)
    try:
        assert policy.access("bob") is not None  # the last good roles stay
    finally:
        logging.getLogger("monitor.ssh").removeHandler(handler)
    [record] = records
    assert record.levelno == logging.ERROR and "event=roles_invalid" in record.getMessage()
    assert "users[2].role" in record.getMessage()
    assert policy.access("carol") is None


async def test_session_files_are_private_refreshed_and_removed() -> None:
    from monitor.ssh.roles import Access
    from monitor.ssh.server import SessionFiles

    minted = iter(range(1000))
    files = SessionFiles(lambda access: f"{access.user_id}.{next(minted)}.sig",
                         refresh_s=0.05)
    try:
        home = files.create(7, Access("ann"))
        token = home / "token"
        assert token.read_text() == "ann.0.sig\n"
        assert home.stat().st_mode & 0o777 == 0o700 and token.stat().st_mode & 0o777 == 0o600
        assert Path(files.directory).stat().st_mode & 0o777 == 0o700
        for _ in range(100):
            if token.read_text() != "ann.0.sig\n":
                break
            await asyncio.sleep(0.02)
        assert token.read_text().startswith("ann.") and token.read_text() != "ann.0.sig\n"
        assert sorted(p.name for p in home.iterdir()) == ["token"]  # no .new left behind
        files.remove(7)
        assert not home.exists()
    finally:
        files.close()
    assert not Path(files.directory).exists()


def test_a_new_door_removes_the_session_files_of_a_door_that_died(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import subprocess
    import sys
    import tempfile

    from monitor.ssh.server import sweep_stale_session_files

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    stale = tmp_path / f"monitor-ssh-{dead.stdout.strip()}-x1"
    live = tmp_path / f"monitor-ssh-{os.getpid()}-x2"
    other = tmp_path / "monitor-ssh-notapid-x3"
    for path in (stale, live, other):
        (path / "session-1").mkdir(parents=True)
        (path / "session-1" / "token").write_text("t")
    sweep_stale_session_files()
    assert not stale.exists() and live.exists() and other.exists()
