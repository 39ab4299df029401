"""The `pubmed-mirror` command. The only module that imports rich."""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import logging
import math
import os
import re
import signal
import ssl
import sys
import tempfile
import time
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine, Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import anyio
from rich.cells import cell_len
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    ProgressColumn,
    Task,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
)
from rich.table import Table
from rich.text import Text

from ._errors import DestinationBusy, MirrorError, ungrouped
from ._events import (
    Event,
    FileDone,
    FileFailed,
    FileProgress,
    FileQueued,
    FileRetrying,
    FileSkipped,
    FileStarted,
    ListingDone,
)
from ._mirror import (
    SPLIT_MIN,
    MirrorOptions,
    MirrorReport,
    Timeouts,
    list_remote,
    mirror,
    plan_mirror,
)
from ._plan import MirrorPlan, check_writable, unsafe_name_reason
from ._pubmed import PRESETS
from ._retry import RetryPolicy
from ._source import TRANSPORTS, AutoSource, FtpSource, HttpSource, parse_source
from ._transport import RemoteEntry
from ._verify import FileCheck, VerifyReport, verify

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130
PROG = "pubmed-mirror"
T = TypeVar("T")

# -- argument types: each refuses bad input with one line, before any network I/O ---------------

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]?)(?:i?B)?\s*$", re.IGNORECASE)
_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}


def parse_rate(text: str) -> int:
    """'500K', '20M', '1.5G' (1024-based) or plain bytes per second -> int bytes/s."""
    match = _SIZE.match(text)
    if not match:
        raise argparse.ArgumentTypeError(f"invalid rate {text!r}: use e.g. 500K, 20M, 1.5G")
    value = float(match.group(1)) * _UNITS[match.group(2).upper()]
    if value < 1 or not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"invalid rate {text!r}: must be at least 1 byte/s")
    return int(value)


def _whole_number(minimum: int) -> Callable[[str], int]:
    """An argparse type: a whole number >= minimum, with a one-line error otherwise."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
        if value < minimum:
            bound = "at least 1" if minimum == 1 else f"{minimum} or more"
            raise argparse.ArgumentTypeError(f"must be {bound}, got {value}")
        return value

    return parse


def _positive_number(what: str) -> Callable[[str], float]:
    """An argparse type: a positive finite number of `what`, with a one-line error otherwise."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
        if not (value > 0 and math.isfinite(value)):
            raise argparse.ArgumentTypeError(f"must be a positive number of {what}, got {text!r}")
        return value

    return parse


_positive_int = _whole_number(1)
_count = _whole_number(0)
_seconds = _positive_number("seconds")
_per_second = _positive_number("commands per second")


def _glob(text: str) -> str:
    if not text or "/" in text or "\0" in text:
        raise argparse.ArgumentTypeError(f"invalid glob {text!r}: a file-name pattern, no '/'")
    depth = 0
    for c in text:  # fnmatch silently takes an unclosed '[' literally: refuse it instead
        depth += c == "["
        depth -= c == "]" and depth > 0
    if depth:
        raise argparse.ArgumentTypeError(f"invalid glob {text!r}: unclosed '['")
    return text


def _directory(text: str) -> Path:
    if not text.strip():
        raise argparse.ArgumentTypeError("a directory is needed, got an empty name")
    return Path(text)


def _source(text: str) -> str:
    """The URL or preset as given, once it parses (the source is made in `main`, with
    --ca-file and --transport)."""
    try:
        parse_source(text)
        return text
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


# -- the parser -----------------------------------------------------------------------------------

_URL_HELP = (f"ftp://[user@]host[:port]/dir/, http[s]://host[:port]/dir/ or a preset: "
             f"{', '.join(PRESETS)}")


def _network_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--connect-timeout", type=_seconds, default=30.0, metavar="S",
                   help="TCP connect + login, default 30")
    p.add_argument("--stall-timeout", type=_seconds, default=60.0, metavar="S",
                   help="no byte for S seconds, default 60")
    p.add_argument("--retries", type=_count, default=5, metavar="N",
                   help="retries in a row without progress, default 5")
    p.add_argument("--ca-file", type=Path, metavar="PEM",
                   help="https: also trust the certificates in this file")
    p.add_argument("--transport", choices=TRANSPORTS,
                   help="for the pubmed: presets: ftp, https, or auto (default: FTP, "
                        "falling back to HTTPS for the run when FTP cannot connect or log in)")


