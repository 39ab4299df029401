"""Small files received whole into memory, checked there and written once.

A file of a few KiB costs its part more than its bytes: NAME.part made, its record written
before the request and removed after, the part read back to be hashed, each a trip to a
worker thread. A small file with nothing on disk to resume is instead received into memory
by its session, checked, and written by `write_checked` in one trip (NAME.part, fsync,
rename, as any file). What an attempt that fails part way received is `spill`ed into a part
of that version, so the next attempt resumes after it like any other.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import anyio

from ._digest import bytes_digest
from ._direct import write_all
from ._errors import (
    LocalFileError,
    ProtocolError,
    RemoteFileError,
    TransferStalled,
    TruncatedTransfer,
    describe,
    local_errors,
)
from ._layout import create_file, make_part_dir, part_path
from ._ratelimit import TokenBucket
from ._transfer import (
    RemoteFile,
    account,
    check_digest,
    discard_part,
    land,
    open_part,
    start_part,
)
from ._transport import ReadStream, Session
from ._tree import make_parents

__all__ = ["IN_MEMORY", "HeldBody", "fetch_small", "in_memory", "read_into", "receive_whole",
           "spill", "write_atomically", "write_checked"]

log = logging.getLogger("pubmed_mirror")

# smaller files are received whole into memory: one per fetching worker at a time, held
# twice while it is written (up to 64 sessions' workers: about 32 MiB at most); larger ones
# over HTTP get a connection of their own (`_http._OWN_CONNECTION`)
IN_MEMORY = 256 << 10


async def read_into(stream: ReadStream, data: bytearray, *, limit: int, path: str,
                    stall_timeout: float, bucket: TokenBucket | None = None,
                    on_bytes: Callable[[int], None] | None = None) -> bool:
    """Append the stream to `data` until it ends (True, the stream finished) or `data` holds
    more than `limit` bytes (False, for the caller to refuse). Each chunk is in `data`, then
    counted, then the shared bucket is asked (waiting for its tokens is not a stall). On an
    error, `data` holds what arrived before it."""
    with anyio.CancelScope(deadline=anyio.current_time() + stall_timeout) as stall:
        while chunk := await stream.read():
            data += chunk
            if len(data) > limit:
                return False
            await account(len(chunk), bucket, on_bytes, stall)
            stall.deadline = anyio.current_time() + stall_timeout
    if stall.cancelled_caught:
        raise TransferStalled(f"no data for {stall_timeout:g} s", path=path)
    await stream.finish()
    return True


async def fetch_small(session: Session, path: str, *, limit: int,
                      stall_timeout: float) -> bytes:
    """The whole of a small remote file (a checksum file) in memory; at most `limit` bytes."""
    data = bytearray()
    async with session.open_read(path, 0, buffer=limit) as stream:  # small buffers suffice
        if not await read_into(stream, data, limit=limit, path=path,
                               stall_timeout=stall_timeout):
            raise RemoteFileError(f"larger than {limit} bytes: not a checksum file",
                                  path=path)
    return bytes(data)


class HeldBody:
    """A file's bytes already read (a selection's metadata object), as a ReadStream."""

    def __init__(self, body: bytes, validator: str | None) -> None:
        self._body: bytes | None = body
        self.validator = validator

    async def read(self) -> memoryview:
        body, self._body = self._body or b"", None
        return memoryview(body)

    async def finish(self) -> None:
        pass


def in_memory(session: Session, remote: RemoteFile, part: Path) -> bool:
    """Whether `remote` is received whole into memory: a small file, over a transport whose
    answers name their version (FTP's do not, and each file costs a data connection there
    anyway), with no part of it on disk."""
    if remote.size >= IN_MEMORY or not getattr(type(session), "reads_whole", False):
        return False
    try:
        os.lstat(part)
    except FileNotFoundError:
        return True
    except OSError:
        pass
    return False


async def receive_whole(session: Session, remote: RemoteFile, part: Path | None, *,
                        stall_timeout: float, bucket: TokenBucket | None = None,
                        on_bytes: Callable[[int], None] | None = None,
                        name: str | None = None) -> bytes:
    """The file, from byte 0, in memory. What an attempt that fails received becomes
    NAME.part (`part`; None: nothing is resumed in this run) of the version the answer
    named (its record naming `name`), for the next attempt to resume after; more bytes
    than the file's size are never kept."""
    if remote.size == 0:
        return b""
    data = bytearray()
    named = remote.validator
    asked = time.time()  # when the part would have been started (its record says)
    try:
        async with session.open_read(remote.path, 0, buffer=remote.size,
                                     expect=remote) as stream:
            named = stream.validator or named
            if not await read_into(stream, data, limit=remote.size, path=remote.path,
                                   stall_timeout=stall_timeout, bucket=bucket,
                                   on_bytes=on_bytes):
                raise ProtocolError(f"the server sent more than the remote size "
                                    f"{remote.size}: the copy is thrown away",
                                    path=remote.path)
        log.debug("%s: %d bytes into memory", remote.path, len(data))
        if len(data) < remote.size:
            raise TruncatedTransfer(f"stream ended at byte {len(data)} of {remote.size}",
                                    path=remote.path)
    except BaseException as exc:  # an error, or cancelled (a deadline, Ctrl-C): kept too
        if data and part is not None and not isinstance(exc, ProtocolError):  # (WrongVersion
            with anyio.CancelScope(shield=True):                              # is one)
                await anyio.to_thread.run_sync(spill, part, replace(remote, validator=named),
                                               bytes(data), asked, name)
        raise
    return bytes(data)


def write_checked(dest: Path, data: bytes, remote: RemoteFile, root: Path) -> None:
    """`data`, checked against the file's MD5 or checksum (ChecksumMismatch, and nothing
    written, when it does not match), becomes NAME atomically. Run in a worker thread."""
    if (algorithm := remote.digest_algorithm) is not None:
        check_digest(remote, bytes_digest(data, algorithm))
    write_atomically(dest, data, remote.mtime, root)


def write_atomically(dest: Path, data: bytes, mtime: float | None, root: Path) -> None:
    """Write a small file whole, never half of it: NAME.part (`part_path`), fsynced and
    stamped with `mtime`, then renamed over NAME. The directories of NAME below `root`
    (DEST) are made first, never through a link. Nothing is left of a part that failed."""
    part = part_path(dest, root)
    make_parents(root, dest.relative_to(root).as_posix())
    with local_errors(dest):
        make_part_dir(part)
        fd = create_file(part)  # (whatever was there goes first: a link is never followed)
        try:
            try:
                write_all(fd, memoryview(data), 0)
            except BaseException:
                os.close(fd)
                raise
            land(fd, part, dest, mtime)
        except BaseException:
            part.unlink(missing_ok=True)  # a full disk must not leave NAME.part behind
            raise


def spill(part: Path, remote: RemoteFile, data: bytes, started: float,
          name: str | None = None) -> None:
    """What an attempt received before it failed becomes NAME.part of `remote`'s version
    (its record included, saying it was `started` then), for the next attempt or run to
    resume after; best effort: a part that cannot be written is warned about, and the
    attempt's own error stands. Run in a worker thread."""
    try:
        start_part(part, remote, started, name)
        with local_errors(part):
            fd, _ = open_part(part)
            try:
                write_all(fd, memoryview(data), 0)
            finally:
                os.close(fd)
    except (LocalFileError, OSError) as exc:
        log.warning("%s: the %d bytes received are not kept: %s", remote.path, len(data),
                    describe(exc))
        discard_part(part)
