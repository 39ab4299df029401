"""The download engine against real FTP servers on 127.0.0.1, with faults injected in the server."""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path

import anyio
import pytest

from conftest import CountingServer, assert_mirrored, make_tree, rest_at, url_of
from pubmed_mirror import (
    ChecksumMismatch,
    Event,
    FileDone,
    FileRetrying,
    FtpTransport,
    LoginRefused,
    MirrorOptions,
    RemoteFile,
    RemoteFileError,
    RetryPolicy,
    SessionPool,
    Timeouts,
    fetch_file,
    mirror,
    mirror_events,
)
from pubmed_mirror._resume import OVERLAP
from pubmed_mirror.testing import Fault, FaultyFTPServer

FAST_RETRY = RetryPolicy(attempts=4, base=0.05, cap=0.2)
Tree = tuple[Path, dict[str, bytes]]


def opts(**kwargs: object) -> MirrorOptions:
    kwargs.setdefault("retry", FAST_RETRY)
    kwargs.setdefault("timeouts", Timeouts(connect=5, stall=5))
    return MirrorOptions(**kwargs)  # type: ignore[arg-type]


# -- happy paths -------------------------------------------------------------------------------


async def test_mirror_pyftpdlib_parallel_and_reused(ftpd: FaultyFTPServer, tree: Tree,
                                                     dest: Path) -> None:
    """All files arrive byte-identical over at most N sessions, one login per session."""
    report = await mirror(ftpd.url, dest, opts(concurrency=3))
    assert_mirrored(dest, tree[1])
    assert len(report.done) == len(tree[1]) and report.ok
    stats = ftpd.stats
    assert stats.max_concurrent <= 3
    assert stats.logins <= 3
    # one RETR per non-empty file (an empty one needs none): nothing fetched twice
    assert sum(stats.retr.values()) == len([d for d in tree[1].values() if d])


async def test_mirror_aioftp_server(aioftpd: CountingServer, tree: Tree, dest: Path) -> None:
    """aioftp's own server: byte-identical files, never more than N control connections."""
    report = await mirror(url_of(aioftpd.server_port), dest, opts(concurrency=2))
    assert_mirrored(dest, tree[1])
    assert report.ok and aioftpd.peak <= 2 and aioftpd.total <= 2


async def test_local_mtime_is_the_remote_one(ftpd: FaultyFTPServer, tree: Tree,
                                             dest: Path) -> None:
    """The final file carries the server's modification time."""
    remote = tree[0] / "pubmed26n0001.xml.gz"
    os.utime(remote, (1_700_000_000, 1_700_000_000))
    await mirror(ftpd.url, dest, opts(include=("pubmed26n0001.xml.gz",)))
    assert round((dest / "pubmed26n0001.xml.gz").stat().st_mtime) == 1_700_000_000


async def test_second_run_transfers_nothing(ftpd: FaultyFTPServer, tree: Tree,
                                            dest: Path) -> None:
    """A rerun over an unchanged tree skips every file and sends no RETR."""
    await mirror(ftpd.url, dest, opts())
    before = sum(ftpd.stats.retr.values())
    report = await mirror(ftpd.url, dest, opts())
    assert report.up_to_date == report.skipped_count == len(tree[1])
    assert report.bytes_received == 0
    assert sum(ftpd.stats.retr.values()) == before


async def test_changed_remote_file_is_fetched_again(ftpd: FaultyFTPServer, tree: Tree,
                                                    dest: Path) -> None:
    """A file whose remote size or mtime changed is fetched again."""
    await mirror(ftpd.url, dest, opts())
    changed = tree[0] / "pubmed26n0002.xml.gz"
    changed.write_bytes(b"new contents" * 1000)
    os.utime(changed, (1_800_000_000, 1_800_000_000))
    report = await mirror(ftpd.url, dest, opts())
    assert [f.name for f in report.done] == ["pubmed26n0002.xml.gz"]
    assert (dest / "pubmed26n0002.xml.gz").read_bytes() == b"new contents" * 1000


