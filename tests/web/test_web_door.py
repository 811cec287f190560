"""The web door end to end: a real hub, ``monitor web`` and headless Chromium.

Screenshots go to build/web-screenshots/ (git-ignored), to be looked at.
"""

from __future__ import annotations

import os
import re
import stat
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect

from tests.hubproc import HubProcess
from tests.ssh.door import process_gone, wait_until
from tests.web.browser import Browser
from tests.web.door import CANARY, ROLES, WebDoorProcess

pytestmark = pytest.mark.slow
SHOTS = Path(__file__).resolve().parents[2] / "build" / "web-screenshots"
_CURSOR_RE = re.compile(r"\x1b\[(\d+);(\d+)H")


@pytest.fixture(scope="module")
def roles_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("roles") / "roles.toml"
    path.write_text(ROLES, encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def floor(module_hub: HubProcess) -> Iterator[None]:
    """A few agents of team sales online, each with a status, for the grid to show."""
    import asyncio
    import threading

    from monitor.client import HubClient
    from monitor.tokens import AttributeGrant

    agents = [("agent_1", "Bea Lind", "available"), ("agent_2", "Carl Osei", "break"),
              ("agent_3", "Dana Park", "lunch"), ("agent_4", "Eli Novak", "available")]
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()

    async def start() -> list[HubClient]:
        clients = []
        for user, name, status in agents:
            client = HubClient(module_hub.ws_url, module_hub.client_token(
                user, display_name=name,
                attributes=[AttributeGrant("manual_status", "team_sales"),
                            AttributeGrant("onlineStatus", "team_sales")]))
            await client.connect()
            await client.change_attribute("manual_status", status)
            clients.append(client)
        return clients

    clients = asyncio.run_coroutine_threadsafe(start(), loop).result(30)
    try:
        yield
    finally:
        async def stop() -> None:
            for client in clients:
                await client.close()

        asyncio.run_coroutine_threadsafe(stop(), loop).result(30)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)


@pytest.fixture(scope="module")
def door(module_hub: HubProcess, roles_file: Path,
         tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebDoorProcess]:
    """A door of the roles file in front of the module's hub."""
    process = WebDoorProcess(tmp_path_factory.mktemp("web"), [
        "--config", str(module_hub.config_path), "--roles", str(roles_file)]).start()
    try:
        yield process
    finally:
        process.stop()


@pytest.fixture
def browser() -> Iterator[Browser]:
    driver = Browser()
    try:
        yield driver
    finally:
        driver.close()


def only_this_host(browser: Browser, port: int) -> None:
    """Every request the pages made went to the door, on 127.0.0.1:``port``."""
    urls = [u for u in browser.requested_urls() if urlsplit(u).scheme
            in ("http", "https", "ws", "wss")]
    assert urls, "no request seen: the DevTools log is not being read"
    elsewhere = [u for u in urls if urlsplit(u).netloc != f"127.0.0.1:{port}"]
    assert not elsewhere, f"the page reached other hosts: {elsewhere}"
    # and nothing of the page was refused by its Content-Security-Policy
    refused = [c for c in browser.console() if "Content Security Policy" in c["message"]]
    assert not refused, refused


def hub_attribute(rest: httpx.Client, user: str, attribute: str) -> object:
    """``attribute`` of ``user`` as the hub's REST API says it is."""
    answer = rest.get(f"/v1/users/{user}")
    if answer.status_code != 200:
        return None
    return next((a.get("value") for a in answer.json()["attributes"]
                 if a["attribute"] == attribute), None)


def login_cookie(door: WebDoorProcess, user: str) -> str:
    """The session cookie an invitation of ``user`` gets, without a browser."""
    invitation = door.invite(user).split("#invite=", 1)[1]
    answer = httpx.post(door.url + "login", json={"invite": invitation},
                        headers={"Origin": door.url.rstrip("/")})
    assert answer.status_code == 204, answer.text
    return answer.cookies["monitor_session"]


