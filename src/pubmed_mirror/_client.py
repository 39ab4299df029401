"""The entry points: a long-lived `MirrorClient` whose politeness budget several mirrors
share, and the one-shot functions (`mirror`, `mirror_events`, `plan_mirror`, `list_remote`),
the first two thin wrappers over a throwaway client, as `httpx.get` is over an AsyncClient."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace
from pathlib import Path
from types import TracebackType

import anyio

from ._backoff import ServerGate
from ._budget import Budget, ConnectionCap, bytes_bucket, command_bucket
from ._errors import require_asyncio
from ._events import Event
from ._feed import EventChannel, EventFeed, feeding
from ._logdest import logging_dest
from ._mirror import EventCallback, MirrorRun, open_run, open_source
from ._options import MirrorOptions, Timeouts
from ._plan import MirrorPlan
from ._pool import SessionPool
from ._pubmed import file_order
from ._report import MirrorReport
from ._retry import RetryPolicy
from ._s3 import S3Transport
from ._sizes import exact_sizes
from ._state import Manifest
from ._transport import EntryKind, RemoteEntry, Source
from ._unmarked import settle

__all__ = ["MirrorClient", "list_remote", "mirror", "mirror_events", "plan_mirror",
           "planning"]


class MirrorClient:
    """Mirrors that share one politeness budget: at most `concurrency` connections to any one
    server, `rate_limit` bytes/s and `command_rate` commands/s over all of them together.

        async with MirrorClient(concurrency=4, rate_limit=20 << 20, command_rate=3) as client:
            async with anyio.create_task_group() as tg:
                tg.start_soon(client.mirror, "pubmed:baseline", "pubmed/baseline")
                tg.start_soon(client.mirror, "pubmed:updatefiles", "pubmed/updatefiles")

    Each mirror's `MirrorOptions.concurrency` still bounds that mirror's own sessions (and
    workers); its `rate_limit` and `command_rate` must be None: those are the client's. While
    one mirror waits for a connection to a server, the others close the sessions they are
    done with instead of keeping them, so mirrors of one server take turns. The client holds
    no connection of its own between mirrors; closing it refuses new mirrors.
    """

    def __init__(self, *, concurrency: int = 4, rate_limit: int | None = None,
                 command_rate: float | None = None) -> None:
        MirrorOptions(concurrency=concurrency, rate_limit=rate_limit,
                      command_rate=command_rate)  # the same checks, the same ValueErrors
        self.concurrency = concurrency
        self.rate_limit = rate_limit
        self.command_rate = command_rate
        self._bytes = bytes_bucket(rate_limit)
        self._commands = command_bucket(command_rate)
        self._caps: dict[str, ConnectionCap] = {}  # per server (host name)
        self._gates: dict[str, ServerGate] = {}  # per server: one back-off for its mirrors
        self._closed = False

    def __repr__(self) -> str:
        servers = ", ".join(f"{host} {cap.used}/{cap.limit}" for host, cap in self._caps.items())
        state = "closed" if self._closed else "open"
        return (f"<MirrorClient {state}, rate_limit={self.rate_limit}, "
                f"command_rate={self.command_rate}, connections: {servers or 'none yet'}>")

    async def __aenter__(self) -> MirrorClient:
        require_asyncio()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Refuse new mirrors (the running ones are their callers' to finish or cancel)."""
        self._closed = True

    def _budget_for(self, source: Source) -> Budget:
        """What a mirror of `source` spends from: the client's buckets, its server's cap."""
        server = str(getattr(source, "host", source)).lower()
        cap = self._caps.setdefault(server, ConnectionCap(self.concurrency))
        return Budget(self._bytes, self._commands, cap,
                      self._gates.setdefault(server, ServerGate()))

    def _prepare(self, source: str | Source, dest: str | os.PathLike[str],
                 options: MirrorOptions | None) -> tuple[Source, Path, MirrorOptions]:
        if self._closed:
            raise RuntimeError("this MirrorClient is closed")
        require_asyncio()
        options = options or MirrorOptions()
        if options.rate_limit is not None or options.command_rate is not None:
            raise ValueError("a mirror on a MirrorClient spends the client's budget: give "
                             "rate_limit and command_rate to MirrorClient(...), not to its "
                             "mirrors' MirrorOptions")
        return open_source(source), Path(dest), options

    async def mirror(
        self,
        source: str | Source,
        dest: str | os.PathLike[str],
        options: MirrorOptions | None = None,
        *,
        on_event: EventCallback | None = None,
        ordered: bool = False,
    ) -> MirrorReport:
        """Mirror the files of one remote directory into `dest`; return what happened to each.

        Files the manifest vouches for are skipped; partial files are resumed; a file with a
        NAME.md5 beside it on the server is checked against it before it becomes final. A
        file that fails is reported in the result, not raised; a FatalError (login refused,
        server unreachable, DEST locked by another run) or a listing failure is raised, and
        BadSource at once for a malformed source.

        `on_event` gets every event; `ordered` adds a FileLanded per file, in load order. An
        exception raised by `on_event` stops the run as a cancellation would (partial files
        kept for the next run, the manifest consistent, DEST unlocked) and is raised here,
        itself; the callback is not called again.
        """
        src, dest_path, options = self._prepare(source, dest, options)
        callback = _Guarded(on_event)
        with callback.scope, logging_dest(dest_path):
            async with open_run(src, dest_path, options, callback, self._budget_for(src),
                                ordered=ordered) as run:
                await run.run()
        if callback.error is not None:
            raise callback.error
        return run.report()

    @asynccontextmanager
    async def mirror_events(
        self,
        source: str | Source,
        dest: str | os.PathLike[str],
        options: MirrorOptions | None = None,
        *,
        ordered: bool = False,
        buffer: int = 1024,
    ) -> AsyncIterator[EventFeed]:
        """Run `mirror()` in the background and iterate over its events.

            async with client.mirror_events(url, dest, ordered=True) as feed:
                async for event in feed:
                    if isinstance(event, FileLanded) and event.status != "failed":
                        load(event.path)
            report = feed.report

        A malformed source (BadSource), a DEST that cannot be written or is locked by another
        run raise on entering the block. FileProgress events are dropped while more than
        `buffer` events wait for a lagging consumer; every other event always arrives.
        Leaving the block early cancels the mirror; an error that stops the mirror once it
        has started (a listing failure, say) is raised when the block exits.
        """
        src, dest_path, options = self._prepare(source, dest, options)
        with EventChannel(buffer) as channel:
            async with open_run(src, dest_path, options, channel.emit, self._budget_for(src),
                                ordered=ordered) as run, feeding(run, channel) as feed:
                yield feed


