"""One file's transfer: resume into NAME.part, check, then atomically become NAME."""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import math
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import anyio
import anyio.lowlevel

from ._digest import Checksum, PartDigest
from ._direct import Mover, write_all
from ._errors import (
    ChecksumMismatch,
    ProtocolError,
    TransferStalled,
    TruncatedTransfer,
    WrongVersion,
    local_errors,
)
from ._layout import (
    create_file,
    legacy_records,
    make_part_dirs,
    meta_path,
    part_path,
    read_record,
    regular_size,
    segment_files,
)
from ._ratelimit import TokenBucket
from ._resume import OVERLAP, check_overlap
from ._state import STATE_DIR, make_state_dir
from ._transport import DirectStream, Session
from ._tree import make_parents

log = logging.getLogger("pubmed_mirror")

__all__ = ["PartDigest", "RemoteFile", "Span", "TransferResult", "fetch_file", "open_part",
           "part_path", "receive_span"]

@dataclass(frozen=True, slots=True)
class RemoteFile:
    """What the transfer needs to know of a remote file; `md5` is the expected hex digest,
    `validator` what names the version over HTTP (see RemoteEntry), when known; `checksum`
    the server's own for the whole object (S3's, asked for when there is no MD5)."""

    path: str
    size: int
    mtime: float | None
    md5: str | None = None
    validator: str | None = None
    checksum: Checksum | None = None

    @property
    def digest_algorithm(self) -> str | None:
        """What the part is hashed with to be checked before the rename (None: unchecked)."""
        if self.md5 is not None:
            return "md5"
        if self.checksum is not None and self.checksum.checkable:
            return self.checksum.algorithm
        return None


@dataclass(frozen=True, slots=True)
class TransferResult:
    received: int  # bytes received in this call
    resumed_from: int  # bytes already in NAME.part when it started


def _version(remote: RemoteFile) -> dict[str, float | str | None]:
    """What NAME.part.meta records: the remote version a part was started from (its
    validator, when not known yet, is recorded by the answer that starts it:
    `record_validator`)."""
    return {"size": remote.size, "mtime": remote.mtime, "validator": remote.validator}


def resumable(part: Path, remote: RemoteFile) -> int | None:
    """The length of a NAME.part started from this remote version; None if there is none.
    Validators are compared when both are known (a listing gives none)."""
    try:
        started_from = json.loads(read_record(part))
        have = regular_size(part)
    except (OSError, ValueError):
        return None
    if not isinstance(started_from, dict):
        return None
    version = {k: started_from.get(k) for k in ("size", "mtime")}
    validator = started_from.get("validator")
    same = version == {"size": remote.size, "mtime": remote.mtime} and (
        None in (validator, remote.validator) or validator == remote.validator)
    return have if same and 0 <= have <= remote.size else None


def part_validator(part: Path) -> str | None:
    """The validator NAME.part was started from, when its record has one."""
    try:
        validator = json.loads(read_record(part)).get("validator")
    except (OSError, ValueError, AttributeError):
        return None
    return validator if isinstance(validator, str) else None


def started_from(part: Path, remote: RemoteFile) -> RemoteFile:
    """`remote` with the validator NAME.part was started from, when its record has one:
    what a resumed request names (HTTP's If-Range)."""
    validator = part_validator(part)
    return remote if validator is None else replace(remote, validator=validator)


def record_validator(part: Path, validator: str) -> None:
    """Add to the part's record the validator of the answer that started the part."""
    with local_errors(part):
        try:
            record = json.loads(read_record(part))
        except (OSError, ValueError):
            return  # no record: the part is not resumed anyway
        if isinstance(record, dict):
            _write_record(part, {**record, "validator": validator})


