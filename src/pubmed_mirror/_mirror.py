"""The plan and the run: list one directory, pick the files, fetch them on a pool of sessions."""

from __future__ import annotations

import logging
import math
import os
import re
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Literal

import anyio
from anyio.abc import TaskGroup
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from ._errors import (
    FatalError,
    FileDeadlineExceeded,
    LocalFileError,
    MirrorError,
    ProtocolError,
    describe,
)
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
from ._pool import SessionPool
from ._ratelimit import TokenBucket
from ._retry import RetryPolicy
from ._source import FtpSource
from ._transfer import RemoteFile, fetch_file
from ._transport import RemoteEntry, Session, Source

__all__ = [
    "FileResult",
    "MirrorOptions",
    "MirrorReport",
    "Timeouts",
    "mirror",
    "mirror_events",
    "plan_files",
    "unsafe_name_reason",
]

log = logging.getLogger("pubmed_mirror")

EventCallback = Callable[[Event], None]


@dataclass(frozen=True, slots=True, kw_only=True)
class Timeouts:
    connect: float = 30.0  # TCP connect + login
    stall: float = 60.0  # no byte (or reply) for this long -> TransferStalled
    file: float | None = None  # whole-file deadline over all attempts -> FileDeadlineExceeded

    def __post_init__(self) -> None:
        for name in ("connect", "stall", "file"):
            value = getattr(self, name)
            if value is not None and not (value > 0 and math.isfinite(value)):
                raise ValueError(f"timeout {name} must be a positive number of seconds")


@dataclass(frozen=True, slots=True, kw_only=True)
class MirrorOptions:
    concurrency: int = 4  # sessions (control connections) at most
    rate_limit: int | None = None  # aggregate bytes/s over all sessions
    command_rate: float | None = None  # FTP commands/s over all sessions
    include: tuple[str, ...] = ()  # globs; a file must match one (when any is given)
    exclude: tuple[str, ...] = ()  # globs; a file must match none
    max_files: int | None = None  # the first N of the selection, in natural name order
    timeouts: Timeouts = field(default_factory=Timeouts)
    retry: RetryPolicy = field(default_factory=RetryPolicy)

    def __post_init__(self) -> None:
        if self.concurrency < 1:
            raise ValueError("concurrency must be >= 1")
        if self.rate_limit is not None and self.rate_limit < 1:
            raise ValueError("rate_limit must be >= 1 byte/s")
        if self.command_rate is not None and not self.command_rate > 0:
            raise ValueError("command_rate must be > 0")
        if self.max_files is not None and self.max_files < 0:
            raise ValueError("max_files must be >= 0")
        object.__setattr__(self, "include", tuple(self.include))
        object.__setattr__(self, "exclude", tuple(self.exclude))


Status = Literal["done", "skipped", "failed"]


@dataclass(frozen=True, slots=True)
class FileResult:
    name: str
    status: Status
    size: int | None
    received: int = 0  # bytes received in this run
    resumed_from: int = 0
    attempts: int = 0
    seconds: float = 0.0
    error: str | None = None


@dataclass(frozen=True, slots=True)
class MirrorReport:
    files: tuple[FileResult, ...]
    seconds: float

    def _with(self, status: Status) -> tuple[FileResult, ...]:
        return tuple(f for f in self.files if f.status == status)

    @property
    def done(self) -> tuple[FileResult, ...]:
        return self._with("done")

    @property
    def skipped(self) -> tuple[FileResult, ...]:
        return self._with("skipped")

    @property
    def failed(self) -> tuple[FileResult, ...]:
        return self._with("failed")

    @property
    def bytes_received(self) -> int:
        return sum(f.received for f in self.files)

    @property
    def retries(self) -> int:
        return sum(max(0, f.attempts - 1) for f in self.files)

    @property
    def ok(self) -> bool:
        return not self.failed


_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def unsafe_name_reason(name: str) -> str | None:
    """Why a name from the server must not become a local path (None when it is safe)."""
    if not name or name in (".", ".."):
        return "empty or dot name"
    if "/" in name or "\\" in name:
        return "contains a path separator"
    if ".." in name:
        return "contains '..'"
    if _CONTROL.search(name):
        return "contains NUL or control characters"
    if name.endswith((".part", ".part.meta")):
        return "clashes with our partial-file names"
    return None


def _natural_key(name: str) -> list[tuple[int, int | str]]:
    # pubmed26n0002 before pubmed26n0010 whatever the zero padding
    return [(0, int(p)) if p.isdigit() else (1, p) for p in re.split(r"(\d+)", name) if p]


