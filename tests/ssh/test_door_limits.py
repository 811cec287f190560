"""How much the SSH door lets a client try: keys per connection, failed logins per
address, and what of the client's words reaches the log (as arguments, never as format)."""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path

import asyncssh
import pytest

from monitor.ssh.keys import AuthorizedKeys
from monitor.ssh.limits import LoginThrottle
from monitor.ssh.roles import parse_roles
from monitor.ssh.server import Door, DoorOptions, RolesPolicy
from tests.conftest import require_program
from tests.hubproc import KEY_SECRET, KEY_SID, HubProcess
from tests.ssh.door import DoorProcess, make_key, wait_until

ROLES = '[[users]]\nname = "sup"\nrole = "supervisor"\nteams = ["sales"]\n'


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


# -- the throttle on its own -----------------------------------------------------------

def test_an_address_is_refused_after_its_failures_until_the_oldest_ages_out() -> None:
    clock = FakeClock()
    throttle = LoginThrottle(3, 60.0, clock=clock)
    assert not throttle.failed("10.0.0.1")
    clock.now += 10
    assert not throttle.failed("10.0.0.1")
    assert throttle.blocked_for("10.0.0.1") == 0
    clock.now += 10
    assert throttle.failed("10.0.0.1")  # the third within the window: blocked
    assert throttle.blocked_for("10.0.0.1") == pytest.approx(40.0)
    assert throttle.blocked_for("10.0.0.2") == 0  # others are not
    clock.now += 40  # the first failure is a window old: one more try
    assert throttle.blocked_for("10.0.0.1") == 0
    assert throttle.failed("10.0.0.1")  # ... which fails: blocked until the second ages
    assert throttle.blocked_for("10.0.0.1") == pytest.approx(10.0)


def test_ipv6_addresses_count_by_their_64_and_mapped_ipv4_as_ipv4() -> None:
    throttle = LoginThrottle(2, 60.0, clock=FakeClock())
    throttle.failed("2001:db8:1:2::1")
    assert throttle.failed("2001:db8:1:2:ffff::9")  # the same /64
    assert throttle.blocked_for("2001:db8:1:2::77") > 0
    assert throttle.blocked_for("2001:db8:1:3::1") == 0
    throttle.failed("::ffff:10.1.1.1")
    assert throttle.failed("10.1.1.1")
    assert LoginThrottle.key("fe80::1%eth0") == "fe80::/64"
    assert LoginThrottle.key("not an address") == "not an address"


def test_memory_is_bounded_and_old_addresses_are_forgotten() -> None:
    clock = FakeClock()
    throttle = LoginThrottle(3, 60.0, max_addresses=100, clock=clock)
    for i in range(1000):
        throttle.failed(f"10.0.{i // 256}.{i % 256}")
    assert len(throttle) == 100
    clock.now += 61
    throttle.failed("192.0.2.1")
    assert len(throttle) == 1  # everything older than the window is gone


def test_zero_failures_turns_the_throttle_off() -> None:
    throttle = LoginThrottle(0, 60.0, clock=FakeClock())
    for _ in range(100):
        assert not throttle.failed("10.0.0.1")
    assert throttle.blocked_for("10.0.0.1") == 0 and len(throttle) == 0


# -- over SSH ------------------------------------------------------------------------