def _output_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true",
                   help="newline-delimited JSON on stdout, for machines")
    loudness = p.add_mutually_exclusive_group()
    loudness.add_argument("-q", "--quiet", action="store_true",
                          help="print only failures and errors")
    loudness.add_argument("-v", "--verbose", action="store_true", help="log what happens")


def _mirror_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--concurrency", type=_positive_int, default=4, metavar="N",
                   help="parallel sessions (control connections), default 4")
    p.add_argument("--rate-limit", type=parse_rate, metavar="RATE",
                   help="cap on total bytes/s, e.g. 500K, 20M, 1.5G (1024-based)")
    p.add_argument("--command-rate", type=_per_second, metavar="N",
                   help="cap on FTP commands per second over all sessions")
    p.add_argument("--include", type=_glob, action="append", default=[], metavar="GLOB")
    p.add_argument("--exclude", type=_glob, action="append", default=[], metavar="GLOB")
    p.add_argument("--newest", type=_count, metavar="N",
                   help="only the last N files by PubMed file number")
    p.add_argument("--max-files", type=_count, metavar="N")
    p.add_argument("--file-timeout", type=_seconds, metavar="S",
                   help="give up on a file after S seconds over all its attempts")
    p.add_argument("--no-verify", action="store_true",
                   help="do not check files against their NAME.md5")
    p.add_argument("--no-split", action="store_true",
                   help="never split a large file over idle sessions at the end of a run")
    p.add_argument("--no-splice", action="store_true",
                   help="receive through a buffer (recv_into + write) instead of os.splice")
    p.add_argument("--progress-every", type=_seconds, default=5.0, metavar="S",
                   help="when stdout is not a terminal, a progress line every S seconds")
    _network_options(p)
    _output_options(p)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Mirror NCBI PubMed (or any FTP directory) fast, politely, correctly.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    m = commands.add_parser("mirror", help="mirror the files of one remote directory",
                            description="Mirror the files of one FTP directory into DIR.")
    m.add_argument("url", type=_source, metavar="URL", help=_URL_HELP)
    m.add_argument("--dest", required=True, type=_directory, metavar="DIR")
    m.add_argument("--dry-run", action="store_true",
                   help="print what would be fetched; transfer nothing")
    _mirror_options(m)
    v = commands.add_parser("verify", help="re-hash DEST against the .md5 files and manifest",
                            description="Re-hash every file of DEST against its NAME.md5 and "
                                        "the manifest; exit 1 if any is corrupt or missing.")
    v.add_argument("dest", type=_directory, metavar="DEST")
    _output_options(v)
    ls = commands.add_parser("ls", help="list a remote directory",
                             description="List a remote directory with sizes and times.")
    ls.add_argument("url", type=_source, metavar="URL", help=_URL_HELP)
    _network_options(ls)
    _output_options(ls)
    d = commands.add_parser("demo", help="mirror a generated PubMed-shaped tree, offline",
                            description="Serve a generated PubMed-shaped tree on 127.0.0.1, "
                                        "mirror it with the real engine, then verify it.")
    d.add_argument("--dest", type=_directory, metavar="DIR", help="keep the mirror here")
    d.add_argument("--files", type=_positive_int, default=12, metavar="N")
    d.add_argument("--rate-per-connection", type=parse_rate, default=512 << 10,
                   metavar="RATE", help="the demo server's throttle, default 512K")
    d.add_argument("--concurrency", type=_positive_int, default=4, metavar="N")
    _output_options(d)
    return parser


def _options(args: argparse.Namespace) -> MirrorOptions:
    return MirrorOptions(
        concurrency=args.concurrency,
        rate_limit=args.rate_limit,
        command_rate=args.command_rate,
        include=tuple(args.include),
        exclude=tuple(args.exclude),
        max_files=args.max_files,
        newest=args.newest,
        verify=not args.no_verify,
        split_min=None if args.no_split else SPLIT_MIN,
        splice=not args.no_splice,
        timeouts=Timeouts(connect=args.connect_timeout, stall=args.stall_timeout,
                          file=args.file_timeout),
        retry=RetryPolicy(attempts=args.retries + 1),
    )


# -- showing what happens -------------------------------------------------------------------------


def human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


def human_seconds(s: float) -> str:
    if not math.isfinite(s):
        return "?"
    s = round(s)
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"


