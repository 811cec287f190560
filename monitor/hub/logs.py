"""Structured logs: one ``key=value`` line per event, level from the config."""

from __future__ import annotations

import logging
import sys


def setup_logging(level: str) -> None:
    """Send the hub's logs to stderr as ``time level logger key=value...`` lines."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(
        "ts=%(asctime)s level=%(levelname)s logger=%(name)s %(message)s"))
    root = logging.getLogger("monitor")
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    root.propagate = False
    # uvicorn's own access log would print a line per request: keep its errors only.
    logging.getLogger("uvicorn.access").setLevel(logging.WARNING)
