"""The tail of a mirror: idle sessions split the large files still being received.

When fewer files remain than sessions, a session with nothing queued takes the second half of
what remains of the span with the most left: REST at its middle, into a segment file
.pubmed-mirror/segments/KEY.MIDDLE (`_layout`), while the span's own transfer stops at the
middle. A file is then the spans [0, s1), [s1, s2), ... [sn, size); when all are complete they are
appended to NAME.part in order and the whole is checked.

NAME.part is always a prefix of the file and each segment file a prefix of its span, so an
interrupted run resumes all of them: the spans are read back from the names on disk. Segment
files are removed whenever NAME.part starts again from another version of the file.
"""

from __future__ import annotations

import contextlib
import os
import stat
from collections.abc import Iterable
from pathlib import Path
from typing import BinaryIO

import anyio

from ._errors import ProtocolError, ResumeRefused, TruncatedTransfer, local_errors
from ._layout import open_read, segment_files, segment_path
from ._resume import OVERLAP
from ._transfer import (
    RemoteFile,
    Span,
    discard_part,
    open_part,
    start_part,
    started_from,
)
from ._tree import make_parents

__all__ = ["FileTail", "Tails", "ready_part", "segments_on_disk"]


class FileTail:
    """The spans of one file: the first is NAME.part itself, the others its segments."""

    def __init__(self, part: Path, size: int, *, splittable: bool) -> None:
        self.part = part
        self.size = size
        # only when two versions spliced together would be caught: an MD5 to check, or exact
        # times to compare before each segment's RETR
        self.splittable = splittable
        self.spans: list[Span] = []
        self.scopes: set[anyio.CancelScope] = set()  # the helpers' transfers, to cancel

    def start(self, have: int, found: list[Span]) -> Span:
        """The first span, from `have` bytes of NAME.part; `found` (`segments_on_disk`) are
        adopted when the file has no spans yet."""
        if not self.spans:
            self.spans = [Span(self.part, 0, have, self.size), *found]
            for left, right in zip(self.spans, self.spans[1:], strict=False):
                left.end = right.start
            for span in self.spans[1:]:
                if span.pos > span.end:  # cannot be a prefix of its span: start it again
                    span.path.unlink(missing_ok=True)
                    span.pos = span.start
        first = self.spans[0]
        first.pos = have
        return first

    def stop_helpers(self) -> None:
        for scope in self.scopes:
            scope.cancel()

    def reset(self) -> None:
        """Forget the segments (the part starts again): stop their helpers, remove their files."""
        self.stop_helpers()
        for span in self.spans[1:]:
            span.path.unlink(missing_ok=True)
        self.spans = []

    def have(self) -> int:
        return sum(span.pos - span.start for span in self.spans)

    def complete(self) -> bool:
        """Every span received and written (`taken` lasts until its helper has closed the
        file; `pos` counts bytes once they are in the file)."""
        return all(span.pos >= span.end and not span.taken for span in self.spans)

    def orphan(self, *, helper: bool) -> Span | None:
        """A segment nobody is receiving: left by an earlier run or attempt, or one a helper
        gave up on (those only for the file's own attempt)."""
        return next((s for s in self.spans[1:] if not s.taken and s.pos < s.end
                     and not (helper and s.given_up)), None)

    def widest(self, min_split: int) -> Span | None:
        """The span being received with the most left, if that is worth splitting."""
        active = [s for s in self.spans if s.active and s.remaining >= min_split]
        return max(active, key=lambda s: s.remaining, default=None)

    def split(self, span: Span) -> Span:
        """Give the second half of what the span has left to a span of its own."""
        middle = span.pos + span.remaining // 2
        rest = Span(segment_path(self.part, middle), middle, middle, span.end, head=self.part)
        span.end = middle
        self.spans.insert(self.spans.index(span) + 1, rest)
        return rest

    def stitch(self) -> None:
        """Append the complete segments to NAME.part, in order, each then merged into the
        first span (run in a thread). A file shorter than its span (a write that failed)
        leaves that span to be received again."""
        first = self.spans[0]
        with local_errors(self.part), _open_update(self.part) as out:
            while True:
                length = out.seek(0, os.SEEK_END)
                if length != first.end:
                    first.pos = min(length, first.end)
                    raise TruncatedTransfer(f"{self.part.name} holds {length} of {first.end} "
                                            "bytes", path=self.part.name)
                if len(self.spans) == 1:
                    return
                span = self.spans[1]
                try:
                    have = span.path.lstat().st_size
                except FileNotFoundError:  # removed behind our back: receive it again
                    have = 0
                if have != span.end - span.start:
                    span.pos = span.start + min(have, span.end - span.start)
                    raise TruncatedTransfer(f"segment {span.path.name} holds {have} of "
                                            f"{span.end - span.start} bytes", path=self.part.name)
                try:
                    with open_read(span.path) as segment:
                        _check_start(segment.fileno(), out.fileno(), span)
                        _copy(segment.fileno(), out.fileno(), span.end - span.start)
                except BaseException:
                    os.ftruncate(out.fileno(), first.end)  # the part stays a prefix: retry it
                    raise
                first.end = first.pos = span.end
                del self.spans[1]
                span.path.unlink(missing_ok=True)


