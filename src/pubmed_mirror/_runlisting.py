"""A run's listing: the source's directory (with `--recursive`, its tree) walked into the
staged listing (`_staging`) as it arrives, each directory's listing retried on its own
(`_walk`); and, for a source whose listing is sorted (S3's), the files decided as its pages
land (`EarlyFeed`), so that the workers start long before the listing ends."""

from __future__ import annotations

import functools
import logging
import time
from pathlib import Path

import anyio

from ._errors import FatalError, MirrorError, describe
from ._options import MirrorOptions
from ._pool import SessionPool
from ._staging import Staging
from ._state import Manifest
from ._transport import EntrySink, RemoteEntry, Source
from ._tree import SEPARATOR, FoldRule, probe_folding
from ._unmarked import knowing, settle
from ._walk import descends, list_tree

__all__ = ["EarlyFeed", "RunListing"]

log = logging.getLogger("pubmed_mirror")


class EarlyFeed:
    """A pipelined run's files fed while the listing goes on: `window`, the seq after which
    staged names may still be decided; `more` is set when some were; `listed`, `done`."""

    def __init__(self) -> None:
        self.window = 0
        self.more = anyio.Event()
        self.listed = False
        self.done = anyio.Event()
        self.deciding = 0.0  # seconds spent deciding files while the listing went on

    async def drained(self) -> None:
        """The listing is complete: wait until every file decided early is queued."""
        self.listed = True
        self.more.set()
        await self.done.wait()


class RunListing:
    """How one run lists `source` into `staging`, over sessions of `pool`."""

    def __init__(self, source: Source, dest: Path, options: MirrorOptions,
                 manifest: Manifest, staging: Staging, pool: SessionPool) -> None:
        self.source = source
        self.dest = dest
        self.options = options
        self.manifest = manifest
        self.staging = staging
        self.pool = pool
        self.early: EarlyFeed | None = None  # a pipelined run's (see `pipelined`)
        self._folder_mark = 0  # what was staged before the directory listed last

    async def pipelined(self) -> EarlyFeed | None:
        """The early feed (`early`), made, when files are fed as the listing's pages land
        (`Staging.decide_early`): for a source whose listing is sorted and never taken
        back (`sorted_listing`: S3's), no choice that needs the whole listing (`--newest`,
        `--max-files`, the library's ordered events, whose plan holds every name), a DEST
        that folds no names."""
        selection = self.staging.selection
        if (not getattr(self.source, "sorted_listing", False)
                or selection.newest is not None or selection.max_files is not None):
            return None
        if await anyio.to_thread.run_sync(probe_folding, self.dest) == FoldRule():
            self.early = EarlyFeed()
        return self.early

    def depth(self) -> int | None:
        """How many levels of subdirectories the listing goes down (None: all). A source
        whose one listing is its whole tree (S3's prefix) is never walked: all of it."""
        if getattr(self.source, "lists_whole_tree", False):
            return None
        return self.options.max_depth if self.options.recursive else 0

    async def walk(self) -> None:
        """The source's directory (with `recursive`, its tree) into the staged listing as
        it arrives, each directory's listing retried on its own (`_walk`)."""
        await anyio.to_thread.run_sync(self.staging.start)
        depth = self.depth()
        if getattr(self.source, "lists_whole_tree", False):
            depth = 0  # the start's listing is the tree: nothing to descend into
        await list_tree(self._list_folder, self._stage, self._drop_folder, max_depth=depth,
                        stat=self._stat)

    async def _stat(self, name: str) -> RemoteEntry | None:
        """One file's size, time and validator (`_walk`'s loop check); None when the
        server will not say."""
        async def attempt() -> RemoteEntry:
            async with self.pool.session() as session:
                return await session.stat(self.source.remote_path(name))

        try:
            return await self.options.retry.call(attempt)
        except FatalError:
            raise
        except MirrorError as exc:
            log.info("%s: cannot ask it (%s): taken for the same file", name, describe(exc))
            return None

    async def _list_folder(self, folder: str, sink: EntrySink) -> None:
        """One directory into `sink`, retried: what a failed attempt staged is forgotten
        first, but for what its session gives once (`Session.list`: S3's whole pages)."""
        path = self.source.remote_path(folder) if folder else self.source.path
        self._folder_mark = kept = self.staging.staged
        known = knowing(self.manifest, self.staging.selection,
                        folder + SEPARATOR if folder else "", descends(folder, self.depth()))

        async def attempt() -> None:
            nonlocal kept
            await anyio.to_thread.run_sync(self.staging.rollback, kept)
            async with self.pool.session() as session:
                once = getattr(type(session), "resumes_listings", False)

                async def given(entries: list[RemoteEntry]) -> None:
                    nonlocal kept
                    await sink(await settle(entries, session, path, known))
                    if once:
                        kept = self.staging.staged

                await session.list(path, sink=given)

        try:
            await self.options.retry.call(attempt)
        except MirrorError:  # what the last attempt staged is not the directory's listing
            await anyio.to_thread.run_sync(self.staging.rollback, kept)
            raise

    async def _drop_folder(self) -> None:
        """The directory listed last was a loop: its entries go."""
        await anyio.to_thread.run_sync(self.staging.rollback, self._folder_mark)

    async def _stage(self, entries: list[RemoteEntry]) -> None:
        before = self.staging.staged
        await anyio.to_thread.run_sync(self.staging.add, entries)
        early = self.early
        if early is not None:  # this batch and the last one's held-back names, decided
            started = time.monotonic()
            if await anyio.to_thread.run_sync(functools.partial(
                    self.staging.decide_early, early.window, self.dest,
                    verify=self.options.verify)):
                early.more.set()
            early.deciding += time.monotonic() - started
            early.window = before
