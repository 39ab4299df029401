"""FTP servers that lie or lack commands: REST answered 350 yet served from byte 0, no MDTM,
no REST, no SIZE, EPSV refused or garbled. The quirk lives in the server (pyftpdlib); no
file here has a NAME.md5, so nothing but the mirror's own checks stands between the server
and a wrong final file."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from conftest import make_tree
from pubmed_mirror import Event, FileRetrying, MirrorOptions, RetryPolicy, Timeouts, mirror
from pubmed_mirror._resume import OVERLAP
from pubmed_mirror.testing import Fault, FaultyFTPServer
from test_cli import run

BIG = "pubmed26n0001.xml.gz"
SIZE = 5_000_000
NOT_IMPLEMENTED = "502 Command not implemented."


def opts(**kwargs: object) -> MirrorOptions:
    kwargs.setdefault("retry", RetryPolicy(attempts=4, base=0.05, cap=0.2))
    kwargs.setdefault("timeouts", Timeouts(connect=5, stall=5))
    kwargs.setdefault("concurrency", 1)
    kwargs.setdefault("split_min", None)
    return MirrorOptions(**kwargs)  # type: ignore[arg-type]


@pytest.fixture
def remote(tmp_path: Path) -> tuple[Path, dict[str, bytes]]:
    root = tmp_path / "remote"
    return root, make_tree(root, [SIZE, 200_000])


async def test_rest_ignored_once_is_caught_and_the_file_fetched_from_zero(
        remote: tuple[Path, dict[str, bytes]], dest: Path) -> None:
    """A retry whose REST is answered 350 but served from byte 0 is caught by the overlap it
    asks for again, and the file comes whole from 0: never the file's head spliced in."""
    root, files = remote
    with FaultyFTPServer(root) as server:
        server.faults.add(BIG, Fault(kind="close_426", after_bytes=1_000_000),
                          Fault(kind="close_426", after_bytes=3_000_000, ignore_rest=True))
        report = await mirror(server.url, dest, opts())
        stats = server.stats
    assert report.ok, report.failed
    assert (dest / BIG).read_bytes() == files[BIG]
    # the resume asked OVERLAP bytes early; once caught, no REST any more: from 0
    assert stats.rest_offsets[BIG] == [0, 1_000_000 - OVERLAP, 0]


async def test_rest_always_ignored_with_split_gives_the_right_file(
        remote: tuple[Path, dict[str, bytes]], dest: Path) -> None:
    """A server that ignores every REST, with tail splitting on: caught at the first
    segment or resume, the run stops resuming and splitting, and the file is right."""
    root, files = remote
    with FaultyFTPServer(root, rate_per_connection=2_000_000) as server:
        server.faults.add(BIG, Fault(kind="close_426", after_bytes=1_000_000),
                          *[Fault(kind="none", ignore_rest=True)] * 20)
        report = await mirror(server.url, dest, opts(concurrency=4, split_min=1_000_000))
        stats = server.stats
    assert report.ok, report.failed
    assert (dest / BIG).read_bytes() == files[BIG]
    assert stats.rest_offsets[BIG][-1] == 0  # the last, complete RETR was whole
    assert not list(dest.glob("*.part"))


async def test_segment_served_from_zero_is_never_stitched(
        remote: tuple[Path, dict[str, bytes]], dest: Path) -> None:
    """A segment's REST answered 350 and served from byte 0 (only that one): the stitch
    sees the file's first bytes where the segment should start, and the file comes whole."""
    root, files = remote
    with FaultyFTPServer(root, rate_per_connection=1_500_000) as server:
        server.faults.add(BIG, Fault(kind="none"), Fault(kind="none", ignore_rest=True))
        report = await mirror(server.url, dest, opts(concurrency=4, split_min=1_000_000))
        stats = server.stats
    assert report.ok, report.failed
    assert (dest / BIG).read_bytes() == files[BIG]
    offsets = stats.rest_offsets[BIG]
    assert offsets[0] == 0 and offsets[1] > 0 and offsets[-1] == 0, offsets