def segments_on_disk(part: Path, size: int, have: int) -> tuple[int, list[Span]]:
    """NAME.part's length and the segment files a previous attempt or run left, each a
    prefix of the span from its START (they are removed whenever NAME.part starts again
    from another version). A part that a crash left half-way through appending a segment
    is cut back to that segment's start. Run in a thread."""
    found: list[Span] = []
    for start, path in sorted(segment_files(part)):
        try:
            st = path.lstat()
        except OSError:
            continue
        length = st.st_size
        if not stat.S_ISREG(st.st_mode) or any(s.start == start for s in found):
            with contextlib.suppress(OSError):  # not ours (a link: never followed), or a twin
                path.unlink()
            continue
        if start < have < start + length and start + length <= size:
            with local_errors(part):
                _truncate(part, start)  # stitching was interrupted: redo it
            have = start
        if have <= start < size and start + length <= size:
            found.append(Span(path, start, start + length, size, head=part))
        else:  # already appended (a crash while stitching), or nonsense
            path.unlink(missing_ok=True)
    return have, found


def _check_start(segment: int, part: int, span: Span) -> None:
    """ResumeRefused when the segment starts with the file's first bytes: what a server that
    answers REST with 350 and sends from byte 0 anyway would have sent. (A file whose bytes
    at the segment's start really repeat its first OVERLAP bytes is then fetched whole: a cost,
    never a wrong file.)"""
    length = min(OVERLAP, span.end - span.start)
    if os.pread(segment, length, 0) == os.pread(part, length, 0):
        raise ResumeRefused(f"segment {span.path.name} starts with the file's first bytes: "
                            f"the server ignored REST {span.start}", path=span.path.name)


def _open_update(path: Path) -> BinaryIO:
    """`path` opened for reading and writing, never through a link."""
    return open(os.open(path, os.O_RDWR | os.O_NOFOLLOW), "r+b", buffering=0)


def _truncate(path: Path, length: int) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_NOFOLLOW)
    try:
        os.ftruncate(fd, length)
    finally:
        os.close(fd)


def _copy(src: int, dst: int, count: int) -> None:
    """`count` bytes from src to dst, in the kernel where it can (no copy on reflink file
    systems)."""
    while count:
        try:
            done = os.copy_file_range(src, dst, count)
        except OSError:  # another file system, an old kernel
            done = 0
        if done == 0:  # (some file systems answer 0 rather than an error): through memory
            chunk = memoryview(os.read(src, min(count, 1 << 20)))
            if not chunk:
                raise ProtocolError("segment shorter than it was a moment ago")
            done = len(chunk)
            while chunk:
                chunk = chunk[os.write(dst, chunk):]
        count -= done


class Tails:
    """Where idle sessions wait for a span to split."""

    def __init__(self, min_split: int | None) -> None:
        self.min_split = min_split
        self.in_flight = 0  # files taken from the queue and not finished
        self.waiting = 0  # sessions waiting for something to change
        self._changed = anyio.Event()

    def notify(self) -> None:
        self._changed.set()
        self._changed = anyio.Event()

    async def changed(self) -> None:
        self.waiting += 1
        try:
            await self._changed.wait()
        finally:
            self.waiting -= 1

    def steal(self, tails: Iterable[FileTail]) -> tuple[FileTail, Span] | None:
        """For an idle session: a segment nobody is receiving, else the second half of the
        widest span being received in `tails`."""
        for tail in tails:
            if (orphan := tail.orphan(helper=True)) is not None:
                return tail, orphan
        if self.min_split is None:
            return None
        best: tuple[FileTail, Span] | None = None
        for tail in tails:
            if not tail.splittable:
                continue
            span = tail.widest(self.min_split)
            if span is not None and (best is None or span.remaining > best[1].remaining):
                best = (tail, span)
        if best is None:
            return None
        tail, span = best
        return tail, tail.split(span)


def ready_part(dest: Path, name: str, part: Path, remote: RemoteFile, scan: bool, fresh: bool
               ) -> tuple[int, list[Span], bool, RemoteFile, tuple[int, int]]:
    """Before NAME's first byte is asked for, in one trip to a worker thread, not three (each
    trip wakes a thread, then the event loop, and contends for the GIL: a small file's cost):
    the directories NAME goes in (a link there fails it), `_prepare`, then NAME.part opened
    (`open_part`) for `receive_span`."""
    make_parents(dest, name)
    have, found, restarted, remote = _prepare(part, remote, scan, fresh, name)
    with local_errors(part):
        return have, found, restarted, remote, open_part(part)


def _prepare(part: Path, remote: RemoteFile, scan: bool, fresh: bool,
             name: str) -> tuple[int, list[Span], bool, RemoteFile]:
    """NAME.part's length (started afresh, its segments removed, unless it is of this
    version and not `fresh`: `restarted`), when `scan` the segments a previous attempt or run
    left, and `remote` with the validator the part was started from. Run in a thread."""
    if fresh:
        discard_part(part)
    have, restarted = start_part(part, remote, name=name)
    if restarted:  # its record, just written, names remote's own validator
        return have, [], restarted, remote
    remote = started_from(part, remote)
    if scan:
        have, found = segments_on_disk(part, remote.size, have)
        return have, found, restarted, remote
    return have, [], restarted, remote

