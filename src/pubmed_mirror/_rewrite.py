"""A file rewritten on the server while it is received: the bytes already in are of one
version, the rest of the next, and no size check tells (a file rewritten in place keeps
its size). An MD5 or a checksum catches it; for a file that has neither, it is looked at as
its transfer begins (`looked_at`) and again once every byte is in (`changed_since`), and a
change means it is fetched again whole. Objects in a store are not: a GET there is of one
version. Nor is a file under `_whole.IN_MEMORY`, received in a moment. Both looks ask the
same way (SIZE/MDTM, or HEAD), never a listing's time against a stat's.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from ._errors import RemoteFileError, describe
from ._transport import RemoteEntry, Session

if TYPE_CHECKING:
    from ._pool import SessionPool

__all__ = ["changed_meanwhile", "changed_since", "looked_at"]

log = logging.getLogger("pubmed_mirror")


async def looked_at(session: Session, path: str) -> RemoteEntry | None:
    """The file as its transfer begins, asked as it will be after (SIZE/MDTM, or HEAD:
    a listing's time may be another clock's, MLSD's UTC beside an MDTM in local time);
    None when the server will not say (a 405 to HEAD): nothing to compare is not an error
    of the file's."""
    try:
        return await session.stat(path)
    except RemoteFileError as exc:
        log.info("%s: cannot look at it before its transfer (%s)", path, describe(exc))
        return None


async def changed_since(pool: SessionPool, path: str, before: RemoteEntry) -> str | None:
    """Every byte is in: how the file changed on the server since `before`; None when it
    did not, or the server will not say (refused, or gone since)."""
    try:
        async with pool.session() as session:
            now = await session.stat(path)
    except RemoteFileError as exc:
        log.info("%s: cannot look at it after its transfer (%s)", path, describe(exc))
        return None
    return changed_meanwhile(before, now)


def changed_meanwhile(before: RemoteEntry, after: RemoteEntry) -> str | None:
    """How the file changed between two looks at it of one kind, None when neither its
    size nor its time says so. Validators are not compared: servers behind one name may
    give each its own (inode-based ETags). Times a second apart are the same."""
    if None not in (before.size, after.size) and after.size != before.size:
        return f"{before.size} bytes, now {after.size}"
    if before.mtime is not None and after.mtime is not None:
        if abs(after.mtime - before.mtime) >= 2:
            return f"modified at {before.mtime:.0f}, now {after.mtime:.0f}"
    return None
