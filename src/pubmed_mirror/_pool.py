"""A pool of logged-in sessions to one server, opened lazily and reused across files."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Callable
from contextlib import ExitStack, asynccontextmanager
from dataclasses import dataclass
from types import TracebackType
from typing import Literal

import anyio

from ._budget import ConnectionCap
from ._errors import ConnectionRefused, ServerUnreachable, TooManyConnections
from ._transport import Session, Transport

__all__ = ["PoolStats", "SessionPool"]

log = logging.getLogger("pubmed_mirror")


@dataclass(frozen=True, slots=True)
class PoolStats:
    limit: int  # the current cap (lowered when the server refuses, raised slowly after)
    max_size: int  # the configured cap
    idle: int
    active: int
    opening: int
    logins: int  # sessions opened successfully over the pool's life
    refusals: int  # connections refused by the server for being over its limit
    peak: int  # most sessions open at once
    stale: int = 0  # idle sessions found closed by the server, replaced without a failure


class SessionPool:
    """Up to `size` sessions; never more control connections than that, the listing included.

    When the server refuses a connection for being over its limit, the pool lowers its own
    cap to the number of sessions it holds, and raises it by one every `recover_after`
    seconds without a refusal. A port that refuses the pool's very first connection means
    a wrong address: that is fatal (ServerUnreachable). Resets and timeouts, before the first
    login as after it, are transient: the caller's retry policy decides.

    `cap`, when given, bounds the connections of every pool that shares it (a MirrorClient's
    pools to one server): a session is opened only with a slot of it, and one the pool is
    done with is closed rather than kept idle while another pool waits for a slot.
    """

    def __init__(
        self,
        transport: Transport,
        *,
        size: int = 4,
        recover_after: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
        cap: ConnectionCap | None = None,
    ) -> None:
        if size < 1:
            raise ValueError("size must be >= 1")
        self._transport = transport
        self._max = size
        self._limit = size
        self._recover_after = recover_after
        self._clock = clock
        self._idle: list[Session] = []
        self._active = 0
        self._opening = 0
        self._logins = 0
        self._refusals = 0
        self._peak = 0
        self._stale = 0
        self._last_refusal = 0.0
        self._changed = anyio.Event()
        self._closed = False
        self._cap = cap

    def __repr__(self) -> str:
        s = self.stats
        return (f"<SessionPool {s.active} active, {s.idle} idle, {s.opening} opening, "
                f"limit {s.limit}/{s.max_size}, {s.stale} stale replaced>")

    @property
    def stats(self) -> PoolStats:
        return PoolStats(self._limit, self._max, len(self._idle), self._active, self._opening,
                         self._logins, self._refusals, self._peak, self._stale)

    async def __aenter__(self) -> SessionPool:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        self._closed = True
        idle, self._idle = self._idle, []
        for session in idle:
            try:
                await session.aclose()
            finally:
                self._closed_one()
        self._notify()

    # Decisions: plain synchronous methods that say what to do.
    def _live(self) -> int:
        return len(self._idle) + self._active + self._opening

    def _decide(self) -> Literal["reuse", "open", "wait", "queue"]:
        if self._idle:
            return "reuse"
        self._maybe_recover()
        if self._live() >= self._limit:
            return "wait"
        if self._cap is not None and not self._cap.take(self):
            return "queue"  # for a slot of the shared cap
        return "open"  # with a slot taken: `_open` gives it back if it fails

    def _keep(self, session: Session) -> bool:
        """A session back from use stays for reuse: in sync, the pool open, and no other
        pool waiting for its slot."""
        return (session.healthy and not self._closed
                and not (self._cap is not None and self._cap.wanted_by_others(self)))

    def _closed_one(self) -> None:
        """A session's connection is gone: its slot of the shared cap is free."""
        if self._cap is not None:
            self._cap.give()

    def _maybe_recover(self) -> None:
        if self._limit < self._max and self._clock() - self._last_refusal >= self._recover_after:
            self._limit += 1
            self._last_refusal = self._clock()
            log.info("server limit: trying %d sessions again", self._limit)

    def _on_refused(self) -> bool:
        """Lower the cap to what we hold; return True when the caller should wait for a release."""
        self._refusals += 1
        self._last_refusal = self._clock()
        held = self._live()
        if held < self._limit:
            log.info("server refused session %d: lowering the pool to %d", held + 1, max(1, held))
            self._limit = max(1, held)
        return held > 0

    def _notify(self) -> None:
        self._changed.set()
        self._changed = anyio.Event()

    # I/O: thin async methods.
    async def acquire(self) -> Session:
        """A logged-in session: an idle one, a new one, or the next one released."""
        with ExitStack() as queue:  # once queued for the shared cap, until it has a session
            queued = False
            while True:
                if self._closed:
                    raise anyio.ClosedResourceError("the session pool is closed")
                decision = self._decide()
                if decision == "reuse":
                    self._active += 1
                    idle = self._idle.pop()
                    if not idle.healthy:  # (S3's, opened before the bucket's region was known)
                        with anyio.CancelScope(shield=True):
                            await self.discard(idle)
                    elif not getattr(idle, "stale", False):  # HTTP: aiohttp reconnects
                        return idle
                    else:
                        await self._replace(idle)
                    continue
                if decision == "queue" and self._cap is not None and not queued:
                    queue.enter_context(self._cap.queued(self, self._notify))
                    queued = True
                if decision in ("wait", "queue"):
                    await self._changed.wait()
                    continue
                session = await self._open()
                if session is not None:
                    return session

    async def _open(self) -> Session | None:
        self._opening += 1
        try:
            session = await self._transport.connect()
        except TooManyConnections:
            self._opening -= 1
            self._closed_one()
            if self._on_refused():
                return None  # wait for one of ours to come back
            self._notify()
            raise
        except ConnectionRefused as exc:
            self._opening -= 1
            self._closed_one()
            self._notify()
            if self._logins == 0:
                raise ServerUnreachable(f"cannot reach the server: {exc.message}",
                                        path=exc.path) from exc
            raise
        except BaseException:
            self._opening -= 1
            self._closed_one()
            self._notify()
            raise
        self._opening -= 1
        self._active += 1
        self._logins += 1
        self._peak = max(self._peak, self._live())
        self._notify()  # (`warm` waits for a first session)
        return session

    async def _replace(self, session: Session) -> None:
        """An idle session the server closed (an idle timeout): closed, and not a failure
        of the file that found it; the caller opens another in its place."""
        self._stale += 1
        log.info("a session closed by the server while idle: replacing it")
        with anyio.CancelScope(shield=True):
            await self.discard(session)

    def release(self, session: Session) -> None:
        """Give a healthy session back for reuse."""
        self._active -= 1
        if self._closed:
            raise RuntimeError("release after close")  # pragma: no cover - programming error
        self._idle.append(session)
        self._notify()

    async def discard(self, session: Session) -> None:
        """Close a session that saw an error (its control connection may be out of sync)."""
        try:
            await session.aclose()  # shielded and bounded by the session itself
        finally:
            # only now is the connection gone: freeing the slot earlier lets a waiter open
            # one more than the cap (and be refused by a server enforcing it)
            self._active -= 1
            self._closed_one()
            self._notify()

    @asynccontextmanager
    async def spare(self) -> AsyncIterator[Session | None]:
        """A session borrowed as `session` does when one is idle or there is room to open
        one, else None at once (for a helper of a caller that holds a session already:
        waiting for the pool's last one would wait for ever). Opening one may still wait
        (a connect, a refusal); the caller cancels a spare it no longer needs."""
        room = self._live() < self._limit and (self._cap is None or self._cap.free_for(self))
        if self._closed or not (self._idle or room):
            yield None
            return
        async with self.session() as session:
            yield session

    async def warm(self) -> None:
        """Once the caller holds its first session (a listing's, which is never kept
        waiting for these), open the others the pool may hold, each with its connection
        made (its `warm`) and then idle: on a far link the first request of each costs one
        round trip, not two. A session that cannot is left for its first request to
        connect."""
        async def one() -> None:
            try:
                async with self.spare() as session:
                    warm = getattr(session, "warm", None)  # (HTTP's and S3's sessions)
                    if warm is not None:
                        await warm()
            except Exception as exc:  # (best effort: the first request connects anyway)
                log.debug("a session not made ahead: %s", exc)

        while self._live() == 0 and not self._closed:
            await self._changed.wait()
        async with anyio.create_task_group() as tg:
            for _ in range(self._limit - self._live()):
                tg.start_soon(one)

    @asynccontextmanager
    async def session(self) -> AsyncIterator[Session]:
        """Borrow a session. It goes back for reuse when it is still in sync (`healthy`),
        even if the block raised an error after the session's last reply (a short transfer
        that ended with 226, a checksum mismatch); it is discarded otherwise, or if the block
        was cancelled."""
        session = await self.acquire()
        try:
            yield session
        except Exception:
            if self._keep(session):
                self.release(session)
            else:
                with anyio.CancelScope(shield=True):
                    await self.discard(session)
            raise
        except BaseException:
            with anyio.CancelScope(shield=True):
                await self.discard(session)
            raise
        if self._keep(session):
            self.release(session)
        else:
            await self.discard(session)
