"""A resume proves where it landed.

A retry (or the next run) asks the server for the file from OVERLAP bytes before the end of
what a part (or segment) holds, receives those bytes again into memory and compares them
with the part. A server that answered REST (or Range) and sent the file from byte 0 anyway
sends the file's first bytes instead: `ResumeRefused`, and the run stops resuming. Other
bytes mean the part is not the version the server serves now (or went wrong):
`WrongVersion`, and the part is discarded. Either way no byte of a wrong answer is ever
appended to a part.
"""

from __future__ import annotations

import contextlib
import math
import os
import tempfile
from collections.abc import Iterator
from typing import TYPE_CHECKING

import anyio

from ._errors import (
    ResumeRefused,
    TransferStalled,
    TruncatedTransfer,
    WrongVersion,
    local_errors,
)
from ._layout import open_read
from ._ratelimit import TokenBucket
from ._transport import DirectStream, RemoteEntry

if TYPE_CHECKING:
    from ._transfer import Span

__all__ = ["OVERLAP", "check_overlap", "same_version"]


OVERLAP = 16 << 10  # a resume asks for this much before the part's end, to compare


async def check_overlap(stream: DirectStream, fd: int, span: Span, back: int, path: str,
                         stall_timeout: float, bucket: TokenBucket | None) -> None:
    """Receive the `back` bytes before span.pos once more and compare them with what the
    span's file holds there: a resume proves where it landed.

    A server that said yes to REST and sent from byte 0 anyway sends the file's first bytes:
    ResumeRefused. Other bytes mean the part is not of the version being served (or went
    wrong): WrongVersion, and the caller discards it.
    """
    offset = span.pos - span.start - back
    with _scratch() as scratch:
        got = await _receive_into(stream, scratch, back, path, stall_timeout, bucket)
        if got < back:
            await stream.finish()  # the server's final reply says why (a 426, say)
            raise TruncatedTransfer(f"stream ended {got} bytes after byte {span.pos - back}",
                                    path=path)
        sent = os.pread(scratch, back, 0)
    with local_errors(span.path):
        if sent == os.pread(fd, back, offset):
            return
        head = _file_head(span, fd, back)
    if span.pos - back > 0 and sent == head:
        raise ResumeRefused(f"the server answered REST {span.pos - back} but sent the file "
                            "from byte 0", path=path)
    raise WrongVersion(f"bytes {span.pos - back}-{span.pos - 1} differ from the part's: "
                       "it is discarded", path=path)


def _file_head(span: Span, fd: int, length: int) -> bytes:
    """The first bytes of the file the span belongs to (as NAME.part holds them)."""
    if span.head is None:
        return os.pread(fd, length, 0)
    with open_read(span.head) as part:
        return part.read(length)


async def _receive_into(stream: DirectStream, fd: int, count: int, path: str,
                        stall_timeout: float, bucket: TokenBucket | None) -> int:
    """Move up to `count` bytes of the stream into `fd` from offset 0; return how many
    arrived before the stream ended."""
    got = 0
    with anyio.CancelScope(deadline=anyio.current_time() + stall_timeout) as stall:
        while got < count:
            try:
                n = stream.move(fd, got, count - got)
            except BlockingIOError:
                await stream.readable()
                continue
            if n == 0:
                break
            got += n
            if bucket is not None:
                stall.deadline = math.inf  # waiting for tokens is not a stall
                await bucket.acquire(n)
            stall.deadline = anyio.current_time() + stall_timeout
    if stall.cancelled_caught:
        raise TransferStalled(f"no data for {stall_timeout:g} s", path=path)
    return got


@contextlib.contextmanager
def _scratch() -> Iterator[int]:
    """A descriptor of an anonymous file in memory, for bytes that are only compared."""
    if hasattr(os, "memfd_create"):
        fd = os.memfd_create("pubmed-mirror-overlap", os.MFD_CLOEXEC)
        try:
            yield fd
        finally:
            os.close(fd)
    else:
        with tempfile.TemporaryFile() as file:
            yield file.fileno()


def same_version(listed: RemoteEntry, now: RemoteEntry, part_started: float | None, *,
                  checked: bool) -> bool:
    """SIZE and MDTM describe the file the listing showed, whose part began at
    `part_started`. MLSD's time is UTC to the second, like MDTM's: compared directly. An
    `ls -l` time is coarse and often the server's local time, so MDTM (UTC) is compared with
    when the part began instead: a file modified since then, or shortly before (the server's
    clock may be behind), is taken for a new version, unless an MD5 checks it (`checked`):
    then a splice of two versions fails the check and the file is fetched again, while a
    resume is not lost for every file posted within 15 hours (a daily update file). With no
    time to compare, only an MD5 would catch two versions spliced: without one, it is not
    the same."""
    if now.size is not None and now.size != listed.size:
        return False
    if listed.mtime is None or now.mtime is None:
        return checked
    if listed.mtime_resolution <= 1:
        return -1 < now.mtime - listed.mtime < 2
    return checked or part_started is not None and now.mtime < part_started - _CLOCK_SKEW


# erring this way costs a restart from 0, never a splice: an hour for the server's clock,
# and 14 more for an MDTM in the server's local time (vsftpd's use_localtime, pyftpdlib's
# --use-localtime), read as UTC
_CLOCK_SKEW = 15 * 3600.0
