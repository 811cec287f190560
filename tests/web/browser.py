"""Drive a real headless Chromium (Debian's ``chromium`` and ``chromium-driver``) with
Selenium, for the web door's end-to-end tests.

The browser resolves no host name but loopback ones (``--host-resolver-rules``), so a
page that tried to reach another host could not, and Chrome's own background traffic is
off; every request the page makes is read back from the DevTools performance log
(:meth:`Browser.requested_urls`) to check that none was for another host. What the
terminal shows is read from the bytes the monitor sends (a WebSocket tap injected into
every page), as text with the terminal's control sequences taken out.
"""

from __future__ import annotations

import base64
import json
import re
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import require_program

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"

#: Injected before any script of every page: keeps the text of what the terminal
#: WebSocket receives, and how it closed.
TAP = """
(() => {
  const Native = window.WebSocket;
  window.__tap = { text: "", raw: [], sent: [], closes: [], sockets: 0 };
  const decoder = new TextDecoder();
  window.WebSocket = class extends Native {
    constructor(url, protocols) {
      super(url, protocols);
      window.__tap.sockets += 1;
      this.addEventListener("message", (event) => {
        if (typeof event.data !== "string") {
          const text = window.__tap.text + decoder.decode(new Uint8Array(event.data),
                                                          { stream: true });
          window.__tap.text = text.length > 4000000 ? text.slice(-2000000) : text;
        }
      });
      const send = this.send.bind(this);
      this.send = (data) => {
        if (typeof data === "string" && window.__tap.sent.length < 10000) {
          window.__tap.sent.push(data);
        }
        send(data);
      };
      this.addEventListener("close", (event) => {
        window.__tap.closes.push({ code: event.code, reason: event.reason });
      });
    }
  };
})();
"""
_CONTROL_RE = re.compile(r"\x1b\[[0-9;?<>=]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)"
                         r"|\x1b[PX^_][^\x1b]*\x1b\\|\x1b[@-Z\\-_]|[\x00-\x08\x0b-\x1f]")


def strip_controls(text: str) -> str:
    """Terminal output as plain text: escape sequences and controls removed."""
    return _CONTROL_RE.sub("", text)


class Browser:
    """One headless Chromium with a fresh profile."""

    def __init__(self, width: int = 1280, height: int = 800) -> None:
        require_program("chromium", "chromium")
        require_program("chromedriver", "chromium-driver")
        try:
            from selenium import webdriver
            from selenium.webdriver.chrome.service import Service
        except ImportError:
            pytest.skip("selenium is not installed: pip install -e '.[test]'")
        self.profile = tempfile.mkdtemp(prefix="monitor-chromium-")
        options = webdriver.ChromeOptions()
        options.binary_location = shutil.which("chromium") or CHROMIUM
        for arg in ("--headless", "--no-sandbox", "--disable-gpu",
                    "--disable-background-networking", "--disable-component-update",
                    "--disable-sync", "--no-first-run", "--no-default-browser-check",
                    "--disable-default-apps", "--disable-extensions",
                    "--disable-dev-shm-usage", "--disable-features=Translate,MediaRouter,"
                    "OptimizationHints,AutofillServerCommunication",
                    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE localhost, EXCLUDE 127.0.0.1",
                    "--no-proxy-server",
                    f"--window-size={width},{height}", f"--user-data-dir={self.profile}"):
            options.add_argument(arg)
        options.set_capability("goog:loggingPrefs", {"performance": "ALL", "browser": "ALL"})
        service = Service(executable_path=shutil.which("chromedriver") or CHROMEDRIVER)
        self.driver = webdriver.Chrome(options=options, service=service)
        self.driver.execute_cdp_cmd("Network.enable", {})
        self.driver.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": TAP})
        self._requests: list[str] = []
        self._console: list[dict[str, Any]] = []

    def close(self) -> None:
        try:
            self.driver.quit()
        finally:
            shutil.rmtree(self.profile, ignore_errors=True)

    # -- pages ----------------------------------------------------------------------------

    def get(self, url: str) -> None:
        self.driver.get(url)

    def js(self, script: str, *args: Any) -> Any:
        return self.driver.execute_script(script, *args)

    def screen_text(self) -> str:
        """Everything the terminal was sent so far, as plain text."""
        return strip_controls(self.js("return window.__tap ? window.__tap.text : ''") or "")

    def closes(self) -> list[dict[str, Any]]:
        return list(self.js("return window.__tap ? window.__tap.closes : []") or [])

    def wait_for(self, check: Callable[[], bool], what: str, timeout: float = 30.0,
                 explain: Callable[[], str] = lambda: "") -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if check():
                return
            time.sleep(0.2)
        pytest.fail(f"timed out waiting for {what}\n{explain()}")

    def wait_for_text(self, *needles: str, timeout: float = 30.0,
                      explain: Callable[[], str] = lambda: "") -> None:
        self.wait_for(lambda: all(n in self.screen_text() for n in needles),
                      f"the terminal to show {needles}", timeout,
                      lambda: self.screen_text()[-3000:] + "\n" + explain())

    def notice(self) -> str:
        """The page's notice (why the session is over), or '' while it is hidden."""
        return str(self.js(
            "const n = document.getElementById('notice');"
            "return n && !n.hidden ? n.innerText : '';") or "")

    def sent(self) -> list[Any]:
        """The messages the page sent on the terminal WebSocket (textual.js's envelopes)."""
        return [json.loads(m) for m in self.js("return window.__tap ? window.__tap.sent : []")]

    def type(self, keys: str) -> None:
        """Type into the terminal: keys go to xterm.js's hidden textarea."""
        from selenium.webdriver.common.by import By

        self.driver.find_element(By.CSS_SELECTOR, ".xterm-helper-textarea").send_keys(keys)

    def screenshot(self, path: Path) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        shot = self.driver.execute_cdp_cmd("Page.captureScreenshot", {"format": "png"})
        path.write_bytes(base64.b64decode(shot["data"]))
        return path

    def resize(self, width: int, height: int) -> None:
        self.driver.set_window_size(width, height)

    # -- what the page asked for ----------------------------------------------------------

    def _drain_logs(self) -> None:
        for entry in self.driver.get_log("performance"):
            message = json.loads(entry["message"])["message"]
            method = message.get("method", "")
            params = message.get("params", {})
            if method == "Network.requestWillBeSent":
                self._requests.append(params["request"]["url"])
            elif method == "Network.webSocketCreated":
                self._requests.append(params["url"])
        self._console += self.driver.get_log("browser")

    def requested_urls(self) -> list[str]:
        """Every URL the pages asked for so far (documents, scripts, styles, fonts,
        images, fetches, WebSockets), from the DevTools log."""
        self._drain_logs()
        return list(self._requests)

    def console(self) -> list[dict[str, Any]]:
        """The pages' console messages so far (errors such as CSP violations)."""
        self._drain_logs()
        return list(self._console)
