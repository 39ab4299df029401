"""MD5 of local files: whole (`file_md5`), or of a part while it is received (`PartDigest`)."""

from __future__ import annotations

import asyncio
import hashlib
import threading
from pathlib import Path

from ._layout import open_read

__all__ = ["PartDigest", "file_md5"]

_HASH_BLOCK = 4 << 20


def file_md5(path: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with open_read(path) as f:
        while block := f.read(_HASH_BLOCK):
            digest.update(block)
    return digest.hexdigest()


class PartDigest:
    """The MD5 of NAME.part, computed behind the writer.

    While the part is received, a worker thread hashes what is already written (read back
    from the page cache), so the check before the rename reads only the rest: on a fast link
    the hashing overlaps the transfer instead of following it. One belongs to one attempt,
    made after the part was prepared: within an attempt the part only grows (its first span
    appends, then the segments are appended), and a new attempt, which may start the part
    again, makes a new one.
    """

    def __init__(self, part: Path) -> None:
        self._part = part
        self._md5 = hashlib.md5(usedforsecurity=False)
        self._done = 0  # bytes of the part hashed
        self._lock = threading.Lock()  # one thread hashes at a time
        self._busy = False  # a job is queued or running

    def advance(self, written: int) -> None:
        """The part holds `written` bytes: hash them in a worker thread, unless the last job
        still runs (the next call catches up). Called on the event loop; never waits."""
        if not self._busy and written > self._done:
            self._busy = True
            asyncio.get_running_loop().run_in_executor(None, self._job, written)

    def _job(self, upto: int) -> None:
        try:
            with self._lock:
                self._update(upto)
        except OSError:
            pass  # `hexdigest` reads on from where this stopped, and reports what is wrong
        finally:
            self._busy = False

    def _update(self, upto: int | None) -> None:
        with open_read(self._part) as f:
            f.seek(self._done)
            while upto is None or self._done < upto:
                want = _HASH_BLOCK if upto is None else min(_HASH_BLOCK, upto - self._done)
                block = f.read(want)
                if not block:
                    break
                self._md5.update(block)
                self._done += len(block)

    def hexdigest(self) -> str:
        """The MD5 of the whole part as it is now (blocking: call it in a worker thread)."""
        with self._lock:
            self._update(None)
            return self._md5.hexdigest()
