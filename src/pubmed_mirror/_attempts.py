"""The attempts at one file: resume or restart, check, stitch, finalize and record it."""

from __future__ import annotations

import functools
import logging
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

import anyio

from ._companion import Companion
from ._digest import Checksum, PartDigest, file_checksum, file_md5
from ._errors import (
    ChecksumMismatch,
    LocalFileError,
    PermanentError,
    ProtocolError,
    RemoteFileError,
    ResumeRefused,
    TransientError,
    TruncatedTransfer,
    WrongVersion,
    describe,
    local_errors,
)
from ._events import FileProgress, FileRetrying, FileStarted
from ._plan import PlannedFile, same_time
from ._resume import same_version
from ._rewrite import changed_since, looked_at
from ._s3 import ObjectHead, S3Session
from ._s3list import etag_md5
from ._select import other_etag
from ._state import ManifestEntry
from ._tail import FileTail, ready_part
from ._transfer import (
    RemoteFile,
    Span,
    discard_part,
    finalize,
    part_digest,
    part_path,
    part_started,
    part_validator,
    receive_span,
    started_from,
)
from ._transport import RemoteEntry, Session
from ._whole import (
    IN_MEMORY,
    in_memory,
    receive_whole,
    write_checked,
)

if TYPE_CHECKING:
    from ._mirror import MirrorRun
    from ._pool import SessionPool
    from ._transport import Source

__all__ = ["FileAttempts"]


log = logging.getLogger("pubmed_mirror")

