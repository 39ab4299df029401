"""One back-off for the whole server: a busy answer to one session pauses every session,
measured at the server."""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path
from typing import Any

import anyio
import pytest

from conftest import FakeClock
from pubmed_mirror import FileRetrying, MirrorOptions, RetryPolicy, Timeouts, mirror
from pubmed_mirror._backoff import RETRY_AFTER_CAP, ServerGate
from pubmed_mirror._ftp import FtpTransport
from pubmed_mirror._pool import SessionPool
from pubmed_mirror.testing import Fault, FaultyFTPServer
from webfaults import FaultyWebServer, WebFault


def test_gate_arithmetic() -> None:
    """Retry-After is kept (capped); without it the pause doubles per busy answer heard
    after the gate opened, never below half its ceiling, and starts again after quiet or
    after a request served normally once the gate opened."""
    clock = FakeClock()
    gate = ServerGate(base=1.0, cap=8.0, forget_after=30.0, clock=clock, jitter=lambda: 0.0)
    assert gate.closed_for() == 0
    gate.close(2.0)
    assert gate.closed_for() == 2.0
    gate.close(1000.0)
    assert gate.closed_for() == RETRY_AFTER_CAP
    clock.now += RETRY_AFTER_CAP
    pauses = []
    for _ in range(5):
        gate.close()
        pauses.append(gate.closed_for())
        gate.close()  # an answer to a request in flight while closed: no doubling
        assert gate.closed_for() == pauses[-1]
        clock.now += pauses[-1]
    assert pauses == [0.5, 1.0, 2.0, 4.0, 4.0]  # half of 1, 2, 4, 8, 8 (the cap)
    clock.now += 31.0
    gate.close()
    assert gate.closed_for() == 0.5
    clock.now += 0.5
    gate.close()
    assert gate.closed_for() == 1.0  # heard after the gate opened: doubled
    gate.served()  # an answer while closed proves nothing
    clock.now += 1.0
    gate.served()  # a request answered normally since it opened: the server recovered
    gate.close()
    assert gate.closed_for() == 0.5