def plan_files(entries: Sequence[RemoteEntry], options: MirrorOptions) -> list[RemoteEntry]:
    """The files to consider, in natural name order: safe, regular, selected, at most max_files."""
    chosen = []
    for entry in entries:
        if entry.kind != "file":
            if entry.kind == "link":
                log.warning("skipping symlink entry %r", entry.name)
            continue
        reason = unsafe_name_reason(entry.name)
        if reason is not None:
            log.warning("skipping entry %r: %s", entry.name, reason)
            continue
        if options.include and not any(fnmatchcase(entry.name, g) for g in options.include):
            continue
        if any(fnmatchcase(entry.name, g) for g in options.exclude):
            continue
        chosen.append(entry)
    chosen.sort(key=lambda e: _natural_key(e.name))
    return chosen if options.max_files is None else chosen[: options.max_files]


def is_current(local: Path, entry: RemoteEntry) -> bool:
    """The local copy has the remote size and (when known) the remote mtime."""
    try:
        st = local.stat()
    except OSError:
        return False
    if entry.size is None or st.st_size != entry.size:
        return False
    return entry.mtime is None or round(st.st_mtime) == round(entry.mtime)


def check_writable(dest: Path) -> None:
    """Fail before any network I/O when DEST cannot hold our files."""
    try:
        dest.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=dest, prefix=".pubmed-mirror-probe-"):
            pass
    except OSError as exc:
        raise LocalFileError(f"destination {dest} is not writable: {exc.strerror or exc}") from exc


def _bytes_bucket(rate: int | None) -> TokenBucket | None:
    # a quarter second's worth of burst (16 KiB .. 1 MiB); a larger chunk waits off its debt
    return None if rate is None else TokenBucket(rate, burst=min(1 << 20, max(16 << 10, rate / 4)))


class _Run:
    """One mirror run's state: the workers, their results and the events they emit."""

    def __init__(self, source: Source, dest: Path, options: MirrorOptions,
                 emit: EventCallback) -> None:
        self.source = source
        self.dest = dest
        self.options = options
        self.emit = emit
        self.results: list[FileResult] = []
        self.fatal: FatalError | None = None
        self.bucket = _bytes_bucket(options.rate_limit)
        commands = options.command_rate
        transport = source.transport(
            connect_timeout=options.timeouts.connect, stall_timeout=options.timeouts.stall,
            command_bucket=None if commands is None
            else TokenBucket(commands, burst=max(1.0, commands)))
        self.pool = SessionPool(transport, size=options.concurrency)

    async def run(self) -> None:
        async with self.pool:
            entries = await self.options.retry.call(self._list)
            files = plan_files(entries, self.options)
            self.emit(ListingDone(len(files), sum(e.size or 0 for e in files)))
            send, receive = anyio.create_memory_object_stream[RemoteEntry](
                max_buffer_size=self.options.concurrency)
            async with anyio.create_task_group() as tg:
                for _ in range(self.options.concurrency):
                    tg.start_soon(self._worker, receive.clone(), tg)
                receive.close()
                async with send:
                    for entry in files:
                        local = self.dest / entry.name
                        if await anyio.to_thread.run_sync(is_current, local, entry):
                            self.results.append(FileResult(entry.name, "skipped", entry.size))
                            self.emit(FileSkipped(entry.name, entry.size or 0))
                            continue
                        self.emit(FileQueued(entry.name, entry.size or 0))
                        await send.send(entry)
        if self.fatal is not None:
            raise self.fatal

    async def _list(self) -> list[RemoteEntry]:
        async with self.pool.session() as session:
            return await session.list(self.source.path)

    async def _worker(self, jobs: MemoryObjectReceiveStream[RemoteEntry], tg: TaskGroup) -> None:
        async with jobs:
            async for entry in jobs:
                try:
                    self.results.append(await self._fetch(entry))
                except FatalError as exc:
                    self.fatal = exc
                    tg.cancel_scope.cancel()
                    return

    async def _fetch(self, entry: RemoteEntry) -> FileResult:
        tracker = _Attempts(entry, self)
        started = time.monotonic()
        deadline = self.options.timeouts.file
        try:
            with anyio.fail_after(deadline if deadline is not None else math.inf):
                await self.options.retry.call(tracker.attempt, on_retry=tracker.on_retry,
                                              progress=tracker.furthest)
        except TimeoutError:
            error: MirrorError = FileDeadlineExceeded(
                f"not complete within {deadline:g} s", path=entry.name)
        except FatalError:
            raise
        except MirrorError as exc:
            error = exc
        else:
            seconds = time.monotonic() - started
            self.emit(FileDone(entry.name, tracker.size, tracker.received, tracker.resumed_from,
                               tracker.attempts, seconds))
            return FileResult(entry.name, "done", tracker.size, tracker.received,
                              tracker.resumed_from, tracker.attempts, seconds)
        self.emit(FileFailed(entry.name, describe(error), tracker.attempts))
        return FileResult(entry.name, "failed", entry.size, tracker.received,
                          tracker.resumed_from, tracker.attempts,
                          time.monotonic() - started, describe(error))