class Tally:
    """Files and bytes so far, the recent rate and the ETA, from the events (clock injected)."""

    WINDOW = 10.0  # seconds of history behind the rate

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.files = self.finished = self.failed = self.retries = 0
        self.total_bytes = 0
        self.position: dict[str, int] = {}  # bytes in hand per queued file
        self.size: dict[str, int] = {}
        self._received = 0
        self._samples: deque[tuple[float, int]] = deque([(clock(), 0)])

    def on(self, event: Event) -> None:
        if isinstance(event, ListingDone):
            self.files, self.total_bytes = event.files, event.total_bytes
        elif isinstance(event, FileQueued | FileSkipped):
            self.size[event.name] = event.size
            self.position[event.name] = event.size if isinstance(event, FileSkipped) else 0
            self.finished += isinstance(event, FileSkipped)
        elif isinstance(event, FileStarted):
            self.position[event.name] = event.offset
        elif isinstance(event, FileProgress):
            self.position[event.name] = event.received
            self._received += event.delta
            self._sample()
        elif isinstance(event, FileRetrying):
            self.retries += 1
        elif isinstance(event, FileDone):
            self.finished += 1
            self.position[event.name] = event.size
        elif isinstance(event, FileFailed):
            self.finished += 1
            self.failed += 1

    def _sample(self) -> None:
        now = self.clock()
        self._samples.append((now, self._received))
        while len(self._samples) > 2 and now - self._samples[1][0] >= self.WINDOW:
            self._samples.popleft()

    @property
    def bytes_done(self) -> int:
        return sum(self.position.values())

    def rate(self) -> float:
        """Bytes/s over the last WINDOW seconds (0 before two samples)."""
        (t0, r0), now = self._samples[0], self.clock()
        return (self._received - r0) / (now - t0) if now > t0 else 0.0

    def eta(self) -> float:
        rate = self.rate()
        left = self.total_bytes - self.bytes_done
        return 0.0 if left <= 0 else left / rate if rate > 0 else math.inf

    def line(self) -> str:
        return (f"progress: {self.finished}/{self.files} files, {human_bytes(self.bytes_done)} "
                f"of {human_bytes(self.total_bytes)}, {human_bytes(self.rate())}/s, "
                f"ETA {human_seconds(self.eta())}")


def _file_line(event: Event) -> str | None:
    """The line a finished, failed or retried file gets (rich markup), None for the others."""
    if isinstance(event, FileDone):
        rate = event.received / event.seconds if event.seconds > 0 else 0.0
        resumed = f", resumed at {human_bytes(event.resumed_from)}" if event.resumed_from else ""
        tries = f", {event.attempts} attempts" if event.attempts > 1 else ""
        checked = ", MD5 ok" if event.md5 else ""
        return (f"[green]done[/]    {escape(event.name)}  {human_bytes(event.size)}  "
                f"{human_bytes(rate)}/s{resumed}{tries}{checked}")
    if isinstance(event, FileFailed):
        return f"[red]FAILED[/]  {escape(event.name)}: {escape(event.reason)}"
    if isinstance(event, FileRetrying):
        return (f"[yellow]retry[/]   {escape(event.name)} (attempt {event.attempt} failed, "
                f"next in {event.delay:.1f} s): {escape(event.reason)}")
    return None


class LineReporter:
    """Not a terminal: a line per finished, failed or retried file, and `tick()` lines."""

    def __init__(self, console: Console, *, quiet: bool = False) -> None:
        self.console = console
        self.quiet = quiet
        self.tally = Tally()

    def __call__(self, event: Event) -> None:
        self.tally.on(event)
        line = _file_line(event)
        if line is not None and (not self.quiet or isinstance(event, FileFailed)):
            self.console.print(line, highlight=False, soft_wrap=True)  # one line each

    async def run(self, every: float) -> None:
        while not self.quiet:
            await anyio.sleep(every)
            if self.tally.files:
                self.console.print(self.tally.line(), highlight=False, markup=False,
                                   soft_wrap=True)


class _SpeedColumn(ProgressColumn):
    """rich's speed, in the same 1024-based units as every other figure we print."""

    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        text = "?" if speed is None else f"{human_bytes(speed)}/s"
        return Text(text, style="progress.data.speed")


