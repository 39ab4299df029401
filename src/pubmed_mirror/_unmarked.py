"""Names a web page links without saying whether they are files or directories.

Apache, nginx, lighttpd and Python's http.server end a subdirectory's link with `/`;
mini_httpd and h2o do not (`<a href="sub">`, and `.` and `..` alike), and answer a request
for `sub` with a redirect to `sub/`. Taken for a file, such a directory failed its fetch
every run ("redirected"), and `--recursive` never entered it. Its page's names come as
kind "unmarked" (`_httpindex`), the page whole once read, each settled here, on the session
that listed it, before the run stages it. What the run knows of a name (`Known`) comes
first: a file the manifest records at the size and time listed stays a file, as does a
name the run would neither select nor enter (a no-op run asks only of its directories).
Any other is asked with HEAD: a redirect to `NAME/` on the same server makes it a
directory, anything else a file, whose fetch says what is wrong. A HEAD refused or failing
leaves the name a file with a warning, as `_sizes` leaves a size it could not ask; but a
name the manifest has files below, in a run that enters it, becomes "unlisted" instead: a
directory that could not be listed, which fails the run and whose files `--delete` keeps.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import replace
from typing import Protocol, runtime_checkable

import anyio

from ._errors import ProtocolError, RemoteFileError, ServerBusy
from ._plan import Selection, same_time, selects
from ._state import Manifest, ManifestEntry
from ._transport import EntryKind, RemoteEntry

__all__ = ["Known", "knowing", "settle"]

log = logging.getLogger("pubmed_mirror")


@runtime_checkable
class DirectoryProbe(Protocol):
    """A session that can tell a directory linked without `/` (HTTP's)."""

    async def is_directory(self, path: str) -> bool: ...


# what the run knows of these entries (of the directory listed), by name: "file" (to be
# taken as one without asking), "dir" (the manifest records files below it and the run
# would enter it); a name it knows nothing of is absent
Known = Callable[[list[RemoteEntry]], Awaitable[Mapping[str, EntryKind]]]


def knowing(manifest: Manifest, selection: Selection, below: str, enters: bool) -> Known:
    """What a run knows of a directory's names (named `below + name` in DEST): `enters`,
    whether it lists that directory's subdirectories."""
    def kinds(entries: list[RemoteEntry]) -> dict[str, EntryKind]:
        found: dict[str, EntryKind] = {}
        for entry in entries:
            name = below + entry.name
            if not enters and not selects(selection, name) \
                    or recorded_as(manifest.get(name), entry):
                found[entry.name] = "file"
            elif enters and manifest.holds_below(name):
                found[entry.name] = "dir"
        return found

    async def known(entries: list[RemoteEntry]) -> dict[str, EntryKind]:
        return await anyio.to_thread.run_sync(kinds, entries)

    return known


def recorded_as(row: ManifestEntry | None, entry: RemoteEntry) -> bool:
    """Whether the manifest's `row` is a file listed as `entry` is: its size, and the time
    the listing showed then (`shown`, when a HEAD's replaced it)."""
    return (row is not None and row.size == entry.size
            and same_time(row.mtime if row.shown is None else row.shown, entry))


async def settle(entries: list[RemoteEntry], session: object, folder: str,
                 known: Known) -> list[RemoteEntry]:
    """`entries` of the remote directory `folder` with each "unmarked" one made a "file",
    a "dir" (a directory's shown size dropped) or "unlisted", in order; `session` is the
    one that listed them, free again."""
    unmarked = [e for e in entries if e.kind == "unmarked"]
    if not unmarked:
        return entries
    if not isinstance(session, DirectoryProbe):  # (only an HTTP page gives such names)
        raise TypeError(f"{session!r} cannot tell a directory from a file")
    kinds: dict[str, EntryKind] = dict(await known(unmarked))
    base = folder.rstrip("/")
    for entry in unmarked:
        if kinds.get(entry.name) == "file":
            continue
        try:
            kinds[entry.name] = ("dir" if await session.is_directory(f"{base}/{entry.name}")
                                 else "file")
        except (RemoteFileError, ServerBusy, ProtocolError) as exc:
            held = kinds.get(entry.name) == "dir"
            kinds[entry.name] = "unlisted" if held else "file"
            log.warning("%s: taken for %s (HEAD could not tell: %s)", entry.name,
                        "a directory that could not be listed" if held else "a file", exc)
    return [e if e.kind != "unmarked" else
            replace(e, kind=kinds[e.name], size=None, size_shown=None)
            if kinds[e.name] != "file" else replace(e, kind="file") for e in entries]
