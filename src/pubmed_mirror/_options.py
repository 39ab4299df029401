"""What a mirror run may do: its options and timeouts."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from ._lifecycle import DeleteLimit
from ._plan import Selection
from ._retry import RetryPolicy

__all__ = ["SPLIT_MIN", "MirrorOptions", "Timeouts"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Timeouts:
    connect: float = 30.0  # TCP connect + login
    stall: float = 60.0  # no byte (or reply) for this long -> TransferStalled
    file: float | None = None  # whole-file deadline over all attempts -> FileDeadlineExceeded

    def __post_init__(self) -> None:
        for name in ("connect", "stall", "file"):
            value = getattr(self, name)
            if value is not None and not (value > 0 and math.isfinite(value)):
                raise ValueError(f"timeout {name} must be a positive number of seconds")


SPLIT_MIN = 8 << 20  # halves of >= 4 MiB: at a few MB/s per connection, worth a new RETR


@dataclass(frozen=True, slots=True, kw_only=True)
class MirrorOptions:
    concurrency: int = 4  # sessions (control connections) at most
    rate_limit: int | None = None  # aggregate bytes/s over all sessions
    command_rate: float | None = None  # FTP commands/s over all sessions
    include: tuple[str, ...] = ()  # globs; a file must match one (when any is given)
    exclude: tuple[str, ...] = ()  # globs; a file must match none
    max_files: int | None = None  # the first N of the selection, in load order
    newest: int | None = None  # only the last N files by PubMed file number
    verify: bool = True  # check each file against its NAME.md5 when the server has one
    # an idle session splits a file being received when it has this many bytes left (None:
    # never); see `_tail`
    split_min: int | None = SPLIT_MIN
    # receive with os.splice (socket -> pipe -> file, no copy through Python) where the
    # platform has it; False: recv_into one buffer and write it (see `_direct`)
    splice: bool = True
    # remove recorded files the listing no longer holds (within `max_delete`), and PubMed
    # years superseded by a complete newer one (see `_lifecycle`)
    delete: bool = False
    max_delete: DeleteLimit = field(default_factory=DeleteLimit)
    # list subdirectories too, down to `max_depth` levels below the start (None: all); a
    # file's name is then its path below the start, `a/b/c` (see `_walk`, `_tree`)
    recursive: bool = False
    max_depth: int | None = None
    timeouts: Timeouts = field(default_factory=Timeouts)
    retry: RetryPolicy = field(default_factory=RetryPolicy)

    def __post_init__(self) -> None:
        if self.concurrency < 1:
            raise ValueError("concurrency must be >= 1")
        if self.rate_limit is not None and self.rate_limit < 1:
            raise ValueError("rate_limit must be >= 1 byte/s")
        if self.command_rate is not None and not self.command_rate > 0:
            raise ValueError("command_rate must be > 0")
        for name in ("max_files", "newest"):
            value = getattr(self, name)
            if value is not None and value < 0:
                raise ValueError(f"{name} must be >= 0")
        if self.max_depth is not None and (self.max_depth < 0 or not self.recursive):
            raise ValueError("max_depth must be >= 0, and needs recursive")
        if self.split_min is not None and self.split_min < 2:
            raise ValueError("split_min must be >= 2 bytes")
        object.__setattr__(self, "include", tuple(self.include))
        object.__setattr__(self, "exclude", tuple(self.exclude))

    def selection(self, default_include: tuple[str, ...] = ()) -> Selection:
        """The file selection; `default_include` (a preset's) applies when include is empty."""
        return Selection(include=self.include or default_include, exclude=self.exclude,
                         newest=self.newest, max_files=self.max_files,
                         max_depth=self.max_depth)
