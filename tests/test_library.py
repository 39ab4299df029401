"""The library as an async application uses it: the ordered stream, errors as objects, bad
sources and callbacks, which mirror a log record belongs to, event loops, and a long-lived
client whose budget several mirrors share. Real FTP servers on 127.0.0.1, faults in the
server."""

from __future__ import annotations

import json
import logging
import random
import time
from pathlib import Path

import anyio
import pytest

from conftest import assert_mirrored, make_tree
from pubmed_mirror import (
    AsyncioRequired,
    BadSource,
    Event,
    FileDone,
    FileFailed,
    FileLanded,
    FileProgress,
    FileRetrying,
    FileSkipped,
    FileStarted,
    MirrorClient,
    MirrorError,
    MirrorOptions,
    ProtocolError,
    RemoteFileError,
    RetryPolicy,
    ServerBusy,
    Timeouts,
    list_remote,
    mirror,
    mirror_events,
    parse_md5_file,
    plan_mirror,
)
from pubmed_mirror.testing import Fault, FaultyFTPServer, make_pubmed_tree
from test_cli import run

FAST_RETRY = RetryPolicy(attempts=3, base=0.05, cap=0.1)
Tree = tuple[Path, dict[str, bytes]]


def opts(**kwargs: object) -> MirrorOptions:
    kwargs.setdefault("retry", FAST_RETRY)
    kwargs.setdefault("timeouts", Timeouts(connect=5, stall=5))
    return MirrorOptions(**kwargs)  # type: ignore[arg-type]


def pubmed(number: int) -> str:
    return f"pubmed26n{number:04d}.xml.gz"


def write_files(directory: Path, sizes: dict[str, int]) -> dict[str, bytes]:
    """Files of reproducible random bytes; returns their contents by name."""
    directory.mkdir(parents=True, exist_ok=True)
    files = {}
    for name, size in sizes.items():
        files[name] = random.Random(name).randbytes(size)
        (directory / name).write_bytes(files[name])
    return files


# -- the ordered stream --------------------------------------------------------------------

SETTLED = (FileDone, FileFailed, FileSkipped)


@pytest.fixture
def mixed(tmp_path: Path) -> Path:
    """Six PubMed files, the first in load order by far the largest."""
    root = tmp_path / "remote"
    for number, target in ((1, 1_600_000), (2, 40_000), (3, 40_000), (4, 300_000),
                           (5, 40_000), (6, 40_000)):
        make_pubmed_tree(root, directory="", first=number, files=1, target_bytes=target,
                         extras=False)
    return root


@pytest.mark.parametrize("split_min", [None, 256 << 10], ids=["no-split", "split"])
async def test_ordered_stream_lands_files_in_load_order(mixed: Path, dest: Path,
                                                        split_min: int | None) -> None:
    """With ordered=True every selected file lands exactly once, in load order, each held
    back until every earlier file is done, skipped or failed, although the files completed
    in another order."""
    with FaultyFTPServer(mixed, rate_per_connection=2 << 20) as server:
        await mirror(server.url, dest, opts(include=(pubmed(6),)))  # skipped in the run below
        server.faults.add(pubmed(3), Fault(kind="reply", reply="450 Busy, try later"))
        server.faults.add(pubmed(4), Fault(kind="close_426", after_bytes=100_000))
        server.faults.add(pubmed(5), Fault(kind="reply", reply="550 Permission denied"))
        events: list[Event] = []
        async with mirror_events(server.url, dest, opts(include=("*.xml.gz",), concurrency=3,
                                                        split_min=split_min),
                                 ordered=True) as feed:
            async for event in feed:
                events.append(event)
    order = [pubmed(n) for n in range(1, 7)]
    landed = [e for e in events if isinstance(e, FileLanded)]
    settled = [e.name for e in events if isinstance(e, SETTLED)]
    assert [e.name for e in landed] == order
    assert settled != order and sorted(settled) == order  # completion order differed
    for event in landed:  # held back until it and every file before it had settled
        position = events.index(event)
        earlier = order[:order.index(event.name) + 1]
        assert set(earlier) <= {e.name for e in events[:position] if isinstance(e, SETTLED)}
    assert any(isinstance(e, FileDone) for e in events[:events.index(landed[0])])
    assert [e.status for e in landed] == ["done", "done", "done", "done", "failed", "skipped"]
    for event in landed:
        if event.status == "failed":
            assert event.path is None and isinstance(event.exception, RemoteFileError)
            assert event.error is not None and "550 Permission denied" in event.error
            continue
        assert event.path == str((dest / event.name).absolute())
        data = Path(event.path).read_bytes()
        assert data == (mixed / event.name).read_bytes()
        assert event.md5 == parse_md5_file((mixed / f"{event.name}.md5").read_bytes(), event.name)
        assert event.error is None and event.exception is None
    assert feed.report is not None and [f.name for f in feed.report.failed] == [pubmed(5)]