def test_invitation_lets_a_supervisor_in_to_her_grid(door: WebDoorProcess, floor: None,
                                                    browser: Browser) -> None:
    # Without a session: a plain page saying how to get in, 401.
    answer = httpx.get(door.url)
    assert answer.status_code == 401 and "monitor web invite" in answer.text
    browser.get(door.url)
    assert "You need an invitation" in browser.driver.find_element("tag name", "body").text
    browser.screenshot(SHOTS / "01-no-invitation.png")

    invitation = door.invite("alice", "--role", "supervisor")
    browser.get(invitation)
    browser.wait_for_text("you: Alice Moreau (alice)", "read-only", "● connected",
                          "Carl Osei", explain=door.log)
    # the secret is gone from the address bar; the cookie is out of scripts' reach
    assert browser.driver.current_url == door.url
    cookies = browser.driver.execute_cdp_cmd("Network.getAllCookies", {})["cookies"]
    session = next(c for c in cookies if c["name"] == "monitor_session")
    assert session["httpOnly"] and session["sameSite"] == "Strict" and session["path"] == "/"
    assert browser.js("return document.cookie") == ""
    login = door.wait_for_event("login", user="alice")
    assert login["role"] == "supervisor"
    start = door.wait_for_event("session_start", user="alice")
    time.sleep(1.5)  # let the grid settle for the picture
    browser.screenshot(SHOTS / "02-supervisor-grid.png")

    # The session's process: a token file only it can read, none of the door's
    # environment, no token in its arguments.
    pid = int(start["pid"])
    environ = Path(f"/proc/{pid}/environ").read_bytes().decode().split("\0")
    cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")
    assert not any(v.startswith(CANARY) for v in environ)
    assert "TEXTUAL_DRIVER=textual.drivers.web_driver:WebDriver" in environ
    token_file = Path(cmdline[cmdline.index("--token-file") + 1])
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    assert stat.S_IMODE(token_file.parent.stat().st_mode) == 0o700
    assert token_file.read_text().strip() not in " ".join(cmdline + environ)
    only_this_host(browser, door.port)

    # Revoked: the open session ends within a second or two, and says why.
    door.revoke("alice")
    browser.wait_for(lambda: "revoked" in browser.notice(), "the revoked notice", 10,
                     door.log)
    door.wait_for_event("session_end", user="alice", reason="revoked")
    assert browser.closes()[-1]["code"] == 4002
    wait_until(lambda: process_gone(pid), "the session's process to end", 10)
    assert not token_file.exists()
    browser.screenshot(SHOTS / "03-revoked.png")
    # ... and so is the invitation that let her in
    browser.get(invitation)
    browser.wait_for(lambda: "revoked" in browser.driver.find_element("tag name", "body").text,
                     "the login page to say the invitation is revoked", 10, door.log)
    door.wait_for_event("login_refused", user="alice", reason="revoked")
    # A new invitation lets her in again.
    browser.get(door.invite("alice"))
    browser.wait_for_text("you: Alice Moreau (alice)", explain=door.log)
    door.wait_for_event("session_start", count=2, user="alice")


def test_expired_and_forged_invitations_are_refused(door: WebDoorProcess,
                                                    browser: Browser) -> None:
    expired = door.invite("alice", "--ttl", "1s")
    time.sleep(1.5)
    browser.get(expired)
    browser.wait_for(lambda: "expired" in browser.driver.find_element("tag name", "body").text,
                     "the login page to say the invitation expired", 10, door.log)
    door.wait_for_event("login_refused", reason="expired")
    assert "invite=" not in browser.driver.current_url
    browser.screenshot(SHOTS / "04-expired.png")
    forged = door.invite("ann").replace("#invite=", "#invite=x")
    browser.get(forged)
    browser.wait_for(lambda: "not valid" in browser.driver.find_element("tag name", "body").text,
                     "the login page to refuse a forged invitation", 10, door.log)
    door.wait_for_event("login_refused", reason="bad_signature")
    # The check that pages reach no other host sees such a request (as textual-serve's
    # own page makes, for its web font); this browser resolves no other host, so the
    # request goes nowhere.
    browser.get("data:text/html,<link rel=stylesheet "
                "href='https://fonts.googleapis.com/css?family=Roboto%20Mono'>")
    with pytest.raises(AssertionError, match=r"fonts\.googleapis\.com"):
        only_this_host(browser, door.port)
    # An invitation for a user the roles file does not know is never printed.
    done = door.command("invite", "--user", "mallory")
    assert done.returncode == 2 and "no user 'mallory'" in done.stderr
    done = door.command("invite", "--user", "ann", "--role", "supervisor")
    assert done.returncode == 2 and "ann's role is agent, not supervisor" in done.stderr


