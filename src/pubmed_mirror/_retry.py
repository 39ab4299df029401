"""The retry policy: a value whose backoff is a pure function of the attempt number."""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable, Generator
from dataclasses import dataclass
from typing import Any, TypeVar

import backoff

from ._errors import TransientError

__all__ = ["RetryPolicy"]

T = TypeVar("T")


@dataclass(frozen=True, slots=True, kw_only=True)
class RetryPolicy:
    """Exponential backoff with full jitter, bounded in attempts and in total time.

    Only `TransientError`s are retried; when the budget is spent the last error goes through.
    """

    attempts: int = 6  # total tries per file, the first one included
    base: float = 1.0  # seconds before the first retry (before jitter)
    factor: float = 2.0
    cap: float = 60.0  # no single wait longer than this
    max_time: float = 900.0  # stop retrying a file after this many seconds of trying

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError("attempts must be >= 1")
        if self.base < 0 or self.cap < 0 or self.factor < 1 or self.max_time <= 0:
            raise ValueError("base and cap must be >= 0, factor >= 1, max_time > 0")

    def delay(self, retry: int) -> float:
        """The wait before retry number `retry` (1-based), before full jitter draws in [0, it]."""
        if retry < 1:
            raise ValueError("retry numbers start at 1")
        exponent = min(retry - 1, 64)  # beyond this the cap wins anyway; avoids overflow
        return min(self.cap, self.base * math.pow(self.factor, exponent))

    def delays(self) -> Generator[float, None, None]:
        """The un-jittered waits, in order (a wait generator in backoff's protocol)."""
        yield 0.0  # backoff primes the generator with one send(None)
        retry = 1
        while True:
            yield self.delay(retry)
            retry += 1

    async def call(
        self,
        operation: Callable[[], Awaitable[T]],
        *,
        on_retry: Callable[[int, float, BaseException], Any] | None = None,
    ) -> T:
        """Run `operation`, retrying TransientErrors.

        `on_retry(attempt, wait, error)` is called before each wait.
        """

        def _on_backoff(details: Any) -> None:
            if on_retry is not None:
                on_retry(details["tries"], details["wait"], details["exception"])

        retrying = backoff.on_exception(
            self.delays,
            TransientError,
            max_tries=self.attempts,
            max_time=self.max_time,
            jitter=backoff.full_jitter,
            on_backoff=_on_backoff,
            logger=None,
        )(_call_it)
        result: T = await retrying(operation)
        return result


async def _call_it(operation: Callable[[], Awaitable[T]]) -> T:
    # backoff decorates a real coroutine function; partials and lambdas confuse its logger
    return await operation()