async def test_ordered_callback_lands_files_and_unordered_runs_do_not(ftpd: FaultyFTPServer,
                                                                      tree: Tree,
                                                                      dest: Path) -> None:
    """mirror(..., ordered=True) hands FileLanded events to on_event in load order; without
    ordered no FileLanded event is emitted at all."""
    plain: list[Event] = []
    await mirror(ftpd.url, dest, opts(), on_event=plain.append)
    assert not [e for e in plain if isinstance(e, FileLanded)]
    (dest / pubmed(2)).unlink()
    ordered: list[Event] = []
    report = await mirror(ftpd.url, dest, opts(), on_event=ordered.append, ordered=True)
    landed = [e for e in ordered if isinstance(e, FileLanded)]
    assert [e.name for e in landed] == sorted(tree[1])
    assert [e.status for e in landed] == ["skipped", "done"] + ["skipped"] * (len(tree[1]) - 2)
    assert report.ok


# -- errors as objects -----------------------------------------------------------------------


@pytest.mark.parametrize(("reply", "times", "kind"), [
    ("550 Permission denied", 1, RemoteFileError),
    ("450 Busy, try later", 3, ServerBusy),
])
async def test_failed_file_carries_its_error(ftpd: FaultyFTPServer, dest: Path, reply: str,
                                             times: int, kind: type[MirrorError]) -> None:
    """FileFailed and FileResult carry the error of the tree (the last one, after retries)
    beside the same text as before."""
    name = pubmed(3)
    ftpd.faults.add(name, *[Fault(kind="reply", reply=reply)] * times)
    events: list[Event] = []
    report = await mirror(ftpd.url, dest, opts(), on_event=events.append)
    [failed] = [e for e in events if isinstance(e, FileFailed)]
    assert isinstance(failed.exception, kind) and failed.exception.reply == reply
    assert failed.reason == str(failed.exception)
    [result] = report.failed
    assert result.name == name and result.exception is failed.exception
    assert result.error == failed.reason


async def test_unreadable_listing_line_fails_with_a_protocol_error(tree: Tree,
                                                                   dest: Path) -> None:
    """A listing line that may name a selected file fails with a ProtocolError object."""
    lines = ["-rw-r--r-- 1 ftp ftp 10 Nov 29 12:00 pubmed26n0007.xml.gz",
             "what is this pubmed26n0099.xml.gz"]
    with FaultyFTPServer(tree[0], list_lines=lines) as server:
        report = await mirror(server.url, dest, opts())
    [result] = report.failed
    assert result.name == lines[1] and isinstance(result.exception, ProtocolError)


def test_json_output_has_no_exception_field(ftpd: FaultyFTPServer, dest: Path) -> None:
    """`mirror --json` writes the same keys as before: the error object stays out of JSON."""
    ftpd.faults.add(pubmed(3), Fault(kind="reply", reply="550 Permission denied"))
    result = run("mirror", ftpd.url, "--dest", str(dest), "--json", "--retries", "0")
    assert result.returncode == 1, result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    [failed] = [e for e in lines if e["event"] == "file_failed"]
    assert set(failed) == {"event", "name", "reason", "attempts"}
    assert lines[-1]["failures"] == [{"name": pubmed(3), "error": failed["reason"]}]


# -- a malformed source, a callback that raises -----------------------------------------------

BAD_SOURCES = ["ftp://bad host/", "gopher://example.org/dir/", "pubmed:nothing",
               "ftp://example.org:99999/", "https://user@example.org/dir/", "ftp://h/a?b"]


