"""Web servers that lie: answers of another version (a Content-Range total, a Content-Length,
a validator that is not the part's), encodings nobody asked for, listings that trickle, pages
that are not indexes. Faults are injected in the server (`webfaults`); every body path is
covered: plain HTTP spliced or copied into the part, and HTTPS decrypted into it."""

from __future__ import annotations

import functools
import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import anyio
import pytest
from aiohttp import web

from conftest import rest_at
from pubmed_mirror import MirrorOptions, RetryPolicy, Timeouts, mirror
from pubmed_mirror._source import HttpSource
from pubmed_mirror._transfer import part_path
from pubmed_mirror.testing import FaultyFTPServer
from test_cli import command, run
from test_trees import landed
from webfaults import (
    BodyToHeadServer,
    FaultyWebServer,
    TricklingWebServer,
    UnmarkedWebServer,
    WebFault,
    served_app,
)

Tree = tuple[Path, dict[str, bytes]]
BIG = "pubmed26n0001.xml.gz"
DROP = 1_000_000  # where the first GET of a test is cut

# (scheme, splice): plain HTTP spliced, plain HTTP copied (recv_into), HTTPS (recv_into, TLS)
PATHS = [("http", True), ("http", False), ("https", True)]
PATH_IDS = ["http-splice", "http-recv", "https"]