@pytest.mark.parametrize("replies", [
    {"MDTM": NOT_IMPLEMENTED, "MLST": "500 Command not understood."},
    {"MDTM": NOT_IMPLEMENTED},  # MLST's modify fact tells the new version
], ids=["no-time-at-all", "mlst-only"])
@pytest.mark.parametrize("disable_mlsd", [False, True], ids=["mlsd", "list-only"])
async def test_file_replaced_during_a_stall_without_mdtm_is_not_spliced(
        remote: tuple[Path, dict[str, bytes]], dest: Path, replies: dict[str, str],
        disable_mlsd: bool) -> None:
    """A file replaced (same size, same first MB, new rest) while its transfer stalls, on a
    server without MDTM: the retry cannot confirm the version, so it starts from 0."""
    root, files = remote
    new = files[BIG][:2_000_000] + bytes(b ^ 0x5A for b in files[BIG][2_000_000:])

    def replace_on_retry(event: Event) -> None:
        if isinstance(event, FileRetrying) and event.name == BIG:
            (root / BIG).write_bytes(new)
            stamp = time.time() + 120
            os.utime(root / BIG, (stamp, stamp))

    if disable_mlsd:
        replies = {**replies, "MLST": "500 Command not understood."}
    with FaultyFTPServer(root, replies=replies, disable_mlsd=disable_mlsd) as server:
        server.faults.add(BIG, Fault(kind="stall", after_bytes=2_500_000, stall_seconds=3))
        report = await mirror(server.url, dest,
                              opts(timeouts=Timeouts(connect=5, stall=0.5)),
                              on_event=replace_on_retry)
        stats = server.stats
    assert report.ok, report.failed
    assert (dest / BIG).read_bytes() == new
    assert stats.rest_offsets[BIG] == [0, 0]


@pytest.mark.parametrize("reply", [NOT_IMPLEMENTED, "500 Command not understood.",
                                   "504 Command not implemented for that parameter."])
async def test_server_without_rest_restarts_from_zero(remote: tuple[Path, dict[str, bytes]],
                                                      dest: Path, reply: str) -> None:
    """A drop, then REST refused (500/502/504): the file is fetched again from 0 instead of
    failing, and the run does not ask REST again."""
    root, files = remote
    with FaultyFTPServer(root, replies={"REST": reply}) as server:
        server.faults.add(BIG, Fault(kind="close_426", after_bytes=1_000_000),
                          Fault(kind="close_426", after_bytes=2_000_000))
        report = await mirror(server.url, dest, opts())
        stats = server.stats
    assert report.ok, report.failed
    assert (dest / BIG).read_bytes() == files[BIG]
    # drop; REST refused (no RETR); from 0: drop; from 0 (no REST tried again): whole
    assert stats.rest_offsets[BIG] == [0, 0, 0]
    assert not list(dest.glob("*.part"))


def test_part_left_on_a_server_without_rest_does_not_fail_every_run(
        remote: tuple[Path, dict[str, bytes]], dest: Path) -> None:
    """The installed command, against a server without REST, after a run that left a part:
    the next run fetches the file from 0 and exits 0."""
    root, files = remote
    with FaultyFTPServer(root, replies={"REST": NOT_IMPLEMENTED}) as server:
        server.faults.add(BIG, *[Fault(kind="close_426", after_bytes=1_000_000)] * 2)
        first = run("mirror", server.url, "--dest", str(dest), "--retries", "0", "-q")
        assert first.returncode == 1 and (dest / f"{BIG}.part").exists(), first.stderr
        second = run("mirror", server.url, "--dest", str(dest), "--retries", "2")
    assert second.returncode == 0, second.stderr
    assert (dest / BIG).read_bytes() == files[BIG]


@pytest.mark.parametrize("refuse_mdtm", [False, True])
async def test_list_only_server_without_size_falls_back(
        remote: tuple[Path, dict[str, bytes]], dest: Path, refuse_mdtm: bool) -> None:
    """A LIST-only server without SIZE (and MLST): after a drop the retry cannot ask the
    size, which is no reason to fail the file: it is fetched from 0 at the listed size."""
    root, files = remote
    replies = {"SIZE": NOT_IMPLEMENTED, **({"MDTM": NOT_IMPLEMENTED} if refuse_mdtm else {})}
    with FaultyFTPServer(root, disable_mlsd=True, replies=replies) as server:
        for name in files:
            server.faults.add(name, Fault(kind="close_426", after_bytes=100_000))
        report = await mirror(server.url, dest, opts())
    assert report.ok, report.failed
    for name, data in files.items():
        assert (dest / name).read_bytes() == data


@pytest.mark.parametrize("epsv", ["522 Network protocol not supported, use (1)",
                                  "229 Entering extended passive mode (garbage)",
                                  NOT_IMPLEMENTED])
def test_epsv_refused_or_garbled_falls_back_to_pasv(remote: tuple[Path, dict[str, bytes]],
                                                    dest: Path, epsv: str) -> None:
    """EPSV refused with any code, or answered with no port in it: the installed command
    goes on with PASV and mirrors everything."""
    root, files = remote
    with FaultyFTPServer(root, replies={"EPSV": epsv}) as server:
        result = run("mirror", server.url, "--dest", str(dest), "--concurrency", "2")
    assert result.returncode == 0, result.stderr
    for name, data in files.items():
        assert (dest / name).read_bytes() == data
