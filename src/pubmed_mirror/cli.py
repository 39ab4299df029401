"""The `pubmed-mirror` command. The only module that imports rich."""

from __future__ import annotations

import argparse
import logging
import math
import re
import signal
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import anyio
from rich.console import Console
from rich.table import Table

from ._errors import MirrorError
from ._events import Event, FileDone, FileFailed, FileRetrying
from ._mirror import MirrorOptions, MirrorReport, Timeouts, check_writable, mirror
from ._retry import RetryPolicy
from ._source import FtpSource

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130
PROG = "pubmed-mirror"

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


_positive_int = _whole_number(1)
_count = _whole_number(0)


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


def _source(text: str) -> FtpSource:
    try:
        return FtpSource.parse(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Mirror NCBI PubMed (or any FTP directory) fast, politely, correctly.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    m = commands.add_parser("mirror", help="mirror the files of one remote directory",
                            description="Mirror the files of one FTP directory into DIR.")
    m.add_argument("url", type=_source, metavar="URL", help="ftp://[user@]host[:port]/dir/")
    m.add_argument("--dest", required=True, type=Path, metavar="DIR")
    m.add_argument("--concurrency", type=_positive_int, default=4, metavar="N",
                   help="parallel sessions (control connections), default 4")
    m.add_argument("--rate-limit", type=parse_rate, metavar="RATE",
                   help="cap on total bytes/s, e.g. 500K, 20M, 1.5G (1024-based)")
    m.add_argument("--command-rate", type=_per_second, metavar="N",
                   help="cap on FTP commands per second over all sessions")
    m.add_argument("--include", type=_glob, action="append", default=[], metavar="GLOB")
    m.add_argument("--exclude", type=_glob, action="append", default=[], metavar="GLOB")
    m.add_argument("--max-files", type=_count, metavar="N")
    m.add_argument("--connect-timeout", type=_seconds, default=30.0, metavar="S")
    m.add_argument("--stall-timeout", type=_seconds, default=60.0, metavar="S")
    m.add_argument("--file-timeout", type=_seconds, metavar="S",
                   help="give up on a file after S seconds over all its attempts")
    m.add_argument("--retries", type=_count, default=5, metavar="N",
                   help="retries per file in a row without progress, default 5")
    m.add_argument("-v", "--verbose", action="store_true")
    return parser


def _options(args: argparse.Namespace) -> MirrorOptions:
    return MirrorOptions(
        concurrency=args.concurrency,
        rate_limit=args.rate_limit,
        command_rate=args.command_rate,
        include=tuple(args.include),
        exclude=tuple(args.exclude),
        max_files=args.max_files,
        timeouts=Timeouts(connect=args.connect_timeout, stall=args.stall_timeout,
                          file=args.file_timeout),
        retry=RetryPolicy(attempts=args.retries + 1),
    )


def human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


class LineReporter:
    """A line per finished, failed or retried file."""

    def __init__(self, console: Console) -> None:
        self.console = console

    def __call__(self, event: Event) -> None:
        if isinstance(event, FileDone):
            rate = event.received / event.seconds if event.seconds > 0 else 0.0
            resumed = (f", resumed at {human_bytes(event.resumed_from)}"
                       if event.resumed_from else "")
            tries = f", {event.attempts} attempts" if event.attempts > 1 else ""
            self.console.print(f"[green]done[/]    {event.name}  {human_bytes(event.size)}  "
                               f"{human_bytes(rate)}/s{resumed}{tries}", highlight=False)
        elif isinstance(event, FileFailed):
            self.console.print(f"[red]FAILED[/]  {event.name}: {event.reason}", highlight=False,
                               markup=True)
        elif isinstance(event, FileRetrying):
            self.console.print(f"[yellow]retry[/]   {event.name} (attempt {event.attempt} failed, "
                               f"next in {event.delay:.1f} s): {event.reason}", highlight=False)


def summary_table(report: MirrorReport) -> Table:
    rate = report.bytes_received / report.seconds if report.seconds > 0 else 0.0
    table = Table(title="pubmed-mirror summary", show_header=False)
    for label, value in (
        ("done", str(len(report.done))),
        ("skipped (up to date)", str(len(report.skipped))),
        ("failed", str(len(report.failed))),
        ("bytes received", human_bytes(report.bytes_received)),
        ("elapsed", f"{report.seconds:.1f} s"),
        ("mean rate", f"{human_bytes(rate)}/s"),
        ("retries", str(report.retries)),
    ):
        table.add_row(label, value)
    for failure in report.failed:
        table.add_row(f"[red]failed: {failure.name}[/]", failure.error or "")
    return table


async def _run_mirror(args: argparse.Namespace, console: Console) -> int:
    interrupted = False
    report: MirrorReport | None = None

    async def watch_signals(scope: anyio.CancelScope) -> None:
        nonlocal interrupted
        with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async for _ in signals:
                interrupted = True
                scope.cancel()
                return

    error: MirrorError | None = None
    async with anyio.create_task_group() as tg:
        tg.start_soon(watch_signals, tg.cancel_scope)
        try:
            report = await mirror(args.url, args.dest, _options(args),
                                  on_event=LineReporter(console))
        except MirrorError as exc:  # raised below, outside the task group's ExceptionGroup
            error = exc
        finally:
            tg.cancel_scope.cancel()
    if error is not None and not interrupted:
        raise error
    if interrupted or report is None:
        console.print("interrupted: partial files are kept and resume on the next run")
        return EXIT_INTERRUPTED
    console.print(summary_table(report))
    return EXIT_OK if report.ok else EXIT_FAILED


def _fail(error: BaseException) -> None:
    # plain print: one line, never wrapped to the terminal's width
    print(f"{PROG}: error: {error}", file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(format=f"{PROG}: %(levelname)s: %(message)s",
                        level=logging.INFO if args.verbose else logging.WARNING)
    try:
        check_writable(args.dest)  # before any network I/O
    except MirrorError as exc:
        _fail(exc)
        return EXIT_USAGE
    try:
        return anyio.run(_run_mirror, args, Console(highlight=False))
    except MirrorError as exc:
        _fail(exc)
        return EXIT_FAILED
    except OSError as exc:  # a local failure the library did not name (it should): one line
        _fail(exc)
        return EXIT_FAILED
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