def _write_record(part: Path, record: dict[str, object]) -> None:
    """The part's record, written whole (a temporary file renamed), in the state directory;
    one an earlier version left beside the part goes."""
    meta = meta_path(part)
    tmp = meta.with_name(meta.name + ".tmp")
    try:
        fd = create_file(tmp)
        try:
            write_all(fd, memoryview(json.dumps(record).encode()), 0)
        finally:
            os.close(fd)
        os.replace(tmp, meta)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    for legacy in legacy_records(part):
        legacy.unlink(missing_ok=True)


def part_name(meta: Path) -> str | None:
    """The name (relative to DEST) a part's record `meta` says it is of; None when it
    says none (an earlier version's) or cannot be read."""
    try:
        name = json.loads(meta.read_bytes()).get("name")
    except (OSError, ValueError, AttributeError):
        return None
    return name if isinstance(name, str) else None


def part_started(part: Path) -> float | None:
    """When NAME.part was started (this machine's clock, POSIX seconds); None if unknown."""
    try:
        started = json.loads(read_record(part)).get("started")
    except (OSError, ValueError, AttributeError):
        return None
    return float(started) if isinstance(started, int | float) else None


def prepare_part(part: Path, remote: RemoteFile) -> int:
    """Return the offset to resume from; start NAME.part afresh unless it is from this version."""
    return start_part(part, remote)[0]


def start_part(part: Path, remote: RemoteFile, started: float | None = None,
               name: str | None = None) -> tuple[int, bool]:
    """`prepare_part`, also saying whether NAME.part (and its segments) started afresh
    (recorded as `started`, now by default, with `name`, NAME relative to DEST: what
    tells a part under the state directory, named by a key, as its file's)."""
    with local_errors(part):
        make_part_dirs(part)  # a link there is replaced before anything is written
    have = resumable(part, remote)
    if have is not None:
        return have, False
    with local_errors(part):
        for legacy in legacy_records(part):
            legacy.unlink(missing_ok=True)
        # emptied before the record is written: a crash in between leaves an empty part,
        # still right
        os.close(create_file(part))
        for _, segment in segment_files(part):  # segments of another version
            segment.unlink()
        _write_record(part, {**_version(remote),
                             "started": time.time() if started is None else started,
                             **({"name": name} if name is not None else {})})
    return 0, True


def discard_part(part: Path) -> None:
    """Remove NAME.part, its record and its segments."""
    for path in (part, meta_path(part), *legacy_records(part),
                 *(path for _, path in segment_files(part))):
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def discard_empty_part(dest: Path, root: Path | None = None) -> None:
    """Remove NAME.part and its record when the part holds nothing worth resuming."""
    part = part_path(dest, root)
    with contextlib.suppress(OSError):
        if regular_size(part) == 0 and not segment_files(part):
            discard_part(part)


def finalize(part: Path, dest: Path, remote: RemoteFile,
             digest: PartDigest | None = None, root: Path | None = None) -> None:
    """Check the MD5 (what `digest` has not hashed yet is read now), fsync the data, stamp
    the remote mtime and rename into place. `root`: DEST, for a nested name, whose
    directories below `root` are made first, never through a link (`_tree.make_parents`)."""
    if root is not None:
        make_parents(root, dest.relative_to(root).as_posix())
    with local_errors(dest):
        _check_digest(part, remote, digest)
        land(os.open(part, os.O_RDONLY | os.O_NOFOLLOW), part, dest, remote.mtime)
        for record in (meta_path(part), *legacy_records(part)):
            record.unlink(missing_ok=True)


def land(fd: int, part: Path, dest: Path, mtime: float | None) -> None:
    """The part (open as `fd`, which this closes) made durable, stamped with `mtime` and
    renamed over NAME: a link at NAME is replaced itself, never written through. The
    directory is fsynced once per run (`sync_directory`), not per file: a rename lost in a
    crash leaves the old NAME (or none), which the next run sees and fetches again."""
    try:
        os.fsync(fd)
        if mtime is not None:
            os.utime(fd, (mtime, mtime))
    finally:
        os.close(fd)
    os.replace(part, dest)