@pytest.mark.parametrize("source", BAD_SOURCES)
async def test_malformed_source_raises_bad_source_at_the_call(source: str, dest: Path) -> None:
    """A malformed source raises BadSource (a MirrorError) from mirror() and on entering
    mirror_events(), before the block runs, and leaves no DEST behind."""
    with pytest.raises(BadSource) as info:
        await mirror(source, dest)
    assert isinstance(info.value, MirrorError) and isinstance(info.value, ValueError)
    entered = False
    with pytest.raises(BadSource):
        async with mirror_events(source, dest):
            entered = True
    assert not entered and not dest.exists()


async def test_busy_dest_raises_on_entering_mirror_events(ftpd: FaultyFTPServer,
                                                          dest: Path) -> None:
    """A DEST another run holds raises DestinationBusy on entering mirror_events()."""
    entered = False
    async with mirror_events(ftpd.url, dest, opts()) as first:
        with pytest.raises(MirrorError, match="another"):
            async with mirror_events(ftpd.url, dest, opts()):
                entered = True
        async for _ in first:
            pass
    assert not entered and first.report is not None and first.report.ok


CALLBACK_EVENTS = {"FileStarted": FileStarted, "FileProgress": FileProgress,
                   "FileRetrying": FileRetrying, "FileDone": FileDone}


@pytest.mark.parametrize("error", [ValueError, OSError])
@pytest.mark.parametrize("kind", list(CALLBACK_EVENTS))
async def test_callback_exception_stops_the_run_and_is_raised(tmp_path: Path, dest: Path,
                                                              kind: str,
                                                              error: type[Exception]) -> None:
    """An exception raised by on_event stops the run, which raises that same exception
    object; the callback is never called again, and the next run completes the mirror."""
    root = tmp_path / "remote"
    files = make_tree(root)
    calls: list[Event] = []
    raised: list[Exception] = []

    def callback(event: Event) -> None:
        if isinstance(event, CALLBACK_EVENTS[kind]) or raised:
            calls.append(event)
            raised.append(error("the application's own bug"))
            raise raised[-1]

    with FaultyFTPServer(root, rate_per_connection=4 << 20) as server:
        server.faults.add(pubmed(1), Fault(kind="reply", reply="450 Busy, try later"))
        with pytest.raises(error) as info:
            await mirror(server.url, dest, opts(), on_event=callback)
        assert info.value is raised[0] and len(calls) == 1
        assert sum(server.stats.bytes_sent.values()) < sum(len(d) for d in files.values())
        report = await mirror(server.url, dest, opts())
    assert report.ok
    assert_mirrored(dest, files)


# -- which mirror a log record belongs to ----------------------------------------------------


