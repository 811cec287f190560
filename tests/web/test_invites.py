"""The web door's pieces without a browser: passes, the state directory, the command
line, the session process's command line."""

from __future__ import annotations

import os
import shlex
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from monitor.cli import main
from monitor.web.invites import (
    EVERYONE,
    INVITE,
    SESSION,
    PassError,
    Signer,
    WebState,
    parse_ttl,
)
from monitor.web.server import child_command
from tests.web.door import ROLES


@pytest.fixture
def signer() -> Signer:
    return Signer(b"k" * 32)


def test_a_pass_says_who_and_until_when(signer: Signer) -> None:
    text = signer.sign(INVITE, "alice", "supervisor", int(time.time()) + 60)
    found = signer.verify(INVITE, text)
    assert (found.user, found.role, found.kind) == ("alice", "supervisor", INVITE)
    assert found.issued_ms <= time.time_ns() // 1_000_000 and len(found.id) == 16


@pytest.mark.parametrize(("change", "reason"), [
    (lambda t: t[:-2] + ("AA" if not t.endswith("AA") else "BB"), "bad_signature"),
    (lambda t: "x" + t, "bad_signature"),
    (lambda t: t.replace(".", ""), "malformed"),
    (lambda t: t + "." + t, "malformed"),
    (lambda t: "é" + t, "malformed"),
    (lambda t: t + "A" * 3000, "malformed"),
    (lambda t: "", "malformed"),
])
def test_an_altered_pass_is_refused(signer: Signer, change: object, reason: str) -> None:
    text = signer.sign(INVITE, "alice", "supervisor", int(time.time()) + 60)
    with pytest.raises(PassError) as refused:
        signer.verify(INVITE, change(text))  # type: ignore[operator]
    assert refused.value.reason == reason


def test_kinds_and_secrets_do_not_mix(signer: Signer) -> None:
    invite = signer.sign(INVITE, "alice", "supervisor", int(time.time()) + 60)
    with pytest.raises(PassError, match="not valid"):
        signer.verify(SESSION, invite)  # an invitation is not a session cookie
    with pytest.raises(PassError, match="not valid"):
        Signer(b"j" * 32).verify(INVITE, invite)
    with pytest.raises(ValueError):
        Signer(b"short")


def test_an_expired_pass_is_refused(signer: Signer) -> None:
    text = signer.sign(INVITE, "alice", "supervisor", int(time.time()) + 10)
    with pytest.raises(PassError) as refused:
        signer.verify(INVITE, text, now=time.time() + 11)
    assert refused.value.reason == "expired"


@pytest.mark.parametrize(("text", "seconds"), [
    ("8h", 8 * 3600), ("30m", 1800), ("45s", 45), ("7d", 7 * 86400),
    ("1d12h", 36 * 3600), ("90", 90)])
def test_ttls(text: str, seconds: float) -> None:
    assert parse_ttl(text) == seconds


@pytest.mark.parametrize("text", ["", "0", "0d", "soon", "-5m", "1w"])
def test_bad_ttls(text: str) -> None:
    with pytest.raises(ValueError, match="--ttl"):
        parse_ttl(text)


def test_state_is_private_and_revocations_count_until_their_time(tmp_path: Path) -> None:
    state = WebState(tmp_path / "web")
    signer = state.signer()
    assert state.signer()._mac("x", "y") == signer._mac("x", "y")  # the same secret
    assert stat.S_IMODE((tmp_path / "web").stat().st_mode) == 0o700
    assert stat.S_IMODE((tmp_path / "web" / "secret").stat().st_mode) == 0o600
    expires = int(time.time()) + 60
    alice = signer.verify(INVITE, signer.sign(INVITE, "alice", "supervisor", expires))
    ann = signer.verify(INVITE, signer.sign(INVITE, "ann", "agent", expires))
    assert not state.is_revoked(alice)
    time.sleep(0.002)
    WebState(tmp_path / "web").revoke("alice")  # another process: the door sees it
    assert state.is_revoked(alice) and not state.is_revoked(ann)
    assert stat.S_IMODE((tmp_path / "web" / "revoked.json").stat().st_mode) == 0o600
    time.sleep(0.002)
    later = signer.verify(INVITE, signer.sign(INVITE, "alice", "supervisor", expires))
    assert not state.is_revoked(later)  # a new invitation lets her in again
    state.revoke(EVERYONE)
    assert state.is_revoked(ann) and state.is_revoked(later)
    (tmp_path / "web" / "revoked.json").write_text("not json")
    assert not state.is_revoked(ann)  # unreadable: nothing revoked, nothing crashes


