"""Where a client's access tokens come from: the one it was given, then a provider or
the ``requestnewtoken`` event, asked ahead of ``exp`` and again on ``r = 6``."""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from collections.abc import Awaitable, Callable

from monitor.client.events import EventDispatcher, wait_event
from monitor.client.stats import ClientStats
from monitor.tokens import decode_unverified

log = logging.getLogger("monitor.client")

#: Returns a fresh access token; plain or async.
TokenProvider = Callable[[], "str | Awaitable[str]"]


def token_expiry(token: str | None) -> int | None:
    """The ``exp`` claim of a JWT, read without verifying it (``None`` if unreadable)."""
    if not token:
        return None
    try:
        exp = decode_unverified(token)[1].get("exp")
    except Exception:
        return None
    return exp if isinstance(exp, int) and not isinstance(exp, bool) else None


class TokenSource:
    """The current token, and how to get the next one."""

    def __init__(self, token: str | None, provider: TokenProvider | None,
                 events: EventDispatcher, stats: ClientStats, *,
                 refresh_before: float | None, wait: float) -> None:
        if token is None and provider is None:
            raise ValueError("HubClient needs a token or a token_provider")
        self.token = token
        self._provider = provider
        self._events = events
        self._stats = stats
        self.refresh_before = refresh_before
        self._wait = wait
        self._arrived = asyncio.Event()

    def set(self, token: str) -> None:
        """Use ``token`` from now on, and wake whoever waits for one."""
        if not isinstance(token, str) or not token:
            raise ValueError("token must be a non-empty string")
        self.token = token
        self._stats.token_refreshes += 1
        # waiters hold the old event: set it, and start a fresh one for the next wait
        waiting, self._arrived = self._arrived, asyncio.Event()
        waiting.set()

    async def obtain(self, reason: str) -> bool:
        """Get a new token from the provider, or from a ``requestnewtoken`` handler
        (its return value or :meth:`HubClient.set_token`) within the wait."""
        arrived = self._arrived
        if self._provider is not None:
            try:
                token = self._provider()
                if inspect.isawaitable(token):
                    token = await token
            except Exception:
                log.exception("token provider failed")
                return False
            if not isinstance(token, str) or not token:
                return False
            self.set(token)
            return True
        if not self._events.has_handlers("requestnewtoken"):
            return False  # nobody to ask
        self._events.start()
        self._events.emit("requestnewtoken", {"reason": reason,
                                              "exp": token_expiry(self.token)})
        if not await wait_event(arrived, self._wait):
            log.warning("no new token within %g s of requestnewtoken", self._wait)
            return False
        return True

    async def refresh_forever(self) -> None:
        """Ask for a new token ``refresh_before`` seconds before the current one expires."""
        before = self.refresh_before or 0.0
        failures = 0
        while True:
            replaced = self._arrived
            exp = token_expiry(self.token)
            wait = None if exp is None else exp - before - time.time()
            if failures:
                wait = max(wait or 0.0, min(30.0, 2.0 ** failures))
            if (wait is None or wait > 0) and await wait_event(replaced, wait):
                failures = 0
                continue  # a new token arrived: schedule from its exp
            renewed = await self.obtain("expiring")
            exp = token_expiry(self.token)
            if renewed and (exp is None or exp - before > time.time()):
                failures = 0
            else:
                failures += 1  # none, or one as short-lived: do not ask in a tight loop