def test_the_terminal_websocket_checks_the_session_and_the_origin(
        door: WebDoorProcess) -> None:
    ws_url = f"ws://127.0.0.1:{door.port}/ws"
    origin = door.url.rstrip("/")
    with pytest.raises(InvalidStatus) as no_cookie:
        connect(ws_url, origin=origin)  # type: ignore[arg-type]
    assert no_cookie.value.response.status_code == 401
    cookie = login_cookie(door, "alice")
    with pytest.raises(InvalidStatus) as elsewhere:
        connect(ws_url, origin="http://evil.example",  # type: ignore[arg-type]
                additional_headers={"Cookie": f"monitor_session={cookie}"})
    assert elsewhere.value.response.status_code == 403
    with pytest.raises(InvalidStatus) as forged:
        connect(ws_url, origin=origin,  # type: ignore[arg-type]
                additional_headers={"Cookie": f"monitor_session={cookie}x"})
    assert forged.value.response.status_code == 401
    door.wait_for_event("session_refused", reason="bad_origin")
    door.wait_for_event("session_refused", reason="bad_signature")
    # A login from another site's page is refused too (a forged login).
    invitation = door.invite("alice").split("#invite=", 1)[1]
    answer = httpx.post(door.url + "login", json={"invite": invitation},
                        headers={"Origin": "http://evil.example"})
    assert answer.status_code == 403 and "monitor_session" not in answer.cookies
    # Another host name (DNS rebinding onto 127.0.0.1) gets nothing.
    assert httpx.get(door.url, headers={"Host": f"evil.example:{door.port}"}).status_code \
        == 421


def test_an_agent_sets_her_status_from_the_browser_then_quits(
        door: WebDoorProcess, module_hub: HubProcess, browser: Browser) -> None:
    browser.get(door.invite("ann"))
    browser.wait_for_text("you: Ann Agent (ann)", "● connected", explain=door.log)
    time.sleep(1.0)
    browser.type("2")  # status #2 of the default statuses: break
    with module_hub.rest() as rest:
        wait_until(lambda: hub_attribute(rest, "ann", "manual_status") == "break",
                   "ann's status to be break at the hub", 15,
                   lambda: rest.get("/v1/users/ann").text)
    browser.wait_for_text("break")
    time.sleep(1.0)
    browser.screenshot(SHOTS / "05-agent-status.png")
    only_this_host(browser, door.port)

    browser.type("q")
    browser.wait_for(lambda: "Session ended." in browser.notice(), "the session ended notice",
                     15, door.log)
    assert browser.closes()[-1]["code"] == 4000
    door.wait_for_event("session_end", user="ann", reason="quit")
    browser.screenshot(SHOTS / "06-session-ended.png")


def test_resizing_the_window_resizes_the_monitor(door: WebDoorProcess,
                                                 browser: Browser) -> None:
    browser.get(door.invite("alice"))
    browser.wait_for_text("you: Alice Moreau (alice)", "● connected", explain=door.log)
    first = [m for m in browser.sent() if m[0] == "resize"][-1][1]
    mark = len(browser.js("return window.__tap.text"))
    browser.resize(800, 500)
    browser.wait_for(lambda: any(m[0] == "resize" and m[1]["width"] < first["width"]
                                 for m in browser.sent()), "the page to send a smaller size")
    size = [m for m in browser.sent() if m[0] == "resize"][-1][1]
    assert size["height"] < first["height"]

    def drawn_rows() -> int:
        after = browser.js("return window.__tap.text")[mark:]
        return max((int(row) for row, _ in _CURSOR_RE.findall(after)), default=0)

    # The monitor lays itself out again for the new size: it draws down to its last
    # row and no further.
    time.sleep(2.0)
    browser.wait_for(lambda: drawn_rows() == size["height"],
                     f"the monitor to draw {size['height']} rows", 15,
                     lambda: f"drew {drawn_rows()} rows")
    browser.screenshot(SHOTS / "07-resized.png")


def test_a_lost_connection_offers_to_reconnect(module_hub: HubProcess, roles_file: Path,
                                               tmp_path: Path, browser: Browser) -> None:
    door = WebDoorProcess(tmp_path / "web", ["--config", str(module_hub.config_path),
                                             "--roles", str(roles_file),
                                             "--max-sessions", "1",
                                             "--idle-timeout", "8s"]).start()
    try:
        browser.get(door.invite("alice"))
        browser.wait_for_text("you: Alice Moreau (alice)", explain=door.log)
        start = door.wait_for_event("session_start", user="alice")
        # One session at most: the next is told so.
        cookie = login_cookie(door, "alice")
        with connect(f"ws://127.0.0.1:{door.port}/ws",
                     origin=door.url.rstrip("/"),  # type: ignore[arg-type]
                     additional_headers={"Cookie": f"monitor_session={cookie}"}) as ws, \
                pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout=10)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 4003
        assert "All 1 sessions are in use" in closed.value.rcvd.reason
        door.wait_for_event("session_refused", reason="session_cap")

        door.kill()  # the server dies: the page says so and offers to reconnect
        browser.wait_for(lambda: "Connection lost." in browser.notice(),
                         "the connection lost notice", 15)
        assert browser.js("return document.getElementById('notice-button').innerText") \
            == "Reconnect"
        browser.screenshot(SHOTS / "08-connection-lost.png")
        wait_until(lambda: process_gone(int(start["pid"])),
                   "the orphaned session process to quit", 15)

        door.start()  # back, same secret: the cookie still holds
        browser.js("document.getElementById('notice-button').click()")
        browser.wait_for(lambda: len(door.events("session_start")) >= 2,
                         "a new session after reconnecting", 20,
                         lambda: door.log() + browser.notice() + browser.driver.current_url
                         + str(browser.console()) + str(browser.requested_urls()[-5:]))
        browser.wait_for(lambda: browser.notice() == "", "the notice to go", 10)
        # Nobody types: the idle timeout ends the session and says so.
        browser.wait_for(lambda: "no input for 8 seconds" in browser.notice(),
                         "the idle notice", 20, door.log)
        door.wait_for_event("session_end", reason="idle")
        browser.screenshot(SHOTS / "09-idle.png")

        # A wallboard's page (?reconnect=auto) comes back by itself after a restart.
        browser.get(door.url + "?reconnect=auto&fontsize=20")
        door.wait_for_event("session_start", count=3, user="alice")
        assert door.stop() == 0
        browser.wait_for(lambda: "The server is shutting down." in browser.notice(),
                         "the shutdown notice", 15, door.log)
        assert browser.closes()[-1]["code"] == 1001
        door.wait_for_event("session_end", reason="shutdown")
        door.start()
        door.wait_for_event("session_start", count=4, user="alice", timeout=30)
        browser.wait_for(lambda: browser.notice() == "", "the notice to go", 10)
    finally:
        door.stop()


