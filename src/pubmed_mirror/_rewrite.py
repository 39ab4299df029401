"""A file rewritten on the server while it is received: the bytes already in are of one
version, the rest of the next, and no size check tells (a file rewritten in place keeps
its size). An MD5 or a checksum catches it; for a file that has neither, it is looked at as
its transfer begins (`looked_at`) and again once every byte is in (`changed_since`), and a
change means it is fetched again whole. Objects in a store are not: a GET there is of one
version. Nor is a file under `_whole.IN_MEMORY`, received in a moment.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

import anyio

from ._errors import RemoteFileError, describe
from ._transfer import part_validator
from ._transport import RemoteEntry, Session

if TYPE_CHECKING:
    from ._pool import SessionPool

__all__ = ["changed_meanwhile", "changed_since", "looked_at"]

log = logging.getLogger("pubmed_mirror")


async def looked_at(session: Session, path: str, entry: RemoteEntry) -> RemoteEntry | None:
    """The file as its transfer begins: `entry` when its time is exact (MLSD, MDTM,
    HEAD), else asked now (SIZE/MDTM, HEAD); None when the server will not say (a 405 to
    HEAD): nothing to compare is not an error of the file's."""
    if entry.mtime is not None and entry.mtime_resolution <= 1:
        return entry
    try:
        return await session.stat(path)
    except RemoteFileError as exc:
        log.info("%s: cannot look at it before its transfer (%s)", path, describe(exc))
        return None


async def changed_since(pool: SessionPool, path: str, before: RemoteEntry,
                        part: Path) -> tuple[str, RemoteEntry] | None:
    """Every byte of `part` is in: how the file changed on the server since `before` (the
    answer that started the part names its validator), and what it is now; None when it
    did not, or the server will not say (refused, or gone since)."""
    try:
        async with pool.session() as session:
            now = await session.stat(path)
    except RemoteFileError as exc:
        log.info("%s: cannot look at it after its transfer (%s)", path, describe(exc))
        return None
    validator = await anyio.to_thread.run_sync(part_validator, part)
    how = changed_meanwhile(replace(before, validator=validator or before.validator), now)
    return None if how is None else (how, now)


def changed_meanwhile(before: RemoteEntry, after: RemoteEntry) -> str | None:
    """How the file changed between two looks at it (`before`: its time exact), None when
    neither its size, its validator (when both are known) nor its time says so. Times a
    second apart are the same (a listing may round what MDTM truncates, or the other way:
    a full-iso `…:12.999` is MDTM's `…13`); a change at once seen costs one more fetch."""
    if after.size is not None and after.size != before.size:
        return f"{before.size} bytes, now {after.size}"
    if None not in (before.validator, after.validator) and before.validator != after.validator:
        return f"validator {before.validator}, now {after.validator}"
    if before.mtime is not None and after.mtime is not None and after.mtime_resolution <= 1:
        if abs(after.mtime - before.mtime) >= 2:
            return f"modified at {before.mtime:.0f}, now {after.mtime:.0f}"
    return None