def test_the_session_process_gets_a_fresh_environment(tmp_path: Path) -> None:
    command = child_command("ws://127.0.0.1:1/", tmp_path, os.devnull, read_only=True)
    # Run it with `env` printing the environment instead of starting the monitor.
    python = f" {shlex.quote(sys.executable)} -m monitor.web.child "
    assert python in command
    probe = command.split(python)[0] + " env"
    done = subprocess.run(["sh", "-c", probe], capture_output=True, text=True, check=True,
                          env={"PATH": os.environ["PATH"], "SECRET_OF_THE_DOOR": "x",
                               "TEXTUAL_DRIVER": "textual.drivers.web_driver:WebDriver",
                               "COLUMNS": "120", "ROWS": "40"})
    env = dict(line.split("=", 1) for line in done.stdout.splitlines())
    assert "SECRET_OF_THE_DOOR" not in env
    assert env["TEXTUAL_DRIVER"] == "textual.drivers.web_driver:WebDriver"
    assert env["COLUMNS"] == "120" and env["HOME"] == str(tmp_path)
    assert "TEXTUAL_FPS" not in env  # not set by textual-serve here: not passed on empty
    assert f"--token-file {tmp_path / 'token'}" in command and "--read-only" in command


def test_invite_and_revoke_commands(tmp_path: Path, capsys: pytest.CaptureFixture[str]
                                    ) -> None:
    roles = tmp_path / "roles.toml"
    roles.write_text(ROLES)
    state = tmp_path / "state"
    base = ["web", "invite", "--state", str(state)]
    assert main([*base, "--user", "alice"]) == 2
    assert "--roles FILE" in capsys.readouterr().err
    assert main([*base, "--user", "alice", "--roles", str(roles)]) == 2
    assert "--url URL" in capsys.readouterr().err
    WebState(state).record_door("http://127.0.0.1:8470/", str(roles))
    assert main([*base, "--user", "alice", "--ttl", "2h"]) == 0
    out = capsys.readouterr()
    url = out.out.strip()
    assert url.startswith("http://127.0.0.1:8470/#invite=")
    assert "alice (supervisor)" in out.err and "send it privately" in out.err
    found = WebState(state).signer().verify(INVITE, url.split("#invite=", 1)[1])
    assert found.user == "alice" and 7190 < found.expires - time.time() <= 7200
    assert main([*base, "--user", "bob"]) == 2
    assert "no user 'bob'" in capsys.readouterr().err
    assert main([*base, "--user", "ann", "--role", "supervisor"]) == 2
    assert "ann's role is agent, not supervisor" in capsys.readouterr().err
    assert main(["web", "revoke", "--user", "alice", "--state", str(state)]) == 0
    assert WebState(state).is_revoked(found)
    with pytest.raises(SystemExit):
        main(["web", "revoke", "--state", str(state)])  # --user or --all


def test_serve_flags_are_checked_before_anything_starts(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["web", "--state", str(tmp_path)]) == 2
    assert "--roles FILE" in capsys.readouterr().err
    assert main(["web", "--demo", "--tls-cert", "x.pem"]) == 2
    assert "--tls-cert and --tls-key" in capsys.readouterr().err
    assert main(["web", "--demo", "--public-url", "monitor.example.com"]) == 2
    assert "expected http://" in capsys.readouterr().err
    assert main(["web", "--demo", "--public-url", "https://example.com/monitor/"]) == 2
    assert "root of its host name" in capsys.readouterr().err