async def test_two_mirrors_tell_their_records_and_events_apart(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Two concurrent mirrors in one process: each log record of the library carries the
    DEST of its mirror (`record.dest`), each feed its own DEST and only its own files."""
    root = tmp_path / "remote"
    names = {"a": [pubmed(n) for n in (1, 2, 3)], "b": [pubmed(n) for n in (101, 102, 103)]}
    for key, numbers in names.items():
        write_files(root / key, dict.fromkeys(numbers, 300_000))
    dests = {key: tmp_path / f"dest-{key}" for key in names}
    seen: dict[str, list[Event]] = {key: [] for key in names}
    feeds = {}
    caplog.set_level(logging.INFO, logger="pubmed_mirror")
    with FaultyFTPServer(root, rate_per_connection=2 << 20) as server:

        async def one(key: str) -> None:
            async with mirror_events(f"{server.url}{key}/", dests[key],
                                     opts(concurrency=2)) as feed:
                feeds[key] = feed
                async for event in feed:
                    seen[key].append(event)

        async with anyio.create_task_group() as tg:
            for key in names:
                tg.start_soon(one, key)
    owners = {str(dests[key].absolute()): key for key in names}
    for key in names:
        assert feeds[key].dest == str(dests[key].absolute())
        assert feeds[key].report is not None and feeds[key].report.ok
        assert {e.name for e in seen[key] if isinstance(e, FileDone)} == set(names[key])
    ours = [r for r in caplog.records if r.name == "pubmed_mirror"]
    assert ours
    for record in ours:
        key = owners[record.dest]  # type: ignore[attr-defined]
        message = record.getMessage()
        other = "b" if key == "a" else "a"
        assert not any(name in message for name in names[other]), (key, message)
    sequence = [owners[r.dest] for r in ours]  # type: ignore[attr-defined]
    assert any(a != b for a, b in zip(sequence, sequence[1:], strict=False))


def test_records_outside_a_mirror_have_no_dest(caplog: pytest.LogCaptureFixture) -> None:
    """A library record logged outside any mirror carries dest None."""
    caplog.set_level(logging.INFO, logger="pubmed_mirror")
    logging.getLogger("pubmed_mirror").info("outside")
    [record] = [r for r in caplog.records if r.getMessage() == "outside"]
    assert record.dest is None  # type: ignore[attr-defined]


# -- event loops -------------------------------------------------------------------------------


async def _mirror_call(url: str, dest: Path) -> None:
    await mirror(url, dest)


async def _feed_call(url: str, dest: Path) -> None:
    async with mirror_events(url, dest) as feed:
        async for _ in feed:
            pass


async def _client_call(url: str, dest: Path) -> None:
    async with MirrorClient() as client:
        await client.mirror(url, dest)


async def _plan_call(url: str, dest: Path) -> None:
    await plan_mirror(url, dest)


async def _list_call(url: str, dest: Path) -> None:
    await list_remote(url)


@pytest.mark.parametrize("call", [_mirror_call, _feed_call, _client_call, _plan_call,
                                  _list_call], ids=lambda f: f.__name__.strip("_"))
def test_trio_gets_one_clear_error(ftpd: FaultyFTPServer, dest: Path, call: object) -> None:
    """Under trio each entry point raises AsyncioRequired, one line saying asyncio is
    required, before any connection or any change to DEST."""
    pytest.importorskip("trio", reason="trio is not installed (pip install trio)")
    with pytest.raises(AsyncioRequired) as info:
        anyio.run(call, ftpd.url, dest, backend="trio")  # type: ignore[arg-type]
    message = str(info.value)
    assert "asyncio" in message and "trio" in message and "\n" not in message
    assert ftpd.stats.connections == 0 and not dest.exists()


# -- a long-lived client -----------------------------------------------------------------------


async def test_client_budget_holds_across_its_mirrors(tmp_path: Path) -> None:
    """Two mirrors on one MirrorClient share its budget: the server never sees more than the
    client's connection cap at once, the combined rate stays under the client's cap, and
    both mirrors make progress side by side."""
    root = tmp_path / "remote"
    # six files each: were one mirror to start late (a loaded machine), the other still
    # could not finish before it, as its sessions queue behind the late one's listing
    trees = {key: write_files(root / key, {pubmed(n): 300_000 for n in numbers})
             for key, numbers in (("a", range(1, 7)), ("b", range(11, 17)))}
    total = sum(len(d) for files in trees.values() for d in files.values())
    rate = 1 << 20
    done_at: dict[str, list[float]] = {"a": [], "b": []}
    with FaultyFTPServer(root) as server:
        async with MirrorClient(concurrency=2, rate_limit=rate) as client:
            started = time.monotonic()

            async def one(key: str) -> None:
                def note(event: Event) -> None:
                    if isinstance(event, FileDone):
                        done_at[key].append(time.monotonic())

                report = await client.mirror(f"{server.url}{key}/", tmp_path / key,
                                             opts(concurrency=3), on_event=note)
                assert report.ok

            async with anyio.create_task_group() as tg:
                for key in trees:
                    tg.start_soon(one, key)
            elapsed = time.monotonic() - started
        stats = server.stats
    for key, files in trees.items():
        assert_mirrored(tmp_path / key, files)
    assert stats.max_concurrent <= 2
    burst = rate / 4  # the bucket starts empty; a quarter second's burst
    assert elapsed >= 0.9 * (total - burst) / rate, elapsed
    assert min(done_at["a"]) < max(done_at["b"]) and min(done_at["b"]) < max(done_at["a"])


async def test_client_refuses_its_budget_in_options_and_after_closing(ftpd: FaultyFTPServer,
                                                                     dest: Path) -> None:
    """A mirror on a client takes the client's budget: options with their own rate or
    command rate are refused, and so is any mirror once the client is closed."""
    client = MirrorClient(rate_limit=1 << 20)
    with pytest.raises(ValueError, match="client"):
        await client.mirror(ftpd.url, dest, MirrorOptions(rate_limit=1 << 20))
    with pytest.raises(ValueError, match="client"):
        await client.mirror(ftpd.url, dest, MirrorOptions(command_rate=3))
    await client.aclose()
    with pytest.raises(RuntimeError, match="closed"):
        await client.mirror(ftpd.url, dest)
    assert ftpd.stats.connections == 0 and not dest.exists()
