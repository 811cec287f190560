"""The web door's HTML: the terminal page and the plain pages around it.

Every asset is served by the door itself (``/static/...``): no fonts, scripts or styles
from anywhere else, and the Content-Security-Policy says so to the browser.
"""

from __future__ import annotations

from html import escape

#: Scripts, styles, fonts, images and connections from this server only. Inline styles:
#: xterm.js and textual.js add ``<style>`` elements at run time.
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "font-src 'self'; img-src 'self' data:; connect-src 'self'; base-uri 'none'; "
    "form-action 'none'; frame-ancestors 'none'")
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Opener-Policy": "same-origin",
}

_HEAD = """<!DOCTYPE html>
<html lang="en"{html_class}>
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<link rel="icon" href="data:,">
{links}
</head>
"""


def terminal_page(title: str, font_size: int) -> str:
    """The page that runs the monitor: textual-serve's terminal, and our notices."""
    head = _HEAD.format(html_class="", title=escape(title), links=(
        '<link rel="stylesheet" href="/static/textual/css/xterm.css">\n'
        '<link rel="stylesheet" href="/static/monitor/monitor.css">'))
    return head + f"""<body>
<div class="starting">Starting the monitor…</div>
<div id="terminal" class="textual-terminal" data-font-size="{font_size}"></div>
<div id="notice" class="notice" role="alertdialog" aria-live="assertive" hidden>
  <div class="notice-box"><p id="notice-text"></p>
    <button id="notice-button" type="button"></button></div>
</div>
<script src="/static/monitor/login.js"></script>
<script src="/static/textual/js/textual.js"></script>
<script src="/static/monitor/monitor.js"></script>
</body>
</html>
"""


def plain_page(title: str, paragraphs: list[str], *, login: bool = False) -> str:
    """A page of text (already HTML); with ``login``, opening an invitation link here
    logs the browser in."""
    head = _HEAD.format(html_class=' class="plain-page"', title=escape(title),
                        links='<link rel="stylesheet" href="/static/monitor/monitor.css">')
    # the first paragraph says what is wrong; login.js rewrites it if the login fails
    body = "\n".join(('<p id="status">' if i == 0 else "<p>") + p + "</p>"
                     for i, p in enumerate(paragraphs))
    script = '<script src="/static/monitor/login.js"></script>\n' if login else ""
    return head + f"""<body>
<main class="plain">
<h1>monitor</h1>
{body}
</main>
{script}</body>
</html>
"""


def invitation_needed_page(why: str | None = None) -> str:
    """The 401 page: how to get in."""
    first = escape(why) if why else "You need an invitation to watch the monitor here."
    return plain_page("monitor: invitation needed", [
        first,
        "Ask whoever runs the monitor for an invitation: they make one with "
        "<code>monitor web invite --user NAME</code> and send you the link. Open the link "
        "in this browser; it lets you in until it expires.",
    ], login=True)
