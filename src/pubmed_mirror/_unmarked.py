"""Names a web page links without saying whether they are files or directories.

Apache, nginx, lighttpd and Python's http.server end a subdirectory's link with `/`;
mini_httpd does not (`<a href="sub">`, and `.` and `..` alike), and answers a request for
`sub` with a redirect to `sub/`. Taken for a file, such a directory failed its fetch every
run ("redirected"), and `--recursive` never entered it. Its page's names come as kind
"unmarked" (`_autoindex`), the page whole once read, each settled here, on the session that
listed it, before the run stages it: a name the manifest records as a file listed at the
size and time it had then stays one (a no-op run asks nothing more than before); any other
is asked with HEAD: a redirect to `NAME/` on the same server makes it a directory,
anything else a file (whose fetch says what is wrong: a HEAD refused or failing leaves the
name a file, as `_sizes` leaves a size it could not ask).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Collection
from dataclasses import replace
from typing import Protocol, runtime_checkable

from ._errors import ProtocolError, RemoteFileError, ServerBusy
from ._plan import same_time
from ._state import ManifestEntry
from ._transport import RemoteEntry

__all__ = ["recorded_as", "settle"]

log = logging.getLogger("pubmed_mirror")


@runtime_checkable
class DirectoryProbe(Protocol):
    """A session that can tell a directory linked without `/` (HTTP's)."""

    async def is_directory(self, path: str) -> bool: ...


# the names of these entries (of the directory listed) the manifest records as files at
# the size and time listed
Recorded = Callable[[list[RemoteEntry]], Awaitable[Collection[str]]]


def recorded_as(row: ManifestEntry | None, entry: RemoteEntry) -> bool:
    """Whether the manifest's `row` is a file listed as `entry` is: its size, and the time
    the listing showed then (`shown`, when a HEAD's replaced it)."""
    return (row is not None and row.size == entry.size
            and same_time(row.mtime if row.shown is None else row.shown, entry))


async def settle(entries: list[RemoteEntry], session: object, folder: str,
                 recorded: Recorded) -> list[RemoteEntry]:
    """`entries` of the remote directory `folder` with each "unmarked" one made a "file"
    or a "dir" (a directory's shown size dropped), in order; `session` is the one that
    listed them, free again."""
    unmarked = [e for e in entries if e.kind == "unmarked"]
    if not unmarked:
        return entries
    if not isinstance(session, DirectoryProbe):  # (only an HTTP page gives such names)
        raise TypeError(f"{session!r} cannot tell a directory from a file")
    files = set(await recorded(unmarked))
    directories = set()
    base = folder.rstrip("/")
    for entry in unmarked:
        if entry.name in files:
            continue
        try:
            if await session.is_directory(f"{base}/{entry.name}"):
                directories.add(entry.name)
        except (RemoteFileError, ServerBusy, ProtocolError) as exc:
            log.warning("%s: taken for a file (HEAD could not tell: %s)", entry.name, exc)
    return [e if e.kind != "unmarked" else
            replace(e, kind="dir", size=None, size_shown=None) if e.name in directories else
            replace(e, kind="file") for e in entries]