async def test_list_fallback_without_mlsd(tree: Tree, dest: Path) -> None:
    """A server without MLSD is listed with LIST, sizes included."""
    with FaultyFTPServer(tree[0], disable_mlsd=True) as server:
        report = await mirror(server.url, dest, opts())
    assert_mirrored(dest, tree[1])
    assert report.ok


async def test_events_as_async_iterator(ftpd: FaultyFTPServer, tree: Tree, dest: Path) -> None:
    """mirror_events() yields a FileDone per file and exposes the report afterwards."""
    done = []
    async with mirror_events(ftpd.url, dest, opts()) as feed:
        async for event in feed:
            if isinstance(event, FileDone):
                done.append(event.name)
    assert sorted(done) == sorted(tree[1])
    assert feed.report is not None and feed.report.ok


# -- faults in the data stream: retried and resumed, not restarted ------------------------------

BIG = "pubmed26n0006.xml.gz"  # 3_000_001 bytes


@pytest.mark.parametrize("with_md5", [True, False], ids=["md5", "no-md5"])
async def test_a_recent_file_listed_by_list_resumes_when_an_md5_checks_it(
        tree: Tree, dest: Path, with_md5: bool) -> None:
    """LIST shows minutes, often in the server's local time, so MDTM cannot be matched with
    it: a file modified within the hour before its part began was taken for a new version
    at every resume and fetched again from byte 0 (a daily update file mirrored soon after
    it is posted, over a link that resets). With its NAME.md5 a splice of two versions
    cannot pass the check, so the drop is resumed; without one it still starts again."""
    data = tree[1][BIG]
    if with_md5:
        (tree[0] / f"{BIG}.md5").write_text(f"MD5({BIG})= {hashlib.md5(data).hexdigest()}\n")
    with FaultyFTPServer(tree[0], disable_mlsd=True) as server:
        server.faults.add(BIG, Fault(kind="close_426", after_bytes=1_234_567))
        report = await mirror(server.url, dest, opts(include=(BIG,)))
        offsets = server.stats.rest_offsets[BIG]
    assert report.ok, report.failed
    assert (dest / BIG).read_bytes() == data
    assert offsets == ([0, rest_at(1_234_567)] if with_md5 else [0, 0])


async def test_a_part_from_an_earlier_run_is_not_resumed_blind_over_list(
        tmp_path: Path) -> None:
    """LIST shows minutes: a file without an MD5, cut short in one run, then rewritten at
    the same size in the same minute with only its first MiB changed, was resumed by the
    next run from the part (the 16 KiB compared at the resume point are alike) and landed
    spliced, exit 0, then skipped for good. A part an earlier run left, of a file nothing
    checks and only a coarse time describes, is now resumed only when MDTM says the file
    is older than the part: here it starts again from 0 and lands whole."""
    root, dest = tmp_path / "remote", tmp_path / "m"
    root.mkdir()
    first = b"A" * (4 << 20)
    second = b"B" * (1 << 20) + first[1 << 20:]
    target = root / "x.bin"
    stamp = time.time() // 60 * 60 + 5  # this minute: two versions within it
    target.write_bytes(first)
    os.utime(target, (stamp, stamp))
    with FaultyFTPServer(root, disable_mlsd=True) as server:
        server.faults.add("x.bin", Fault(kind="kill_control", after_bytes=3 << 20))
        cut = await mirror(server.url, dest, opts(retry=RetryPolicy(attempts=1)))
        assert [f.name for f in cut.failed] == ["x.bin"]
        target.write_bytes(second)
        os.utime(target, (stamp + 3, stamp + 3))
        report = await mirror(server.url, dest, opts())
        offsets = server.stats.rest_offsets["x.bin"]
    assert report.ok, report.failed
    assert (dest / "x.bin").read_bytes() == second
    assert offsets[-1] == 0


