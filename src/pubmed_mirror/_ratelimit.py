"""A token bucket shared by every session: caps aggregate bytes/s (or commands/s)."""

from __future__ import annotations

import math
import time
from collections.abc import Callable

import anyio

__all__ = ["TokenBucket"]


class TokenBucket:
    """Tokens accrue at `rate` per second up to `burst`; the bucket starts empty.

    `reserve(n)` takes n tokens at once, going into debt if needed, and returns how long the
    caller must wait before using them. Debt makes concurrent callers queue in arrival order
    without a lock, and keeps the long-run rate exact whatever the chunk sizes.
    The clock is injected so the arithmetic is tested without sleeping.
    """

    __slots__ = ("_clock", "_level", "_stamp", "burst", "rate")

    def __init__(
        self,
        rate: float,
        *,
        burst: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not (rate > 0 and math.isfinite(rate)):
            raise ValueError(f"rate must be a positive number, got {rate!r}")
        burst = rate / 10 if burst is None else burst
        if not burst > 0:
            raise ValueError(f"burst must be positive, got {burst!r}")
        self.rate = float(rate)
        self.burst = float(burst)
        self._clock = clock
        self._level = 0.0
        self._stamp = clock()

    def __repr__(self) -> str:
        return f"<TokenBucket rate={self.rate:g}/s burst={self.burst:g} level={self.level:.0f}>"

    @property
    def level(self) -> float:
        """Tokens available now (negative while callers are waiting for earlier reservations)."""
        self._refill()
        return self._level

    def _refill(self) -> None:
        now = self._clock()
        self._level = min(self.burst, self._level + (now - self._stamp) * self.rate)
        self._stamp = now

    def reserve(self, tokens: float) -> float:
        """Take `tokens` now; return the seconds to wait before they may be used."""
        if tokens < 0:
            raise ValueError("tokens must be >= 0")
        self._refill()
        self._level -= tokens
        return 0.0 if self._level >= 0 else -self._level / self.rate

    async def acquire(self, tokens: float) -> None:
        """Wait until `tokens` may be used."""
        delay = self.reserve(tokens)
        if delay > 0:
            await anyio.sleep(delay)