def _check_digest(part: Path, remote: RemoteFile, digest: PartDigest | None) -> None:
    """The part's MD5, else the server's full-object checksum, matches (what `digest` has
    not hashed yet is read now; without one, the whole part); else it is discarded."""
    algorithm = remote.digest_algorithm
    if algorithm is None:
        return
    if digest is None or digest.algorithm != algorithm:
        digest = PartDigest(part, algorithm)
    try:
        check_digest(remote, digest.digest())
    except ChecksumMismatch:
        discard_part(part)
        raise


def check_digest(remote: RemoteFile, digest: bytes) -> None:
    """`digest` (by `remote.digest_algorithm`) is the file's MD5, else the server's
    full-object checksum; else ChecksumMismatch."""
    if remote.md5 is not None:
        actual, expected = digest.hex(), remote.md5.lower()
    else:
        assert remote.checksum is not None
        actual, expected = remote.checksum.encode(digest), remote.checksum.value
    if actual != expected:
        raise ChecksumMismatch(f"{(remote.digest_algorithm or '').upper()} {actual} does not "
                               f"match the expected {expected}", path=remote.path)


def part_digest(part: Path, remote: RemoteFile) -> PartDigest | None:
    """What hashes NAME.part while it is received, when it is to be checked."""
    algorithm = remote.digest_algorithm
    return PartDigest(part, algorithm) if algorithm is not None else None


def sync_directory(directory: Path) -> None:
    """Make the renames into `directory` durable."""
    with local_errors(directory):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


async def fetch_file(
    session: Session,
    remote: RemoteFile,
    dest: Path,
    *,
    stall_timeout: float = 60.0,
    bucket: TokenBucket | None = None,
    on_start: Callable[[int], None] | None = None,
    on_bytes: Callable[[int], None] | None = None,
    mover: Mover = "splice",
) -> TransferResult:
    """Append remote[offset:] to NAME.part, resuming what is there; on success NAME is complete.

    A final `dest` never exists with wrong contents: it appears only by rename of a part whose
    size equals the remote size and, when `remote.md5` is given, whose MD5 matches.
    `mover`: "splice" (no copy through user space, on Linux) or "recv" (see `_direct`).
    """
    part = part_path(dest)
    offset = await anyio.to_thread.run_sync(prepare_part, part, remote)
    remote = await anyio.to_thread.run_sync(started_from, part, remote)
    if on_start is not None:
        on_start(offset)
    span = Span(part, 0, offset, remote.size)
    digest = part_digest(part, remote)
    received = await receive_span(session, remote, span, stall_timeout=stall_timeout,
                                  bucket=bucket, on_bytes=on_bytes, mover=mover, digest=digest)
    await anyio.to_thread.run_sync(finalize, part, dest, remote, digest)
    return TransferResult(received=received, resumed_from=offset)


@dataclass(eq=False, slots=True)
class Span:
    """Bytes [start, end) of a remote file, appended to `path`, which holds [start, pos).

    `end` may be lowered while the span is received, by another session taking over the rest
    (`split`); the receiving side stops there.
    """

    path: Path
    start: int
    pos: int
    end: int
    # the file's NAME.part, for a segment: its first bytes are what a server that ignores
    # REST sends (None: the span is NAME.part's own)
    head: Path | None = None
    active: bool = False  # a data connection is receiving it now
    taken: bool = False  # someone is responsible for it (a segment's helper)
    given_up: bool = False  # a helper could not receive it: left to the file's own attempt

    @property
    def remaining(self) -> int:
        return self.end - self.pos