class LiveReporter(LineReporter):
    """A terminal: an overall bar and a bar per active transfer, file lines above them."""

    def __init__(self, console: Console) -> None:
        super().__init__(console)
        self.progress = Progress(
            TextColumn("{task.description}", markup=False), BarColumn(),
            DownloadColumn(binary_units=True), _SpeedColumn(), TimeRemainingColumn(),
            console=console)
        self.overall = self.progress.add_task("total", total=0)
        self.bars: dict[str, TaskID] = {}

    def __call__(self, event: Event) -> None:
        super().__call__(event)
        name = getattr(event, "name", None)
        if isinstance(event, FileStarted) and event.name not in self.bars:
            self.bars[event.name] = self.progress.add_task(event.name, total=event.size)
        if name in self.bars:
            bar = self.bars[name]
            if isinstance(event, FileStarted | FileProgress):
                self.progress.update(bar, completed=self.tally.position[name])
            elif isinstance(event, FileDone | FileFailed | FileSkipped):
                self.progress.remove_task(self.bars.pop(name))
        t = self.tally
        self.progress.update(self.overall, total=t.total_bytes, completed=t.bytes_done,
                             description=f"total {t.finished}/{t.files} files")

    async def run(self, every: float) -> None:
        with self.progress:
            await anyio.sleep_forever()


class JsonReporter:
    """Newline-delimited JSON: one object per event, then one for the summary."""

    def __call__(self, event: Event) -> None:
        emit_json({"event": _snake(type(event).__name__), **dataclasses.asdict(event)})

    async def run(self, every: float) -> None:
        await anyio.sleep_forever()


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def emit_json(obj: dict[str, Any]) -> None:
    print(json.dumps(obj), flush=True)


def summary_table(report: MirrorReport) -> Table:
    rate = report.bytes_received / report.seconds if report.seconds > 0 else 0.0
    table = Table(title="pubmed-mirror summary", show_header=False)
    for label, value in (
        ("done", str(len(report.done))),
        ("skipped (up to date)", str(len(report.skipped))),
        ("failed", str(len(report.failed))),
        ("MD5 verified", str(sum(1 for f in report.done if f.md5))),
        ("bytes received", human_bytes(report.bytes_received)),
        ("elapsed", f"{report.seconds:.1f} s"),
        ("mean rate", f"{human_bytes(rate)}/s"),
        ("retries", str(report.retries)),
    ):
        table.add_row(label, value)
    for failure in report.failed:
        table.add_row(Text(f"failed: {failure.name}", style="red"), Text(failure.error or ""))
    return table


def _summary_json(report: MirrorReport) -> dict[str, Any]:
    return {"event": "summary", "ok": report.ok, "done": len(report.done),
            "skipped": len(report.skipped), "failed": len(report.failed),
            "bytes_received": report.bytes_received, "seconds": round(report.seconds, 3),
            "retries": report.retries,
            "failures": [{"name": f.name, "error": f.error} for f in report.failed]}


# -- running with Ctrl-C --------------------------------------------------------------------------


async def _interruptible(work: Callable[[], Awaitable[T]],
                         *background: Callable[[], Coroutine[Any, Any, None]]) -> T | None:
    """Run `work` (and `background` tasks beside it); None if SIGINT/SIGTERM stopped it."""
    result: list[T] = []

    async def watch_signals(scope: anyio.CancelScope) -> None:
        with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async for _ in signals:
                scope.cancel()
                return

    with ungrouped():  # an error leaves as itself, for main()'s one line
        async with anyio.create_task_group() as tg:
            tg.start_soon(watch_signals, tg.cancel_scope)
            for task in background:
                tg.start_soon(task)
            try:
                result.append(await work())
            finally:
                tg.cancel_scope.cancel()
    return result[0] if result else None


def _interrupted() -> int:
    print("interrupted: partial files are kept and resume on the next run", file=sys.stderr)
    return EXIT_INTERRUPTED


# -- the commands ---------------------------------------------------------------------------------


def _reporter(args: argparse.Namespace, console: Console) -> LineReporter | JsonReporter:
    if args.json:
        return JsonReporter()
    if console.is_terminal and not args.quiet:
        return LiveReporter(console)
    return LineReporter(console, quiet=args.quiet)


async def cmd_mirror(args: argparse.Namespace, console: Console) -> int:
    if args.dry_run:
        return await _dry_run(args, console)
    reporter = _reporter(args, console)
    report = await _interruptible(
        lambda: mirror(args.url, args.dest, _options(args), on_event=reporter),
        lambda: reporter.run(args.progress_every))
    if report is None:
        return _interrupted()
    if args.json:
        emit_json(_summary_json(report))
    elif not args.quiet:
        console.print(summary_table(report))
    return EXIT_OK if report.ok else EXIT_FAILED


