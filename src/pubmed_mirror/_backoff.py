"""One back-off for a whole server: a busy answer to any session pauses every session.

A server that answers 421, 429 or 503 is overloaded by all of our sessions together, not by
the one that heard it: if each session backed off on its own schedule, the others would keep
the load up (NCBI's HTTPS tree recovers only when every worker pauses). So the answer closes
a `ServerGate` shared by the sessions to that server, and every new request or command waits
at it before it goes out. Waiting there is neither a stall nor a failed attempt, as waiting
for command tokens is not.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable

import anyio

__all__ = ["RETRY_AFTER_CAP", "ServerGate"]

log = logging.getLogger("pubmed_mirror")

RETRY_AFTER_CAP = 300.0  # seconds; a longer Retry-After is waited for this long at most


class ServerGate:
    """Closed until a deadline by a busy answer; open otherwise.

    `close(retry_after)` holds new requests for `retry_after` seconds when the server said
    how long (capped at RETRY_AFTER_CAP), else for an exponential delay with jitter that
    doubles with each busy answer heard after the gate opened again (answers to requests
    already in flight while it was closed do not double it), and starts again from `base`
    once the server has answered a request normally since (`served`), or been quiet for
    `forget_after` seconds. Clock and jitter are
    injected so the arithmetic is tested without sleeping.
    """

    def __init__(self, *, base: float = 1.0, cap: float = 60.0, forget_after: float = 120.0,
                 clock: Callable[[], float] = time.monotonic,
                 jitter: Callable[[], float] = random.random) -> None:
        if base <= 0 or cap < base or forget_after < 0:
            raise ValueError("base must be > 0, cap >= base, forget_after >= 0")
        self.base = base
        self.cap = cap
        self.forget_after = forget_after
        self._clock = clock
        self._jitter = jitter
        self._until = 0.0  # closed while the clock is before this
        self._streak = 0  # busy answers in a row (each after the gate opened again)
        self.closings = 0  # busy answers heard over the gate's life
        # the first busy answer since the server last answered normally (None: it has)
        self.busy_since: float | None = None
        self.waits = 0  # requests that waited at the gate

    def __repr__(self) -> str:
        left = self.closed_for()
        state = f"closed for {left:.1f} s" if left > 0 else "open"
        return f"<ServerGate {state}, {self.closings} busy answers, {self.waits} waits>"

    def closed_for(self) -> float:
        """Seconds until the gate opens (0 when open)."""
        return max(0.0, self._until - self._clock())

    def delay(self, retry_after: float | None) -> float:
        """How long a busy answer closes the gate for (and counts it in the streak)."""
        now = self._clock()
        if retry_after is not None:
            return min(max(0.0, retry_after), RETRY_AFTER_CAP)
        if now >= self._until:  # heard after the gate opened: the pause was not enough
            if now - self._until > self.forget_after:
                self._streak = 0
            self._streak += 1
        ceiling = min(self.cap, self.base * 2.0 ** min(self._streak - 1, 64))
        return ceiling / 2 + self._jitter() * ceiling / 2  # at least half: a real pause

    def close(self, retry_after: float | None = None, *, reply: str = "") -> float:
        """The server answered busy: hold new requests (never shortening a pause); how long
        they are held from now."""
        self.closings += 1
        if self.busy_since is None:
            self.busy_since = self._clock()
        seconds = self.delay(retry_after)
        until = self._clock() + seconds
        if until > self._until:
            self._until = until
            log.info("the server is busy (%s): pausing every session for %.1f s",
                     reply or "busy", seconds)
        return self.closed_for()

    def served(self) -> None:
        """A request was answered normally once the pause was over: the server is taken to
        have recovered, so the next busy answer pauses for `base` again, not for double the
        last pause, and it is no longer busy (`busy_since`). Answers during a pause (to
        requests sent before it) do not count; one after it to a request sent before it
        does, as nothing tells them apart here (a caller bounds its own pauses too:
        `_retry`)."""
        if self._clock() >= self._until:
            self._streak = 0
            self.busy_since = None

    async def wait(self) -> None:
        """Return once the gate is open (at once when it is)."""
        waited = False
        while (left := self.closed_for()) > 0:  # a later busy answer may extend the pause
            waited = True
            await anyio.sleep(left)
        self.waits += waited