class FileAttempts:
    """The attempts at one file: what each saw, for events, the report and the manifest."""

    def __init__(self, planned: PlannedFile, run: MirrorRun, *,
                 over: tuple[SessionPool, Source] | None = None) -> None:
        self.planned = planned
        self.entry = planned.entry
        self.run = run
        # where it is fetched from: the run's, or (`_repair`) the other protocol's
        self.pool, self.source = over or (run.pool, run.source)
        self.size = planned.size
        self.attempts = 0
        self.received = 0
        self.resumed_from = 0
        self.md5: str | None = None  # the expected digest, once known
        self.mtime = planned.entry.mtime  # stamped on the final file and recorded
        self.local_copy_kept = False  # a "check" found the local copy right
        self.record_error: str | None = None  # NAME is final, its record could not be written
        self.companion = Companion(self.entry.name, planned.checksum)  # NAME.md5
        # S3: the object's own checksum (`_object_checksum`), asked once per version
        self.object_checksum: Checksum | None = None
        self._object_asked = False
        self._etag_md5 = True  # S3: its listed single-part ETag is its MD5 (`S3Session.head`)
        self._doubted = False  # S3: a download did not match it: is it an MD5 at all?
        self._adopted: RemoteEntry | None = None  # S3: a version changed since listed
        # what the file looked like as this attempt began, to compare with once every byte
        # is in (`_rewrite`); None when a digest or the store vouches for the bytes
        self._before: RemoteEntry | None = None
        # what SIZE/MDTM or HEAD said it is, once it changed since the listing: the version
        # the next attempts fetch and a part of it is recorded as (S3's: `_adopted`)
        self._now: RemoteEntry | None = None
        self._adopted_md5: str | None = None  # its ETag's MD5 (`_adopt`)
        self._recheck = False  # S3: the last attempt met another version, or a mismatch
        self._checked = planned.action != "check"
        self._position = 0
        self._furthest = 0
        self._furthest_before = 0  # at the start of the current attempt
        self.remote: RemoteFile | None = None  # what the current attempt fetches
        self.current = planned.entry  # the version it fetches, as listed or as SIZE/MDTM say
        self.tail: FileTail | None = None  # its spans, once it is being received
        self._digest: PartDigest | None = None  # the current attempt's
        self._fresh = False  # the next attempt starts NAME.part again from byte 0
        self._part_path: Path | None = None  # (`_part`: asked on every attempt)

    def furthest(self) -> int:
        """The furthest byte any attempt reached: it grows only when a retry got further
        (a refetch from zero after a checksum mismatch is no progress)."""
        return self._furthest

    def on_retry(self, attempt: int, delay: float, error: BaseException) -> None:
        if isinstance(error, ChecksumMismatch | WrongVersion):
            self.companion.forget()  # the server may have replaced both: ask again
            self._object_asked = False
            self._doubted = isinstance(error, ChecksumMismatch)
            self._recheck = True
        self.run.emit(FileRetrying(self.entry.name, attempt, delay, describe(error)))

    def _on_start(self, offset: int) -> None:
        if self.attempts == 1:
            self.resumed_from = offset
        self._position = offset
        log.info("%s: attempt %d, from byte %d of %d", self.entry.name, self.attempts, offset,
                 self.size)
        self.run.emit(FileStarted(self.entry.name, self.size, offset, self.attempts))

    def _on_bytes(self, n: int) -> None:
        self.received += n
        self._position += n
        self._furthest = max(self._furthest, self._position)
        self.run.emit(FileProgress(self.entry.name, n, self._position, self.size))
        if self.run.tails.waiting:  # a session may be waiting for a span to split
            self.run.tails.notify()

    async def attempt(self) -> None:
        self.attempts += 1
        verify = self.run.options.verify
        remote = None
        whole: bytes | None = None  # the file, received into memory (`_whole`)
        self._furthest_before = self._furthest
        async with self.pool.session() as session:
            if self._recheck and isinstance(session, S3Session):
                await self._recheck_version(session)
            if verify:
                self.md5 = await self._expected_md5(session)
            if not self._checked:
                self._checked = True
                self.local_copy_kept = await anyio.to_thread.run_sync(self._local_copy_is_right)
            if not verify and not self.local_copy_kept:  # (a copy kept keeps its NAME.md5)
                await self._companion(session)
            if not self.local_copy_kept:
                if verify:
                    await self._object_checksum(session)
                self.remote = remote = await self._remote(session)
                if self._in_memory(session, remote):
                    whole = await self._receive_whole(session, remote)
                else:
                    try:
                        await self._receive_first(session, remote)
                    except (ResumeRefused, WrongVersion) as exc:
                        await self._from_zero(exc)
        if whole is not None:
            assert remote is not None
            await self._write_whole(whole, remote)
        elif remote is not None:
            try:
                await self._complete(remote)  # which records it
            except (ResumeRefused, WrongVersion) as exc:  # in a segment, or at the stitch
                await self._from_zero(exc)
        else:
            await anyio.to_thread.run_sync(self._record)

    async def _from_zero(self, error: ResumeRefused | WrongVersion) -> NoReturn:
        """This file starts again from byte 0, at the retry: the server cannot resume (then
        no more resuming in this run), or an answer in any span was of another version than
        the part (then the part and its segments go now: never resumed again)."""
        self.untrack()
        if self.tail is not None:
            self.tail.reset()
            self.tail = None
        self._fresh = True
        self._furthest = self._furthest_before  # what it held is thrown away: no progress
        if isinstance(error, WrongVersion):
            await anyio.to_thread.run_sync(discard_part, self._part())
            raise error
        self.run.no_resume(error)
        raise TruncatedTransfer(f"fetching it again from byte 0: {describe(error)}",
                                path=self.entry.name) from error

    async def _receive_first(self, session: Session, remote: RemoteFile) -> None:
        """Receive NAME.part's span (all of the file unless it was split)."""
        part = self._part()
        scan = self.tail is None or not self.tail.spans
        fresh, self._fresh = self._fresh or not self.run.resume, False
        have, found, restarted, remote, opened = await anyio.to_thread.run_sync(
            ready_part, self.run.dest, self.entry.name, part, remote, scan, fresh)
        try:
            first = self._first_span(part, remote, have, found, restarted)
        except BaseException:
            os.close(opened[0])
            raise
        await receive_span(session, remote, first, stall_timeout=self.run.options.timeouts.stall,
                           bucket=self.run.bucket, on_bytes=self._on_bytes,
                           mover=self.run.mover, digest=self._digest, opened=opened)

    def _in_memory(self, session: Session, remote: RemoteFile) -> bool:
        """Whether this attempt receives the file whole into memory (`_whole`): nothing of
        it received in this run, and `in_memory` says so."""
        return self._furthest == 0 and self.tail is None and in_memory(session, remote,
                                                                         self._part())

    async def _receive_whole(self, session: Session, remote: RemoteFile) -> bytes:
        self._on_start(0)
        self._fresh = False  # a part it leaves is of the answer's version: resumed, not discarded
        return await receive_whole(session, remote, self._part() if self.run.resume else None,
                                   stall_timeout=self.run.options.timeouts.stall,
                                   bucket=self.run.bucket, on_bytes=self._on_bytes,
                                   name=self.entry.name)

    async def _write_whole(self, data: bytes, remote: RemoteFile) -> None:
        """Check the file received whole and make it NAME, then record it: one trip to a
        worker thread."""
        try:
            await anyio.to_thread.run_sync(self._finish_whole, data, remote)
        except ChecksumMismatch:
            self._furthest = self._furthest_before  # the bytes were thrown away: no progress
            raise

    def _finish_whole(self, data: bytes, remote: RemoteFile) -> None:
        write_checked(self.run.dest / self.entry.name, data, remote, self.run.dest)
        self._record()

    def _first_span(self, part: Path, remote: RemoteFile, have: int, found: list[Span],
                    restarted: bool) -> Span:
        """NAME.part's span, `have` bytes of it on disk, in this file's tail (made now, or
        again when the part started again), with `found` (`segments_on_disk`) adopted."""
        self.remote = remote  # with the validator the part was started from
        if restarted and self.tail is not None:  # another version, or its record was lost:
            self.untrack()                       # the segments are gone with the part
            self.tail.reset()
            self.tail = None
        if self.tail is None:
            exact = (self.current.size is not None and self.current.mtime is not None
                     and self.current.mtime_resolution <= 1)
            self.tail = FileTail(part, remote.size,
                                 splittable=remote.digest_algorithm is not None or exact)
        tail = self.tail
        first = tail.start(have, found)
        self._on_start(tail.have())
        self.run.splittable[tail] = self
        self.run.tails.notify()  # its segments left on disk, if any, are for idle sessions
        # hashes the part while it is received (a new one each attempt: see PartDigest)
        self._digest = part_digest(part, remote)
        return first

    async def _complete(self, remote: RemoteFile) -> None:
        """Receive the segments nobody else is receiving (or split them further), wait for
        the others, then stitch and finalize NAME."""
        tail = self.tail
        assert tail is not None
        while not tail.complete():
            span = tail.orphan(helper=False)
            if span is None and (job := self.run.tails.steal([tail])) is not None:
                span = job[1]
            if span is not None:
                try:
                    await self.segment(tail, span, helper=False)
                except (RemoteFileError, ResumeRefused) as exc:  # resuming cannot work here
                    await self._unsplit(tail, exc)
            else:
                await self.run.tails.changed()
        self.untrack()
        if self._before is not None and (how := await changed_since(
                self.pool, remote.path, self._before)) is not None:
            raise WrongVersion(f"changed on the server while it was received ({how})",
                               path=self.entry.name)
        try:
            await anyio.to_thread.run_sync(self._finish, tail, remote)
        except ChecksumMismatch:
            self._furthest = self._furthest_before  # the bytes were thrown away: no progress
            self.tail = None  # the part and its segments are gone (`finalize`)
            raise

    async def _unsplit(self, tail: FileTail, error: RemoteFileError | ResumeRefused) -> NoReturn:
        """A segment the server will not serve: no more splitting in this run, and this file
        is fetched again whole, from byte 0 (a file that is really gone fails then)."""
        if isinstance(error, ResumeRefused):
            self.run.no_resume(error)
        self.run.tails.min_split = None
        log.warning("%s: a segment was refused (%s): splitting off, fetching it whole",
                    self.entry.name, describe(error))
        self.untrack()
        tail.reset()
        self.tail = None
        await anyio.to_thread.run_sync(discard_part, tail.part)
        raise TruncatedTransfer(f"a segment was refused: {describe(error)}",
                                path=self.entry.name) from error

    def _finish(self, tail: FileTail, remote: RemoteFile) -> None:
        """Stitch, check and rename NAME, then record it: one trip to a worker thread."""
        tail.stitch()
        finalize(tail.part, self.run.dest / self.entry.name, remote, self._digest,
                 root=self.run.dest)
        self._record()

    async def segment(self, tail: FileTail, span: Span, *, helper: bool) -> None:
        """Receive one segment of `tail` (with retries). A helper that cannot leaves it to
        the file's own attempt."""
        assert self.remote is not None
        remote = self.remote
        span.taken = True
        scope = anyio.CancelScope()  # cancelled when the file starts again or fails
        tail.scopes.add(scope)
        try:
            with scope:
                log.info("%s: bytes %d-%d on another session", self.entry.name, span.pos,
                         span.end)
                await self.run.options.retry.call(
                    functools.partial(self._segment_attempt, tail, remote, span),
                    progress=lambda: span.pos)
        except (TransientError, PermanentError) as exc:
            if isinstance(exc, ResumeRefused):
                self.run.no_resume(exc)
            if not helper:
                raise
            span.given_up = True
            log.warning("%s: bytes %d-%d left to its first session: %s", self.entry.name,
                        span.pos, span.end, describe(exc))
        finally:
            tail.scopes.discard(scope)
            span.taken = False
            self.run.tails.notify()

    async def _segment_attempt(self, tail: FileTail, remote: RemoteFile, span: Span) -> None:
        # the validator the part's first answer recorded, which a segment's request names
        remote = await anyio.to_thread.run_sync(started_from, tail.part, remote)
        async with self.pool.session() as session:
            if remote.digest_algorithm is None:
                # another connection, another RETR: still the version the part holds? (with
                # an MD5 or checksum, a splice of two versions fails the check instead)
                now = await session.stat(remote.path)
                if now.size is None or now.mtime is None:
                    raise ResumeRefused("the server gives no size or time to tell whether "
                                        "a segment is of the same version", path=remote.path)
                if not same_version(self.current, now, None, checked=False):
                    raise ProtocolError("changed on the server during the transfer",
                                        path=remote.path)
            await receive_span(session, remote, span,
                               stall_timeout=self.run.options.timeouts.stall,
                               bucket=self.run.bucket, on_bytes=self._on_bytes,
                               mover=self.run.mover)

    def _part(self) -> Path:
        """Where NAME is received: the same place for every attempt at it."""
        if self._part_path is None:
            self._part_path = part_path(self.run.dest / self.entry.name, self.run.dest)
        return self._part_path

    def untrack(self) -> None:
        """No more splitting of this file: stop its helpers."""
        if self.tail is not None and self.run.splittable.pop(self.tail, None) is not None:
            self.tail.stop_helpers()

    async def _expected_md5(self, session: Session) -> str | None:
        """NAME's digest from NAME.md5 on the server (fetched once per digest, checked against
        the listed size and parsed), else the MD5 the listing gave (S3's single-part ETag);
        None when there is neither. A short or unreadable NAME.md5 is a transient error: it
        is fetched again."""
        if self.planned.checksum is not None:
            return await self.companion.md5(
                session, self.source.remote_path(self.planned.checksum.name),
                stall_timeout=self.run.options.timeouts.stall)
        if self._adopted is not None:
            return self._adopted_md5
        if (self.entry.md5 is not None and isinstance(session, S3Session)
                and not self._object_asked
                and (self._doubted or session.transport.etags_doubted)):
            head = await session.doubt(self.source.remote_path(self.entry.name),
                                       self._version)
            self.object_checksum, self._etag_md5 = ((head.checksum, head.etag_is_md5)
                                                    if head else (None, True))
            self._object_asked = True  # (not before: a HEAD that failed is asked again)
        return self.entry.md5 if self._etag_md5 else None

    async def _object_checksum(self, session: Session) -> None:
        """S3, an object with no MD5 (a multipart ETag): its own full-object checksum, asked
        by one HEAD with checksum mode per version fetched (again only after a mismatch).
        HEAD, not the GET: every GET here is ranged (`bytes=N-`), and S3 leaves a
        full-object checksum out of a ranged answer, while the digest must be known before
        the first byte, to hash the part behind the writer, for a resumed or split transfer
        as for a fresh one."""
        if self.md5 is not None or not isinstance(session, S3Session) or self._object_asked:
            return
        path = self.source.remote_path(self.entry.name)
        self.object_checksum = (await session.head(path, self._version)).checksum
        self._object_asked = True
        if self.object_checksum is not None and not self.object_checksum.checkable:
            log.info("%s: %s: recorded, not checked", self.entry.name,
                     self.object_checksum.why_unchecked())

    async def _companion(self, session: Session) -> None:
        """--no-verify: NAME.md5 still travels with NAME when it can, but never fails it."""
        try:
            await self._expected_md5(session)
        except (TransientError, PermanentError) as exc:
            self.companion.forget()
            log.warning("%s: not kept beside %s: %s", self.planned.checksum.name
                        if self.planned.checksum else "", self.entry.name, describe(exc))

    def _local_copy_is_right(self) -> bool:
        """A "check": the local copy has the remote size and mtime; is it the right bytes?
        A wrong copy stays in place until the fetched one replaces it (atomically)."""
        local = self.run.dest / self.entry.name
        row = self.run.manifest.get(self.entry.name)
        if row is not None and row.bad is not None:
            log.warning("%s: `verify` found it wrong (%s); fetching it again", local, row.bad)
            return False
        own = self.object_checksum  # S3: no MD5, maybe the object's own checksum
        if self.md5 is None and (own is None or not own.checkable):
            # nothing to hash against: the size and time said it is right; with no time nor
            # validator to say so (a page without times, a HEAD without either), only the
            # size did, and a fetch is the one way to be right
            return self.entry.mtime is not None or self.entry.validator is not None
        if self.md5 is not None and row is not None and row.md5 == self.md5 and (
                row.size == self.size and same_time(row.mtime, self.entry)):
            return True
        with local_errors(local):
            if self.md5 is not None:
                kind, right = "MD5", file_md5(local) == self.md5
            else:
                assert own is not None
                kind = own.algorithm.upper()
                right = own.encode(file_checksum(local, own.algorithm)) == own.value
        if right:
            return True
        log.warning("%s: local copy does not match its %s; fetching it again", local, kind)
        return False

    async def _remote(self, session: Session) -> RemoteFile:
        path = self.source.remote_path(self.entry.name)
        entry = self._adopted or self._now or self.entry
        now: RemoteEntry | None = None  # what a SIZE/MDTM or HEAD of this attempt said
        if entry.size is None:  # the listing did not say: ask
            entry = now = await session.stat(path)
        elif self._furthest > 0 or (self._recheck and not isinstance(session, S3Session)):
            # a retry that would resume, or one after an answer of another version: is it
            # still the same file? (S3's is asked in `_recheck_version`)
            self._recheck = False
            now = await session.stat(path)
            started, recorded, _ = await self._part_record()
            if (isinstance(session, S3Session) and other_etag(entry.validator, now.validator)
                    or not same_version(entry, now, started, checked=self.md5 is not None)
                    or None not in (recorded, now.validator) and recorded != now.validator):
                entry = self._changed(path, entry, now)
                if isinstance(session, S3Session):
                    self._adopt(entry, await session.head(path, entry.validator)
                                if self._checks_by_object() else None)
                else:
                    self._now = entry
        elif (started := await self._blind_part(session, entry)) is not None:
            # a part an earlier run left, of a file only a coarse time describes and nothing
            # checks: resumed only if SIZE/MDTM or HEAD say it is the version it began as
            # (a refusal of them, 550 too, tells nothing: it starts again from 0)
            try:
                looked = now = await session.stat(path)
            except RemoteFileError:  # (and no look to compare with once the bytes are in)
                looked = RemoteEntry(entry.name, None, None, "file")
            if not same_version(entry, looked, started, checked=False):
                entry = self._now = self._changed(path, entry, looked)
        if entry.size is None:  # never finalize without a size to check against
            raise ProtocolError("the server gives no size for this file", path=path)
        if self._vouched(session, entry):
            self._before = None
        else:  # (asked once: a retry's look at the file is the look before it too)
            self._before = now or await looked_at(session, path)
        self.size = entry.size
        self.mtime = entry.mtime if entry.mtime else self.entry.mtime
        self.current = entry
        return RemoteFile(path, entry.size, self.mtime, self.md5, entry.validator,
                          self.object_checksum)

    async def _blind_part(self, session: Session, entry: RemoteEntry) -> float | None:
        """When the part an earlier run left began, if this attempt would resume it with
        nothing to tell another version by: no MD5 or checksum, no validator recorded with
        the part (HTTP's If-Range), a listed time coarser than a second (LIST, web pages: a
        rewrite in the same minute at the same size shows no change, and the 16 KiB
        compared at the resume point miss a change before them); else None."""
        checksum = self.object_checksum
        if (self.md5 is not None or (checksum is not None and checksum.checkable)
                or isinstance(session, S3Session) or entry.mtime_resolution <= 1
                or self._fresh or self.tail is not None or not self.run.resume):
            return None
        started, recorded, there = await self._part_record()
        if recorded is not None or not there:
            return None
        return 0.0 if started is None else started  # (no time recorded: never resumed)

    async def _part_record(self) -> tuple[float | None, str | None, bool]:
        """NAME.part's record (when the part began, the validator it was started from) and
        whether the part is on disk: one trip to a worker thread."""
        part = self._part()
        return await anyio.to_thread.run_sync(
            lambda: (part_started(part), part_validator(part), os.path.lexists(part)))

    def _vouched(self, session: Session, entry: RemoteEntry) -> bool:
        """Whether a rewrite while it is received needs no look (`_rewrite`): an MD5 or a
        checkable checksum checks the bytes, the store's GET is of one version, or the file
        comes in a moment."""
        checksum = self.object_checksum
        return (self.md5 is not None or (checksum is not None and checksum.checkable)
                or isinstance(session, S3Session) or entry.size is None
                or entry.size < IN_MEMORY)

    def _changed(self, path: str, known: RemoteEntry, now: RemoteEntry) -> RemoteEntry:
        """The file is no longer the version `known` (the listed one, or one adopted): the
        next bytes come from 0, of the version `now` (what is returned)."""
        log.warning("%s: changed on the server since the listing, or no way to tell "
                    "(%s bytes, mtime %s; now %s, %s): fetching it from the start",
                    path, known.size, known.mtime, now.size, now.mtime)
        self._fresh = True
        return RemoteEntry(known.name, now.size if now.size is not None else known.size,
                           now.mtime, known.kind, 1.0, now.validator)

    async def _recheck_version(self, session: S3Session) -> None:
        """S3, after an answer of another version or a download that did not match: one
        HEAD in checksum mode says what the object is now (its ETag names the version),
        its own checksum, and whether that ETag is an MD5 (SSE-KMS: `doubt`); a version
        other than the one fetched is adopted (`_adopt`) before anything is checked. A HEAD
        that fails leaves the question for the next attempt."""
        path = self.source.remote_path(self.entry.name)
        head = await session.doubt(path, None)
        self._recheck = False
        if head is None:  # refused: nothing to tell by
            return
        self.object_checksum, self._etag_md5 = head.checksum, head.etag_is_md5
        self._object_asked = True
        known, now = self._adopted or self.entry, head.entry
        if other_etag(now.validator, known.validator):
            self._adopt(self._changed(path, known, now), head)

    def _checks_by_object(self) -> bool:
        """Whether the file is checked by what S3 says of the object (its ETag's MD5 or its
        own checksum): not with --no-verify, nor when its NAME.md5 checks it."""
        return self.run.options.verify and self.planned.checksum is None

    def _adopt(self, now: RemoteEntry, head: ObjectHead | None) -> None:
        """S3: the object changed since the listing and its new version `now` is fetched
        (its size, time and ETag), checked by what that version is (`head`, when the
        object checks it: `_checks_by_object`): its ETag's MD5 (single-part, not SSE-KMS)
        or its own checksum, never by the listed version's checks, nor by none (a listed
        multipart object replaced by a single-part one landed unchecked)."""
        self._adopted = now
        if head is not None and self._checks_by_object():
            self.object_checksum, self._object_asked = head.checksum, True
            self.md5 = self._adopted_md5 = (etag_md5(now.validator) if head.etag_is_md5
                                            else None)

    @property
    def _version(self) -> str | None:
        """The ETag of the version fetched: the listed one's, or the one `_adopt` took."""
        return (self._adopted or self.entry).validator

    def _record(self) -> None:
        """NAME is final (or the local copy is right): record it. A record that cannot be
        written (a full disk) does not make NAME wrong: the file is done, `record_error` says
        what failed, and the next run, finding NAME unvouched for, confirms it by MD5 and
        records it without fetching it."""
        try:
            self._write_record()
        except LocalFileError as exc:
            self.record_error = describe(exc)
            log.warning("%s is final and correct, but not recorded: %s", self.entry.name,
                        self.record_error)

    def _write_record(self) -> None:
        """Write NAME.md5 beside NAME (or drop a stale one: `Companion.write`), then vouch
        for NAME in the manifest. With --no-verify a local copy kept keeps its NAME.md5:
        the server's, unchecked, may be of another version (`verify` would call the copy
        corrupt)."""
        if self.run.options.verify or not self.local_copy_kept:
            self.companion.write(self.run.dest, self.run.manifest)
        now = time.time()
        etag = self.current.validator  # a strong ETag names the version (S3: vouched by)
        own = self.object_checksum  # S3's checksum of the object (checked when it can be)
        checked = self.md5 is not None or (own is not None and own.checkable)
        self.run.manifest.record(ManifestEntry(
            self.entry.name, self.size, self.mtime, self.md5, now, now if checked else None,
            etag=etag if etag and etag.startswith('"') else None,
            checksum=str(own) if own else None, shown=self.entry.shown))
