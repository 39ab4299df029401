"""The tail: idle sessions split a large file still being received (REST-offset segments),
against pyftpdlib on 127.0.0.1 with faults injected in the server."""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path

import anyio
import pytest

from conftest import assert_mirrored, make_tree, rest_at
from pubmed_mirror import (
    FileProgress,
    MirrorOptions,
    RetryPolicy,
    Timeouts,
    mirror,
    plan_mirror,
)
from pubmed_mirror._resume import OVERLAP
from pubmed_mirror.testing import Fault, FaultyFTPServer
from test_cli import run

BIG = "pubmed26n0001.xml.gz"
SIZES = [6_000_000, 100_000, 120_000, 90_000]
RATE = 1_500_000  # bytes/s per data connection: BIG alone takes 4 s on one
NOT_NOW = Fault(kind="reset", after_bytes=10**9)  # spent on a RETR that ends before it


def opts(**kwargs: object) -> MirrorOptions:
    kwargs.setdefault("retry", RetryPolicy(attempts=4, base=0.05, cap=0.2))
    kwargs.setdefault("timeouts", Timeouts(connect=5, stall=5))
    kwargs.setdefault("concurrency", 4)
    kwargs.setdefault("split_min", 1_000_000)
    return MirrorOptions(**kwargs)  # type: ignore[arg-type]


@pytest.fixture
def files(tmp_path: Path) -> dict[str, bytes]:
    root = tmp_path / "remote"
    files = make_tree(root, SIZES)
    for name, data in list(files.items()):  # NCBI's checksum files, checked by the mirror
        line = f"MD5({name})= {hashlib.md5(data).hexdigest()}\n".encode()
        (root / f"{name}.md5").write_bytes(line)
        files[f"{name}.md5"] = line
    return files


@pytest.fixture
def server(tmp_path: Path, files: dict[str, bytes]) -> FaultyFTPServer:
    with FaultyFTPServer(tmp_path / "remote", rate_per_connection=RATE) as ftpd:
        yield ftpd


def segments(dest: Path) -> dict[int, bytes]:
    folder = dest / ".pubmed-mirror" / "segments"
    found = folder.iterdir() if folder.exists() else []
    return {int(p.name.rsplit(".", 1)[1]): p.read_bytes() for p in found}


def boundaries(offsets: list[int]) -> list[int]:
    return sorted(set(offsets))


async def test_idle_sessions_split_the_last_large_file(server: FaultyFTPServer,
                                                       files: dict[str, bytes],
                                                       dest: Path) -> None:
    """With the small files done, the other sessions take over halves of BIG: more RETRs
    at REST offsets inside it, within the connection cap, stitched and MD5-checked whole."""
    report = await mirror(server.url, dest, opts())
    assert report.ok, report.failed
    assert_mirrored(dest, files)
    assert segments(dest) == {}
    stats = server.stats
    offsets = stats.rest_offsets[BIG]
    assert offsets[0] == 0 and len(offsets) >= 3, offsets
    assert boundaries(offsets) == sorted(offsets)  # each byte range asked for once
    assert stats.max_concurrent <= 4
    done = {f.name: f for f in report.done}
    assert done[BIG].received == SIZES[0] and done[BIG].md5 is not None
    assert done[BIG].attempts == 1


async def test_no_split_when_turned_off(server: FaultyFTPServer, files: dict[str, bytes],
                                        dest: Path) -> None:
    """split_min=None: BIG is asked for once, from 0."""
    report = await mirror(server.url, dest, opts(split_min=None))
    assert report.ok
    assert_mirrored(dest, files)
    assert server.stats.rest_offsets[BIG] == [0]


async def test_no_split_with_one_session(server: FaultyFTPServer, files: dict[str, bytes],
                                         dest: Path) -> None:
    """With one session there is no idle one to split with: BIG is asked for once."""
    report = await mirror(server.url, dest, opts(concurrency=1, include=(BIG,)))
    assert report.ok and server.stats.rest_offsets[BIG] == [0]


async def test_a_reset_segment_resumes_inside_itself(server: FaultyFTPServer,
                                                     files: dict[str, bytes],
                                                     dest: Path) -> None:
    """The first helper's RETR is reset after 300 kB: it is resumed (a REST inside its
    segment), never started again from the segment's start or from 0."""
    server.faults.add(BIG, NOT_NOW, Fault(kind="reset", after_bytes=300_000))
    report = await mirror(server.url, dest, opts())
    assert report.ok, report.failed
    assert_mirrored(dest, files)
    offsets = server.stats.rest_offsets[BIG]
    assert offsets.count(0) == 1
    assert len(offsets) == len(set(offsets))  # no range asked for twice from its start
    first_helper = offsets[1]
    assert any(first_helper < o <= first_helper + 300_000 for o in offsets[2:]), offsets
    assert sum(server.stats.bytes_sent.values()) < sum(len(d) for d in files.values()) * 1.5