async def _dry_run(args: argparse.Namespace, console: Console) -> int:
    plan = await _interruptible(lambda: plan_mirror(args.url, args.dest, _options(args)))
    if plan is None:
        return _interrupted()
    if args.json:
        emit_json(_plan_json(plan))
        return EXIT_OK
    console.out(f"dry run: {args.url} -> {args.dest}", highlight=False)
    lines = _plan_lines(plan)
    while batch := list(itertools.islice(lines, 1000)):
        console.out("\n".join(batch), highlight=False)
    fetch = plan.with_action("fetch", "check")
    console.print(f"would fetch up to {len(fetch)} files, {human_bytes(plan.bytes_to_fetch)}; "
                  f"{len(plan.with_action('skip'))} up to date; nothing was transferred",
                  highlight=False)
    return EXIT_OK


def _plan_lines(plan: MirrorPlan) -> Iterator[str]:
    """The plan's table as aligned lines, made as they are printed (a rich Table of
    300,000 rows took 560 MB and two minutes to lay out)."""
    width = max((cell_len(f.name) for f in plan.files), default=0)
    yield f"{'file':{max(width, 4)}}  {'size':>10}  action"
    for f in plan.files:
        action = {"fetch": f"fetch (resume at {human_bytes(f.have)})" if f.have else "fetch",
                  "check": "check local copy (MD5), fetch if wrong", "skip": "up to date"}
        pad = " " * (max(width, 4) - cell_len(f.name))
        yield f"{f.name}{pad}  {human_bytes(f.size):>10}  {action[f.action]}"


def _plan_json(plan: MirrorPlan) -> dict[str, Any]:
    return {"event": "plan", "bytes_to_fetch": plan.bytes_to_fetch,
            "files": [{"name": f.name, "size": f.size, "action": f.action,
                       "resume_from": f.have, "md5_file": f.checksum is not None}
                      for f in plan.files]}


async def cmd_verify(args: argparse.Namespace, console: Console) -> int:
    def show(check: FileCheck) -> None:
        if args.json:
            emit_json({"event": "check", **dataclasses.asdict(check)})
        elif check.verdict in ("corrupt", "missing"):
            console.print(f"[red]{check.verdict.upper()}[/]  {escape(check.name)}: "
                          f"{escape(check.reason)}", highlight=False)
        elif args.verbose:
            console.print(f"{check.verdict:9} {check.name}", highlight=False, markup=False)

    report = await _interruptible(lambda: verify(args.dest, on_file=show))
    if report is None:
        return _interrupted()
    if args.json:
        emit_json({"event": "summary", "ok": report.ok,
                   **{f"{v}_files": n for v, n in report.counts.items()}})
    elif not args.quiet or not report.ok:
        console.print(_verify_line(args.dest, report), highlight=False, soft_wrap=True)
    return EXIT_OK if report.ok else EXIT_FAILED


def _verify_line(dest: Path, report: VerifyReport) -> str:
    if not report.files:
        return f"verify {escape(str(dest))}: nothing to verify (no manifest records, no .md5 files)"
    counts = report.counts
    verdict = "[green]all good[/]" if report.ok else "[red]PROBLEMS FOUND[/]"
    return (f"verify {escape(str(dest))}: {verdict}: {counts['ok']} match their MD5, "
            f"{counts['corrupt']} corrupt, {counts['missing']} missing, "
            f"{counts['unchecked']} without an MD5 ({report.seconds:.1f} s)")


async def cmd_ls(args: argparse.Namespace, console: Console) -> int:
    entries = await _interruptible(lambda: list_remote(
        args.url, timeouts=Timeouts(connect=args.connect_timeout, stall=args.stall_timeout),
        retry=RetryPolicy(attempts=args.retries + 1)))
    if entries is None:
        return _interrupted()
    if args.json:
        for e in entries:
            emit_json(_entry_json(e))
        return EXIT_OK
    table = Table(title=escape(str(args.url)))
    for column in ("name", "size", "modified (UTC)", "kind"):
        table.add_column(column, justify="right" if column == "size" else "left")
    for e in entries:
        unsafe = unsafe_name_reason(e.name)
        name = e.name if unsafe is None else f"{e.name!r} (mirror skips it: {unsafe})"
        table.add_row(Text(name), "" if e.size is None else f"{e.size:,}", _utc(e.mtime),
                      e.kind)
    console.print(table)
    files = [e for e in entries if e.kind == "file"]
    console.print(f"{len(files)} files, {human_bytes(sum(e.size or 0 for e in files))}",
                  highlight=False)
    return EXIT_OK