class Keys:
    """The door's files: a roles file, sup's key, and keys nobody authorized."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.dir = workdir / "keys"
        self.dir.mkdir()
        self.sup = workdir / "sup_key"
        (self.dir / "sup.pub").write_text(make_key(self.sup) + "\n")
        self.strangers = []
        for i in range(30):
            path = workdir / f"stranger_{i}"
            make_key(path)
            self.strangers.append(path)
        self.roles = workdir / "roles.toml"
        self.roles.write_text(ROLES)

    def door(self, hub: HubProcess, name: str, *extra: str) -> DoorProcess:
        return DoorProcess(self.workdir / name, [
            "--config", str(hub.config_path), "--hub", hub.ws_url, "--roles", str(self.roles),
            "--authorized-keys", str(self.dir), *extra])


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Keys:
    require_program("ssh", "openssh-client")
    return Keys(tmp_path_factory.mktemp("limits"))


def refusals(door: DoorProcess) -> list[dict[str, str]]:
    return door.events("login_refused")


@pytest.mark.slow
@pytest.mark.parametrize(("args", "tries"), [((), 6), (("--max-auth-tries", "2"), 2)])
def test_one_connection_may_try_only_so_many_keys(keys: Keys, module_hub: HubProcess,
                                                  args: tuple[str, ...], tries: int) -> None:
    door = keys.door(module_hub, f"tries-{tries}", *args).start()
    try:
        identities = [arg for key in keys.strangers for arg in ("-i", str(key))]
        done = door.ssh("sup", None, "-T", *identities)
        assert done.returncode == 255
        assert "too many authentication failures" in done.stderr
        wait_until(lambda: refusals(door), "the refusal", 10, door.log)
        refusal = refusals(door)[-1]
        assert refusal["reason"] == "too_many_auth_failures"
        assert len(refusal["keys_tried"].split(",")) == tries  # not 30
        # the right key, offered after as many wrong ones, comes too late
        late = [*identities[:2 * tries], "-i", str(keys.sup)]
        assert door.ssh("sup", None, "-T", *late).returncode == 255
        # and first, it is let in (the door then explains it needs a terminal)
        done = door.ssh("sup", keys.sup, "-T", *identities)
        assert done.returncode == 1 and "needs a terminal" in done.stdout
    finally:
        door.stop()


async def _flood(port: int, key: asyncssh.SSHKey, count: int) -> list[BaseException | None]:
    async def attempt() -> BaseException | None:
        try:
            conn = await asyncssh.connect("127.0.0.1", port, username="sup",
                                          client_keys=[key], known_hosts=None,
                                          agent_path=None, preferred_auth="publickey",
                                          login_timeout=20)
        except (asyncssh.Error, OSError) as exc:
            return exc
        conn.close()
        return None
    return list(await asyncio.gather(*(attempt() for _ in range(count))))


@pytest.mark.slow
def test_an_address_with_too_many_failed_logins_is_refused_until_they_age_out(
        keys: Keys, module_hub: HubProcess) -> None:
    # The window is long enough for what happens while blocked, on a slow machine too.
    door = keys.door(module_hub, "throttle", "--max-login-failures", "3",
                     "--login-failure-window", "10s").start()
    try:
        for _ in range(3):
            assert door.ssh("sup", keys.strangers[0], "-T").returncode == 255
        wait_until(lambda: door.events("login_blocked"), "the block", 10, door.log)
        assert door.events("login_blocked")[0]["address"] == "127.0.0.1"
        # now even the right key is refused, with the reason and the wait
        done = door.ssh("sup", keys.sup, "-T")
        assert done.returncode == 255 and not done.stdout
        assert "too many failed logins from 127.0.0.1; try again in" in done.stderr
        # a flood from the address: all refused before any key is looked at, and not
        # logged one by one
        flooded = time.monotonic()
        results = asyncio.run(_flood(door.port, asyncssh.read_private_key(keys.sup), 100))
        assert all(isinstance(r, asyncssh.DisconnectError) and r.code == 1
                   and "too many failed logins" in r.reason for r in results), results[:3]
        assert time.monotonic() - flooded < 5
        assert len(refusals(door)) == 3 and len(door.events("login_blocked")) == 1
        assert not door.events("login")
        # once the failures are a window old, the user is let in again (attempts while
        # blocked do not count: trying again and again does no harm)
        wait_until(lambda: door.ssh("sup", keys.sup, "-T").returncode == 1,
                   "the address to be let in again", 20, door.log)
        assert len(door.events("login")) == 1
    finally:
        door.stop()


@pytest.mark.slow
def test_the_limits_are_in_the_listening_line(keys: Keys, module_hub: HubProcess) -> None:
    door = keys.door(module_hub, "defaults").start()
    try:
        listening = door.events("ssh_listening")[0]
        assert listening["max_auth_tries"] == "6"
        assert listening["max_login_failures"] == "10"
        assert listening["login_failure_window"] == "300"
    finally:
        door.stop()


async def test_a_clients_user_name_is_logged_as_an_argument_never_as_format(
        keys: Keys, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Whatever the name holds (spaces, '=', quotes, '%s'), it is a log argument: the
    log's formatter escapes arguments, and nothing in it can forge a field or a line."""
    roles = parse_roles({"users": [{"name": "sup", "role": "supervisor", "team": "a"}]}, "r")
    door = Door(RolesPolicy(roles, KEY_SID, KEY_SECRET), "ws://127.0.0.1:9/",
                DoorOptions(port=0, host_key=tmp_path / "host_key"),
                authorized_keys=AuthorizedKeys(keys.dir))
    await door.start()
    name = "mallory reason=ok keys_tried=none peer='x' %s %(user)s"
    try:
        with caplog.at_level(logging.DEBUG, logger="monitor.ssh"):
            with pytest.raises(asyncssh.PermissionDenied):
                await asyncssh.connect("127.0.0.1", door.port, username=name,
                                       client_keys=[asyncssh.read_private_key(keys.sup)],
                                       known_hosts=None, agent_path=None)
            for _ in range(100):
                if any(r.msg.startswith("event=login_refused") for r in caplog.records):
                    break
                await asyncio.sleep(0.02)
    finally:
        await door.close()
    refused = [r for r in caplog.records if r.msg.startswith("event=login_refused")]
    assert refused and name in refused[0].args  # type: ignore[operator]
    for record in caplog.records:
        assert "mallory" not in str(record.msg)