def test_a_door_over_tls_sets_a_secure_cookie(module_hub: HubProcess, roles_file: Path,
                                              tmp_path: Path) -> None:
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=1))
            .not_valid_after(now + datetime.timedelta(hours=1))
            .sign(key, hashes.SHA256()))
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    os.chmod(key_path, 0o600)
    door = WebDoorProcess(tmp_path / "web", [
        "--config", str(module_hub.config_path), "--roles", str(roles_file),
        "--tls-cert", str(cert_path), "--tls-key", str(key_path)]).start()
    try:
        base = f"https://127.0.0.1:{door.port}"
        invitation = door.command("invite", "--user", "alice").stdout.strip()
        assert invitation.startswith(base + "/#invite=")
        with httpx.Client(verify=False) as client:
            assert client.get(base + "/").status_code == 401
            answer = client.post(base + "/login", headers={"Origin": base},
                                 json={"invite": invitation.split("#invite=", 1)[1]})
        assert answer.status_code == 204
        cookie = answer.headers["set-cookie"].lower()
        assert "secure" in cookie and "httponly" in cookie and "samesite=strict" in cookie
        assert answer.headers["strict-transport-security"].startswith("max-age=")
    finally:
        door.stop()


def test_the_demo_in_a_browser_needs_no_invitation(tmp_path: Path, browser: Browser) -> None:
    import signal
    import subprocess
    import sys

    from tests.hubproc import free_port
    from tests.web.door import REPO, monitor_env

    port = free_port()
    out = tmp_path / "demo.out"
    with out.open("wb") as sink:
        demo = subprocess.Popen(
            [sys.executable, "-m", "monitor", "demo", "--headless", "--agents", "6",
             "--seed", "7", "--web", str(port), "--duration", "120",
             "--data", str(tmp_path / "data")],
            stdout=sink, stderr=subprocess.STDOUT, env=monitor_env(tmp_path), cwd=REPO,
            start_new_session=True)
    try:
        wait_until(lambda: "In a browser:" in out.read_text() or demo.poll() is not None,
                   "the demo to print its web address", 30, out.read_text)
        text = out.read_text()
        assert f"In a browser: http://127.0.0.1:{port}/" in text
        api = re.search(r"REST API +(http://127\.0\.0\.1:\d+)", text)
        token = re.search(r"REST token:\n +(\S+)", text)
        assert api and token, text

        browser.get(f"http://127.0.0.1:{port}/")
        browser.wait_for_text("as web_1", "● connected", "● online", "Web visitor 1",
                              explain=out.read_text)
        time.sleep(2.0)
        browser.screenshot(SHOTS / "10-demo-grid.png")
        browser.type("2")  # the web visitor sets their own status: break
        with httpx.Client(base_url=api.group(1), timeout=10,
                          headers={"X-STRINGEE-AUTH": token.group(1)}) as rest:
            wait_until(lambda: hub_attribute(rest, "web_1", "manual_status") == "break",
                       "web_1's status to be break at the demo's hub", 15,
                       lambda: rest.get("/v1/users/web_1").text)
        only_this_host(browser, port)
    finally:
        demo.send_signal(signal.SIGINT)
        assert demo.wait(30) == 0, out.read_text()
    assert "demo summary:" in out.read_text()
