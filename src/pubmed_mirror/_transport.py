"""The transport boundary: what the pool, queue, retry and rate code need from a protocol.

An FTP implementation lives in `_ftp.py`; an HTTPS one can be added beside it without touching
anything that only speaks to these protocols.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, Protocol

if TYPE_CHECKING:
    from ._backoff import ServerGate
    from ._direct import Mover
    from ._ratelimit import TokenBucket
    from ._transfer import RemoteFile

__all__ = ["DirectStream", "EntrySink", "ReadStream", "RemoteEntry", "Session", "Source",
           "Transport", "listing_deadline"]

# "unreadable": a listing line in no format we know, named by the whole line; whatever it
# describes is unknown, so it is reported, never dropped in silence. "unlisted": a
# subdirectory a recursive listing could not list (`_walk`): reported the same way.
# "loop": a subdirectory a recursive listing did not enter, as it lists what a directory
# above it lists (`_walk`): what DEST holds below it is kept, as below an "unlisted" one.
# "unmarked": a name on a web page that links its directories without `/` (mini_httpd): a
# file or a directory, settled before the run stages it (`_unmarked`)
EntryKind = Literal["file", "dir", "link", "other", "unreadable", "unlisted", "loop",
                    "unmarked"]


@dataclass(frozen=True, slots=True)
class RemoteEntry:
    """One entry of a remote directory. `mtime` is POSIX seconds (UTC); None when unknown.
    `mtime_resolution`: how coarse the listing's time is, in seconds (an `ls -l` line gives
    minutes, or only the day for files older than six months). `validator`: what names
    this version over HTTP (a strong ETag, else Last-Modified), when a HEAD gave one.
    `size_shown`: when `size` is None because the listing rounds it (`24M`), the bounds
    (inclusive) of the exact sizes that display could stand for. `shown`: the time the
    listing showed, when a HEAD's (`mtime`) replaced it: a web page may show its server's
    local time, which only this page ever shows again."""

    name: str
    size: int | None
    mtime: float | None
    kind: EntryKind = "file"
    mtime_resolution: float = 1.0
    validator: str | None = None
    size_shown: tuple[int, int] | None = None
    md5: str | None = None
    shown: float | None = None


# where a listing's entries go, batch by batch, when it is not returned whole (`_staging`)
EntrySink = Callable[[list[RemoteEntry]], Awaitable[None]]


def listing_deadline(stall_timeout: float) -> float:
    """A whole listing's deadline: ten stall timeouts (10 minutes at the default 60 s, time
    for a 64 MiB page at 110 KB/s). The stall timeout bounds each wait for a byte; this
    bounds a server that sends a byte now and then and never ends."""
    return 10 * stall_timeout


class ReadStream(Protocol):
    """The bytes of one remote file from an offset on."""

    @property
    def validator(self) -> str | None:
        """The version the answer is of, when the protocol names it (as DirectStream's)."""
        ...

    async def read(self) -> memoryview:
        """The bytes that arrived since the last call, coalesced (empty at the end).

        The buffer is valid until the next call: write it before reading again.
        """
        ...

    async def finish(self) -> None:
        """Confirm with the server that the stream ended normally (FTP: the 226 reply)."""
        ...


class DirectStream(Protocol):
    """The bytes of one remote file from an offset on, moved straight into a file.

    The caller waits for `readable()` and then calls `move()` until it raises
    BlockingIOError; no bytes are held in between (see `_direct`).
    """

    @property
    def mover(self) -> Mover:
        """How bytes are moved: "splice" (no copy through user space) or "recv"."""
        ...

    @property
    def validator(self) -> str | None:
        """The version the answer is of, when the protocol names it (HTTP: a strong ETag,
        else Last-Modified); None for FTP."""
        ...

    def move(self, fd: int, offset: int, limit: int) -> int:
        """Move up to `limit` bytes that have arrived into file `fd` at `offset`, without
        waiting; return how many (0 at the end of the stream).

        Raises BlockingIOError when none have arrived, ConnectionLost (or another transient
        error) for the connection's failures and OSError for the file's. The bytes taken from
        the connection are in the file when it returns.
        """
        ...

    async def readable(self) -> None:
        """Wait until bytes (or the end) have arrived."""
        ...

    async def finish(self) -> None:
        """Confirm with the server that the stream ended normally (FTP: the 226 reply)."""
        ...


class Session(Protocol):
    """One logged-in connection. It does one thing at a time.

    `healthy` is False while a command is in flight and after any error: such a session
    must be closed, not reused. A session whose class says `reads_whole = True` (HTTP's,
    S3's: their answers name the version) has a small file received into memory (`_whole`).
    """

    healthy: bool

    async def list(self, path: str, sink: EntrySink | None = None) -> list[RemoteEntry]:
        """The entries of a directory (without . and ..). With `sink`, they go to it in
        batches as the listing arrives (as far as the protocol can) and none is returned.
        A listing that fails part way gives every entry again when asked again, unless the
        session's class says `resumes_listings = True` (S3: each batch is a whole page,
        given once; the listing goes on from the page that failed). An HTTP page that
        does not mark its directories gives its names as "unmarked", to settle
        (`_unmarked.settle`)."""
        ...

    async def stat(self, path: str) -> RemoteEntry:
        """Size and modification time of one path."""
        ...

    def open_read(self, path: str, offset: int, *, buffer: int | None = None,
                  expect: RemoteFile | None = None) -> AbstractAsyncContextManager[ReadStream]:
        """A stream of path's bytes from offset on (`expect`: as `open_direct`'s).

        `buffer` bounds how many bytes may arrive ahead of the consumer's reads (kernel
        buffers included, roughly): a rate limit sets it to its burst so the server is never
        drained faster than the limit. None lets the transport read ahead as fast as it can.
        """
        ...

    def open_direct(self, path: str, offset: int, *, buffer: int | None = None,
                    mover: Mover = "splice", expect: RemoteFile | None = None
                    ) -> AbstractAsyncContextManager[DirectStream]:
        """Like `open_read`, for a stream moved into a file (the files mirrored): by
        `mover` where the platform and the connection allow it, else by "recv".

        `expect` is the version the part holds: an answer that says it is of another
        (HTTP: its length, range total, validator or content-coding) raises WrongVersion
        before any byte is moved. FTP's answers do not say (SIZE and MDTM are asked apart).
        """
        ...

    async def aclose(self) -> None:
        """Close: politely when healthy, abruptly otherwise; bounded; safe when cancelled."""
        ...


class Transport(Protocol):
    """Opens sessions to one server."""

    async def connect(self) -> Session:
        """Connect and log in within the connect timeout."""
        ...


class Source(Protocol):
    """Where files come from: a remote directory and the transport that reaches it."""

    @property
    def path(self) -> str:
        """The remote directory."""
        ...

    @property
    def default_include(self) -> tuple[str, ...]:
        """The selection when the caller names none (a preset's; empty: every file)."""
        ...

    def remote_path(self, name: str) -> str:
        """The remote path of a file of that directory."""
        ...

    def transport(self, *, connect_timeout: float, stall_timeout: float,
                  command_bucket: TokenBucket | None = None,
                  gate: ServerGate | None = None) -> Transport:
        """A transport to the source's server with these timeouts, command budget and
        back-off (`gate`: its own when None)."""
        ...