async def test_a_part_from_an_earlier_run_starts_again_when_mdtm_is_refused(
        tmp_path: Path) -> None:
    """The look at a part left by an earlier run (`_blind_part`) asks MDTM; a server that
    refuses it with 550 tells nothing: the file starts again from 0 and lands (the refusal
    failed the file at every run)."""
    root, dest = tmp_path / "remote", tmp_path / "m"
    root.mkdir()
    data = os.urandom(4 << 20)
    (root / "x.bin").write_bytes(data)
    with FaultyFTPServer(root, disable_mlsd=True) as server:
        server.faults.add("x.bin", Fault(kind="kill_control", after_bytes=3 << 20))
        cut = await mirror(server.url, dest, opts(retry=RetryPolicy(attempts=1)))
        assert [f.name for f in cut.failed] == ["x.bin"]
    with FaultyFTPServer(root, disable_mlsd=True,
                         replies={"MDTM": "550 Could not get file modification time."}) as server:
        report = await mirror(server.url, dest, opts())
        offsets = server.stats.rest_offsets["x.bin"]
    assert report.ok, report.failed
    assert (dest / "x.bin").read_bytes() == data and offsets == [0]


@pytest.mark.parametrize("kind", ["close_426", "close_226", "kill_control"])
@pytest.mark.parametrize("after", [1, 65_536, 1_234_567, 2_999_999])
async def test_clean_drop_resumes_at_exact_offset(ftpd: FaultyFTPServer, tree: Tree, dest: Path,
                                                   kind: str, after: int) -> None:
    """A drop after K bytes (426, silent 226, or control killed) resumes with REST K, less
    the overlap it receives again to compare (never more than that re-sent)."""
    ftpd.faults.add(BIG, Fault(kind=kind, after_bytes=after))  # type: ignore[arg-type]
    events: list[Event] = []
    report = await mirror(ftpd.url, dest, opts(include=(BIG,)), on_event=events.append)
    assert report.ok, report.failed
    assert (dest / BIG).read_bytes() == tree[1][BIG]
    assert ftpd.stats.rest_offsets[BIG] == [0, rest_at(after)]
    assert ftpd.stats.bytes_sent[BIG] == len(tree[1][BIG]) + after - rest_at(after)
    assert report.retries == 1
    assert any(isinstance(e, FileRetrying) for e in events)


async def test_session_survives_a_lying_226(ftpd: FaultyFTPServer, tree: Tree,
                                            dest: Path) -> None:
    """A short transfer that ended with a clean 226 leaves the session in sync: the retry
    and every other file reuse the one login."""
    ftpd.faults.add(BIG, Fault(kind="close_226", after_bytes=1_234_567))
    report = await mirror(ftpd.url, dest, opts(concurrency=1))
    assert report.ok and report.retries == 1
    assert_mirrored(dest, tree[1])
    assert ftpd.stats.logins == 1


@pytest.mark.parametrize("after", [100_000, 2_000_000])
async def test_reset_resumes_near_the_offset(ftpd: FaultyFTPServer, tree: Tree, dest: Path,
                                             after: int) -> None:
    """A TCP reset loses at most what was in flight; the retry resumes, not restarts."""
    ftpd.faults.add(BIG, Fault(kind="reset", after_bytes=after))
    report = await mirror(ftpd.url, dest, opts(include=(BIG,)))
    assert report.ok, report.failed
    assert (dest / BIG).read_bytes() == tree[1][BIG]
    offsets = ftpd.stats.rest_offsets[BIG]
    assert len(offsets) == 2 and 0 < offsets[1] <= after


async def test_whole_file_deadline(ftpd: FaultyFTPServer, tree: Tree, dest: Path) -> None:
    """A file stalled past the optional whole-file deadline fails; others still complete."""
    ftpd.faults.add(BIG, *[Fault(kind="stall", after_bytes=1000, stall_seconds=30)] * 4)
    with anyio.fail_after(20):
        report = await mirror(ftpd.url, dest, opts(timeouts=Timeouts(connect=5, stall=10,
                                                                      file=1.0)))
    assert [f.name for f in report.failed] == [BIG]
    assert "not complete within 1 s" in (report.failed[0].error or "")
    assert not (dest / BIG).exists()
    assert len(report.done) == len(tree[1]) - 1


