"""Names a web page links without saying whether they are files or directories.

Apache, nginx, lighttpd and Python's http.server end a subdirectory's link with `/`;
mini_httpd does not (`<a href="sub">`, and `.` and `..` alike), and answers a request for
`sub` with a redirect to `sub/`. Taken for a file, such a directory failed its fetch every
run ("redirected"), and `--recursive` never entered it. Its page's names come as kind
"unmarked" (`_autoindex`), each settled here, on the session that listed the page, before
the run stages it: a name the manifest records as a file stays one (a no-op run asks
nothing more than before); any other is asked with HEAD: a redirect to `NAME/` on the same
server makes it a directory, anything else a file (whose fetch says what is wrong).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Collection
from dataclasses import replace
from typing import Protocol, runtime_checkable

from ._errors import RemoteFileError
from ._transport import RemoteEntry

__all__ = ["settle"]


@runtime_checkable
class DirectoryProbe(Protocol):
    """A session that can tell a directory linked without `/` (HTTP's)."""

    async def is_directory(self, path: str) -> bool: ...


# which of these names (relative to the directory listed) the manifest records as files
Recorded = Callable[[list[str]], Awaitable[Collection[str]]]


async def settle(entries: list[RemoteEntry], session: object, folder: str,
                 recorded: Recorded) -> list[RemoteEntry]:
    """`entries` of the remote directory `folder` with each "unmarked" one made a "file"
    or a "dir" (a directory's shown size dropped), in order; `session` is the one that
    listed them, free again."""
    names = [e.name for e in entries if e.kind == "unmarked"]
    if not names:
        return entries
    if not isinstance(session, DirectoryProbe):  # (only an HTTP page gives such names)
        raise TypeError(f"{session!r} cannot tell a directory from a file")
    files = set(await recorded(names))
    directories = set()
    base = folder.rstrip("/")
    for name in names:
        if name in files:
            continue
        try:
            if await session.is_directory(f"{base}/{name}"):
                directories.add(name)
        except RemoteFileError:  # (a 404, a redirect elsewhere: the fetch says so)
            pass
    return [e if e.kind != "unmarked" else
            replace(e, kind="dir", size=None, size_shown=None) if e.name in directories else
            replace(e, kind="file") for e in entries]
