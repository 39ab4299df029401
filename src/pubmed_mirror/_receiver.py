"""Receiving into memory with one copy: the kernel writes straight into our buffers.

For what is kept in memory (listings, checksum files); the files mirrored go straight into
their part files instead (`_direct`). asyncio's StreamReader copies every byte three times
(recv -> bytes -> its bytearray -> the bytes read() returns). `Receiver` is a
BufferedProtocol: the event loop's recv_into fills one of two preallocated buffers, and
`read()` hands the filled one to the caller whole while the other one fills.
"""

from __future__ import annotations

import asyncio
import socket

__all__ = ["Receiver"]

CAPACITY = 4 << 20  # per buffer; reading pauses (TCP back-pressure) when one is full
TARGET = 1 << 20  # read() waits for this much, so writes are coalesced to >= 1 MiB ...
LINGER = 0.2  # ... or for this long after bytes arrived, so a slow link still shows progress


class Receiver(asyncio.BufferedProtocol):
    """Double-buffered receiver; the buffer `read()` returns is valid until the next `read()`."""

    def __init__(self, *, capacity: int = CAPACITY, target: int = TARGET,
                 linger: float = LINGER, kernel_buffer: int | None = None) -> None:
        self._filling = bytearray(capacity)
        self._spare = bytearray(capacity)
        self._filled = 0
        self._target = min(target, capacity)
        self._linger = linger
        self._eof = False
        self._error: BaseException | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._transport: asyncio.Transport | None = None
        self._paused = False
        self._lingered = False
        self._kernel_buffer = kernel_buffer

    # Protocol callbacks, run by the event loop.
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        sock = transport.get_extra_info("socket")
        if self._kernel_buffer is not None and sock is not None:
            # a fixed receive buffer (no autotuning): with `capacity`, it bounds how far the
            # connection runs ahead of a rate-limited consumer
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, self._kernel_buffer)

    def get_buffer(self, sizehint: int) -> memoryview:
        return memoryview(self._filling)[self._filled:]

    def buffer_updated(self, nbytes: int) -> None:
        self._filled += nbytes
        if self._filled >= len(self._filling) and self._transport is not None:
            self._transport.pause_reading()
            self._paused = True
        if self._filled >= self._target or self._filled == nbytes:
            self._wake()  # enough to hand over, or the first bytes: start lingering

    def eof_received(self) -> bool:
        self._eof = True
        self._wake()
        return False  # close the transport

    def connection_lost(self, exc: Exception | None) -> None:
        self._eof = True
        self._error = exc
        self._wake()

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    # The consumer's side.
    async def read(self) -> memoryview:
        """What arrived since the last call (empty at the end); raises the connection's error."""
        await self._wait()
        if self._filled == 0:
            if self._error is not None:
                raise self._error
            return memoryview(b"")
        out = memoryview(self._filling)[: self._filled]
        self._filling, self._spare = self._spare, self._filling
        self._filled = 0
        if self._paused and self._transport is not None:
            self._paused = False
            self._transport.resume_reading()
        return out

    async def _wait(self) -> None:
        loop = asyncio.get_running_loop()
        lingering: asyncio.TimerHandle | None = None
        self._lingered = False
        try:
            while self._filled < self._target and not self._eof and not self._lingered:
                if self._filled and lingering is None:
                    lingering = loop.call_later(self._linger, self._linger_over)
                self._waiter = loop.create_future()
                try:
                    await self._waiter
                finally:
                    self._waiter = None
        finally:
            if lingering is not None:
                lingering.cancel()

    def _linger_over(self) -> None:
        self._lingered = True
        self._wake()

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()

