"""The session pool against a real server: reuse, the connection cap, adapting to refusals."""

from __future__ import annotations

import socket
from collections.abc import Callable
from pathlib import Path

import anyio
import pytest

from conftest import FakeClock
from pubmed_mirror import (
    ConnectTimeout,
    FtpTransport,
    ServerUnreachable,
    SessionPool,
    TooManyConnections,
)
from pubmed_mirror.testing import FaultyFTPServer

Tree = tuple[Path, dict[str, bytes]]


def transport(server: FaultyFTPServer, **kwargs: float) -> FtpTransport:
    return FtpTransport(host="127.0.0.1", port=server.port, **kwargs)


async def test_sessions_are_reused(ftpd: FaultyFTPServer) -> None:
    """Ten borrows in a row log in once."""
    async with SessionPool(transport(ftpd), size=3) as pool:
        for _ in range(10):
            async with pool.session() as session:
                await session.stat("/pubmed26n0001.xml.gz")
        assert pool.stats.logins == 1
    assert ftpd.stats.logins == 1


async def test_never_more_than_size_sessions(ftpd: FaultyFTPServer) -> None:
    """Eight concurrent borrowers share at most three control connections."""
    async with SessionPool(transport(ftpd), size=3) as pool:
        async def borrow() -> None:
            async with pool.session() as session:
                await session.stat("/pubmed26n0002.xml.gz")
                await anyio.sleep(0.05)

        async with anyio.create_task_group() as tg:
            for _ in range(8):
                tg.start_soon(borrow)
        assert pool.stats.peak <= 3 and pool.stats.logins <= 3
    assert ftpd.stats.max_concurrent <= 3


@pytest.mark.parametrize("limit_reply", ["421", "530"])
async def test_refusal_lowers_then_time_raises_the_limit(tree: Tree, limit_reply: str) -> None:
    """Over the server's limit the pool shrinks to what it holds, and grows back later."""
    clock = FakeClock()
    with FaultyFTPServer(tree[0], max_connections=1, limit_reply=limit_reply) as server:  # type: ignore[arg-type]
        async with SessionPool(transport(server), size=3, recover_after=30, clock=clock) as pool:
            first = await pool.acquire()
            async with anyio.create_task_group() as tg:
                tg.start_soon(_borrow_briefly, pool)
                await _settled(lambda: pool.stats.refusals == 1)  # refused, now waits for ours
                assert pool.stats.limit == 1 and pool.stats.refusals == 1
                pool.release(first)
            assert repr(pool).startswith("<SessionPool 0 active, 1 idle")
            clock.now += 31
            second = await pool.acquire()  # reuses the idle one: no new connection needed
            assert pool.stats.limit == 1
            third_attempt = anyio.create_task_group()
            async with third_attempt as tg:
                tg.start_soon(_borrow_briefly, pool)  # limit back to 2: tries, refused again
                await _settled(lambda: pool.stats.refusals == 2)  # (after the server's pause)
                assert pool.stats.refusals == 2 and pool.stats.limit == 1
                pool.release(second)
        assert server.stats.max_concurrent == 1


async def _settled(condition: Callable[[], bool], seconds: float = 10.0) -> None:
    """Wait until `condition` holds, then a moment more (so that a wrong extra step would
    show); at most `seconds`: a refusal closes the server's gate, whose pause (0.5-2 s,
    jittered) the next attempt waits out first, longer on a loaded machine."""
    with anyio.move_on_after(seconds):
        while not condition():  # noqa: ASYNC110 (watching the pool's counters)
            await anyio.sleep(0.02)
    await anyio.sleep(0.2)


async def _borrow_briefly(pool: SessionPool) -> None:
    async with pool.session():
        pass


async def test_refused_with_nothing_held_is_raised(tree: Tree) -> None:
    """A refusal when the pool holds no session is a TooManyConnections for the retry policy."""
    with FaultyFTPServer(tree[0], max_connections=1) as server:
        async with SessionPool(transport(server), size=2) as hog:
            held = await hog.acquire()
            async with SessionPool(transport(server), size=2) as pool:
                with pytest.raises(TooManyConnections, match="421"):
                    await pool.acquire()
            hog.release(held)


async def test_silent_server_times_out_at_connect() -> None:
    """A server that accepts but never greets fails within the connect timeout, with a
    transient error (the retry policy decides), even on the pool's first connection."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        start = anyio.current_time()
        async with SessionPool(FtpTransport(host="127.0.0.1", port=port, connect_timeout=0.5),
                               size=1) as pool:
            with pytest.raises(ConnectTimeout, match="timed out"):
                await pool.acquire()
        assert anyio.current_time() - start < 2.0


async def test_refused_first_connection_is_fatal() -> None:
    """Nothing listening on the port at the pool's first connection: ServerUnreachable."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # bound, never listening: connections are refused
        async with SessionPool(FtpTransport(host="127.0.0.1", port=port), size=1) as pool:
            with pytest.raises(ServerUnreachable, match="refused"):
                await pool.acquire()


async def test_waiting_on_a_closed_pool_raises(tree: Tree) -> None:
    """A task waiting for a session when the pool closes gets ClosedResourceError."""
    with FaultyFTPServer(tree[0]) as server:
        pool = SessionPool(transport(server), size=1)
        held = await pool.acquire()
        async with anyio.create_task_group() as tg:
            failures: list[BaseException] = []

            async def wait_for_one() -> None:
                try:
                    await pool.acquire()
                except anyio.ClosedResourceError as exc:
                    failures.append(exc)

            tg.start_soon(wait_for_one)
            await anyio.wait_all_tasks_blocked()
            await pool.aclose()
        await pool.discard(held)
    assert len(failures) == 1


async def test_close_is_bounded_when_the_server_does_not_answer(tree: Tree) -> None:
    """Closing a session whose server answers nothing more takes ~2 s, not forever."""
    with FaultyFTPServer(tree[0], reply_delay=0.2) as server:
        pool = SessionPool(transport(server, connect_timeout=10), size=1)
        session = await pool.acquire()
        server.stop()  # now nobody will ever answer QUIT
        start = anyio.current_time()
        with anyio.fail_after(5):
            await pool.discard(session)
            await pool.aclose()
        assert anyio.current_time() - start < 3.0


async def test_stat_on_both_servers(ftpd: FaultyFTPServer, aioftpd: object, tree: Tree) -> None:
    """stat() gives size and mtime via SIZE/MDTM (pyftpdlib) and via MLST (aioftp's server)."""
    expected = len(tree[1]["pubmed26n0003.xml.gz"])
    mtime = (tree[0] / "pubmed26n0003.xml.gz").stat().st_mtime
    for port in (ftpd.port, aioftpd.server_port):  # type: ignore[attr-defined]
        async with SessionPool(FtpTransport(host="127.0.0.1", port=port), size=1) as pool:
            async with pool.session() as session:
                entry = await session.stat("/pubmed26n0003.xml.gz")
        assert entry.size == expected
        assert entry.mtime is not None and abs(entry.mtime - mtime) < 2
