"""Exact sizes for listings that round them (Apache's and NCBI's index pages: `24M`), and
times for listings that show none.

A rounded size is settled by the manifest when it can vouch for the file: the listed time
(to the minute) is the recorded one, or the one the page showed when the file was recorded
(a page may show its server's local time, HEAD the real one), the rounded size stands for
the recorded exact size, and the local copy is the recorded one. Only the others are asked
with HEAD, so a daily run over an unchanged tree costs its index page and no request per
file, whatever zone the page's times are in. An entry listed without a time is always
asked: its size alone cannot tell a new version of the same size from the recorded one
(HEAD's Last-Modified and ETag can).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Sequence
from dataclasses import replace
from pathlib import Path

from ._errors import ProtocolError, RemoteFileError, ServerBusy
from ._plan import is_current, same_time
from ._pool import SessionPool
from ._state import ManifestEntry
from ._transport import RemoteEntry, Source

__all__ = ["exact_sizes", "from_record"]

log = logging.getLogger("pubmed_mirror")

Recorded = Callable[[str], "ManifestEntry | None"]


def from_record(entry: RemoteEntry, row: ManifestEntry | None,
                dest: Path | None) -> RemoteEntry:
    """`entry` with the recorded exact size (and time) when the record vouches for its
    rounded one (and DEST's copy is the recorded one); else `entry` as it is."""
    shown = entry.size_shown
    if (entry.size is not None or shown is None or row is None or row.bad is not None
            or entry.mtime is None or not shown[0] <= row.size <= shown[1]):
        return entry
    if row.shown is not None and same_time(row.shown, entry):  # the page's own clock
        exact = replace(entry, size=row.size, size_shown=None, mtime=row.mtime,
                        mtime_resolution=1.0, shown=entry.mtime)
    elif same_time(row.mtime, entry):
        exact = replace(entry, size=row.size, size_shown=None)
    else:
        return entry
    if dest is not None and not is_current(dest / entry.name, exact):
        return entry
    return exact


async def exact_sizes(pool: SessionPool, source: Source, entries: Sequence[RemoteEntry], *,
                      wanted: Collection[str] | None = None,
                      recorded: Recorded = lambda name: None,
                      dest: Path | None = None) -> list[RemoteEntry]:
    """The entries, each rounded size of a file in `wanted` (None: all) settled: by the
    record (`from_record`), else by HEAD; each file listed without a time asked by HEAD. A
    HEAD that fails leaves that entry as listed (a size None is asked again when the file
    is fetched), saying so."""
    settled = [from_record(e, recorded(e.name), dest) if e.size_shown else e
               for e in entries]
    asked = [e for e in settled if e.kind == "file" and (e.size is None or e.mtime is None)
             and (wanted is None or e.name in wanted)]
    if not asked:
        return settled
    heads: dict[str, RemoteEntry] = {}
    async with pool.session() as session:
        for entry in asked:
            try:
                heads[entry.name] = _with_head(
                    entry, await session.stat(source.remote_path(entry.name)))
            except (RemoteFileError, ServerBusy, ProtocolError) as exc:
                log.warning("%s: no %s from HEAD (%s)", entry.name,
                            "size" if entry.size is None else "time", exc)
    return [heads.get(e.name, e) for e in settled]


def _with_head(listed: RemoteEntry, head: RemoteEntry) -> RemoteEntry:
    """A listed entry completed by HEAD: its exact size; its time and validator when HEAD
    gives them, the listed time kept as `shown` (a HEAD without Last-Modified keeps the
    listed time: never None, which would take any later version for this one)."""
    if head.mtime is None:
        return RemoteEntry(listed.name, head.size, listed.mtime, "file",
                           listed.mtime_resolution, head.validator)
    return RemoteEntry(listed.name, head.size, head.mtime, "file", 1.0, head.validator,
                       shown=listed.mtime)
