"""The plan and the run: list one directory, pick the files, fetch them on a pool of sessions."""

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
from anyio.streams.memory import MemoryObjectReceiveStream

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
    Listed,
    changeover,
    current_entries,
    delete_files,
    listed_files,
    plan_deletions,
)
from ._options import MirrorOptions
from ._plan import (
    MirrorPlan,
    PlannedFile,
    check_writable,
    create_dest,
    make_plan,
    remove_unused_dest,
    select_files,
    unreadable_entries,
)
from ._pool import SessionPool
from ._repair import Repair
from ._report import FileResult, MirrorReport
from ._runlog import record_listing, recorded_run
from ._sizes import exact_sizes
from ._source import parse_source
from ._state import DestLock, Manifest
from ._tail import FileTail, Tails
from ._transfer import discard_empty_part, sync_directory
from ._transport import RemoteEntry, Source
from ._tree import probe_folding, without_clashes
from ._walk import list_tree

__all__ = ["EventCallback", "MirrorRun", "list_dir", "open_run", "open_source"]

log = logging.getLogger("pubmed_mirror")

EventCallback = Callable[[Event], None]


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
        self.pool = SessionPool(transport, size=options.concurrency, cap=budget.connections)
        self.repair = Repair.of(source, transport, options.concurrency)
        self._scheme = getattr(source, "scheme", "ftp")
        self.ordered = ordered
        self.landings: Landings | None = None
        self.tails = Tails(options.split_min)
        self.splittable: dict[FileTail, FileAttempts] = {}  # the files being received
        self.listed: Listed = Listed((), frozenset())
        self.deleted: list[str] = []
        self.superseded: tuple[str, ...] = ()
        self.deletion_refused: str | None = None
        self.resume = True  # False once the server is caught unable to resume
        self.entries: list[RemoteEntry] = []  # the listing, as the dataset records it

    def no_resume(self, error: ResumeRefused) -> None:
        """The server cannot resume (REST refused or ignored, or no way to tell a version):
        from now on every attempt fetches its file from byte 0, unsplit. Said once."""
        if self.resume:
            self.resume = False
            self.tails.min_split = None
            log.warning("%s: resuming is off for this run, whole files from byte 0: %s",
                        self.source, describe(error))

    async def plan(self) -> MirrorPlan:
        """List the remote directory (with retries) and decide what each file needs."""
        # older PubMed years than the newest listed are not the dataset any more
        entries = current_entries(await self._list())
        fold = await anyio.to_thread.run_sync(probe_folding, self.dest)
        entries = without_clashes(entries, fold)
        selection = self.options.selection(self.source.default_include)
        wanted = {e.name for pair in select_files(entries, selection) for e in pair if e}
        entries = self.entries = await self.options.retry.call(functools.partial(
            exact_sizes, self.pool, self.source, entries, wanted=wanted,
            recorded=self.manifest.get, dest=self.dest))
        files = select_files(entries, selection)
        self.listed = listed_files(entries, selection)
        plan = await anyio.to_thread.run_sync(
            functools.partial(make_plan, self.dest, self.manifest, files,
                              verify=self.options.verify,
                              unreadable=unreadable_entries(entries, selection)))
        plan = replace(plan, changeover=changeover(
            (row.name for row in self.manifest.entries()), self.listed.names),
            deletions=await self._deletions())
        log.info("%s: %d entries listed, %d selected: %d to fetch, %d to check, %d up to date",
                 self.source, len(entries), len(plan.files), len(plan.with_action("fetch")),
                 len(plan.with_action("check")), len(plan.with_action("skip")))
        return plan

    def report(self) -> MirrorReport:
        return MirrorReport(tuple(self.results), time.monotonic() - self.started,
                            tuple(self.deleted), self.superseded, self.deletion_refused)

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
            plan = await self.plan()
            await record_listing(self.manifest, self.entries,
                                 self.options.selection(self.source.default_include))
            if self.ordered:
                self.landings = Landings(
                    [e.name for e in plan.unreadable] + [f.name for f in plan.files],
                    self.dest, self.emit, self._md5_of)
            self.emit(ListingDone(len(plan.files) + len(plan.unreadable),
                                  sum(f.size for f in plan.files)))
            for entry in plan.unreadable:
                self._unreadable(entry)
            if plan.changeover is not None:
                self._changing(plan.changeover)
            with ungrouped():
                await self._feed(plan)
        if self.fatal is not None:
            raise self.fatal
        await self._retire(await self._deletions())

    def _changing(self, change: Changeover) -> None:
        log.info("a new PubMed year is listed: fetching %d while %d stays in place until "
                 "%d is complete", change.new, change.old, change.new)
        self.emit(BaselineChanged(change.old, change.new))

    async def _deletions(self) -> Deletions:
        options = self.options
        selection = options.selection(self.source.default_include)
        return await anyio.to_thread.run_sync(functools.partial(
            plan_deletions, self.dest, self.manifest.entries(), self.listed.names,
            self.listed.checksums, include=selection.include, exclude=selection.exclude,
            limit=options.max_delete))

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
        for name, reason in deletions.removable():
            await anyio.to_thread.run_sync(delete_files, self.dest, self.manifest, [name])
            self.deleted.append(name)
            self.emit(FileDeleted(name, reason))

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

    def _unreadable(self, entry: RemoteEntry) -> None:
        """A listing line that may name a selected file we cannot know: the run fails."""
        error = ("cannot read this listing line, so the file it may name is not mirrored "
                 "(a format we do not know)")
        if entry.kind == "unlisted":
            error = "cannot list this directory, so the files it may hold are not mirrored"
        exception = ProtocolError(error, path=entry.name)
        self.emit(FileFailed(entry.name, error, 0, exception))
        self._settle(FileResult(entry.name, "failed", None, error=error, exception=exception))

    def _skipped(self, planned: PlannedFile) -> None:
        self.emit(FileSkipped(planned.name, planned.size))
        self._settle(FileResult(planned.name, "skipped", planned.size))

    async def _list(self) -> list[RemoteEntry]:
        """The source's directory (with `recursive`, its tree), each listing retried."""
        async def one(folder: str) -> list[RemoteEntry]:
            path = self.source.remote_path(folder) if folder else self.source.path
            return await self.options.retry.call(functools.partial(list_dir, self.pool, path))

        depth = (self.options.max_depth if self.options.recursive else 0)
        return await list_tree(one, max_depth=depth)

    async def _worker(self, jobs: MemoryObjectReceiveStream[PlannedFile], tg: TaskGroup) -> None:
        try:
            async with jobs:
                async for planned in jobs:
                    self._settle(await self._fetch(planned))
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


async def list_dir(pool: SessionPool, path: str) -> list[RemoteEntry]:
    async with pool.session() as session:
        return await session.list(path)


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
