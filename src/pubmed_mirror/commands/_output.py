"""What a run shows: progress bars or lines, JSON events, the summary; and Ctrl-C."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import re
import signal
import sys
import time
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

import anyio
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from .._errors import ungrouped
from .._events import (
    BaselineChanged,
    Event,
    FileDeleted,
    FileDone,
    FileFailed,
    FileProgress,
    FileQueued,
    FileRetrying,
    FileSkipped,
    FileStarted,
    ListingDone,
)
from .._report import MirrorReport
from ._args import (
    EXIT_INTERRUPTED,
)

T = TypeVar("T")

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
        self.position: dict[str, int] = {}  # bytes in hand per queued file, until it ends
        self.settled = 0  # bytes of the files that ended (skipped: their whole size)
        self._received = 0
        self._samples: deque[tuple[float, int]] = deque([(clock(), 0)])

    def on(self, event: Event) -> None:
        if isinstance(event, ListingDone):
            self.files, self.total_bytes = event.files, event.total_bytes
        elif isinstance(event, FileQueued):
            self.position[event.name] = 0
        elif isinstance(event, FileSkipped):  # a million of them: counted, not kept
            self.position.pop(event.name, None)
            self.settled += event.size
            self.finished += 1
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
            self.position.pop(event.name, None)
            self.settled += event.size
        elif isinstance(event, FileFailed):
            self.finished += 1
            self.failed += 1
            self.settled += self.position.pop(event.name, 0)

    def _sample(self) -> None:
        now = self.clock()
        self._samples.append((now, self._received))
        while len(self._samples) > 2 and now - self._samples[1][0] >= self.WINDOW:
            self._samples.popleft()

    @property
    def bytes_done(self) -> int:
        return self.settled + sum(self.position.values())

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


def _file_line(event: Event, primary: str) -> str | None:
    """The line a finished, failed or retried file gets (rich markup), None for the others;
    a file that came over another protocol than the source's `primary` one says so."""
    if isinstance(event, FileDone):
        rate = event.received / event.seconds if event.seconds > 0 else 0.0
        resumed = f", resumed at {human_bytes(event.resumed_from)}" if event.resumed_from else ""
        tries = f", {event.attempts} attempts" if event.attempts > 1 else ""
        checked = ", MD5 ok" if event.md5 else ""
        over = f", over {event.via}" if event.via and event.via != primary else ""
        unrecorded = (f" [yellow](not recorded: {escape(event.record_error)})[/]"
                      if event.record_error else "")
        return (f"[green]done[/]    {escape(event.name)}  {human_bytes(event.size)}  "
                f"{human_bytes(rate)}/s{resumed}{tries}{checked}{over}{unrecorded}")
    if isinstance(event, FileFailed):
        return f"[red]FAILED[/]  {escape(shown(event.name))}: {escape(event.reason)}"
    if isinstance(event, FileRetrying):
        return (f"[yellow]retry[/]   {escape(event.name)} (attempt {event.attempt} failed, "
                f"next in {event.delay:.1f} s): {escape(event.reason)}")
    if isinstance(event, FileDeleted):
        return f"[magenta]deleted[/] {escape(event.name)}: {escape(event.reason)}"
    if isinstance(event, BaselineChanged):
        return (f"[cyan]new year[/] {event.new} is listed: fetching it; {event.old} stays "
                f"until {event.new} is complete")
    return None


class LineReporter:
    """Not a terminal: a line per finished, failed or retried file, and `tick()` lines."""

    def __init__(self, console: Console, *, quiet: bool = False, primary: str = "") -> None:
        self.console = console
        self.quiet = quiet
        self.primary = primary  # the source's own protocol ("ftp" for FTP with a fallback)
        self.tally = Tally()

    def __call__(self, event: Event) -> None:
        self.tally.on(event)
        if self.quiet and not isinstance(event, FileFailed):
            return
        line = _file_line(event, self.primary)
        if line is not None:
            self.console.print(line, highlight=False, soft_wrap=True)  # one line each

    async def run(self, every: float) -> None:
        while not self.quiet:
            await anyio.sleep(every)
            if self.tally.files:
                self.console.print(self.tally.line(), highlight=False, markup=False,
                                   soft_wrap=True)