async def test_whole_file_deadline_runs_from_the_files_turn(ftpd: FaultyFTPServer,
                                                              tree: Tree, dest: Path) -> None:
    """With one session and a whole-file deadline, the second file's clock starts when the
    first is done, not while it waits for the session: each takes ~2.5 s (a stall in the
    server) within a 4 s deadline, and both arrive (a file taken early by a spare worker
    would have spent ~2.5 s of its 4 waiting, and failed)."""
    first, second = "pubmed26n0001.xml.gz", "pubmed26n0002.xml.gz"
    for name in (first, second):
        ftpd.faults.add(name, Fault(kind="stall", after_bytes=1000, stall_seconds=2.5))
    with anyio.fail_after(30):
        report = await mirror(ftpd.url, dest, opts(
            concurrency=1, include=(first, second),
            timeouts=Timeouts(connect=5, stall=10, file=4.0)))
    assert report.ok, [(f.name, f.error) for f in report.failed]
    assert [f.attempts for f in report.done] == [1, 1]
    assert all((dest / n).read_bytes() == tree[1][n] for n in (first, second))


# -- replies -----------------------------------------------------------------------------------


async def test_transient_reply_on_retr_is_retried(ftpd: FaultyFTPServer, tree: Tree,
                                                  dest: Path) -> None:
    """450 twice on RETR: the third attempt succeeds."""
    ftpd.faults.add(BIG, Fault(kind="reply", reply="450 Busy"), Fault(kind="reply",
                                                                     reply="451 Local error"))
    report = await mirror(ftpd.url, dest, opts(include=(BIG,)))
    assert report.ok and report.done[0].attempts == 3
    assert (dest / BIG).read_bytes() == tree[1][BIG]


async def test_permanent_reply_fails_that_file_only(ftpd: FaultyFTPServer, tree: Tree,
                                                   dest: Path) -> None:
    """550 on RETR fails the file at once (one RETR), quotes the reply, leaves no file."""
    ftpd.faults.add(BIG, Fault(kind="reply", reply="550 Permission denied"))
    report = await mirror(ftpd.url, dest, opts())
    assert [f.name for f in report.failed] == [BIG]
    assert "550 Permission denied" in (report.failed[0].error or "")
    assert ftpd.stats.retr[BIG] == 1
    assert not (dest / BIG).exists()
    assert len(report.done) == len(tree[1]) - 1


async def test_retries_run_out(ftpd: FaultyFTPServer, tree: Tree, dest: Path) -> None:
    """A file that keeps failing without progress fails after `attempts` tries in a row,
    keeping its part; the attempt that made progress before them does not count."""
    ftpd.faults.add(BIG, Fault(kind="close_426", after_bytes=1000),
                    *[Fault(kind="close_426", after_bytes=0) for _ in range(4)])
    report = await mirror(ftpd.url, dest, opts(include=(BIG,)))
    assert report.failed and report.failed[0].attempts == 5
    assert "426" in (report.failed[0].error or "")
    assert not (dest / BIG).exists()
    assert (dest / (BIG + ".part")).stat().st_size == 1000
    assert ftpd.stats.rest_offsets[BIG] == [0, 0, 0, 0, 0]  # 1000 < OVERLAP: all again


async def test_progress_renews_the_retry_budget(ftpd: FaultyFTPServer, tree: Tree,
                                                dest: Path) -> None:
    """Drops that each come after more bytes never exhaust the budget: with 4 attempts
    allowed, 6 drops in a row still end in a complete file, each byte sent once beyond the
    overlaps that resumes compare."""
    ftpd.faults.add(BIG, *[Fault(kind="close_426", after_bytes=100_000) for _ in range(6)])
    report = await mirror(ftpd.url, dest, opts(include=(BIG,)))
    assert report.ok and report.done[0].attempts == 7
    assert_mirrored(dest, {BIG: tree[1][BIG]})
    gain = 100_000 - OVERLAP  # each resume receives OVERLAP bytes again
    assert ftpd.stats.rest_offsets[BIG] == [gain * i for i in range(7)]
    assert ftpd.stats.bytes_sent[BIG] == len(tree[1][BIG]) + 6 * OVERLAP