class _Attempts:
    """The attempts at one file: what each saw, for events and the report."""

    def __init__(self, entry: RemoteEntry, run: _Run) -> None:
        self.entry = entry
        self.run = run
        self.size = entry.size or 0
        self.attempts = 0
        self.received = 0
        self.resumed_from = 0
        self._position = 0
        self._furthest = 0

    def furthest(self) -> int:
        """The furthest byte any attempt reached: it grows only when a retry got further
        (a refetch from zero after a checksum mismatch is no progress)."""
        return self._furthest

    def on_retry(self, attempt: int, delay: float, error: BaseException) -> None:
        self.run.emit(FileRetrying(self.entry.name, attempt, delay, describe(error)))

    def _on_start(self, offset: int) -> None:
        if self.attempts == 1:
            self.resumed_from = offset
        self._position = offset
        self.run.emit(FileStarted(self.entry.name, self.size, offset, self.attempts))

    def _on_bytes(self, n: int) -> None:
        self.received += n
        self._position += n
        self._furthest = max(self._furthest, self._position)
        self.run.emit(FileProgress(self.entry.name, n, self._position, self.size))

    async def attempt(self) -> None:
        self.attempts += 1
        run = self.run
        async with run.pool.session() as session:
            remote = await self._remote(session)
            await fetch_file(
                session, remote, run.dest / self.entry.name,
                stall_timeout=run.options.timeouts.stall, bucket=run.bucket,
                on_start=self._on_start, on_bytes=self._on_bytes,
            )

    async def _remote(self, session: Session) -> RemoteFile:
        path = self.run.source.remote_path(self.entry.name)
        entry = self.entry
        if entry.size is None:  # the listing did not say: ask
            entry = await session.stat(path)
        if entry.size is None:  # never finalize without a size to check against
            raise ProtocolError("the server gives no size for this file", path=path)
        self.size = entry.size
        return RemoteFile(path, entry.size, entry.mtime if entry.mtime else self.entry.mtime)


async def mirror(
    source: str | FtpSource,
    dest: str | os.PathLike[str],
    options: MirrorOptions | None = None,
    *,
    on_event: EventCallback | None = None,
) -> MirrorReport:
    """Mirror the files of one remote directory into `dest`; return what happened to each.

    Files already present with the remote size and mtime are skipped; partial files are
    resumed. A file that fails is reported in the result, not raised; a FatalError (login
    refused, server unreachable) or a listing failure is raised.
    """
    options = options or MirrorOptions()
    src = FtpSource.parse(source) if isinstance(source, str) else source
    dest_path = Path(dest)
    await anyio.to_thread.run_sync(check_writable, dest_path)
    started = time.monotonic()
    run = _Run(src, dest_path, options, on_event or (lambda event: None))
    await run.run()
    return MirrorReport(tuple(run.results), time.monotonic() - started)


class EventFeed:
    """The events of a running mirror as an async iterator; `report` once it has finished."""

    def __init__(self, receive: MemoryObjectReceiveStream[Event]) -> None:
        self._receive = receive
        self.report: MirrorReport | None = None

    def __aiter__(self) -> AsyncIterator[Event]:
        return self._receive.__aiter__()


@asynccontextmanager
async def mirror_events(
    source: str | FtpSource,
    dest: str | os.PathLike[str],
    options: MirrorOptions | None = None,
    *,
    buffer: int = 1024,
) -> AsyncIterator[EventFeed]:
    """Run `mirror()` in the background and iterate over its events.

        async with mirror_events(url, dest) as feed:
            async for event in feed:
                ...
        report = feed.report

    FileProgress events are dropped while more than `buffer` events wait for a lagging
    consumer; every other event always arrives. Leaving the block early cancels the mirror;
    an error that stops the mirror is raised when the block exits.
    """
    send, receive = anyio.create_memory_object_stream[Event](max_buffer_size=math.inf)
    feed = EventFeed(receive)
    failure: list[MirrorError] = []

    async def produce() -> None:
        async with send:
            try:
                feed.report = await mirror(source, dest, options,
                                           on_event=_sender(send, buffer))
            except MirrorError as exc:
                failure.append(exc)

    with receive:  # closed only after the task group ended: no worker sends into it then
        async with anyio.create_task_group() as tg:
            tg.start_soon(produce)
            try:
                yield feed
            finally:
                tg.cancel_scope.cancel()
    if failure:
        raise failure[0]


def _sender(send: MemoryObjectSendStream[Event], buffer: int) -> EventCallback:
    """An event callback feeding `send`; progress is dropped while the consumer lags."""

    def emit(event: Event) -> None:
        lagging = send.statistics().current_buffer_used > buffer
        if not (lagging and isinstance(event, FileProgress)):
            try:
                send.send_nowait(event)
            except (anyio.BrokenResourceError, anyio.ClosedResourceError):
                pass  # the consumer left early; the mirror is being cancelled

    return emit
