"""What a web session's process runs: ``python -m monitor.web.child tui ...``.

Before the monitor starts it
- leaves the door's process group (``setsid``), so the door ends it and whatever it
  started with one ``killpg``, and a Ctrl-C on the door's terminal does not reach it;
- writes its pid to ``pid`` in its working directory (the session's private directory),
  which is how the door finds it to end it;
- sends its standard error to ``stderr.log`` there (standard output is textual-serve's
  channel to the door), for the door to log should the monitor fail;
- watches its parent: should the door die without ending it, it quits.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
import time

from monitor.web.session_files import PID_FILE, STDERR_FILE


def _quit_when_orphaned(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(1.0)
    # Textual's web driver turns SIGTERM into a clean exit of the app.
    os.kill(os.getpid(), signal.SIGTERM)


def main() -> int:
    with contextlib.suppress(OSError):
        os.setsid()
    fd = os.open(PID_FILE, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="ascii") as out:
        out.write(f"{os.getpid()}\n")
    err = os.open(STDERR_FILE, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    os.dup2(err, 2)
    os.close(err)
    threading.Thread(target=_quit_when_orphaned, args=(os.getppid(),), daemon=True,
                     name="orphan-watch").start()
    from monitor.cli import main as cli_main

    return cli_main(sys.argv[1:])


if __name__ == "__main__":
    sys.exit(main())
