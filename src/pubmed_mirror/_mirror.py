"""The plan and the run: list one directory, pick the files, fetch them on a pool of sessions."""

from __future__ import annotations

import functools
import logging
import math
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, NoReturn

import anyio
from anyio.abc import TaskGroup
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from ._direct import Mover
from ._errors import (
    ChecksumMismatch,
    FatalError,
    FileDeadlineExceeded,
    MirrorError,
    PermanentError,
    ProtocolError,
    RemoteFileError,
    TransientError,
    TruncatedTransfer,
    WrongVersion,
    describe,
    ungrouped,
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
from ._plan import (
    MirrorPlan,
    PlannedFile,
    Selection,
    check_writable,
    create_dest,
    make_plan,
    remove_unused_dest,
    same_time,
    select_files,
)
from ._pool import SessionPool
from ._pubmed import file_order, parse_md5_file
from ._ratelimit import TokenBucket
from ._retry import RetryPolicy
from ._source import parse_source
from ._state import DestLock, Manifest, ManifestEntry
from ._tail import FileTail, Tails, segments_on_disk
from ._transfer import (
    PartDigest,
    RemoteFile,
    Span,
    discard_empty_part,
    discard_part,
    fetch_small,
    file_md5,
    finalize,
    local_errors,
    part_path,
    part_started,
    part_validator,
    receive_span,
    start_part,
    started_from,
    sync_directory,
    write_atomically,
)
from ._transport import RemoteEntry, Session, Source

__all__ = [
    "FileResult",
    "MirrorOptions",
    "MirrorReport",
    "Timeouts",
    "mirror",
    "list_remote",
    "mirror_events",
    "plan_mirror",
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


SPLIT_MIN = 8 << 20  # halves of >= 4 MiB: at a few MB/s per connection, worth a new RETR


@dataclass(frozen=True, slots=True, kw_only=True)
class MirrorOptions:
    concurrency: int = 4  # sessions (control connections) at most
    rate_limit: int | None = None  # aggregate bytes/s over all sessions
    command_rate: float | None = None  # FTP commands/s over all sessions
    include: tuple[str, ...] = ()  # globs; a file must match one (when any is given)
    exclude: tuple[str, ...] = ()  # globs; a file must match none
    max_files: int | None = None  # the first N of the selection, in load order
    newest: int | None = None  # only the last N files by PubMed file number
    verify: bool = True  # check each file against its NAME.md5 when the server has one
    # an idle session splits a file being received when it has this many bytes left (None:
    # never); see `_tail`
    split_min: int | None = SPLIT_MIN
    # receive with os.splice (socket -> pipe -> file, no copy through Python) where the
    # platform has it; False: recv_into one buffer and write it (see `_direct`)
    splice: bool = True
    timeouts: Timeouts = field(default_factory=Timeouts)
    retry: RetryPolicy = field(default_factory=RetryPolicy)

    def __post_init__(self) -> None:
        if self.concurrency < 1:
            raise ValueError("concurrency must be >= 1")
        if self.rate_limit is not None and self.rate_limit < 1:
            raise ValueError("rate_limit must be >= 1 byte/s")
        if self.command_rate is not None and not self.command_rate > 0:
            raise ValueError("command_rate must be > 0")
        for name in ("max_files", "newest"):
            value = getattr(self, name)
            if value is not None and value < 0:
                raise ValueError(f"{name} must be >= 0")
        if self.split_min is not None and self.split_min < 2:
            raise ValueError("split_min must be >= 2 bytes")
        object.__setattr__(self, "include", tuple(self.include))
        object.__setattr__(self, "exclude", tuple(self.exclude))

    def selection(self, default_include: tuple[str, ...] = ()) -> Selection:
        """The file selection; `default_include` (a preset's) applies when include is empty."""
        return Selection(include=self.include or default_include, exclude=self.exclude,
                         newest=self.newest, max_files=self.max_files)


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
    md5: str | None = None  # the digest the file was checked against (None: not checked)


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


def _bytes_bucket(rate: int | None) -> TokenBucket | None:
    # a quarter second's worth of burst (16 KiB .. 1 MiB); a larger chunk waits off its debt
    return None if rate is None else TokenBucket(rate, burst=min(1 << 20, max(16 << 10, rate / 4)))


class _Run:
    """One mirror run's state: the workers, their results and the events they emit."""

    def __init__(self, source: Source, dest: Path, options: MirrorOptions,
                 emit: EventCallback, manifest: Manifest) -> None:
        self.source = source
        self.dest = dest
        self.options = options
        self.emit = emit
        self.manifest = manifest
        self.results: list[FileResult] = []
        self.fatal: FatalError | None = None
        self.bucket = _bytes_bucket(options.rate_limit)
        self.mover: Mover = "splice" if options.splice else "recv"
        commands = options.command_rate
        transport = source.transport(
            connect_timeout=options.timeouts.connect, stall_timeout=options.timeouts.stall,
            command_bucket=None if commands is None
            else TokenBucket(commands, burst=max(1.0, commands)))
        self.pool = SessionPool(transport, size=options.concurrency)
        self.tails = Tails(options.split_min)
        self.splittable: dict[FileTail, _Attempts] = {}  # the files being received

    async def plan(self) -> MirrorPlan:
        """List the remote directory (with retries) and decide what each file needs."""
        entries = await self.options.retry.call(self._list)
        files = select_files(entries, self.options.selection(self.source.default_include))
        plan = await anyio.to_thread.run_sync(
            functools.partial(make_plan, self.dest, self.manifest, files,
                              verify=self.options.verify))
        log.info("%s: %d entries listed, %d selected: %d to fetch, %d to check, %d up to date",
                 self.source, len(entries), len(plan.files), len(plan.with_action("fetch")),
                 len(plan.with_action("check")), len(plan.with_action("skip")))
        return plan

    async def run(self) -> None:
        async with self.pool:
            plan = await self.plan()
            self.emit(ListingDone(len(plan.files), sum(f.size for f in plan.files)))
            with ungrouped():
                await self._feed(plan)
        if self.fatal is not None:
            raise self.fatal

    async def _feed(self, plan: MirrorPlan) -> None:
        """Hand the files to `concurrency` workers, in order."""
        send, receive = anyio.create_memory_object_stream[PlannedFile](
            max_buffer_size=self.options.concurrency)
        async with anyio.create_task_group() as tg:
            for _ in range(self.options.concurrency):
                tg.start_soon(self._worker, receive.clone(), tg)
            receive.close()
            async with send:
                for planned in plan.files:
                    if planned.action == "skip":
                        self._skipped(planned)
                        continue
                    self.emit(FileQueued(planned.name, planned.size))
                    await send.send(planned)

    def _skipped(self, planned: PlannedFile) -> None:
        self.results.append(FileResult(planned.name, "skipped", planned.size))
        self.emit(FileSkipped(planned.name, planned.size))

    async def _list(self) -> list[RemoteEntry]:
        return await _list_dir(self.pool, self.source.path)

    async def _worker(self, jobs: MemoryObjectReceiveStream[PlannedFile], tg: TaskGroup) -> None:
        try:
            async with jobs:
                async for planned in jobs:
                    self.results.append(await self._fetch(planned))
            await self._help()
        except FatalError as exc:
            self.fatal = exc
            tg.cancel_scope.cancel()

    async def _help(self) -> None:
        """Nothing left in the queue: take over half of a file still being received, until
        no file is."""
        while True:
            job = self.tails.steal(self.splittable)
            if job is not None:
                tail, span = job
                await self.splittable[tail].segment(tail, span, helper=True)
            elif self.tails.in_flight == 0:
                return
            else:
                await self.tails.changed()

    async def _fetch(self, planned: PlannedFile) -> FileResult:
        tracker = _Attempts(planned, self)
        self.tails.in_flight += 1
        try:
            return await self._attempts(tracker)
        finally:
            tracker.untrack()
            self.tails.in_flight -= 1
            self.tails.notify()

    async def _attempts(self, tracker: _Attempts) -> FileResult:
        planned = tracker.planned
        started = time.monotonic()
        deadline = self.options.timeouts.file
        try:
            with anyio.fail_after(deadline if deadline is not None else math.inf):
                await self.options.retry.call(tracker.attempt, on_retry=tracker.on_retry,
                                              progress=tracker.furthest)
        except TimeoutError:
            error: MirrorError = FileDeadlineExceeded(
                f"not complete within {deadline:g} s", path=planned.name)
        except FatalError:
            raise
        except MirrorError as exc:
            error = exc
        else:
            if tracker.local_copy_kept:
                self.emit(FileSkipped(planned.name, planned.size))
                return FileResult(planned.name, "skipped", planned.size)
            seconds = time.monotonic() - started
            self.emit(FileDone(planned.name, tracker.size, tracker.received,
                               tracker.resumed_from, tracker.attempts, seconds, tracker.md5))
            return FileResult(planned.name, "done", tracker.size, tracker.received,
                              tracker.resumed_from, tracker.attempts, seconds, md5=tracker.md5)
        tracker.untrack()  # its segments stay on disk: the next run resumes them
        await anyio.to_thread.run_sync(discard_empty_part, self.dest / planned.name)
        self.emit(FileFailed(planned.name, describe(error), tracker.attempts))
        return FileResult(planned.name, "failed", planned.entry.size, tracker.received,
                          tracker.resumed_from, tracker.attempts,
                          time.monotonic() - started, describe(error))


class _Attempts:
    """The attempts at one file: what each saw, for events, the report and the manifest."""

    def __init__(self, planned: PlannedFile, run: _Run) -> None:
        self.planned = planned
        self.entry = planned.entry
        self.run = run
        self.size = planned.size
        self.attempts = 0
        self.received = 0
        self.resumed_from = 0
        self.md5: str | None = None  # the expected digest, once known
        self.mtime = planned.entry.mtime  # stamped on the final file and recorded
        self.local_copy_kept = False  # a "check" found the local copy right
        self._checksum: bytes | None = None  # NAME.md5's bytes, fetched once per digest
        self._checked = planned.action != "check"
        self._position = 0
        self._furthest = 0
        self._furthest_before = 0  # at the start of the current attempt
        self.remote: RemoteFile | None = None  # what the current attempt fetches
        self.current = planned.entry  # the version it fetches, as listed or as SIZE/MDTM say
        self.tail: FileTail | None = None  # its spans, once it is being received
        self._digest: PartDigest | None = None  # the current attempt's

    def furthest(self) -> int:
        """The furthest byte any attempt reached: it grows only when a retry got further
        (a refetch from zero after a checksum mismatch is no progress)."""
        return self._furthest

    def on_retry(self, attempt: int, delay: float, error: BaseException) -> None:
        if isinstance(error, ChecksumMismatch | WrongVersion):
            self._checksum = None  # the server may have replaced both: ask again
        self.run.emit(FileRetrying(self.entry.name, attempt, delay, describe(error)))

    def _on_start(self, offset: int) -> None:
        if self.attempts == 1:
            self.resumed_from = offset
        self._position = offset
        log.info("%s: attempt %d, from byte %d of %d", self.entry.name, self.attempts, offset,
                 self.size)
        self.run.emit(FileStarted(self.entry.name, self.size, offset, self.attempts))

    def _on_bytes(self, n: int) -> None:
        self.received += n
        self._position += n
        self._furthest = max(self._furthest, self._position)
        self.run.emit(FileProgress(self.entry.name, n, self._position, self.size))
        if self.run.tails.waiting:  # a session may be waiting for a span to split
            self.run.tails.notify()

    async def attempt(self) -> None:
        self.attempts += 1
        verify = self.run.options.verify
        remote = None
        self._furthest_before = self._furthest
        async with self.run.pool.session() as session:
            if verify:
                self.md5 = await self._expected_md5(session)
            if not self._checked:
                self._checked = True
                self.local_copy_kept = await anyio.to_thread.run_sync(self._local_copy_is_right)
            if not verify:
                await self._companion(session)
            if not self.local_copy_kept:
                self.remote = remote = await self._remote(session)
                await self._restarting(self._receive_first(session, remote))
        if remote is not None:
            await self._restarting(self._complete(remote))  # which records it
        else:
            await anyio.to_thread.run_sync(self._record)

    async def _restarting(self, receiving: Awaitable[None]) -> None:
        """An answer of another version than the part's (in any span) means the part is
        of a version the server no longer serves: all of it goes, the retry starts at 0."""
        try:
            await receiving
        except WrongVersion:
            self.untrack()
            if self.tail is not None:
                self.tail.reset()
                self.tail = None
            await anyio.to_thread.run_sync(discard_part,
                                           part_path(self.run.dest / self.entry.name))
            raise

    async def _receive_first(self, session: Session, remote: RemoteFile) -> None:
        """Receive NAME.part's span (all of the file unless it was split)."""
        part = part_path(self.run.dest / self.entry.name)
        scan = self.tail is None or not self.tail.spans
        have, found, restarted, remote = await anyio.to_thread.run_sync(_prepare, part, remote,
                                                                        scan)
        self.remote = remote  # with the validator the part was started from
        if restarted and self.tail is not None:  # another version, or its record was lost:
            self.untrack()                       # the segments are gone with the part
            self.tail.reset()
            self.tail = None
        if self.tail is None:
            exact = (self.current.size is not None and self.current.mtime is not None
                     and self.current.mtime_resolution <= 1)
            self.tail = FileTail(part, remote.size, splittable=remote.md5 is not None or exact)
        tail = self.tail
        first = tail.start(have, found)
        self._on_start(tail.have())
        self.run.splittable[tail] = self
        self.run.tails.notify()  # its segments left on disk, if any, are for idle sessions
        # hashes the part while it is received (a new one each attempt: see PartDigest)
        self._digest = PartDigest(part) if remote.md5 is not None else None
        await receive_span(session, remote, first, stall_timeout=self.run.options.timeouts.stall,
                           bucket=self.run.bucket, on_bytes=self._on_bytes,
                           mover=self.run.mover, digest=self._digest)

    async def _complete(self, remote: RemoteFile) -> None:
        """Receive the segments nobody else is receiving (or split them further), wait for
        the others, then stitch and finalize NAME."""
        tail = self.tail
        assert tail is not None
        while not tail.complete():
            span = tail.orphan(helper=False)
            if span is None and (job := self.run.tails.steal([tail])) is not None:
                span = job[1]
            if span is not None:
                try:
                    await self.segment(tail, span, helper=False)
                except RemoteFileError as exc:  # say, REST refused: resuming cannot work here
                    await self._unsplit(tail, exc)
            else:
                await self.run.tails.changed()
        self.untrack()
        try:
            await anyio.to_thread.run_sync(self._finish, tail, remote)
        except ChecksumMismatch:
            self._furthest = self._furthest_before  # the bytes were thrown away: no progress
            self.tail = None  # the part and its segments are gone (`finalize`)
            raise

    async def _unsplit(self, tail: FileTail, error: RemoteFileError) -> NoReturn:
        """A segment the server will not serve: no more splitting in this run, and this file
        is fetched again whole, from byte 0 (a file that is really gone fails then)."""
        self.run.tails.min_split = None
        log.warning("%s: a segment was refused (%s): splitting off, fetching it whole",
                    self.entry.name, describe(error))
        self.untrack()
        tail.reset()
        self.tail = None
        await anyio.to_thread.run_sync(discard_part, tail.part)
        raise TruncatedTransfer(f"a segment was refused: {describe(error)}",
                                path=self.entry.name) from error

    def _finish(self, tail: FileTail, remote: RemoteFile) -> None:
        """Stitch, check and rename NAME, then record it: one trip to a worker thread."""
        tail.stitch()
        finalize(tail.part, self.run.dest / self.entry.name, remote, self._digest)
        self._record()

    async def segment(self, tail: FileTail, span: Span, *, helper: bool) -> None:
        """Receive one segment of `tail` (with retries). A helper that cannot leaves it to
        the file's own attempt."""
        assert self.remote is not None
        remote = self.remote
        span.taken = True
        scope = anyio.CancelScope()  # cancelled when the file starts again or fails
        tail.scopes.add(scope)
        try:
            with scope:
                log.info("%s: bytes %d-%d on another session", self.entry.name, span.pos,
                         span.end)
                await self.run.options.retry.call(
                    functools.partial(self._segment_attempt, tail, remote, span),
                    progress=lambda: span.pos)
        except (TransientError, PermanentError) as exc:
            if not helper:
                raise
            span.given_up = True
            log.warning("%s: bytes %d-%d left to its first session: %s", self.entry.name,
                        span.pos, span.end, describe(exc))
        finally:
            tail.scopes.discard(scope)
            span.taken = False
            self.run.tails.notify()

    async def _segment_attempt(self, tail: FileTail, remote: RemoteFile, span: Span) -> None:
        # the validator the part's first answer recorded, which a segment's request names
        remote = await anyio.to_thread.run_sync(started_from, tail.part, remote)
        async with self.run.pool.session() as session:
            if remote.md5 is None:
                # another connection, another RETR: still the version the part holds? (with
                # an MD5, a splice of two versions fails the check instead)
                now = await session.stat(remote.path)
                if not _same_version(self.current, now, None):
                    raise ProtocolError("changed on the server during the transfer",
                                        path=remote.path)
            await receive_span(session, remote, span,
                               stall_timeout=self.run.options.timeouts.stall,
                               bucket=self.run.bucket, on_bytes=self._on_bytes,
                               mover=self.run.mover)

    def untrack(self) -> None:
        """No more splitting of this file: stop its helpers."""
        if self.tail is not None and self.run.splittable.pop(self.tail, None) is not None:
            self.tail.stop_helpers()

    async def _expected_md5(self, session: Session) -> str | None:
        """NAME's digest from NAME.md5 on the server (fetched once per digest, checked against
        the listed size and parsed); None when the server has no NAME.md5. A short or
        unreadable NAME.md5 is a transient error: it is fetched again."""
        checksum = self.planned.checksum
        if checksum is None:
            return None
        path = self.run.source.remote_path(checksum.name)
        if self._checksum is None:
            data = await fetch_small(session, path, limit=_CHECKSUM_LIMIT,
                                     stall_timeout=self.run.options.timeouts.stall)
            if checksum.size is not None and len(data) != checksum.size:
                raise TruncatedTransfer(f"checksum file: {len(data)} bytes, the listing says "
                                        f"{checksum.size}", path=path)
            self._checksum = data
        try:
            return parse_md5_file(self._checksum, self.entry.name)
        except ValueError as exc:
            self._checksum = None
            raise ProtocolError(f"cannot read the checksum file: {exc}", path=path) from None

    async def _companion(self, session: Session) -> None:
        """--no-verify: NAME.md5 still travels with NAME when it can, but never fails it."""
        try:
            await self._expected_md5(session)
        except (TransientError, PermanentError) as exc:
            self._checksum = None
            log.warning("%s: not kept beside %s: %s", self.planned.checksum.name
                        if self.planned.checksum else "", self.entry.name, describe(exc))

    def _local_copy_is_right(self) -> bool:
        """A "check": the local copy has the remote size and mtime; is it the right bytes?
        A wrong copy stays in place until the fetched one replaces it (atomically)."""
        local = self.run.dest / self.entry.name
        row = self.run.manifest.get(self.entry.name)
        if row is not None and row.bad is not None:
            log.warning("%s: `verify` found it wrong (%s); fetching it again", local, row.bad)
            return False
        if self.md5 is None or (row is not None and row.md5 == self.md5 and row.size == self.size
                                and same_time(row.mtime, self.entry)):
            return True
        with local_errors(local):
            if file_md5(local) == self.md5:
                return True
        log.warning("%s: local copy does not match its MD5; fetching it again", local)
        return False

    async def _remote(self, session: Session) -> RemoteFile:
        path = self.run.source.remote_path(self.entry.name)
        entry = self.entry
        if entry.size is None:  # the listing did not say: ask
            entry = await session.stat(path)
        elif self._furthest > 0:  # a retry that would resume: is it still the same file?
            now = await session.stat(path)
            part = part_path(self.run.dest / self.entry.name)
            started = await anyio.to_thread.run_sync(part_started, part)
            recorded = await anyio.to_thread.run_sync(part_validator, part)
            if not _same_version(entry, now, started) or (
                    None not in (recorded, now.validator) and recorded != now.validator):
                # the part's record then names another version: it starts again from 0
                log.warning("%s: changed on the server since the listing (%s bytes, mtime %s;"
                            " now %s, %s): fetching it from the start", path, entry.size,
                            entry.mtime, now.size, now.mtime)
                entry = now
        if entry.size is None:  # never finalize without a size to check against
            raise ProtocolError("the server gives no size for this file", path=path)
        self.size = entry.size
        self.mtime = entry.mtime if entry.mtime else self.entry.mtime
        self.current = entry
        return RemoteFile(path, entry.size, self.mtime, self.md5, entry.validator)

    def _record(self) -> None:
        """NAME is final: write NAME.md5 beside it, then vouch for both in the manifest."""
        now = time.time()
        dest, manifest, checksum = self.run.dest, self.run.manifest, self.planned.checksum
        if checksum is not None and self._checksum is not None:
            write_atomically(dest / checksum.name, self._checksum, checksum.mtime)
            manifest.record(ManifestEntry(checksum.name, len(self._checksum), checksum.mtime,
                                          None, now))
        manifest.record(ManifestEntry(self.entry.name, self.size, self.mtime, self.md5,
                                      now, now if self.md5 else None))


def _prepare(part: Path, remote: RemoteFile, scan: bool
             ) -> tuple[int, list[Span], bool, RemoteFile]:
    """NAME.part's length (started afresh, its segments removed, unless it is of this
    version: `restarted`), when `scan` the segments a previous attempt or run left, and
    `remote` with the validator the part was started from. Run in a thread."""
    have, restarted = start_part(part, remote)
    remote = started_from(part, remote)
    if scan and not restarted:
        have, found = segments_on_disk(part, remote.size, have)
        return have, found, restarted, remote
    return have, [], restarted, remote


def _same_version(listed: RemoteEntry, now: RemoteEntry, part_started: float | None) -> bool:
    """SIZE and MDTM describe the file the listing showed, whose part began at
    `part_started`. MLSD's time is UTC to the second, like MDTM's: compared directly. An
    `ls -l` time is coarse and often the server's local time, so MDTM (UTC) is compared with
    when the part began instead: a file modified since then, or shortly before (the server's
    clock may be behind), is taken for a new version."""
    if now.size is not None and now.size != listed.size:
        return False
    if listed.mtime is None or now.mtime is None:
        return True
    if listed.mtime_resolution <= 1:
        return -1 < now.mtime - listed.mtime < 2
    return part_started is not None and now.mtime < part_started - _CLOCK_SKEW


_CLOCK_SKEW = 3600.0  # erring this way costs a restart from 0, never a splice


async def _list_dir(pool: SessionPool, path: str) -> list[RemoteEntry]:
    async with pool.session() as session:
        return await session.list(path)


_CHECKSUM_LIMIT = 64 << 10  # an NCBI .md5 is ~60 bytes; anything this big is not one


def _open_source(source: str | Source) -> Source:
    return parse_source(source) if isinstance(source, str) else source


async def list_remote(
    source: str | Source,
    *,
    timeouts: Timeouts | None = None,
    retry: RetryPolicy | None = None,
) -> list[RemoteEntry]:
    """The entries of the source's directory (files, dirs, links), in PubMed load order."""
    src = _open_source(source)
    timeouts = timeouts or Timeouts()
    transport = src.transport(connect_timeout=timeouts.connect, stall_timeout=timeouts.stall)
    async with SessionPool(transport, size=1) as pool:
        entries = await (retry or RetryPolicy()).call(lambda: _list_dir(pool, src.path))
    return sorted(entries, key=lambda e: file_order(e.name))


async def plan_mirror(
    source: str | Source,
    dest: str | os.PathLike[str],
    options: MirrorOptions | None = None,
) -> MirrorPlan:
    """What `mirror()` would do, without transferring anything (a dry run): lists the remote
    directory and compares it with DEST and its manifest."""
    dest_path = Path(dest)
    with Manifest.open(dest_path, create=False) as manifest:
        run = _Run(_open_source(source), dest_path, options or MirrorOptions(),
                   lambda event: None, manifest)
        async with run.pool:
            return await run.plan()


async def mirror(
    source: str | Source,
    dest: str | os.PathLike[str],
    options: MirrorOptions | None = None,
    *,
    on_event: EventCallback | None = None,
) -> MirrorReport:
    """Mirror the files of one remote directory into `dest`; return what happened to each.

    Files the manifest vouches for are skipped; partial files are resumed; a file with a
    NAME.md5 beside it on the server is checked against it before it becomes final. A file
    that fails is reported in the result, not raised; a FatalError (login refused, server
    unreachable, DEST locked by another run) or a listing failure is raised.
    """
    options = options or MirrorOptions()
    src = _open_source(source)
    dest_path = Path(dest)
    await anyio.to_thread.run_sync(check_writable, dest_path)
    started = time.monotonic()
    created = await anyio.to_thread.run_sync(create_dest, dest_path)
    with DestLock(dest_path):
        try:
            with Manifest.open(dest_path) as manifest:
                run = _Run(src, dest_path, options, on_event or (lambda event: None), manifest)
                try:
                    await run.run()
                finally:
                    with anyio.CancelScope(shield=True):
                        await anyio.to_thread.run_sync(sync_directory, dest_path)
        except BaseException:
            if created:  # a failed listing leaves no empty DEST behind (still under our lock)
                remove_unused_dest(dest_path)
            raise
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
    source: str | Source,
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

    with receive, ungrouped():  # receive closes after the task group: no worker sends then
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