async def receive_span(
    session: Session,
    remote: RemoteFile,
    span: Span,
    *,
    stall_timeout: float,
    bucket: TokenBucket | None = None,
    on_bytes: Callable[[int], None] | None = None,
    mover: Mover = "splice",
    digest: PartDigest | None = None,
    opened: tuple[int, int] | None = None,
) -> int:
    """Receive remote[span.pos:span.end] into span.path (REST span.pos); return the bytes
    received. On return the span is complete; otherwise an error says why, and span.path
    holds every byte received before it (the next attempt resumes after them).

    A span that ends before the file does is cut short by closing its data connection: the
    session is then left out of sync (`healthy` False) for its pool to discard. `digest`
    (the part's, for a span starting at 0) hashes what is written as it goes. `opened`:
    what `open_part` returned for span.path, when the caller opened it in a trip to a worker
    thread it made anyway (the descriptor is this call's to close); else it is opened here.
    """
    if opened is None:
        with local_errors(span.path):
            opened = await anyio.to_thread.run_sync(open_part, span.path)
    fd, have = opened
    received = 0
    over = False  # the server sent more than the remote size (or an attempt before did)
    try:
        span.pos = span.start + have
        if span.pos == span.end:
            return 0
        over = span.pos > span.end
        if not over:
            received, over = await _retr(session, remote, span, fd, stall_timeout, bucket,
                                         on_bytes, mover, digest)
    except WrongVersion:  # the part is of a version the server no longer serves
        over = True
        raise
    finally:
        with local_errors(span.path):
            os.close(fd)
            if over:  # a version we did not ask for: never keep a byte of it
                await anyio.to_thread.run_sync(discard_part, span.path)
    if over:
        raise ProtocolError(f"the server sent more than the remote size {remote.size}: "
                            "the copy is thrown away", path=remote.path)
    if span.pos < span.end:
        raise TruncatedTransfer(f"stream ended at byte {span.pos} of {remote.size}",
                                path=remote.path)
    return received


async def _retr(session: Session, remote: RemoteFile, span: Span, fd: int,
                stall_timeout: float, bucket: TokenBucket | None,
                on_bytes: Callable[[int], None] | None, mover: Mover,
                digest: PartDigest | None) -> tuple[int, bool]:
    """One RETR of the span into `fd`: the bytes received, and whether the server sent more
    than the remote size (then its final reply is not awaited: a 426 can follow)."""
    buffer = _read_ahead(span.end - span.pos, bucket)
    received = 0
    back = min(OVERLAP, span.pos - span.start)  # resumed: the bytes before span.pos again
    async with session.open_direct(remote.path, span.pos - back, buffer=buffer, mover=mover,
                                   expect=remote) as stream:
        if back:
            await check_overlap(stream, fd, span, back, remote.path, stall_timeout, bucket)
        validator = stream.validator
        if span.pos == 0 and validator is not None and validator != remote.validator:
            # the answer starting the part names its version: a resume will ask for it
            await anyio.to_thread.run_sync(record_validator, span.path, validator)
        span.active = True
        try:
            received = await _receive(stream, fd, span, remote, stall_timeout, bucket,
                                      on_bytes, digest)
        finally:
            span.active = False
            log.debug("%s: %d bytes by %s", remote.path, received, stream.mover)
        if span.pos > remote.size:
            return received, True
        if span.end == remote.size or span.pos < span.end:
            await stream.finish()  # the final reply (the span stopped short otherwise)
    return received, False


def open_part(path: Path) -> tuple[int, int]:
    """`path` opened for reading (a resume compares) and writing at its end (created, and
    its directory too, when missing): the descriptor and the length. Not O_APPEND: splice
    cannot write to such a file. A link is refused, never written through."""
    flags = os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW
    try:
        fd = os.open(path, flags, 0o666)
    except FileNotFoundError:  # a segment's directory, removed since the file started
        if path.parent.parent.name != STATE_DIR:
            raise
        make_state_dir(path.parent.parent.parent, path.parent.name)
        fd = os.open(path, flags, 0o666)
    try:
        return fd, os.fstat(fd).st_size
    except BaseException:
        os.close(fd)
        raise


def _read_ahead(remaining: int, bucket: TokenBucket | None) -> int | None:
    """How far the transfer may read ahead of the file: no further than the bucket's burst
    (with a rate limit), and small buffers for small files (allocating the default 1 MiB
    cost more than receiving a 2 KiB file); None for the defaults."""
    limits = [n for n in (remaining if remaining < _SMALL else None,
                          None if bucket is None else int(bucket.burst)) if n is not None]
    return min(limits) if limits else None