def _utc(mtime: float | None) -> str:
    if mtime is None:
        return ""
    return datetime.fromtimestamp(mtime, UTC).strftime("%Y-%m-%d %H:%M:%S")


def _entry_json(entry: RemoteEntry) -> dict[str, Any]:
    return {"name": entry.name, "size": entry.size, "mtime": entry.mtime,
            "modified": _utc(entry.mtime) or None, "kind": entry.kind}


async def cmd_demo(args: argparse.Namespace, console: Console) -> int:
    from ._demo import DemoServer, make_pubmed_tree

    with tempfile.TemporaryDirectory(prefix="pubmed-mirror-demo-") as tmp:
        root = Path(tmp) / "server"
        names = await anyio.to_thread.run_sync(lambda: make_pubmed_tree(root, files=args.files))
        dest = args.dest or Path(tmp) / "mirror"
        with DemoServer(root, rate_per_connection=args.rate_per_connection) as server:
            url = f"{server.url}pubmed/updatefiles/"
            if not args.json:
                console.print(
                    f"demo: serving {len(names)} generated PubMed files (+ .md5) at {url}, "
                    f"{human_bytes(args.rate_per_connection)}/s per connection\n"
                    f"demo: pubmed-mirror mirror {url} --dest {dest} --include '*.xml.gz'",
                    highlight=False, markup=False, soft_wrap=True)
            argv = ["mirror", url, "--dest", str(dest), "--include", "*.xml.gz",
                    "--concurrency", str(args.concurrency)]
            argv += ["--json"] if args.json else ["-q"] if args.quiet else []
            mirror_args = build_parser().parse_args(argv)
            check_writable(dest)
            code = await cmd_mirror(mirror_args, console)
        if code != EXIT_OK:
            return code
        if not args.json:
            console.print(f"demo: pubmed-mirror verify {dest}", highlight=False, markup=False,
                          soft_wrap=True)
        return await cmd_verify(build_parser().parse_args(
            ["verify", str(dest), *(["--json"] if args.json else [])]), console)


_COMMANDS = {"mirror": cmd_mirror, "verify": cmd_verify, "ls": cmd_ls, "demo": cmd_demo}


def _fail(error: BaseException) -> None:
    # plain print: one line, never wrapped to the terminal's width
    print(f"{PROG}: error: {error}", file=sys.stderr)


def _make_source(text: str, ca_file: Path | None,
                 transport: str | None) -> FtpSource | HttpSource | AutoSource:
    """The source the URL names, trusting `ca_file` too for https (checked now: a bad file
    is bad usage), over `transport` for a preset."""
    if transport is not None and text not in PRESETS:
        raise ValueError("--transport is for the pubmed: presets (a URL's scheme chooses)")
    source = parse_source(text, ca_file=ca_file, transport=transport or "auto")
    if ca_file is not None:
        if isinstance(source, FtpSource):
            raise ValueError("--ca-file is for https:// URLs")
        try:
            ssl.create_default_context().load_verify_locations(cafile=ca_file)
        except (OSError, ssl.SSLError) as exc:
            raise ValueError(f"--ca-file {ca_file}: not a readable PEM certificate file "
                             f"({getattr(exc, 'strerror', None) or exc})") from None
    return source


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(format=f"{PROG}: %(levelname)s: %(message)s",
                        level=logging.INFO if args.verbose else logging.WARNING)
    dest = getattr(args, "dest", None)
    try:
        if args.command in ("mirror", "demo") and dest and not getattr(args, "dry_run", 0):
            check_writable(dest)  # before any network I/O
        if hasattr(args, "url"):
            args.url = _make_source(args.url, getattr(args, "ca_file", None),
                                    getattr(args, "transport", None))
    except (MirrorError, ValueError) as exc:
        _fail(exc)
        return EXIT_USAGE
    try:
        return anyio.run(_COMMANDS[args.command], args, Console(highlight=False))
    except DestinationBusy as exc:
        _fail(exc)
        return EXIT_USAGE
    except MirrorError as exc:
        _fail(exc)
        return EXIT_FAILED
    except BrokenPipeError:  # the reader of stdout left (`| head`): stop, quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_FAILED
    except OSError as exc:  # a local failure the library did not name (it should): one line
        _fail(exc)
        return EXIT_FAILED
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
