// Opening an invitation link (https://host/#invite=...) logs this browser in. The secret
// is in the fragment, which the browser never sends to any server (nor to a proxy's log);
// it is taken out of the address bar first, then posted to /login, whose answer sets the
// session cookie (HttpOnly: no script ever sees it). Also when the link is opened on a
// page of the door already, where only the fragment changes.
(() => {
  "use strict";
  const say = (text) => {
    const status = document.getElementById("status");
    const notice = document.getElementById("notice");
    if (status) {
      status.textContent = text;
      status.className = "error";
    } else if (notice) {
      document.getElementById("notice-text").textContent = text;
      document.getElementById("notice-button").hidden = true;
      notice.hidden = false;
    }
  };
  const login = () => {
    const match = /^#invite=([A-Za-z0-9_.-]+)$/.exec(window.location.hash);
    if (!match) {
      return;
    }
    window.monitorLoggingIn = true;
    history.replaceState(null, "", window.location.pathname);
    fetch("/login", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ invite: match[1] }),
      credentials: "same-origin",
      cache: "no-store",
    }).then(async (response) => {
      if (response.ok) {
        window.location.replace("/");
        return;
      }
      let text = "This invitation does not let you in.";
      try {
        text = (await response.json()).error || text;
      } catch (error) {
        // not JSON: keep the general message
      }
      say(text);
    }).catch(() => say("The server cannot be reached; try the link again later."));
  };
  login();
  window.addEventListener("hashchange", login);
})();
