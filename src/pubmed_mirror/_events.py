"""Typed events: how the library reports what it does. It never prints."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from ._errors import MirrorError

__all__ = [
    "BaselineChanged",
    "Event",
    "FileDeleted",
    "FileDone",
    "FileFailed",
    "FileLanded",
    "FileProgress",
    "FileQueued",
    "FileRetrying",
    "FileSkipped",
    "FileStarted",
    "ListingDone",
]


@dataclass(frozen=True, slots=True)
class ListingDone:
    """The remote directory was listed: `files` selected, `total_bytes` to consider."""

    files: int
    total_bytes: int


@dataclass(frozen=True, slots=True)
class FileQueued:
    name: str
    size: int


@dataclass(frozen=True, slots=True)
class FileSkipped:
    """Already up to date locally (the manifest vouches for it, or its MD5 matched)."""

    name: str
    size: int


@dataclass(frozen=True, slots=True)
class FileStarted:
    """An attempt began; `offset` bytes were already in NAME.part."""

    name: str
    size: int
    offset: int
    attempt: int


@dataclass(frozen=True, slots=True)
class FileProgress:
    """`delta` bytes just arrived; `received` is NAME.part's length now."""

    name: str
    delta: int
    received: int
    size: int


@dataclass(frozen=True, slots=True)
class FileRetrying:
    name: str
    attempt: int  # the attempt that failed (1-based)
    delay: float  # seconds until the next attempt
    reason: str


@dataclass(frozen=True, slots=True)
class FileDone:
    name: str
    size: int
    received: int  # bytes received over all attempts of this run
    resumed_from: int  # bytes the first attempt found in NAME.part
    attempts: int
    seconds: float
    md5: str | None = None  # the digest it matched (None: no checksum file, or not verifying)
    # NAME is final and correct, but its record (manifest row, NAME.md5) could not be written,
    # a full disk say: why. The next run confirms it by MD5 and records it, fetching nothing.
    record_error: str | None = None
    via: str = ""  # the protocol it came over ("ftp", "https", "http")


@dataclass(frozen=True, slots=True)
class FileFailed:
    name: str
    reason: str  # str(exception)
    attempts: int
    # the error itself (the last one, after retries); not in the CLI's JSON
    exception: MirrorError | None = field(default=None, compare=False)


@dataclass(frozen=True, slots=True)
class FileLanded:
    """A selected file is settled, in load order (`ordered=True` runs only): every file
    before it in the run's load order has landed already.

    `path` is the absolute local path of a file done or skipped (up to date), None for one
    that failed; `md5` the digest it was checked against (None: no NAME.md5, or not
    verifying); `error` and `exception` say why it failed.
    """

    name: str
    path: str | None
    md5: str | None
    status: Literal["done", "skipped", "failed"]
    error: str | None = None
    exception: MirrorError | None = field(default=None, compare=False)


@dataclass(frozen=True, slots=True)
class BaselineChanged:
    """The listing holds PubMed files of year `new` while DEST holds `old`'s: the new year is
    fetched, the old one kept until the new one is complete (then it is superseded)."""

    old: int
    new: int


@dataclass(frozen=True, slots=True)
class FileDeleted:
    """NAME (with its NAME.md5 and manifest row) was removed from DEST (`delete`)."""

    name: str
    reason: str


Event = (
    ListingDone | FileQueued | FileSkipped | FileStarted | FileProgress | FileRetrying
    | FileDone | FileFailed | BaselineChanged | FileDeleted | FileLanded
)