class _Guarded:
    """The caller's `on_event`: what it raises stops the run (its cancel scope) instead of
    going into the engine, where it could be taken for a network or disk error."""

    def __init__(self, callback: EventCallback | None) -> None:
        self._callback = callback
        self.error: Exception | None = None
        self.scope = anyio.CancelScope()

    def __call__(self, event: Event) -> None:
        if self._callback is None or self.error is not None:
            return
        try:
            self._callback(event)
        except Exception as exc:
            self.error = exc
            self.scope.cancel()


def _one_shot(options: MirrorOptions) -> MirrorClient:
    """A throwaway client with the budget `options` asks for."""
    return MirrorClient(concurrency=options.concurrency, rate_limit=options.rate_limit,
                        command_rate=options.command_rate)


async def mirror(
    source: str | Source,
    dest: str | os.PathLike[str],
    options: MirrorOptions | None = None,
    *,
    on_event: EventCallback | None = None,
    ordered: bool = False,
) -> MirrorReport:
    """`MirrorClient.mirror()` on a client of its own, whose budget is `options`'
    (`rate_limit`, `command_rate`; `concurrency` connections)."""
    options = options or MirrorOptions()
    async with _one_shot(options) as client:
        return await client.mirror(source, dest,
                                   replace(options, rate_limit=None, command_rate=None),
                                   on_event=on_event, ordered=ordered)


@asynccontextmanager
async def mirror_events(
    source: str | Source,
    dest: str | os.PathLike[str],
    options: MirrorOptions | None = None,
    *,
    ordered: bool = False,
    buffer: int = 1024,
) -> AsyncIterator[EventFeed]:
    """`MirrorClient.mirror_events()` on a client of its own, whose budget is `options'`.

        async with mirror_events(url, dest) as feed:
            async for event in feed:
                ...
        report = feed.report
    """
    options = options or MirrorOptions()
    async with _one_shot(options) as client, client.mirror_events(
            source, dest, replace(options, rate_limit=None, command_rate=None),
            ordered=ordered, buffer=buffer) as feed:
        yield feed


async def list_remote(
    source: str | Source,
    *,
    timeouts: Timeouts | None = None,
    retry: RetryPolicy | None = None,
) -> list[RemoteEntry]:
    """The entries of the source's directory (files, dirs, links), in PubMed load order."""
    require_asyncio()
    src = open_source(source)
    timeouts = timeouts or Timeouts()
    transport = src.transport(connect_timeout=timeouts.connect, stall_timeout=timeouts.stall)
    policy = retry or RetryPolicy()
    if isinstance(transport, S3Transport):
        transport.selecting(None, None, 1, policy)  # (`ls`: no manifest)
        if transport.selector is not None:  # nor a file fetched: keeps no body
            transport.selector.keep = False
    async with SessionPool(transport, size=1) as pool:
        listed = await policy.call(lambda: list_dir(pool, src.path))
        # `ls` shows exact sizes: a rounded one is asked with HEAD
        entries = await policy.call(lambda: exact_sizes(pool, src, listed))
    return sorted(entries, key=lambda e: file_order(e.name))


async def list_dir(pool: SessionPool, path: str) -> list[RemoteEntry]:
    """One directory's entries, none "unmarked" (`_unmarked`: with no manifest to ask, each
    such name is asked with HEAD)."""
    async def nothing(entries: list[RemoteEntry]) -> dict[str, EntryKind]:
        return {}

    async with pool.session() as session:
        return await settle(await session.list(path), session, path, nothing)


async def plan_mirror(
    source: str | Source,
    dest: str | os.PathLike[str],
    options: MirrorOptions | None = None,
) -> MirrorPlan:
    """What `mirror()` would do, without transferring anything (a dry run): lists the remote
    directory and compares it with DEST and its manifest. Its `files` are a tuple (every
    selected file: `planning` reads them one batch at a time instead)."""
    async with planning(source, dest, options) as plan:
        return replace(plan, files=tuple(plan.files))


@asynccontextmanager
async def planning(
    source: str | Source,
    dest: str | os.PathLike[str],
    options: MirrorOptions | None = None,
) -> AsyncIterator[MirrorPlan]:
    """`plan_mirror`'s plan, whose files are read from the staged listing as they are
    iterated, inside the block (the dry run of a million files)."""
    require_asyncio()
    src = open_source(source)
    dest_path = Path(dest)
    with Manifest.open(dest_path, create=False) as manifest, logging_dest(dest_path):
        run = MirrorRun(src, dest_path, options or MirrorOptions(), lambda event: None,
                        manifest)
        if run.selector is not None:  # a dry run only reads: what it learns is not kept
            run.selector.keep = False
        async with run.pool:
            plan = await run.plan()
        yield plan
