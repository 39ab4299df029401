"""A running mirror's events as an async iterator."""

from __future__ import annotations

import math
import os
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from ._errors import MirrorError, ungrouped
from ._events import Event, FileProgress
from ._mirror import mirror
from ._options import MirrorOptions
from ._report import MirrorReport
from ._transport import Source

__all__ = ["EventFeed", "mirror_events"]


EventCallback = Callable[[Event], None]


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