async def test_missing_directory_raises(ftpd: FaultyFTPServer, dest: Path) -> None:
    """Listing a directory that does not exist raises RemoteFileError quoting the 550."""
    with pytest.raises(RemoteFileError, match="550"):
        await mirror(ftpd.url + "no/such/dir/", dest, opts())


async def test_resets_before_the_first_login_are_retried(tree: Tree, dest: Path) -> None:
    """A server that resets the first two connections before greeting is retried, not
    taken for unreachable: the listing's retries get through and every file arrives."""
    with FaultyFTPServer(tree[0], reset_connections=2) as server:
        report = await mirror(server.url, dest, opts(concurrency=2))
        stats = server.stats
    assert report.ok
    assert_mirrored(dest, tree[1])
    assert stats.connections >= 3 and stats.logins <= 2


async def test_login_refused_is_fatal(tree: Tree, dest: Path) -> None:
    """Wrong credentials stop the run with LoginRefused, without retrying."""
    with FaultyFTPServer(tree[0], user="alice", password="right") as server:
        with pytest.raises(LoginRefused, match="530"):
            await mirror(server.url, dest, opts())
        assert server.stats.logins == 0 and server.stats.connections == 1


@pytest.mark.parametrize("limit_reply", ["421", "530"])
async def test_pool_adapts_to_server_connection_limit(tree: Tree, dest: Path,
                                                      limit_reply: str) -> None:
    """A per-IP limit below --concurrency (421 at greeting or 530 after login) is obeyed."""
    with FaultyFTPServer(tree[0], max_connections=2, limit_reply=limit_reply,  # type: ignore[arg-type]
                         rate_per_connection=4_000_000) as server:
        report = await mirror(server.url, dest, opts(concurrency=5))
        stats = server.stats
    assert report.ok, report.failed
    assert_mirrored(dest, tree[1])
    assert stats.refused >= 1
    assert stats.max_concurrent <= 2


# -- the transfer itself -----------------------------------------------------------------------


async def test_md5_mismatch_leaves_no_file(ftpd: FaultyFTPServer, tree: Tree, dest: Path) -> None:
    """fetch_file with a wrong expected MD5 raises ChecksumMismatch and keeps nothing."""
    data = tree[1][BIG]
    dest.mkdir()
    async with SessionPool(FtpTransport(host="127.0.0.1", port=ftpd.port), size=1) as pool:
        async with pool.session() as session:
            remote = RemoteFile("/" + BIG, len(data), None, md5="0" * 32)
            with pytest.raises(ChecksumMismatch):
                await fetch_file(session, remote, dest / BIG)
        assert [p for p in dest.rglob("*") if not p.is_dir()] == []  # no part, no record
        async with pool.session() as session:
            good = RemoteFile("/" + BIG, len(data), None, md5=hashlib.md5(data).hexdigest())
            result = await fetch_file(session, good, dest / BIG)
        assert result.received == len(data) and (dest / BIG).read_bytes() == data
        assert pool.stats.logins == 1  # the session survived a checksum failure


