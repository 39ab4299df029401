"""A whole tree from directory listings (FTP, HTTP(S) autoindex): `--recursive`.

The start directory is listed as always; with a depth to go, each subdirectory it lists
(an entry of kind "dir": MLSD's `type=dir`, LIST's `d`, an autoindex link ending in `/`
that stays in the directory) is listed too, its entries named by their path below the
start (`a/b/c`, see `_tree`). Links are never entered (FTP lists them as links; the
autoindex parser takes no link leading above or away from the directory). A directory whose
listing is the same as one of its ancestors' is a loop (a link the server follows for us):
it is not entered, with a warning. Each directory listing has its own retries and its own
whole-listing deadline (`listing_deadline`, in the session). A subdirectory that cannot be
listed (a 550, retries exhausted) becomes an entry of kind "unlisted": the run mirrors the
rest and then fails naming it (the start directory's failure fails the run, as always).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from ._errors import FatalError, MirrorError, describe
from ._transport import RemoteEntry
from ._tree import SEPARATOR, unsafe_name_reason

__all__ = ["list_tree"]

log = logging.getLogger("pubmed_mirror")

Lister = Callable[[str], Awaitable[list[RemoteEntry]]]  # a relative directory -> its entries
_Fingerprint = frozenset[tuple[str, int | None, float | None, str]]


async def list_tree(list_dir: Lister, *, max_depth: int | None) -> list[RemoteEntry]:
    """The start directory's entries (`list_dir("")`) and, down to `max_depth` levels of
    subdirectories below it (None: all), theirs, named by their path below the start. Every
    directory is listed once, breadth first."""
    found: list[RemoteEntry] = []
    pending: list[tuple[str, int, tuple[_Fingerprint, ...]]] = [("", 0, ())]
    while pending:
        folder, depth, ancestors = pending.pop(0)
        try:
            entries = await list_dir(folder)
        except FatalError:
            raise
        except MirrorError as exc:
            if not folder:
                raise
            log.warning("cannot list directory %r: %s", folder, describe(exc))
            found.append(RemoteEntry(folder, None, None, "unlisted"))
            continue
        prefix = folder + SEPARATOR if folder else ""
        mark = _fingerprint(entries)
        if mark in ancestors:
            log.warning("not entering %r: it lists the same entries as a directory above it "
                        "(a loop)", folder)
            continue
        for entry in entries:
            found.append(_below(entry, prefix))
            if (entry.kind == "dir" and (max_depth is None or depth < max_depth)
                    and _enterable(entry.name, prefix)):
                pending.append((prefix + entry.name, depth + 1, (*ancestors, mark)))
    return found


def _below(entry: RemoteEntry, prefix: str) -> RemoteEntry:
    if not prefix:
        return entry
    return RemoteEntry(prefix + entry.name, entry.size, entry.mtime, entry.kind,
                       entry.mtime_resolution, entry.validator, entry.size_shown)


def _enterable(name: str, prefix: str) -> bool:
    """A subdirectory is listed only when its name is one of this directory's (never
    `..`, `a/b`, a control character or our state directory)."""
    reason = unsafe_name_reason(name)
    if reason is not None:
        log.warning("not entering directory %r: %s", prefix + name, reason)
    return reason is None


def _fingerprint(entries: list[RemoteEntry]) -> _Fingerprint:
    return frozenset((e.name, e.size, e.mtime, e.kind) for e in entries)
