"""A whole tree from directory listings (FTP, HTTP(S) autoindex): `--recursive`.

The start directory is listed as always; with a depth to go, each subdirectory it lists
(an entry of kind "dir": MLSD's `type=dir`, LIST's `d`, an autoindex link ending in `/`
that stays in the directory) is listed too, its entries named by their path below the
start (`a/b/c`, see `_tree`). Links are never entered (FTP lists them as links; the
autoindex parser takes no link leading above or away from the directory). A directory whose
listing is the same as one of its ancestors' is a loop (a link the server follows for us),
unless the server says otherwise: MLSD's `unique` facts of the directories they hold differ
(the fingerprint holds them), or a file both list is asked for in both (SIZE and MDTM,
HEAD), and answers that differ make it a real directory after all (http.server's pages
show names alone). A listing with no file to ask (directories only) and the same listing
a second time below are loops whatever the answers (entering either would fetch the tree
again below it, or for ever). A loop is not entered, with a warning, and becomes an entry
of kind "loop": what DEST holds below it is kept by `--delete`, as the look-alike may be a
real directory whose files happen to match (names, sizes, times) its ancestor's.

Each directory listing has its own retries and its own whole-listing deadline
(`listing_deadline`, in the session). A subdirectory that cannot be listed (a 550, retries
exhausted) becomes an entry of kind "unlisted": the run mirrors the rest and then fails
naming it (the start directory's failure fails the run, as always). The entries go to a
sink as each listing arrives (`_staging`): a tree of a million files is never held.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace

from ._errors import FatalError, MirrorError, describe
from ._transport import EntrySink, RemoteEntry
from ._tree import SEPARATOR, unsafe_name_reason

__all__ = ["descends", "list_tree"]

log = logging.getLogger("pubmed_mirror")

# a relative directory, and where its entries go as they arrive (its retries are its own)
Lister = Callable[[str, EntrySink], Awaitable[None]]
# drops what the last directory listed gave the sink (a loop's entries)
Dropper = Callable[[], Awaitable[None]]
# one file's size, time and validator, by its path below the start; None: not known
Stat = Callable[[str], Awaitable[RemoteEntry | None]]
_Fingerprint = tuple[int, int]
_MASK = (1 << 64) - 1


async def list_tree(list_dir: Lister, sink: EntrySink, drop_last: Dropper, *,
                    max_depth: int | None, stat: Stat | None = None) -> None:
    """The start directory's entries (`list_dir("")`) and, down to `max_depth` levels of
    subdirectories below it (None: all), theirs, named by their path below the start, into
    `sink` as they arrive. Every directory is listed once, breadth first; only the
    subdirectories to enter and each directory's fingerprint are kept, never the entries.
    `stat` asks whether a look-alike is a loop (see the module's docstring); without it,
    every look-alike is one."""
    pending: list[tuple[str, tuple[tuple[_Fingerprint, str], ...]]] = [("", ())]
    while pending:
        folder, ancestors = pending.pop(0)
        seen = _Seen(folder + SEPARATOR if folder else "", sink)
        try:
            await list_dir(folder, seen.add)
        except FatalError:
            raise
        except MirrorError as exc:
            if not folder:
                raise
            log.warning("cannot list directory %r: %s", folder, describe(exc))
            await sink([RemoteEntry(folder, None, None, "unlisted")])
            continue
        alike = [above for fingerprint, above in ancestors if fingerprint == seen.fingerprint]
        if alike and await _loop(seen, alike, stat):
            log.warning("not entering %r: it lists the same entries as a directory above it "
                        "(a loop)", folder)
            await drop_last()
            await sink([RemoteEntry(folder, None, None, "loop")])
            continue
        if descends(folder, max_depth):
            pending.extend((seen.prefix + name, (*ancestors, (seen.fingerprint, folder)))
                           for name in seen.folders if _enterable(name, seen.prefix))


async def _loop(seen: _Seen, alike: list[str], stat: Stat | None) -> bool:
    """Whether a directory that lists what the directories `alike` above it list is a loop:
    unless a file of its listing answers otherwise in it than in the nearest of them (a
    link back up shows the very same file). With no file to ask, or a second look-alike
    above it, it is one."""
    if seen.sample is None or stat is None or len(alike) >= 2:
        return True
    here, above = seen.prefix + seen.sample, _join(alike[-1], seen.sample)
    ours, theirs = await stat(here), await stat(above)
    if ours is None or theirs is None:
        return True  # not known to differ
    return (ours.size, ours.mtime, ours.validator) == (theirs.size, theirs.mtime,
                                                       theirs.validator)


def _join(folder: str, name: str) -> str:
    return f"{folder}{SEPARATOR}{name}" if folder else name


def descends(folder: str, max_depth: int | None) -> bool:
    """Whether the walk lists the subdirectories of `folder` (a path below the start, ""
    for the start itself: 0 levels down), given `max_depth` (None: all)."""
    return max_depth is None or (folder.count(SEPARATOR) + 1 if folder else 0) < max_depth


@dataclass(slots=True)
class _Seen:
    """One directory's listing on its way to the sink: names below the start, the
    subdirectories it holds, and a fingerprint of its entries (a count and a sum of their
    hashes: the same entries in any order give the same one, without keeping them)."""

    prefix: str
    sink: EntrySink
    folders: list[str] = field(default_factory=list)
    count: int = 0
    total: int = 0
    sample: str | None = None  # its first file's name (`_loop`)

    @property
    def fingerprint(self) -> _Fingerprint:
        return self.count, self.total

    async def add(self, entries: list[RemoteEntry]) -> None:
        for entry in entries:
            self.count += 1
            self.total = (self.total + hash((entry.name, entry.size, entry.mtime,
                                             entry.kind, entry.validator))) & _MASK
            if entry.kind == "dir":
                self.folders.append(entry.name)
            elif entry.kind == "file" and self.sample is None:
                self.sample = entry.name
        await self.sink([_below(e, self.prefix) for e in entries] if self.prefix else entries)


def _below(entry: RemoteEntry, prefix: str) -> RemoteEntry:
    return replace(entry, name=prefix + entry.name)


def _enterable(name: str, prefix: str) -> bool:
    """A subdirectory is listed only when its name is one of this directory's (never
    `..`, `a/b`, a control character or our state directory)."""
    reason = unsafe_name_reason(name)
    if reason is not None:
        log.warning("not entering directory %r: %s", prefix + name, reason)
    return reason is None