async def test_part_from_another_version_is_not_spliced(ftpd: FaultyFTPServer, tree: Tree,
                                                        dest: Path) -> None:
    """A .part started from an older remote version is restarted from zero, not resumed."""
    ftpd.faults.add(BIG, Fault(kind="close_426", after_bytes=1_000_000))
    report = await mirror(ftpd.url, dest, opts(include=(BIG,),
                                               retry=RetryPolicy(attempts=1)))
    assert report.failed and (dest / (BIG + ".part")).stat().st_size == 1_000_000
    new = make_tree(tree[0], [3_000_001], seed=99)["pubmed26n0001.xml.gz"]
    (tree[0] / BIG).write_bytes(new)
    os.utime(tree[0] / BIG, (1_800_000_000, 1_800_000_000))
    report = await mirror(ftpd.url, dest, opts(include=(BIG,)))
    assert report.ok and (dest / BIG).read_bytes() == new
    assert ftpd.stats.rest_offsets[BIG] == [0, 0]


async def test_waiting_for_command_tokens_is_not_a_timeout(tree: Tree, dest: Path) -> None:
    """At 3 commands/s over 3 sessions each command waits ~1 s for its token, twice the
    connect and stall timeouts: that wait is politeness, not a silent server."""
    with FaultyFTPServer(tree[0]) as server:
        report = await mirror(server.url, dest, opts(
            concurrency=3, command_rate=3.0, max_files=3,
            timeouts=Timeouts(connect=0.5, stall=0.5)))
    assert report.ok and report.retries == 0, report.failed


async def test_command_rate_is_capped(tree: Tree, dest: Path) -> None:
    """With command_rate C the server sees no more than C commands/s (plus one burst)."""
    with FaultyFTPServer(tree[0]) as server:
        start = anyio.current_time()
        await mirror(server.url, dest, opts(concurrency=2, command_rate=10.0))
        elapsed = anyio.current_time() - start
        commands = server.stats.commands
    assert commands > 20
    # burst of 10, then 10/s; the QUITs sent while closing bypass the bucket (2 sessions)
    assert commands <= 10 + 10 * elapsed + 2


# -- cancellation ------------------------------------------------------------------------------


async def test_cancel_mid_mirror_then_rerun_reuses_partials(tree: Tree, dest: Path) -> None:
    """Cancelling mid-run stops promptly and keeps .part files; the rerun resumes them."""
    with FaultyFTPServer(tree[0], rate_per_connection=1_000_000) as server:
        with anyio.move_on_after(1.0) as scope:
            await mirror(server.url, dest, opts(concurrency=3))
        assert scope.cancelled_caught
        parts = {p.name[: -len(".part")]: p.stat().st_size
                 for p in dest.iterdir() if p.name.endswith(".part")}
        assert parts and all(size > 0 for size in parts.values())
        for name in parts:
            assert not (dest / name).exists()
        with anyio.fail_after(30):
            report = await mirror(server.url, dest, opts(concurrency=3))
        stats = server.stats
    assert_mirrored(dest, tree[1])
    assert report.ok
    for name, size in parts.items():
        assert stats.rest_offsets[name][-1] == rest_at(size)  # where the part ended
    resumed = {f.name: f.resumed_from for f in report.done}
    assert all(resumed[name] == size for name, size in parts.items())


@pytest.mark.parametrize("cancel_at", [0.7, 1.3, 2.1])
async def test_cancel_while_waiting_for_tokens_keeps_the_part_exact(
    ftpd: FaultyFTPServer, tree: Tree, dest: Path, cancel_at: float
) -> None:
    """Cancelled while a chunk waits for rate tokens, the part stays an exact prefix."""
    with anyio.move_on_after(cancel_at):
        await mirror(ftpd.url, dest, opts(include=(BIG,), rate_limit=1 << 20))
    part = dest / (BIG + ".part")
    assert part.exists()
    assert part.read_bytes() == tree[1][BIG][: part.stat().st_size]
    report = await mirror(ftpd.url, dest, opts(include=(BIG,)))
    assert report.ok and (dest / BIG).read_bytes() == tree[1][BIG]


async def test_leaving_mirror_events_early_cancels_quietly(ftpd: FaultyFTPServer,
                                                           dest: Path) -> None:
    """Breaking out of the event loop cancels the mirror without raising."""
    for _ in range(4):
        async with mirror_events(ftpd.url, dest, opts()) as feed:
            async for _event in feed:
                break