class JsonReporter:
    """Newline-delimited JSON: one object per event, then one for the summary."""

    def __call__(self, event: Event) -> None:
        # shallow, and without an event's error object (`exception`), which is no JSON
        emit_json({"event": _snake(type(event).__name__),
                   **{f.name: getattr(event, f.name) for f in dataclasses.fields(event)
                      if f.name != "exception"}})

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
        ("skipped (up to date)", str(report.skipped_count)),
        ("failed", str(len(report.failed))),
        ("MD5 verified", str(sum(1 for f in report.done if f.md5))),
        ("bytes received", human_bytes(report.bytes_received)),
        ("elapsed", f"{report.seconds:.1f} s"),
        ("mean rate", f"{human_bytes(rate)}/s"),
        ("retries", str(report.retries)),
        *([("fetched over", _per_protocol(report))] if report.via else []),
        *([("not recorded", f"{len(report.unrecorded)} (the next run records them, "
                            f"fetching nothing)")] if report.unrecorded else []),
    ):
        table.add_row(label, value)
    if report.repaired:
        table.add_row(Text(f"repaired over {_fallback_via(report)}", style="yellow"),
                      Text(_few(report.repaired)))
    for failure in report.failed:
        table.add_row(Text(f"failed: {shown(failure.name)}", style="red"),
                      Text(failure.error or ""))
    for file in report.unrecorded:
        table.add_row(Text(f"not recorded: {shown(file.name)}", style="yellow"),
                      Text(file.record_error or ""))
    for name in report.deleted:
        table.add_row(Text(f"deleted: {shown(name)}", style="magenta"), "")
    if report.superseded and not report.deleted:
        table.add_row("superseded (kept)", f"{len(report.superseded)} files of an older year "
                                           "(--delete removes them)")
    if report.deletion_refused:
        table.add_row(Text("deletion refused", style="red"), Text(report.deletion_refused))
    return table


def _per_protocol(report: MirrorReport) -> str:
    """Files fetched per protocol: "ftp 7, https 1"."""
    return ", ".join(f"{via} {n}" for via, n in sorted(report.via.items()))


def _fallback_via(report: MirrorReport) -> str:
    return "/".join(sorted({f.via for f in report.done if f.repaired}))


def _few(names: tuple[str, ...], most: int = 3) -> str:
    """The first `most` names, and how many more: a summary stays short."""
    more = f" and {len(names) - most} more (--json names them all)" if len(names) > most else ""
    return ", ".join(shown(n) for n in names[:most]) + more


def shown(name: str) -> str:
    """A name (or a listing line we could not read) as printed: control and bidi characters
    escaped, as in `repr`, so that what the server sent cannot drive the terminal."""
    return name if name.isprintable() else repr(name)


def summary_json(report: MirrorReport) -> dict[str, Any]:
    return {"event": "summary", "ok": report.ok, "done": len(report.done),
            "skipped": report.skipped_count, "failed": len(report.failed),
            "bytes_received": report.bytes_received, "seconds": round(report.seconds, 3),
            "retries": report.retries, "via": report.via, "repaired": list(report.repaired),
            "failures": [{"name": f.name, "error": f.error} for f in report.failed],
            "unrecorded": [{"name": f.name, "error": f.record_error} for f in report.unrecorded],
            "deleted": list(report.deleted), "superseded": list(report.superseded),
            "deletion_refused": report.deletion_refused}


# -- running with Ctrl-C --------------------------------------------------------------------------


async def interruptible(work: Callable[[], Awaitable[T]],
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


def interrupted(json_stream: bool = False) -> int:
    """Exit 130, saying so on stderr, and (`json_stream`) as the JSON stream's last object
    (an `error` event, as for any other end)."""
    said = "interrupted: partial files are kept and resume on the next run"
    print(said, file=sys.stderr)
    if json_stream:
        with contextlib.suppress(BrokenPipeError):  # (its reader left: stderr's line stands)
            emit_json({"event": "error", "error": said})
    return EXIT_INTERRUPTED
