"""The retry policy: a value whose backoff is a pure function of the attempt number."""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Awaitable, Callable, Generator
from dataclasses import dataclass
from typing import Any, TypeVar

import anyio
import backoff

from ._errors import ServerPaused, TransientError

__all__ = ["RetryPolicy"]

T = TypeVar("T")


@dataclass(frozen=True, slots=True, kw_only=True)
class RetryPolicy:
    """Exponential backoff with full jitter, bounded in attempts and in total time.

    Only `TransientError`s are retried; when the budget is spent the last error goes through.
    With `progress` given to `call`, an attempt that moved the work forward (say, received
    bytes before the connection was reset) starts a fresh budget: `attempts` and `max_time`
    bound failures in a row, so a long transfer over a link that drops every few minutes
    still completes, while a server that fails without progress is given up on.
    An object store's answer asking every session to slow down (`ServerPaused`: S3's 429,
    503 SlowDown) is retried once the server's gate opens, without spending an attempt,
    until the server has been busy for `max_time` seconds (since it last answered a request
    normally, any session's), or this call has met pauses for `max_time` seconds without
    progress. `attempts=1` never retries, progress or pause or not.
    """

    attempts: int = 6  # tries in a row without progress, the first one included
    base: float = 1.0  # seconds before the first retry (before jitter)
    factor: float = 2.0
    cap: float = 60.0  # no single wait longer than this
    max_time: float = 900.0  # stop after this many seconds of trying without progress

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
        progress: Callable[[], int] | None = None,
    ) -> T:
        """Run `operation`, retrying TransientErrors.

        `on_retry(attempt, wait, error)` is called before each wait, `attempt` counting every
        try so far. `progress()` is any count that grows when an attempt gets somewhere
        (bytes received); when it grew during a failed attempt, the budget starts afresh.
        """
        call = _Call(on_retry)

        async def attempt() -> T:
            call.tries += 1
            before = progress() if progress is not None else 0
            try:
                return await operation()
            except TransientError as exc:
                if progress is not None and self.attempts > 1 and progress() > before:
                    raise _Progressed(exc) from exc
                if isinstance(exc, ServerPaused) and self.attempts > 1:
                    raise _Progressed(exc, paused=True) from exc
                raise

        retrying = _retrying(self)
        pauses = 0
        paused_since: float | None = None  # this call's first pause since its last progress
        while True:
            try:
                result: T = await retrying(attempt, call)
                return result
            except _Progressed as progressed:
                if progressed.paused:  # the gate holds the next request (`_backoff`)
                    assert isinstance(progressed.error, ServerPaused)
                    now, since = time.monotonic(), progressed.error.since
                    paused_since = now if paused_since is None else paused_since
                    if now - paused_since > self.max_time or (
                            since is not None and now - since > self.max_time):
                        raise progressed.error from None
                    pauses += 1
                    if on_retry is not None:
                        on_retry(call.tries, progressed.error.pause, progressed.error)
                    # a pause of about nothing (Retry-After: 0) asked again and again is not
                    # asked at once each time: 0.1 s more a time, up to `cap`
                    await anyio.sleep(max(0.0, min(self.cap, 0.1 * pauses)
                                          - progressed.error.pause))
                    continue
                paused_since = None
                wait = backoff.full_jitter(self.delay(1))  # a fresh budget, after a wait
                if on_retry is not None:
                    on_retry(call.tries, wait, progressed.error)
                await anyio.sleep(wait)


class _Progressed(Exception):
    """An attempt failed after making progress, or was asked to pause (`paused`): not a
    TransientError, so backoff lets it out."""

    def __init__(self, error: TransientError, *, paused: bool = False) -> None:
        super().__init__(str(error))
        self.error = error
        self.paused = paused


class _Call:
    """One `call`'s state, which backoff hands its handler with the call's arguments."""

    __slots__ = ("on_retry", "tries")

    def __init__(self, on_retry: Callable[[int, float, BaseException], Any] | None) -> None:
        self.on_retry = on_retry
        self.tries = 0  # every try so far


@functools.lru_cache(maxsize=64)
def _retrying(policy: RetryPolicy) -> Callable[[Callable[[], Awaitable[Any]], _Call],
                                              Awaitable[Any]]:
    """`_call_it` under the policy's backoff, made once per policy: backoff's decorator
    costs more CPU than a small file's whole transfer when made for every call."""
    return backoff.on_exception(
        policy.delays,
        TransientError,
        max_tries=policy.attempts,
        max_time=policy.max_time,
        jitter=backoff.full_jitter,
        on_backoff=_on_backoff,
        logger=None,
    )(_call_it)


def _on_backoff(details: Any) -> None:
    call: _Call = details["args"][1]
    if call.on_retry is not None:
        call.on_retry(call.tries, details["wait"], details["exception"])


async def _call_it(operation: Callable[[], Awaitable[T]], call: _Call) -> T:
    # backoff decorates a real coroutine function; partials and lambdas confuse its logger
    return await operation()