async def test_a_corrupt_segment_fails_the_whole_md5_and_is_fetched_again(
        server: FaultyFTPServer, files: dict[str, bytes], dest: Path) -> None:
    """A flipped byte in a helper's segment fails the whole file's MD5: it comes again."""
    server.faults.add(BIG, NOT_NOW, Fault(kind="corrupt", after_bytes=1000))
    report = await mirror(server.url, dest, opts())
    assert report.ok, report.failed
    assert_mirrored(dest, files)
    assert server.stats.rest_offsets[BIG].count(0) == 2  # the whole file, once more
    assert segments(dest) == {}


async def test_a_helper_that_gives_up_leaves_its_segment_to_the_owner(
        server: FaultyFTPServer, files: dict[str, bytes], dest: Path) -> None:
    """A permanent reply to a helper's RETR: the file's own session fetches that segment."""
    server.faults.add(BIG, NOT_NOW, Fault(kind="reply", reply="550 Injected for the helper"))
    report = await mirror(server.url, dest, opts())
    assert report.ok, report.failed
    assert_mirrored(dest, files)
    helper = server.stats.rest_offsets[BIG][1]
    assert server.stats.rest_offsets[BIG].count(helper) == 2


async def test_interrupted_tail_resumes_every_segment(server: FaultyFTPServer,
                                                      files: dict[str, bytes],
                                                      dest: Path) -> None:
    """Cancelled while split, NAME.part and every segment file are exact prefixes of their
    ranges; the next run resumes each where it ended and receives exactly what is missing."""
    async with anyio.create_task_group() as tg:
        async def run() -> None:
            await mirror(server.url, dest, opts())
            raise AssertionError("the mirror ended before it was cancelled")

        tg.start_soon(run)
        with anyio.fail_after(20):
            while sum(len(got) > 100_000 for got in segments(dest).values()) < 2:  # noqa: ASYNC110 (watching files)
                await anyio.sleep(0.02)  # cancel once two segments hold data
        tg.cancel_scope.cancel()
    data = files[BIG]
    part = (dest / (BIG + ".part")).read_bytes()
    assert part == data[: len(part)]
    kept = segments(dest)
    assert kept, "the cancel came before any split"
    for start, got in kept.items():
        assert got == data[start:start + len(got)], start
    have = len(part) + sum(len(got) for got in kept.values())
    before = len(server.stats.rest_offsets[BIG])

    report = await mirror(server.url, dest, opts(split_min=None))
    assert report.ok, report.failed
    assert_mirrored(dest, files)
    assert segments(dest) == {}
    rerun = server.stats.rest_offsets[BIG][before:]
    expected = {rest_at(len(part)),
                *(start + len(got) - min(OVERLAP, len(got)) for start, got in kept.items())}
    expected -= {start for start in kept}  # an empty segment: asked for from its start
    assert expected <= set(rerun) | set(kept), (rerun, kept, len(part))
    done = {f.name: f for f in report.done}
    assert done[BIG].received == len(data) - have


def left_behind(tmp_path: Path, part: int, pieces: list[tuple[int, int]]
                ) -> tuple[Path, dict[str, bytes], Path]:
    """A 6 MB BIG on the server and what an interrupted run left of it in DEST: NAME.part
    with its first `part` bytes (and its record), and segment files holding data[a:b]."""
    root = tmp_path / "remote"
    files = make_tree(root, [6_000_000])
    data = files[BIG]
    os.utime(root / BIG, (1_700_000_000, 1_700_000_000))
    dest = tmp_path / "local"
    segments_dir = dest / ".pubmed-mirror" / "segments"
    segments_dir.mkdir(parents=True)
    (dest / f"{BIG}.part").write_bytes(data[:part])
    (dest / f"{BIG}.part.meta").write_text(
        json.dumps({"size": len(data), "mtime": 1_700_000_000.0, "started": time.time()}))
    for start, end in pieces:
        (segments_dir / f"{BIG}.part.{start}").write_bytes(data[start:end])
    return root, files, dest


