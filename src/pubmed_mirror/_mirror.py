"""The plan and the run: list the source (`_runlisting`), pick the files, fetch them on a
pool of sessions."""

from __future__ import annotations

import functools
import logging
import math
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import replace
from pathlib import Path

import anyio
from anyio.abc import TaskGroup
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from ._attempts import FileAttempts
from ._budget import Budget
from ._direct import Mover
from ._errors import (
    FatalError,
    FileDeadlineExceeded,
    MirrorError,
    ProtocolError,
    ResumeRefused,
    describe,
    ungrouped,
)
from ._events import (
    BaselineChanged,
    Event,
    FileDeleted,
    FileDone,
    FileFailed,
    FileQueued,
    FileSkipped,
    ListingDone,
)
from ._landing import Landings
from ._lifecycle import (
    Changeover,
    Deletions,
    delete_files,
    discard_stale_parts,
    remove_emptied,
)
from ._options import MirrorOptions
from ._plan import (
    MirrorPlan,
    PlannedFile,
    check_writable,
    create_dest,
    remove_unused_dest,
    selects,
)
from ._pool import SessionPool
from ._repair import Repair
from ._report import FileResult, MirrorReport
from ._runlisting import EarlyFeed, RunListing
from ._runlog import record_listing, recorded_run
from ._s3 import S3Transport
from ._select import Selector
from ._sizes import exact_sizes
from ._source import AutoSource, HttpSource, parse_source
from ._staging import PlanCounts, StagedFiles, Staging
from ._state import DestLock, Manifest
from ._tail import FileTail, Tails
from ._transfer import discard_empty_part, sync_directory
from ._transport import RemoteEntry, Source
from ._tree import SEPARATOR, behind_link, give_way, probe_folding

__all__ = ["EventCallback", "MirrorRun", "open_run", "open_source"]

log = logging.getLogger("pubmed_mirror")

EventCallback = Callable[[Event], None]
Queue = MemoryObjectSendStream[PlannedFile]


