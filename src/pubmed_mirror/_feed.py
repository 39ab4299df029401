"""A running mirror's events as an async iterator."""

from __future__ import annotations

import math
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from ._errors import MirrorError, ungrouped
from ._events import Event, FileProgress
from ._logdest import logging_dest
from ._mirror import MirrorRun
from ._report import MirrorReport

__all__ = ["EventChannel", "EventFeed", "feeding"]


class EventFeed:
    """The events of a running mirror as an async iterator; `report` once it has finished.
    `dest` is the mirror's DEST (absolute), as its log records carry it."""

    def __init__(self, receive: MemoryObjectReceiveStream[Event], dest: str) -> None:
        self._receive = receive
        self.dest = dest
        self.report: MirrorReport | None = None

    def __aiter__(self) -> AsyncIterator[Event]:
        return self._receive.__aiter__()


class EventChannel:
    """Where a run's events go on their way to a feed: `emit` is the run's callback."""

    def __init__(self, buffer: int) -> None:
        self.send, self.receive = anyio.create_memory_object_stream[Event](
            max_buffer_size=math.inf)
        self._buffer = buffer

    def __enter__(self) -> EventChannel:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.send.close()
        self.receive.close()

    def emit(self, event: Event) -> None:
        """Progress is dropped while the consumer lags `buffer` events behind."""
        lagging = self.send.statistics().current_buffer_used > self._buffer
        if not (lagging and isinstance(event, FileProgress)):
            try:
                self.send.send_nowait(event)
            except (anyio.BrokenResourceError, anyio.ClosedResourceError):
                pass  # the consumer left early; the mirror is being cancelled


@asynccontextmanager
async def feeding(run: MirrorRun, channel: EventChannel) -> AsyncIterator[EventFeed]:
    """Run `run` in the background (its events go to `channel`) and iterate over them.

    Leaving the block early cancels the run; an error that stops the run is raised when
    the block exits.
    """
    feed = EventFeed(channel.receive, str(run.dest.absolute()))
    failure: list[MirrorError] = []

    async def produce(send: MemoryObjectSendStream[Event]) -> None:
        async with send:
            try:
                with logging_dest(run.dest):
                    await run.run()
                feed.report = run.report()
            except MirrorError as exc:
                failure.append(exc)

    with channel.receive, ungrouped():  # receive closes after the task group: none sends then
        async with anyio.create_task_group() as tg:
            tg.start_soon(produce, channel.send)
            try:
                yield feed
            finally:
                tg.cancel_scope.cancel()
    if failure:
        raise failure[0]