def _tree(root: Path, sizes: dict[str, int]) -> dict[str, bytes]:
    root.mkdir()
    files = {}
    for name, size in sizes.items():
        data = (hashlib.sha256(name.encode()).digest() * (size // 32 + 1))[:size]
        files[name] = data
        (root / name).write_bytes(data)
        (root / f"{name}.md5").write_text(f"MD5({name})= {hashlib.md5(data).hexdigest()}\n")
    day_ago = time.time() - 86400
    for path in root.iterdir():
        os.utime(path, (day_ago, day_ago))
    return files


@pytest.mark.parametrize("splice", [True, False], ids=["splice", "recv"])
@pytest.mark.parametrize("split", [True, False], ids=["split", "no-split"])
async def test_503_pauses_every_session(tmp_path: Path, splice: bool, split: bool) -> None:
    """After a 503 with Retry-After: 2 to one session, no request from any session reaches
    the server for 2 s, and every file arrives intact."""
    # two big slow files hold two sessions; the third session meets the 503 early, then
    # the first two want their next files inside the window
    names = [f"pubmed26n{i:04d}.xml.gz" for i in range(1, 8)]
    sizes = {names[0]: 600_000, names[1]: 600_000} | {n: 1_000 for n in names[2:]}
    files = _tree(tmp_path / "web", sizes)
    server = FaultyWebServer(tmp_path / "web", rate=400_000)
    server.add(names[3], WebFault("503", seconds=2))
    events: list[Any] = []
    options = MirrorOptions(concurrency=3, splice=splice, include=("*.xml.gz",),
                            split_min=None if not split else 100_000,
                            retry=RetryPolicy(attempts=4, base=0.05, cap=0.2),
                            timeouts=Timeouts(connect=5, stall=5))
    async with server.running():
        report = await mirror(server.url, tmp_path / "m", options, on_event=events.append)
    assert report.ok, report.failed
    for name, data in files.items():
        assert (tmp_path / "m" / name).read_bytes() == data
    arrivals = server.stats.arrivals
    busy = next(t for t, method, name, _ in arrivals if method == "GET" and name == names[3])
    after = [(t - busy, port) for t, _, _, port in arrivals if t > busy]
    quiet = min(gap for gap, _ in after)
    print(f"quiet window after the 503: {quiet:.3f} s; first request per connection: "
          f"{sorted({port: round(gap, 3) for gap, port in reversed(after)}.values())}")
    assert quiet >= 2.0
    assert sum(isinstance(e, FileRetrying) for e in events) == 1


@pytest.mark.parametrize("splice", [True, False], ids=["splice", "recv"])
async def test_ftp_421_burst_pauses_every_session(tmp_path: Path, splice: bool) -> None:
    """A burst of 421 replies to one session pauses the other sessions' new commands
    (counted at the server) for at least the gate's shortest pause; all files arrive."""
    names = [f"pubmed26n{i:04d}.xml.gz" for i in range(1, 31)]
    files = _tree(tmp_path / "ftp", {n: 20_000 for n in names})
    busy_name = names[4]
    with FaultyFTPServer(tmp_path / "ftp") as server:
        server.faults.add(busy_name, Fault(kind="reply", reply="421 Busy, try later"),
                          Fault(kind="reply", reply="421 Busy, try later"))
        events: list[Any] = []
        options = MirrorOptions(concurrency=3, splice=splice, include=("*.xml.gz",),
                                retry=RetryPolicy(attempts=4, base=0.05, cap=0.2),
                                timeouts=Timeouts(connect=5, stall=5))
        report = await mirror(server.url, tmp_path / "m", options, on_event=events.append)
        log = server.stats.command_log
    assert report.ok, report.failed
    for name, data in files.items():
        assert (tmp_path / "m" / name).read_bytes() == data
    busy = [t for t, line, _ in log if line == f"RETR /{busy_name}"]
    assert len(busy) == 3  # two 421s, then the file
    grace = 0.1  # commands of a step already under way when the 421 went out
    for t in busy[:2]:
        later = [u - t for u, _, _ in log if t + grace < u]
        first = min(later)
        print(f"first new command after a 421: {first:.3f} s")
        assert first >= 0.5  # the gate's shortest first pause (half its 1 s base)
    assert sum(isinstance(e, FileRetrying) for e in events) == 2



@pytest.mark.parametrize("splice", [True, False], ids=["splice", "recv"])
async def test_session_closed_while_idle_is_replaced_silently(tmp_path: Path,
                                                                splice: bool) -> None:
    """A pooled session the server closed for idling (2 s) is replaced with a new login
    when it is next taken: the file that takes it spends no attempt on it."""
    names = ["pubmed26n0001.xml.gz", "pubmed26n0002.xml.gz"]
    files = _tree(tmp_path / "ftp", {n: 50_000 for n in names})
    with FaultyFTPServer(tmp_path / "ftp", idle_timeout=2.0) as server:
        # the first file's first RETR stalls until the client gives up on it (2.5 s): its
        # retry then takes the second file's session, idle for longer than 2 s by then
        server.faults.add(names[0], Fault(kind="stall", after_bytes=1000))
        events: list[Any] = []
        options = MirrorOptions(concurrency=2, splice=splice, include=("*.xml.gz",),
                                split_min=None,
                                retry=RetryPolicy(attempts=4, base=0.05, cap=0.2),
                                timeouts=Timeouts(connect=5, stall=2.5))
        report = await mirror(server.url, tmp_path / "m", options, on_event=events.append)
        stats = server.stats
    assert report.ok, report.failed
    for name, data in files.items():
        assert (tmp_path / "m" / name).read_bytes() == data
    retries = [e for e in events if isinstance(e, FileRetrying)]
    print(f"retries: {[(e.name, e.reason) for e in retries]}; logins {stats.logins}")
    assert [e.name for e in retries] == [names[0]]  # the stall only
    assert {r.name: r.attempts for r in report.files} == {names[0]: 2, names[1]: 1}
    assert stats.logins == 3  # the listing's (then the first file's), the second's, the new one


async def test_pool_counts_stale_sessions(tmp_path: Path) -> None:
    """The pool's stats and repr count an idle session the server closed, and the session
    it hands out instead is a new login that works."""
    (tmp_path / "f").write_bytes(b"x")
    with FaultyFTPServer(tmp_path, idle_timeout=1.0) as server:
        transport = FtpTransport(host=server.host, port=server.port, connect_timeout=5,
                                 stall_timeout=5)
        async with SessionPool(transport, size=1) as pool:
            async with pool.session():
                pass
            await anyio.sleep(1.5)
            async with pool.session() as session:
                entry = await session.stat("/f")
            assert pool.stats.stale == 1 and pool.stats.logins == 2
            assert "1 stale replaced" in repr(pool)
        assert entry.size == 1 and server.stats.logins == 2
