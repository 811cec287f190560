"""What a session's process runs: take the pty as controlling terminal, then ``monitor``.

The SSH door starts ``python -m monitor.ssh.child tui ...`` in a new session with the
pty on its standard streams. Making the pty the session's controlling terminal is what
lets the kernel deliver SIGWINCH on a resize and SIGHUP when the terminal goes away.
"""

from __future__ import annotations

import contextlib
import fcntl
import sys
import termios


def main() -> int:
    with contextlib.suppress(OSError):
        fcntl.ioctl(0, termios.TIOCSCTTY, 0)
    from monitor.cli import main as cli_main

    return cli_main(sys.argv[1:])


if __name__ == "__main__":
    sys.exit(main())