@pytest.mark.parametrize("flag", [None, "--no-split"])
def test_the_command_splits_unless_told_not_to(tmp_path: Path, flag: str | None) -> None:
    """The installed command, default threshold (8 MiB left): a 12 MiB file behind three
    small ones is split over the freed sessions; `--no-split` asks for it once."""
    root = tmp_path / "remote"
    files = make_tree(root, [12 << 20, 200_000, 300_000, 100_000])
    with FaultyFTPServer(root) as ftpd:
        result = run("mirror", ftpd.url, "--dest", str(tmp_path / "local"), "--rate-limit",
                     "8M", "-q", *([flag] if flag else []))
        offsets = ftpd.stats.rest_offsets[BIG]
    assert result.returncode == 0, result.stderr
    assert_mirrored(tmp_path / "local", files)
    if flag:
        assert offsets == [0]
    else:
        assert offsets[0] == 0 and len(offsets) >= 2 and all(o >= 4 << 20 for o in offsets[1:])


async def test_segments_left_on_disk_are_resumed_each_at_its_end(tmp_path: Path) -> None:
    """A part complete up to the first segment, and two segments part-way: the run asks
    only for the missing bytes of each segment (REST at each one's end, less the overlap it
    compares) and none for the part."""
    root, files, dest = left_behind(tmp_path, 2_000_000,
                                    [(2_000_000, 3_000_000), (4_000_000, 4_500_000)])
    data = files[BIG]
    with FaultyFTPServer(root) as ftpd:
        plan = await plan_mirror(ftpd.url, dest, opts(split_min=None))
        assert [(f.name, f.have) for f in plan.files] == [(BIG, 3_500_000)]  # dry run's view
        report = await mirror(ftpd.url, dest, opts(split_min=None))
        offsets = ftpd.stats.rest_offsets[BIG]
    assert report.ok, report.failed
    assert_mirrored(dest, files)
    assert sorted(offsets) == [3_000_000 - OVERLAP, 4_500_000 - OVERLAP]
    assert report.done[0].received == len(data) - 3_500_000
    assert segments(dest) == {}


async def test_a_file_replaced_during_a_split_is_never_spliced(tmp_path: Path,
                                                               dest: Path) -> None:
    """No NAME.md5 to catch it: BIG is replaced on the server (same size, new mtime) once
    its first RETR is streaming, before the small files (0.5 s each) free the sessions that
    split it. Their RETRs would read the new version: SIZE/MDTM before each tells, and the
    file ends up wholly the new version, never half of each."""
    root = tmp_path / "remote"
    files = make_tree(root, [6_000_000, 750_000, 750_000, 750_000])
    os.utime(root / BIG, (1_700_000_000, 1_700_000_000))
    newer = bytes(reversed(files[BIG]))
    (tmp_path / "newer").write_bytes(newer)
    os.utime(tmp_path / "newer", (1_700_000_100, 1_700_000_100))
    replaced: list[bool] = []

    def on_event(event: object) -> None:
        if isinstance(event, FileProgress) and event.name == BIG and not replaced:
            os.replace(tmp_path / "newer", root / BIG)  # the open RETR keeps the old inode
            replaced.append(True)

    with FaultyFTPServer(root, rate_per_connection=RATE) as ftpd:
        report = await mirror(ftpd.url, dest, opts(), on_event=on_event)
        offsets = ftpd.stats.rest_offsets[BIG]
    assert replaced and report.ok, report.failed
    assert (dest / BIG).read_bytes() == newer
    assert offsets.count(0) == 2, offsets  # fetched again from 0, once the change was seen


async def test_a_segment_the_server_refuses_makes_the_file_come_whole(
        server: FaultyFTPServer, files: dict[str, bytes], dest: Path) -> None:
    """One helper (2 sessions), one split (each half is under split_min): the helper's RETR
    and then the owner's are refused with a 5xx; the file is fetched again from 0 without
    splitting, and arrives."""
    server.faults.add(BIG, NOT_NOW, Fault(kind="reply", reply="550 Injected"),
                      Fault(kind="reply", reply="550 Injected again"))
    report = await mirror(server.url, dest, opts(concurrency=2, split_min=4_000_000))
    assert report.ok, report.failed
    assert_mirrored(dest, files)
    offsets = server.stats.rest_offsets[BIG]
    assert offsets[0] == 0 and offsets[1] == offsets[2] > 0 and offsets[3:] == [0], offsets
    assert segments(dest) == {}


async def test_a_stitch_cut_short_by_a_crash_is_redone(tmp_path: Path) -> None:
    """NAME.part holds its span and 300 kB of the next segment's bytes (a crash while
    appending it): the part is cut back to the segment's start and the segment resumed."""
    root, files, dest = left_behind(tmp_path, 2_300_000, [(2_000_000, 3_000_000)])
    with FaultyFTPServer(root) as ftpd:
        report = await mirror(ftpd.url, dest, opts(split_min=None))
        offsets = ftpd.stats.rest_offsets[BIG]
    assert report.ok, report.failed
    assert_mirrored(dest, files)
    assert offsets == [3_000_000 - OVERLAP]
