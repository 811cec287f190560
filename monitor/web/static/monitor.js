// The web door's page script, loaded after textual-serve's textual.js. It
//  - tells textual.js the terminal WebSocket's address (this page's own host: behind a
//    reverse proxy too), and drops the query parameters textual.js would act on;
//  - waits for the locally served font before the terminal measures its cells;
//  - says why the session is over (the server's close code and reason): the monitor was
//    quit, the session idled out, expired or was revoked, the door is full or shutting
//    down, or the connection was lost, with a button to start again or reconnect (by
//    itself too, with ?reconnect=auto).
(() => {
  "use strict";
  const ENDED = 4000;
  const IDLE = 4001;
  const EXPIRED = 4002;
  const BUSY = 4003;
  const FAILED = 4004;
  const GOING_AWAY = 1001;

  const terminal = document.getElementById("terminal");
  const scheme = window.location.protocol === "https:" ? "wss:" : "ws:";
  terminal.dataset.sessionWebsocketUrl = `${scheme}//${window.location.host}/ws`;
  // textual.js would fetch any "ping" URL and wait for a start button on "delay"
  const query = new URLSearchParams(window.location.search);
  if (query.has("ping") || query.has("delay")) {
    query.delete("ping");
    query.delete("delay");
    const rest = query.toString();
    history.replaceState(null, "", window.location.pathname + (rest ? `?${rest}` : "")
                         + window.location.hash);
  }

  const notice = document.getElementById("notice");
  const noticeText = document.getElementById("notice-text");
  const noticeButton = document.getElementById("notice-button");

  const show = (text, button, action) => {
    noticeText.textContent = text;
    noticeButton.textContent = button;
    noticeButton.hidden = !button;
    noticeButton.onclick = action;
    notice.hidden = false;
    document.body.dataset.state = "closed";
    noticeButton.focus();
  };
  const restart = () => window.location.reload();
  const reconnect = async () => {
    noticeButton.disabled = true;
    try {
      const answer = await fetch("/static/monitor/monitor.css", { cache: "no-store" });
      if (answer.ok) {
        restart();
        return;
      }
    } catch (error) {
      // still unreachable
    }
    noticeButton.disabled = false;
    noticeText.textContent = "Connection lost. The server cannot be reached yet.";
  };

  // ?reconnect=auto (a wallboard nobody clicks): after a lost connection, try again
  // every few seconds by itself
  const automatic = new URLSearchParams(window.location.search).get("reconnect") === "auto";
  const reconnectLater = () => {
    if (automatic) {
      setInterval(() => { if (!noticeButton.disabled) { reconnect(); } }, 5000);
    }
  };

  const closed = (event) => {
    const reason = event.reason;
    switch (event.code) {
      case ENDED:
        show(reason || "Session ended.", "Start a new session", restart);
        break;
      case IDLE:
        show(reason || "Session closed: no input for a while.", "Start again", restart);
        break;
      case EXPIRED:
        show(reason || "Your session has ended: ask for a new invitation.", "", null);
        break;
      case BUSY:
        show(reason || "All sessions are in use; try again later.", "Try again", restart);
        break;
      case FAILED:
        show(reason || "The monitor stopped unexpectedly.", "Start again", restart);
        break;
      case GOING_AWAY:
        show(reason || "The server is shutting down.", "Reconnect", reconnect);
        reconnectLater();
        break;
      default:
        show("Connection lost.", "Reconnect", reconnect);
        reconnectLater();
    }
  };

  const NativeWebSocket = window.WebSocket;
  class MonitorSocket extends NativeWebSocket {
    constructor(url, protocols) {
      super(url, protocols);
      this.addEventListener("open", () => { document.body.dataset.state = "open"; });
      this.addEventListener("close", closed);
    }
  }
  window.WebSocket = MonitorSocket;

  const start = window.onload;
  window.onload = async (event) => {
    if (window.monitorLoggingIn) {
      return; // login.js is trading an invitation for a session, then reloads
    }
    try {
      await Promise.race([
        document.fonts.load('16px "Roboto Mono"'),
        new Promise((resolve) => setTimeout(resolve, 3000)),
      ]);
    } catch (error) {
      // the system monospace font will do
    }
    start(event);
  };
})();