def _spare(options: MirrorOptions) -> int:
    """Workers beyond the sessions. What a file does once its bytes are in (the MD5, fsync,
    rename and manifest record: ~3 ms in a worker thread under load) holds its worker, not
    its session: a spare worker, already waiting with the next file, takes the session at
    once. Measured on 2,000 objects of 4 KiB over 32 sessions at 200 ms RTT: 148 -> 151
    objects/s in steady state. Spares never split a file: a stolen segment must not wait
    for a session. None with a whole-file deadline (`--file-timeout`): a spare's file would
    spend its time waiting for a session."""
    if options.timeouts.file is not None:
        return 0
    return max(1, options.concurrency // 8)


class MirrorRun:
    """One mirror run's state: the workers, their results and the events they emit.

    `budget` is what it spends (a client's, shared with its other runs; by default one of
    its own, from `options`); `ordered` adds FileLanded events in load order (`_landing`).
    """

    def __init__(self, source: Source, dest: Path, options: MirrorOptions,
                 emit: EventCallback, manifest: Manifest, budget: Budget | None = None, *,
                 ordered: bool = False) -> None:
        self.source = source
        self.dest = dest
        self.options = options
        self.emit = emit
        self.manifest = manifest
        self.started = time.monotonic()
        self.results: list[FileResult] = []
        self.fatal: FatalError | None = None
        budget = budget or Budget.of(options.rate_limit, options.command_rate)
        self.bucket = budget.bytes
        self.mover: Mover = "splice" if options.splice else "recv"
        transport = source.transport(
            connect_timeout=options.timeouts.connect, stall_timeout=options.timeouts.stall,
            command_bucket=budget.commands, gate=budget.gate)
        self._transport = transport
        self.pool = SessionPool(transport, size=options.concurrency, cap=budget.connections)
        self.selector: Selector | None = None  # a selection by metadata (`_select`)
        if isinstance(transport, S3Transport):
            transport.selecting(manifest, self.pool.spare, options.concurrency, options.retry)
            self.selector = transport.selector
        self.repair = Repair.of(source, transport, options.concurrency)
        self._scheme = getattr(source, "scheme", "ftp")
        self.ordered = ordered
        self.landings: Landings | None = None
        self.tails = Tails(options.split_min)
        self.splittable: dict[FileTail, FileAttempts] = {}  # the files being received
        self.deleted: list[str] = []
        self.superseded: tuple[str, ...] = ()
        self.deletion_refused: str | None = None
        self.resume = True  # False once the server is caught unable to resume
        self.staging = Staging(manifest.connection, manifest.columns,
                               options.selection(source.default_include))
        self.up_to_date = 0  # files skipped as the manifest vouches for them
        self.listing = RunListing(source, dest, options, manifest, self.staging, self.pool)

    def no_resume(self, error: ResumeRefused) -> None:
        """The server cannot resume (REST refused or ignored, or no way to tell a version):
        from now on every attempt fetches its file from byte 0, unsplit. Said once."""
        if self.resume:
            self.resume = False
            self.tails.min_split = None
            log.warning("%s: resuming is off for this run, whole files from byte 0: %s",
                        self.source, describe(error))

    async def plan(self, *, deletions: bool = True) -> MirrorPlan:
        """List the remote directory (with retries) into the staged listing, and decide what
        each file needs there (`_staging`): the plan's files are read from it, in order.
        `deletions`: with what `--delete` would remove as DEST stands now (a dry run's; a
        run decides its deletions at its end, `_retire`)."""
        started = time.monotonic()
        staging = self.staging
        await self.listing.walk()
        listed = time.monotonic()
        fold = await anyio.to_thread.run_sync(probe_folding, self.dest)
        await anyio.to_thread.run_sync(staging.finish, fold)
        await self.options.retry.call(self._exact_sizes)
        counts = await anyio.to_thread.run_sync(functools.partial(
            staging.compare, self.dest, verify=self.options.verify))
        would_go = await self._deletions() if deletions else None
        if would_go is not None and self.options.delete:
            would_go = await self._confirmed(would_go)
        plan = MirrorPlan(StagedFiles(staging, counts),
                          await anyio.to_thread.run_sync(staging.unreadable),
                          changeover=await anyio.to_thread.run_sync(staging.changeover),
                          deletions=would_go, counts=counts)
        log.info("%s: %d entries listed, %d selected: %d to fetch, %d to check, %d up to date",
                 self.source, staging.staged, counts.of("fetch", "check", "skip"),
                 counts.fetch, counts.check, counts.skip)
        early = self.listing.early
        log.info("%s: listed %d entries in %.1f s, compared in %.1f s (and %.1f s while "
                 "listing)", self.source, staging.staged, listed - started,
                 time.monotonic() - listed, early.deciding if early else 0.0)
        return plan

    async def _exact_sizes(self) -> None:
        """The planned files' rounded sizes settled (`_sizes`), batch by batch."""
        after = 0
        while batch := await anyio.to_thread.run_sync(self.staging.unsized, after):
            after = batch[-1][0]
            rows = {entry.name: row for _, entry, row in batch}
            settled = await exact_sizes(self.pool, self.source, [e for _, e, _ in batch],
                                        recorded=rows.get, dest=self.dest)
            await anyio.to_thread.run_sync(self.staging.set_sizes, settled)

    def report(self) -> MirrorReport:
        return MirrorReport(tuple(self.results), time.monotonic() - self.started,
                            tuple(self.deleted), self.superseded, self.deletion_refused,
                            up_to_date=self.up_to_date)

    def _settle(self, result: FileResult) -> None:
        """A file is done, skipped or failed: into the report, and (ordered) to land."""
        self.results.append(result)
        if self.landings is not None:
            self.landings.settle(result)

    def _md5_of(self, name: str) -> str | None:
        row = self.manifest.get(name)
        return None if row is None else row.md5

    async def run(self) -> None:
        try:
            await self._run()
        finally:
            if self.repair is not None:
                await self.repair.aclose()

    async def _run(self) -> None:
        async with self.pool:
            with ungrouped():
                async with self._workers() as (tg, queue):
                    warming = anyio.CancelScope()
                    if getattr(self._transport, "warms", False):
                        tg.start_soon(self._warm, warming)
                    # (the library's ordered events need the whole plan first)
                    early = None if self.ordered else await self.listing.pipelined()
                    if early is not None:
                        tg.start_soon(self._feed_early, early, queue)
                    plan = await self.plan(deletions=False)
                    if self.staging.markers:  # (their files were not fed early: `_staging`)
                        await anyio.to_thread.run_sync(give_way, self.dest, self.manifest,
                                                       self.staging.markers)
                    if early is not None:
                        await early.drained()
                    await self._start(plan)
                    await self._feed(queue)
                    warming.cancel()  # every file is handed out: no run waits on a handshake
            await anyio.to_thread.run_sync(self._tidy)
            if self.fatal is not None:
                raise self.fatal
            # (the sessions stay for `_retire`: a web server is asked what it no longer shows)
            await self._retire(await self._deletions(gone=self.options.delete))

    async def _warm(self, scope: anyio.CancelScope) -> None:
        """The pool's sessions made ahead (`SessionPool.warm`) until `scope` is cancelled."""
        with scope:
            await self.pool.warm()

    async def _start(self, plan: MirrorPlan) -> None:
        """The listing is complete: recorded, counted, its unreadable lines failed."""
        await record_listing(self.staging)
        if self.ordered:  # (the library's ordered events hold every name)
            self.landings = Landings(
                [e.name for e in plan.unreadable] + [f.name for f in plan.files],
                self.dest, self.emit, self._md5_of)
        counts = plan.counts or PlanCounts()
        self.emit(ListingDone(counts.of("fetch", "check", "skip") + len(plan.unreadable),
                              counts.total_bytes))
        for entry in plan.unreadable:
            self._unreadable(entry)
        if plan.changeover is not None:
            self._changing(plan.changeover)

    def _tidy(self) -> None:
        """The directories made for files that failed, left empty, go (blocking). Only once
        every worker is done: another file may be about to land in one. Never through a
        link; a directory holding anything (a part to resume) stays."""
        for result in self.results:
            if (result.status == "failed" and SEPARATOR in result.name
                    and not behind_link(self.dest, result.name)):
                remove_emptied(self.dest, result.name)

    def _changing(self, change: Changeover) -> None:
        log.info("a new PubMed year is listed: fetching %d while %d stays in place until "
                 "%d is complete", change.new, change.old, change.new)
        self.emit(BaselineChanged(change.old, change.new))

    async def _deletions(self, *, gone: bool = True) -> Deletions:
        """What `--delete` removes; `gone=False`: the superseded files only (what a run
        without `--delete` reports), not the manifest's files looked up in the listing."""
        return await anyio.to_thread.run_sync(functools.partial(
            self.staging.deletions, self.dest, self.options.max_delete,
            depth=self.listing.depth(), gone=gone))

    async def _retire(self, deletions: Deletions) -> None:
        """The run's end: remove what `delete` removes (see `_lifecycle`), else report the
        superseded years."""
        self.superseded = deletions.superseded
        if not self.options.delete:
            if deletions.superseded:
                log.warning("%d files of an older PubMed year are superseded and kept "
                            "(--delete removes them)", len(deletions.superseded))
            return
        if deletions.refused:
            self.deletion_refused = deletions.refused
            log.warning("%s", deletions.refused)
        deletions = await self._confirmed(deletions)
        for name, reason in deletions.removable():
            await anyio.to_thread.run_sync(delete_files, self.dest, self.manifest, [name])
            self.deleted.append(name)
            self.emit(FileDeleted(name, reason))
        if not deletions.refused:
            selection = self.staging.selection
            seen = await anyio.to_thread.run_sync(self.staging.in_sight, self.listing.depth())
            await anyio.to_thread.run_sync(discard_stale_parts, self.dest, self.manifest,
                                           self.staging.holds,
                                           lambda name: selects(selection, name) and seen(name))

    async def _confirmed(self, deletions: Deletions) -> Deletions:
        """`deletions` whose gone files a web server has confirmed gone (`_gone`: its index
        pages leave out what it will not serve); others' as they are."""
        if deletions.refused or not deletions.gone or (pages := self._web_pages()) is None:
            return deletions
        from ._gone import confirm_gone  # (aiohttp: imported by web runs only)

        return replace(deletions, gone=tuple(await confirm_gone(
            self.pool, pages, deletions.gone, self.options.retry, self.options.concurrency)))

    def _web_pages(self) -> HttpSource | None:
        """The web server whose index pages this run listed (`_gone`), if it did: an
        http(s) URL, or the HTTPS of an FTP source that fell back to it for the run."""
        if isinstance(self.source, HttpSource):
            return self.source
        if isinstance(self.source, AutoSource) and getattr(self._transport, "using",
                                                             None) == "https":
            return self.source.https
        return None

    @asynccontextmanager
    async def _workers(self) -> AsyncIterator[tuple[TaskGroup, Queue]]:
        """`concurrency` workers on a bounded queue of files, until it is closed and they
        are done."""
        send, receive = anyio.create_memory_object_stream[PlannedFile](
            max_buffer_size=self.options.concurrency)
        async with anyio.create_task_group() as tg:
            for i in range(self.options.concurrency + _spare(self.options)):
                tg.start_soon(self._worker, receive.clone(), tg, i < self.options.concurrency)
            receive.close()
            async with send:
                try:
                    yield tg, send
                except BaseException:
                    # the group's tasks stop before the queue closes: a task still sending to
                    # it (the early feeder, `_feed_early`) would find it closed and raise
                    # that instead of the run's own error (a cancellation from outside)
                    tg.cancel_scope.cancel()
                    raise

    async def _feed(self, queue: Queue) -> None:
        """Hand the planned files to the workers, in order, read from the staged listing
        batch by batch (but those fed as the listing went on)."""
        after: tuple[bytes, int] = (b"", 0)
        while True:
            batch, after = await anyio.to_thread.run_sync(
                self.staging.planned, after, ("fetch", "check", "skip"))
            if not batch:
                return
            for planned in batch:
                await self._queue(planned, queue)

    async def _feed_early(self, early: EarlyFeed, queue: Queue) -> None:
        """Hand the workers the files decided as the listing's pages land, in listing order,
        until the listing is complete. Not before the first page is decided (or the
        listing is over): the staged table is made by the listing's start."""
        after = 0
        await early.more.wait()
        while True:
            more = early.more = anyio.Event()
            batch, after = await anyio.to_thread.run_sync(self.staging.early, after)
            for planned in batch:
                await self._queue(planned, queue)
            if not batch:
                if early.listed:
                    early.done.set()
                    return
                await more.wait()

    async def _queue(self, planned: PlannedFile, queue: Queue) -> None:
        if planned.action == "skip":
            self._skipped(planned)
            return
        self.emit(FileQueued(planned.name, planned.size))
        await queue.send(planned)

    def _unreadable(self, entry: RemoteEntry) -> None:
        """A listing line that may name a selected file we cannot know: the run fails."""
        error = ("cannot read this listing line, so the file it may name is not mirrored "
                 "(a format we do not know)")
        if entry.kind == "unlisted":
            error = (self.selector and self.selector.reasons.get(entry.name)) or (
                "cannot list this directory, so the files it may hold are not mirrored")
        exception = ProtocolError(error, path=entry.name)
        self.emit(FileFailed(entry.name, error, 0, exception))
        self._settle(FileResult(entry.name, "failed", None, error=error, exception=exception))

    def _skipped(self, planned: PlannedFile) -> None:
        """Up to date: counted, not kept in the report (a million of them would be)."""
        self.emit(FileSkipped(planned.name, planned.size))
        self.up_to_date += 1
        if self.landings is not None:
            self.landings.settle(FileResult(planned.name, "skipped", planned.size))

    async def _worker(self, jobs: MemoryObjectReceiveStream[PlannedFile], tg: TaskGroup,
                      helps: bool) -> None:
        try:
            async with jobs:
                async for planned in jobs:
                    self._settle(await self._fetch(planned))
            if helps:
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
        tracker = FileAttempts(planned, self)
        self.tails.in_flight += 1
        try:
            return await self._attempts(tracker)
        finally:
            tracker.untrack()
            self.tails.in_flight -= 1
            self.tails.notify()

    async def _attempts(self, tracker: FileAttempts) -> FileResult:
        planned = tracker.planned
        started = time.monotonic()
        deadline = self.options.timeouts.file
        trackers = [tracker]
        try:
            with anyio.fail_after(deadline if deadline is not None else math.inf):
                error = await self._over(tracker)
                if error is not None and self.repair is not None and self.repair.available:
                    log.warning("%s: failed over FTP (%s); fetching it over %s", planned.name,
                                describe(error), self.repair.via.upper())
                    tracker.untrack()
                    tracker = FileAttempts(planned, self,
                                           over=(self.repair.pool, self.repair.source))
                    trackers.append(tracker)
                    error = await self._over(tracker)
        except TimeoutError:
            error = FileDeadlineExceeded(f"not complete within {deadline:g} s",
                                         path=planned.name)
        received = sum(t.received for t in trackers)
        attempts = sum(t.attempts for t in trackers)
        if error is None:
            return self._done(tracker, received, attempts, time.monotonic() - started,
                              via=self._via() if len(trackers) == 1 else self.repair_via,
                              repaired=len(trackers) > 1)
        tracker.untrack()  # its segments stay on disk: the next run resumes them
        await anyio.to_thread.run_sync(discard_empty_part, self.dest / planned.name, self.dest)
        self.emit(FileFailed(planned.name, describe(error), attempts, error))
        return FileResult(planned.name, "failed", planned.entry.size, received,
                          trackers[0].resumed_from, attempts,
                          time.monotonic() - started, describe(error), exception=error)

    @property
    def repair_via(self) -> str:
        return self.repair.via if self.repair is not None else self._scheme

    def _via(self) -> str:
        """What the run's own pool fetches over (an auto run's HTTPS for the whole run)."""
        if self.repair is not None and not self.repair.available:
            return self.repair.via
        return self._scheme

    async def _over(self, tracker: FileAttempts) -> MirrorError | None:
        """The file's attempts (with retries) through the tracker's pool: None when done,
        else the last error (a fatal one is raised)."""
        try:
            await self.options.retry.call(tracker.attempt, on_retry=tracker.on_retry,
                                          progress=tracker.furthest)
        except FatalError:
            raise
        except MirrorError as exc:
            return exc
        return None

    def _done(self, tracker: FileAttempts, received: int, attempts: int, seconds: float, *,
              via: str, repaired: bool) -> FileResult:
        planned = tracker.planned
        if tracker.local_copy_kept:
            self.emit(FileSkipped(planned.name, planned.size))
            return FileResult(planned.name, "skipped", planned.size,
                              record_error=tracker.record_error)
        self.emit(FileDone(planned.name, tracker.size, received, tracker.resumed_from,
                           attempts, seconds, tracker.md5, tracker.record_error, via))
        return FileResult(planned.name, "done", tracker.size, received,
                          tracker.resumed_from, attempts, seconds, md5=tracker.md5,
                          record_error=tracker.record_error, via=via, repaired=repaired)


def open_source(source: str | Source) -> Source:
    """A Source from a URL or preset (BadSource when it is malformed), or the Source given."""
    return parse_source(source) if isinstance(source, str) else source


@asynccontextmanager
async def open_run(source: Source, dest: Path, options: MirrorOptions, emit: EventCallback,
                   budget: Budget, *, ordered: bool = False) -> AsyncIterator[MirrorRun]:
    """A run ready to start: DEST checked, created (and removed again if the run leaves
    nothing in it), locked against other runs, its manifest open; synced when it ends."""
    await anyio.to_thread.run_sync(check_writable, dest)
    created = await anyio.to_thread.run_sync(create_dest, dest)
    with DestLock(dest):
        try:
            with Manifest.open(dest) as manifest:
                try:
                    run = MirrorRun(source, dest, options, emit, manifest, budget,
                                    ordered=ordered)
                    async with recorded_run(manifest, str(source), run.results):
                        yield run
                finally:
                    with anyio.CancelScope(shield=True):
                        await anyio.to_thread.run_sync(sync_directory, dest)
        except BaseException:
            if created:  # a failed listing leaves no empty DEST behind (still under our lock)
                remove_unused_dest(created)
            raise