def _data(seed: str, size: int) -> bytes:
    block = b"".join(hashlib.sha256(f"{seed}:{i}".encode()).digest() for i in range(64))
    return (block * (size // len(block) + 1))[:size]


@pytest.fixture
def files(tmp_path: Path) -> Tree:
    """Two files without NAME.md5 (nothing but the transfer itself keeps them right),
    dated ten days ago on a minute boundary plus 5 s."""
    root = tmp_path / "web"
    root.mkdir()
    found = {BIG: _data("A", 3_000_001), "pubmed26n0002.xml.gz": _data("small", 200_000)}
    when = (int(time.time()) // 60 - 14_400) * 60 + 5
    for name, data in found.items():
        (root / name).write_bytes(data)
        os.utime(root / name, (when, when))
    return root, found


def _server(root: Path, scheme: str, certificate: tuple[Path, Path],
            **kwargs: Any) -> FaultyWebServer:
    return FaultyWebServer(root, tls=certificate if scheme == "https" else None, **kwargs)


def _source(server: FaultyWebServer, certificate: tuple[Path, Path]) -> HttpSource:
    return HttpSource.parse(server.url, ca_file=certificate[0] if server.tls else None)


def opts(**kwargs: Any) -> MirrorOptions:
    kwargs.setdefault("retry", RetryPolicy(attempts=6, base=0.02, cap=0.1))
    kwargs.setdefault("timeouts", Timeouts(connect=5, stall=5))
    kwargs.setdefault("include", (BIG,))
    return MirrorOptions(**kwargs)


# -- 10: a Content-Range of another version ---------------------------------------------------


@pytest.mark.parametrize(("scheme", "splice"), PATHS, ids=PATH_IDS)
async def test_a_range_of_another_version_is_never_appended(
        files: Tree, certificate: tuple[Path, Path], tmp_path: Path, scheme: str,
        splice: bool) -> None:
    """After a drop, a 206 for the range asked whose total is another version's is refused
    before any of its bytes reach the part: the file starts again from 0 and ends as the
    listed version, byte for byte."""
    root, data = files
    other = _data("B", len(data[BIG]) + 777)
    server = _server(root, scheme, certificate)
    server.add(BIG, WebFault("close", after=DROP), WebFault("version", data=other))
    async with server.running():
        report = await mirror(_source(server, certificate), tmp_path / "m",
                              opts(splice=splice))
    assert report.ok, report.failed
    assert (tmp_path / "m" / BIG).read_bytes() == data[BIG]
    assert server.stats.ranges[BIG] == [0, rest_at(DROP), 0]


# -- 11: a 200 whose length is not the file's size -------------------------------------------


@pytest.mark.parametrize(("scheme", "splice"), PATHS, ids=PATH_IDS)
async def test_a_whole_answer_of_another_size_is_never_skipped_into(
        files: Tree, certificate: tuple[Path, Path], tmp_path: Path, scheme: str,
        splice: bool) -> None:
    """A 200 to a Range whose Content-Length is not the listed size (another version, sent
    whole) is refused, never read past and appended: the final file is the listed one."""
    root, data = files
    other = _data("B", len(data[BIG]) - 200_000)
    server = _server(root, scheme, certificate)
    server.add(BIG, WebFault("close", after=DROP), WebFault("version_whole", data=other),
               WebFault("version_whole", data=other))
    async with server.running():
        report = await mirror(_source(server, certificate), tmp_path / "m",
                              opts(splice=splice))
    assert report.ok, report.failed
    assert (tmp_path / "m" / BIG).read_bytes() == data[BIG]
    assert server.stats.ranges[BIG][-1] == 0  # it was fetched again from the start


# -- 12: content-codings nobody asked for ---------------------------------------------------


@pytest.mark.parametrize(("scheme", "splice"), PATHS, ids=PATH_IDS)
@pytest.mark.parametrize("name", [BIG, "README.txt"])
async def test_an_encoded_answer_is_never_saved(files: Tree, certificate: tuple[Path, Path],
                                                tmp_path: Path, scheme: str, splice: bool,
                                                name: str) -> None:
    """A body gzip-encoded though identity was asked (for a .gz file and for a text file)
    never reaches the part: the answer is refused and asked again, and the final file is
    the file's own bytes."""
    root, data = files
    if name not in data:
        data[name] = ("Not a gzip file.\n" * 30_000).encode()
        (root / name).write_bytes(data[name])
        when = (root / BIG).stat().st_mtime  # not recent: the retry must not see it as new
        os.utime(root / name, (when, when))
    server = _server(root, scheme, certificate)
    server.add(name, WebFault("gzip"), WebFault("gzip"))
    async with server.running():
        report = await mirror(_source(server, certificate), tmp_path / "m",
                              opts(splice=splice, include=(name,)))
    assert report.ok, report.failed
    final = (tmp_path / "m" / name).read_bytes()
    assert final == data[name], final[:3].hex()


# -- 13: two versions spliced on resume -------------------------------------------------------


@pytest.mark.parametrize(("scheme", "splice"), PATHS, ids=PATH_IDS)
async def test_a_same_size_replacement_is_not_resumed_by_the_next_run(
        files: Tree, certificate: tuple[Path, Path], tmp_path: Path, scheme: str,
        splice: bool) -> None:
    """A run that failed leaves a part of version A; the server then has B, same size and
    the same listed minute: the next run resumes with If-Range, the server answers the
    whole of B, and the part starts again from 0 (the final file is B)."""
    root, data = files
    dest = tmp_path / "m"
    other = _data("B", len(data[BIG]))
    listed = (root / BIG).stat().st_mtime
    server = _server(root, scheme, certificate)
    server.add(BIG, WebFault("close", after=DROP))
    async with server.running():
        source = _source(server, certificate)
        first = await mirror(source, dest, opts(splice=splice, retry=RetryPolicy(attempts=1)))
        assert [f.name for f in first.failed] == [BIG]
        assert part_path(dest / BIG).stat().st_size == DROP
        (root / BIG).write_bytes(other)
        os.utime(root / BIG, (listed + 30, listed + 30))  # the same minute in the listing
        second = await mirror(source, dest, opts(splice=splice))
    assert second.ok, second.failed
    assert (dest / BIG).read_bytes() == other
    assert server.stats.if_ranges[BIG][1] is not None  # the resume said which version
    assert server.stats.ranges[BIG][-1] == 0


@pytest.mark.parametrize(("scheme", "splice"), PATHS, ids=PATH_IDS)
async def test_a_range_whose_validator_is_not_the_parts_is_refused(
        files: Tree, certificate: tuple[Path, Path], tmp_path: Path, scheme: str,
        splice: bool) -> None:
    """A server that honours Range but ignores If-Range answers a resume with a range of
    the new version (same size, same listed minute): its own ETag is not the one the part
    was started from, so nothing of it is kept and the file starts again from 0."""
    root, data = files
    dest = tmp_path / "m"
    other = _data("B", len(data[BIG]))
    listed = (root / BIG).stat().st_mtime
    server = _server(root, scheme, certificate)
    server.add(BIG, WebFault("close", after=DROP), WebFault("ignore_if_range"))
    async with server.running():
        source = _source(server, certificate)
        first = await mirror(source, dest, opts(splice=splice, retry=RetryPolicy(attempts=1)))
        assert [f.name for f in first.failed] == [BIG]
        (root / BIG).write_bytes(other)
        os.utime(root / BIG, (listed + 30, listed + 30))
        second = await mirror(source, dest, opts(splice=splice))
    assert second.ok, second.failed
    assert (dest / BIG).read_bytes() == other
    assert server.stats.statuses[1:] == [(BIG, 206), (BIG, 200)]  # the range, then from 0
    assert server.stats.ranges[BIG] == [0, rest_at(DROP), 0]


@pytest.mark.parametrize(("scheme", "splice"), PATHS, ids=PATH_IDS)
async def test_a_version_a_day_older_is_not_resumed_within_a_run(
        files: Tree, certificate: tuple[Path, Path], tmp_path: Path, scheme: str,
        splice: bool) -> None:
    """The file is replaced during a drop by a same-size version dated a day earlier: the
    retry does not take it for the part's version; it starts again from 0 (final: B)."""
    root, data = files
    other = _data("B", len(data[BIG]))
    earlier = (root / BIG).stat().st_mtime - 86_400
    server = _server(root, scheme, certificate)
    server.add(BIG, WebFault("close", after=DROP, replace=other, mtime=earlier))
    async with server.running():
        report = await mirror(_source(server, certificate), tmp_path / "m",
                              opts(splice=splice))
    assert report.ok, report.failed
    assert (tmp_path / "m" / BIG).read_bytes() == other
    assert server.stats.ranges[BIG][-1] == 0


async def test_a_head_without_last_modified_keeps_the_listed_time(files: Tree,
                                                                    tmp_path: Path) -> None:
    """A server with rounded sizes (asked with HEAD) that gives no Last-Modified and no
    ETag: the listed time still identifies the version, so a same-size file dated three
    days later is fetched from 0 (not resumed), and one dated later again is fetched (not
    reported up to date)."""
    root, data = files
    dest = tmp_path / "m"
    listed = (root / BIG).stat().st_mtime
    server = FaultyWebServer(root, rounded=True, validators=False)
    server.add(BIG, WebFault("close", after=DROP))
    versions = [_data("B", len(data[BIG])), _data("C", len(data[BIG]))]
    async with server.running():
        first = await mirror(server.url, dest, opts(retry=RetryPolicy(attempts=1)))
        assert [f.name for f in first.failed] == [BIG]
        for days, version in zip((3, 6), versions, strict=True):
            (root / BIG).write_bytes(version)
            os.utime(root / BIG, (listed + days * 86_400, listed + days * 86_400))
            again = await mirror(server.url, dest, opts())
            assert [f.name for f in again.done] == [BIG], (days, again.files)
            assert (dest / BIG).read_bytes() == version, days
    assert server.stats.ranges[BIG] == [0, 0, 0]


async def test_links_spelled_to_escape_the_directory_are_warned_about(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A page linking `a%2Fb.xml`, `%2e%2e%2fesc.xml` and `..%2fesc2.xml` (names no file of
    the directory can have, spelled not to look like paths): each is skipped with a
    warning naming it (they went without a word), nothing lands outside DEST, and the
    page's plain file lands."""
    root = tmp_path / "web"
    root.mkdir()
    (root / "good.xml").write_bytes(b"good\n")
    odd = ["a%2Fb.xml", "%2e%2e%2fesc.xml", "..%2fesc2.xml"]
    links = "".join(f'<a href="{h}">{h}</a>\n' for h in [*odd, "good.xml"])
    page = f"<html><head><title>Index of /pubmed/</title></head><body><pre>{links}</pre>"
    server = FaultyWebServer(root, page=page)
    dest = tmp_path / "m"
    async with server.running():
        report = await mirror(server.url, dest, opts(include=()))
    assert [f.name for f in report.done] == ["good.xml"], report.files
    warned = [r.getMessage() for r in caplog.records if "skipping link" in r.getMessage()]
    assert len(warned) == 3 and all(any(h in w for w in warned) for h in odd), warned
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m", "web"]


async def test_a_page_newer_than_its_heads_is_not_vouched_for(tmp_path: Path) -> None:
    """A server whose page shows a file's new time while its HEAD still answers the old
    size, time and ETag (a stale stat cache, as lighttpd's for a second): the record cannot
    vouch for the file. One with a NAME.md5 is checked against it (read afresh) and fetched
    again; one without is fetched again. Both end as the server's new bytes, exit 0; the
    code before kept both old copies and said they were up to date."""
    root = tmp_path / "web"
    root.mkdir()
    checked, plain = "pubmed26n0001.xml.gz", "pubmed26n0002.xml.gz"
    when = (int(time.time()) // 60 - 14_400) * 60 + 5
    new = {checked: _data("new", 300_000), plain: _data("new2", 200_000)}
    for name, data in {checked: _data("old", 300_000), plain: _data("old2", 200_000)}.items():
        (root / name).write_bytes(data)
        os.utime(root / name, (when, when))
    (root / f"{checked}.md5").write_text(
        f"MD5({checked})= {hashlib.md5((root / checked).read_bytes()).hexdigest()}\n")
    dest = tmp_path / "m"
    server = FaultyWebServer(root, rounded=True, stale_heads=True)
    async with server.running():
        first = await mirror(server.url, dest, opts(include=()))
        assert first.ok and len(first.done) == 2, first.files
        for name, data in new.items():  # same sizes, dated an hour later
            (root / name).write_bytes(data)
            os.utime(root / name, (when + 3600, when + 3600))
        (root / f"{checked}.md5").write_text(
            f"MD5({checked})= {hashlib.md5(new[checked]).hexdigest()}\n")
        again = await mirror(server.url, dest, opts(include=()))
    assert again.ok, again.files
    assert sorted(f.name for f in again.done) == [checked, plain], again.files
    assert {name: (dest / name).read_bytes() for name in new} == new


# -- 14: listings that trickle --------------------------------------------------------------


@pytest.mark.parametrize("part", ["head", "body"])
@pytest.mark.parametrize("tls", [False, True], ids=["http", "https"])
async def test_a_trickling_listing_is_bounded(certificate: tuple[Path, Path], part: str,
                                              tls: bool) -> None:
    """A listing whose headers trickle in a byte at a time fails after the stall timeout
    (headers are not progress); one whose page trickles fails at the whole-listing deadline
    (ten stall timeouts): exit 1 with one line, never a listing held for as long as the
    server likes."""
    server = TricklingWebServer(part=part, interval=0.25, length=100,
                                tls=certificate if tls else None)
    async with server.running():
        trust = ["--ca-file", str(certificate[0])] if tls else []
        start = time.monotonic()
        done = await anyio.to_thread.run_sync(functools.partial(
            run, "ls", server.url, "--stall-timeout", "1", "--retries", "0", *trust))
        elapsed = time.monotonic() - start
    assert done.returncode == 1, (done.stdout, done.stderr)
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    if part == "head":  # the trickle would take 25 s; the bound leaves room for a loaded
        assert elapsed < 12, elapsed  # machine's process start-up (6.9 s seen in one run)
        assert "no answer" in done.stderr, done.stderr
    else:
        assert 9 < elapsed < 16, elapsed
        assert "not complete within 10 s" in done.stderr, done.stderr


def test_a_trickling_ftp_listing_is_bounded(tmp_path: Path) -> None:
    """An FTP listing that arrives at 40 bytes/s (never a stall) fails at the whole-listing
    deadline, ten stall timeouts, with one line."""
    (tmp_path / "remote").mkdir()
    lines = [f"-rw-r--r-- 1 ftp ftp {1000 + i} Nov 29  2026 pubmed26n{i:04d}.xml.gz"
             for i in range(40)]
    with FaultyFTPServer(tmp_path / "remote", list_lines=lines,
                         rate_per_connection=40) as server:
        start = time.monotonic()
        done = run("ls", server.url, "--stall-timeout", "1", "--retries", "0")
        elapsed = time.monotonic() - start
    assert done.returncode == 1, (done.stdout, done.stderr)
    assert 9 < elapsed < 16, elapsed
    assert "not complete within 10 s" in done.stderr, done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr


@pytest.mark.parametrize(("status", "said"), [
    ("403 Forbidden", "answered 403 Forbidden"),
    ("407 Proxy Authentication Required", "demands credentials")])
async def test_a_refusal_with_a_body_after_head_is_not_retried(status: str,
                                                               said: str) -> None:
    """A refusal whose answer to HEAD carries a body after `Connection: close` (which
    aiohttp cannot parse) is classified by its status line: exit 1 with one line naming
    it, after the HEAD and one more asking what it said, never retried."""
    server = BodyToHeadServer(status)
    async with server.running():
        done = await anyio.to_thread.run_sync(run, "ls", server.url, "--retries", "2")
    assert done.returncode == 1, (done.stdout, done.stderr)
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert said in done.stderr, done.stderr
    assert server.requests == ["HEAD /pubmed/ HTTP/1.1"] * 2, server.requests


# -- 15: pages that are not indexes, a huge index ---------------------------------------------

LOGIN = ("<!DOCTYPE html><html><head><title>Sign in</title></head><body><h1>Sign in</h1>"
         '<form action="session" method="post"><input name="user"><input name="password">'
         '</form><a href="forgot-password.html">Forgot your password?</a> '
         '<a href="register">Register</a> <a href="terms.pdf">Terms</a> 2026-01-01 10:00 1234'
         "</body></html>")
WELCOME = ("<html><head><title>Welcome</title></head><body><h1>It works!</h1>"
           "<p>This is the default page.</p></body></html>")


@pytest.mark.parametrize("page", [LOGIN, WELCOME], ids=["login", "welcome"])
async def test_a_page_that_is_not_an_index_fails(tmp_path: Path, page: str) -> None:
    """An HTML page that is not a directory index (a login page with links, a welcome page
    without) is not a listing: `ls` and `mirror` exit 1 with one line saying so, and nothing
    is fetched or written."""
    server = FaultyWebServer(tmp_path, page=page)
    dest = tmp_path / "m"
    async with server.running():
        listed = await anyio.to_thread.run_sync(run, "ls", server.url)
        mirrored = await anyio.to_thread.run_sync(run, "mirror", server.url, "--dest", str(dest))
    for done in (listed, mirrored):
        assert done.returncode == 1, (done.stdout, done.stderr)
        assert len(done.stderr.strip().splitlines()) == 1, done.stderr
        assert "not a directory index" in done.stderr, done.stderr
    assert server.stats.ranges == {}
    assert not dest.exists()


async def test_an_empty_index_is_an_empty_directory(tmp_path: Path) -> None:
    """A real index of an empty directory is a listing of nothing: exit 0."""
    (tmp_path / "web").mkdir()
    server = FaultyWebServer(tmp_path / "web")
    async with server.running():
        done = await anyio.to_thread.run_sync(run, "mirror", server.url, "--dest",
                                              str(tmp_path / "m"))
    assert done.returncode == 0, done.stderr


ENTRIES = 100_000
RSS_BOUND_MB = 150


def test_a_huge_index_dry_run_within_a_memory_bound(tmp_path: Path) -> None:
    """`mirror --dry-run` of an index of 100,000 entries plans every file and peaks under
    150 MB of RSS: the page, its parse and the plan are never all held at once (it measured
    99 MB here; the code before took over 55 s, and 850 MB for 300,000 entries)."""
    script = tmp_path / "serve.py"
    script.write_text(_BIG_SERVER)
    (tmp_path / "web").mkdir()
    server = subprocess.Popen([sys.executable, str(script), str(ENTRIES), str(tmp_path / "web")],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout is not None
        url = server.stdout.readline().strip()
        done = subprocess.run([sys.executable, "-c", _PEAK_RSS, *command(), "mirror", url,
                               "--dest", str(tmp_path / "m"), "--dry-run"],
                              capture_output=True, text=True, timeout=55, check=False)
    finally:
        server.terminate()
        server.wait(5)
        if server.stdout is not None:
            server.stdout.close()
    assert done.returncode == 0, done.stderr
    assert f"would fetch up to {ENTRIES} files" in done.stdout
    assert f"pubmed26n{ENTRIES - 1:06d}.xml.gz" in done.stdout
    peak_mb = int(done.stderr.split()[-1]) / 1024
    print(f"mirror --dry-run of {ENTRIES:,} entries: peak RSS {peak_mb:.0f} MB")
    assert peak_mb < RSS_BOUND_MB


# runs the command as its only child and prints the child's peak RSS (KiB) on stderr
_PEAK_RSS = ("import resource, subprocess, sys; code = subprocess.run(sys.argv[1:]).returncode; "
             "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, file=sys.stderr); "
             "sys.exit(code)")

# the fault server in a process of its own, listing N entries that have no files
_BIG_SERVER = f"""
import asyncio, pathlib, sys
sys.path.insert(0, {str(Path(__file__).parent)!r})
from webfaults import FaultyWebServer

async def main(count, root):
    names = [f"pubmed26n{{i:06d}}.xml.gz" for i in range(count)]
    server = FaultyWebServer(pathlib.Path(root), extra_names=names)
    async with server.running():
        print(server.url, flush=True)
        await asyncio.sleep(600)

asyncio.run(main(int(sys.argv[1]), sys.argv[2]))
"""


@pytest.mark.parametrize(("scheme", "splice"), PATHS, ids=PATH_IDS)
async def test_a_split_file_replaced_on_the_server_starts_again(
        files: Tree, certificate: tuple[Path, Path], tmp_path: Path, scheme: str,
        splice: bool) -> None:
    """A file split over two sessions (checked by its NAME.md5) is replaced on the server
    when its second half is asked for: that answer (to If-Range) is the whole new version,
    so the part and its segments start again from 0, and the file ends as the new
    version, within the run and within a few seconds."""
    root, data = files
    (root / f"{BIG}.md5").write_text(f"MD5({BIG})= {hashlib.md5(data[BIG]).hexdigest()}\n")
    other = _data("B", len(data[BIG]))
    server = _server(root, scheme, certificate, rate=1 << 20)
    server.add(BIG, WebFault("ok"), WebFault("new_version", data=other))
    async with server.running():
        start = anyio.current_time()
        report = await mirror(_source(server, certificate), tmp_path / "m",
                              opts(splice=splice, concurrency=2, split_min=1 << 20))
        elapsed = anyio.current_time() - start
    assert report.ok, report.failed
    assert (tmp_path / "m" / BIG).read_bytes() == other
    assert server.stats.if_ranges[BIG][1] is not None  # the segment named the part's version
    assert server.stats.ranges[BIG].count(0) >= 2  # the part started again
    assert elapsed < 15, elapsed


async def test_small_file_cut_by_its_deadline_is_resumed_by_the_next_run(
        tmp_path: Path) -> None:
    """A small file (received into memory) whose whole-file deadline ends its fetch keeps
    what arrived as NAME.part: the next run asks only for the rest and completes."""
    root = tmp_path / "web"
    root.mkdir()
    data = _data("slow", 200_000)
    (root / "f.bin").write_bytes(data)
    os.utime(root / "f.bin", (time.time() - 86_400,) * 2)
    server = FaultyWebServer(root, rate=80_000)
    options = MirrorOptions(retry=RetryPolicy(attempts=1),
                            timeouts=Timeouts(connect=5, stall=5, file=1.5))
    async with server.running():
        first = await mirror(server.url, tmp_path / "m", options)
        assert not first.ok
        kept = part_path(tmp_path / "m" / "f.bin").stat().st_size
        assert 0 < kept < len(data)
        second = await mirror(server.url, tmp_path / "m", options)
    assert second.ok, second.failed
    assert (tmp_path / "m" / "f.bin").read_bytes() == data
    ranges = server.stats.ranges["f.bin"]
    assert len(ranges) == 2 and ranges[0] == 0 and 0 < ranges[1] <= kept


async def test_small_file_started_again_keeps_what_its_next_attempt_received(
        tmp_path: Path) -> None:
    """A part of a version the server no longer serves is thrown away and the file fetched
    again from 0; when that fetch is cut, what it received is resumed, not thrown away too."""
    root = tmp_path / "web"
    root.mkdir()
    old, new = _data("old", 100_000), _data("new", 100_000)
    when = (int(time.time()) // 60 - 1_440) * 60  # a minute's start, a day ago
    (root / "f.bin").write_bytes(old)
    os.utime(root / "f.bin", (when, when))
    server = FaultyWebServer(root)
    server.add("f.bin", WebFault("close", after=60_000))
    options = MirrorOptions(retry=RetryPolicy(attempts=5, base=0.05, cap=0.2),
                            timeouts=Timeouts(connect=5, stall=5))
    async with server.running():
        first = await mirror(server.url, tmp_path / "m",
                             MirrorOptions(retry=RetryPolicy(attempts=1),
                                           timeouts=options.timeouts))
        assert not first.ok
        (root / "f.bin").write_bytes(new)  # the same size, listed in the same minute
        os.utime(root / "f.bin", (when + 1, when + 1))
        server.add("f.bin", WebFault("ok"), WebFault("close", after=60_000))
        second = await mirror(server.url, tmp_path / "m", options)
    assert second.ok, second.failed
    assert (tmp_path / "m" / "f.bin").read_bytes() == new
    ranges = server.stats.ranges["f.bin"]
    assert ranges[:3] == [0, ranges[1], 0] and ranges[1] > 0, ranges  # resumed, refused
    assert len(ranges) == 4 and ranges[3] > 0, ranges  # the last resumes after 60,000


async def test_names_a_page_does_not_mark_are_settled_by_head(tmp_path: Path) -> None:
    """A page linking `.`, `..` and its subdirectories without `/` (mini_httpd's way): a
    name whose HEAD redirects to `NAME/` on this server is a directory, entered with
    --recursive; one whose HEAD fails (500) or redirects to no URL (port 99999) is taken
    for a file, with a warning, and fetched as one: the tree lands, exit 0."""
    files = {"a.xml": b"a\n", "busy.xml": b"busy\n", "odd": b"odd\n", "sub/in.xml": b"in\n"}
    server = UnmarkedWebServer(files, heads={
        "busy.xml": (500, None), "odd": (302, "http://127.0.0.1:99999/d/odd/")})
    async with server.running():
        done = await anyio.to_thread.run_sync(run, "mirror", server.url, "--dest",
                                              str(tmp_path / "m"), "--recursive",
                                              "--retries", "1")
    assert done.returncode == 0, done.stdout + done.stderr
    assert landed(tmp_path / "m") == files
    assert "busy.xml: taken for a file" in done.stderr
    assert "odd: taken for a file" in done.stderr


async def test_a_mirrored_directory_head_cannot_tell_keeps_its_files(tmp_path: Path) -> None:
    """A directory mirrored before whose HEAD now fails (500) is not taken for a file
    whose tree is gone: it is a directory that could not be listed. The run fails naming
    it, and --delete keeps its files; once its HEAD answers again, the run is whole."""
    files = {"a.xml": b"a\n", "b.xml": b"b\n", "sub/in.xml": b"in\n", "sub/two.xml": b"2\n"}
    server = UnmarkedWebServer(files)
    dest = tmp_path / "m"
    async with server.running():
        args = ("mirror", server.url, "--dest", str(dest), "--recursive", "--delete",
                "--retries", "1")
        first = await anyio.to_thread.run_sync(functools.partial(run, *args))
        server.heads["sub"] = (500, None)
        failing = await anyio.to_thread.run_sync(functools.partial(run, *args))
        kept = landed(dest)
        server.heads.clear()
        healed = await anyio.to_thread.run_sync(functools.partial(run, *args))
    assert first.returncode == 0, first.stdout + first.stderr
    assert failing.returncode == 1, failing.stdout + failing.stderr
    assert "sub: taken for a directory that could not be listed" in failing.stderr
    assert kept == files and "deleted" not in failing.stdout
    assert healed.returncode == 0, healed.stdout + healed.stderr
    assert landed(dest) == files


async def test_the_heads_of_a_held_page_are_not_the_listings_time(tmp_path: Path) -> None:
    """The HEADs that settle a page's names come after the listing, not within its
    deadline (ten stall timeouts: 6 s here): 30 names at 0.25 s each land, exit 0."""
    files = {f"n{i:02d}.xml": b"%d\n" % i for i in range(30)}
    server = UnmarkedWebServer(files, head_delay=0.25)
    async with server.running():
        done = await anyio.to_thread.run_sync(run, "mirror", server.url, "--dest",
                                              str(tmp_path / "m"), "--stall-timeout", "0.6")
    assert done.returncode == 0, done.stdout + done.stderr
    assert landed(tmp_path / "m") == files


async def test_delete_asks_each_file_a_web_server_stops_showing(tmp_path: Path) -> None:
    """`--delete` over index pages asks the server about each recorded file they no longer
    show, its directories first: `sub/` answering 404 while `sub/in.xml` still answers 200
    keeps that file (a directory's 404 only sends the question on to its files), a 403'd
    `locked/` keeps what it holds unasked, and `gone.xml` (404) goes. Reached through an
    FTP source's fallback to HTTP too. A dry run asks as well: it lists what would go."""
    files = {"a.xml": b"a\n", "gone.xml": b"gone\n", "sub/in.xml": b"in\n",
             "locked/x.xml": b"x\n"}
    server = UnmarkedWebServer(dict(files))
    dest, fallback = tmp_path / "m", tmp_path / "f"
    async with server.running():
        for where, url in ((dest, [server.url]),
                           (fallback, ["ftp://127.0.0.1:1/d/", "--fallback", server.url])):
            first = await anyio.to_thread.run_sync(functools.partial(
                run, "mirror", *url, "--dest", str(where), "--recursive"))
            assert first.returncode == 0, first.stdout + first.stderr
        server.files = {"a.xml": b"a\n"}  # the pages show a.xml alone now
        server.heads.update({"sub/": (404, None), "sub/in.xml": (200, None),
                             "locked/": (403, None)})
        dry = await anyio.to_thread.run_sync(functools.partial(
            run, "mirror", server.url, "--dest", str(dest), "--recursive", "--delete",
            "--max-delete", "100%", "--dry-run", "--json"))
        assert dry.returncode == 0, dry.stdout + dry.stderr
        assert [d["name"] for d in json.loads(dry.stdout)["delete"]] == ["gone.xml"]
        assert landed(dest) == files
        results = [await anyio.to_thread.run_sync(functools.partial(
            run, "mirror", *url, "--dest", str(where), "--recursive", "--delete",
            "--max-delete", "100%", "--json"))
            for where, url in ((dest, [server.url]),
                               (fallback, ["ftp://127.0.0.1:1/d/", "--fallback", server.url]))]
    for where, result in zip((dest, fallback), results, strict=True):
        assert result.returncode == 0, result.stdout + result.stderr
        assert json.loads(result.stdout.splitlines()[-1])["deleted"] == ["gone.xml"]
        assert landed(where) == {k: v for k, v in files.items() if k != "gone.xml"}
        assert "sub/in.xml: not deleted" in result.stderr
        assert "locked/x.xml: not deleted" in result.stderr and "403" in result.stderr


async def test_delete_asks_no_more_once_the_web_server_does_not_answer(tmp_path: Path
                                                                       ) -> None:
    """When a file the pages no longer show gets no answer (503, its retries spent), the
    files after it are kept without being asked: a server that cannot answer would hold
    the run for each of them. (Two are asked at once, as many as --concurrency.)"""
    files = {f"n{i}.xml": b"%d\n" % i for i in range(6)} | {"keep.xml": b"k\n"}
    server = UnmarkedWebServer(dict(files))
    dest = tmp_path / "m"
    async with server.running():
        args = ("mirror", server.url, "--dest", str(dest), "--retries", "1",
                "--concurrency", "2")
        first = await anyio.to_thread.run_sync(functools.partial(run, *args))
        server.files = {"keep.xml": b"k\n"}
        server.heads.update({f"n{i}.xml": (503, None) for i in range(6)})
        server.asked.clear()
        result = await anyio.to_thread.run_sync(functools.partial(
            run, *args, "--delete", "--max-delete", "100%", "--json"))
    assert first.returncode == 0, first.stdout + first.stderr
    assert result.returncode == 0, result.stdout + result.stderr
    assert landed(dest) == files
    assert result.stderr.count("the server did not answer") == 6
    asked = {n for n in server.asked if n.startswith("n")}  # (and their retries)
    assert asked <= {"n0.xml", "n1.xml"} and "n0.xml" in asked


async def test_delete_asks_about_the_files_a_web_server_stops_showing_several_at_once(
        tmp_path: Path) -> None:
    """The HEADs that confirm deletions go as many at once as --concurrency (a subtree
    removed from a far server costs its files' round trips divided by that), never more;
    each answer still decides for its own file: the 404s go, the one answered 200 stays."""
    files = {f"n{i:02d}.xml": b"%d\n" % i for i in range(12)} | {"keep.xml": b"k\n"}
    server = UnmarkedWebServer(dict(files), head_delay=0.3)
    dest = tmp_path / "m"
    async with server.running():
        args = ("mirror", server.url, "--dest", str(dest), "--concurrency", "4")
        first = await anyio.to_thread.run_sync(functools.partial(run, *args))
        server.files = {"keep.xml": b"k\n"}
        server.heads["n05.xml"] = (200, None)
        server.asked.clear()
        server.most_heads = 0
        result = await anyio.to_thread.run_sync(functools.partial(
            run, *args, "--delete", "--max-delete", "100%", "--json"))
    assert first.returncode == 0, first.stdout + first.stderr
    assert result.returncode == 0, result.stdout + result.stderr
    deleted = json.loads(result.stdout.splitlines()[-1])["deleted"]
    assert sorted(deleted) == sorted(n for n in files if n not in ("keep.xml", "n05.xml"))
    assert landed(dest) == {n: files[n] for n in ("keep.xml", "n05.xml")}
    assert "n05.xml: not deleted" in result.stderr
    assert 2 <= server.most_heads <= 4


async def test_a_loop_whose_answers_differ_by_path_ends(tmp_path: Path) -> None:
    """A server whose every `a/` lists `f.txt` and `a/` again, answering each path's
    `f.txt` with a size of its own (as a server naming one file otherwise by its path
    would): the first look-alike is entered, its files differing, and the second is a loop
    whatever its answers. Before, the walk went down `a/a/a/...` for ever."""
    async def handle(request: web.Request) -> web.Response:
        depth = request.path.count("a/")
        if request.path.endswith("/"):
            return web.Response(text=f"<title>Index of {request.path}</title><pre>"
                                     '<a href="f.txt">f.txt</a>\n<a href="a/">a/</a>\n</pre>',
                                content_type="text/html")
        return web.Response(body=b"x" * (depth + 1))

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    async with served_app(app) as port:
        result = await anyio.to_thread.run_sync(
            run, "mirror", f"http://127.0.0.1:{port}/", "--dest", str(tmp_path / "m"),
            "--recursive")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "not entering 'a/a'" in result.stderr
    assert landed(tmp_path / "m") == {"f.txt": b"x", "a/f.txt": b"xx"}


async def test_a_server_refusing_head_still_gets_its_large_files_mirrored(
        tmp_path: Path) -> None:
    """A large file with no MD5 listed with a coarse time is looked at before and after
    its transfer (HEAD), to catch a rewrite meanwhile; a server that refuses HEAD (405)
    still gets it mirrored, exit 0: nothing to compare is not an error of the file's."""
    files = {"big.bin": os.urandom(400_000), "small.txt": b"s\n"}
    server = UnmarkedWebServer(dict(files), heads={"big.bin": (405, None)})
    dest = tmp_path / "m"
    async with server.running():
        result = await anyio.to_thread.run_sync(functools.partial(
            run, "mirror", server.url, "--dest", str(dest), "--retries", "1"))
    assert result.returncode == 0, result.stdout + result.stderr
    assert landed(dest) == files
    assert server.asked.count("big.bin") >= 1  # it was asked, and refused