_SMALL = 1 << 20
_YIELD = 4 << 20  # a transfer whose socket never runs dry lets others run this often


async def _receive(
    stream: DirectStream,
    fd: int,
    span: Span,
    remote: RemoteFile,
    stall_timeout: float,
    bucket: TokenBucket | None,
    on_bytes: Callable[[int], None] | None,
    digest: PartDigest | None,
) -> int:
    """Move the stream into the span's file until the stream or the span ends; return the
    bytes received. Every byte taken from the connection is in the file before any await.

    Each move is bounded by the span's end (unless the span runs to the end of the file:
    one byte beyond it is taken, to see the server's error, which the caller reports) and by
    the stream's chunk; it is counted, then the shared bucket is asked. Waiting for tokens is
    not a stall.
    """
    received = 0
    unyielded = 0
    writeback = _Writeback(fd, span.pos - span.start, digest)
    with anyio.CancelScope(deadline=anyio.current_time() + stall_timeout) as stall:
        while True:
            limit = span.end - span.pos if span.end < remote.size else remote.size + 1 - span.pos
            if limit <= 0:
                break
            with local_errors(span.path):
                try:
                    n = stream.move(fd, span.pos - span.start, limit)
                except BlockingIOError:
                    n = None
            if n is None:
                unyielded = 0
                await stream.readable()
                continue
            if n == 0:
                break
            span.pos += n  # claimed before any await, so a split sees where the span stands
            received += n
            await account(n, bucket, on_bytes, stall)
            unyielded += n
            if unyielded >= _YIELD:
                unyielded = 0
                await anyio.lowlevel.checkpoint()
            await writeback.after(span.pos - span.start)
            stall.deadline = anyio.current_time() + stall_timeout
    if stall.cancelled_caught:
        raise TransferStalled(f"no data for {stall_timeout:g} s", path=remote.path)
    return received


async def account(n: int, bucket: TokenBucket | None,
                  on_bytes: Callable[[int], None] | None, stall: anyio.CancelScope) -> None:
    """Count the bytes, then wait for the shared bucket's tokens (which is not a stall)."""
    if on_bytes is not None:
        on_bytes(n)
    if bucket is not None:
        stall.deadline = math.inf
        await bucket.acquire(n)


class _Writeback:
    """Every `_WRITEBACK` bytes, asks the kernel to start writing them to disk, so the fsync
    before the rename finds little left to do (measured on this project's machine: 512 MiB
    written then fsynced, 0.28 s; with this, 0.17 s, the final fsync ~0); and has the part's
    digest, if any, hash them."""

    def __init__(self, fd: int, offset: int, digest: PartDigest | None) -> None:
        self._fd = fd
        self._synced = offset  # where the last writeback request ended
        self._digest = digest

    async def after(self, offset: int) -> None:
        if offset - self._synced < _WRITEBACK:
            return
        if self._digest is not None:
            self._digest.advance(offset)
        synced, self._synced = self._synced, offset
        if start := _writeback():
            # shielded: the descriptor is closed after us, never under the thread
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(start, self._fd, synced, offset - synced)


_WRITEBACK = 8 << 20


@functools.cache
def _writeback() -> Callable[[int, int, int], None] | None:
    """Linux's sync_file_range(SYNC_FILE_RANGE_WRITE): start writing a range back, without
    waiting (only a hint: its errors are ignored, fsync reports any that matter). None
    elsewhere."""
    if not sys.platform.startswith("linux"):
        return None
    import ctypes

    try:
        call = ctypes.CDLL(None, use_errno=True).sync_file_range
    except (OSError, AttributeError):
        return None
    call.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]
    call.restype = ctypes.c_int

    def start(fd: int, offset: int, length: int) -> None:
        call(fd, offset, length, 2)  # SYNC_FILE_RANGE_WRITE

    return start
