"""A web server's directory, listed: its index page read as it arrives and parsed
(`_autoindex`), handed on in batches, and what a redirect says of a name the page linked
without `/` (`names_directory`: mini_httpd's; `_unmarked` decides which names to ask).

A listing must be complete within `listing_deadline`; a page over 64 MiB, not HTML, or
compressed although asked not to be is not a listing.
"""

from __future__ import annotations

import contextlib
from dataclasses import replace
from typing import TYPE_CHECKING

import aiohttp
import anyio
import yarl

from ._autoindex import AutoindexParser
from ._errors import ProtocolError, RemoteFileError, TransferStalled
from ._httperrors import mapped
from ._transport import EntrySink, RemoteEntry, listing_deadline

if TYPE_CHECKING:
    from ._http import HttpSession, HttpTransport

__all__ = ["names_directory", "read_index"]

_LISTING_LIMIT = 64 << 20  # a directory page larger than this is not a listing
_PAGE_TYPES = ("text/html", "application/xhtml+xml")
_SINK_BATCH = 5_000  # entries handed to a listing's sink at once


async def read_index(session: HttpSession, path: str,
                     sink: EntrySink | None) -> list[RemoteEntry]:
    """The entries of a directory's index page; a rounded size stays None, with the
    bounds it was shown as, for the caller to settle (`_sizes`: the manifest or HEAD).
    With `sink`, they go to it as the page arrives, a name listed twice included (the
    sink keeps the first), and none is returned; a page that does not mark its
    directories goes to it whole, once read (`_unmarked`)."""
    directory = path if path.endswith("/") else path + "/"
    deadline = listing_deadline(session.transport.stall_timeout)
    await session._pay()  # (waiting for its turn is not the listing's time)
    with anyio.move_on_after(deadline) as whole:
        listed = await _read_page(session, directory, path, sink)
    if whole.cancelled_caught:
        raise TransferStalled(f"the listing was not complete within {deadline:g} s",
                              path=path)
    if sink is not None and listed:  # a page held whole: its names are settled (HEAD)
        await sink(listed)           # by the sink, outside the listing's deadline
        return []
    return listed


async def _read_page(session: HttpSession, directory: str, path: str,
                     sink: EntrySink | None) -> list[RemoteEntry]:
    """The entries of the index page, parsed as the page arrives (never held whole, but
    for a page that does not mark its directories: returned whole, for `read_index` to
    hand over)."""
    async with session._request("GET", directory, phase="list", paid=True) as response:
        _check_page(response, path)
        parser = AutoindexParser(response.charset, dedupe=sink is None)
        entries: list[RemoteEntry] = []
        received = 0
        with mapped("list", path):
            while chunk := await response.content.readany():  # to the end of the page
                received += len(chunk)
                if received > _LISTING_LIMIT:
                    raise ProtocolError(f"a listing larger than {_LISTING_LIMIT} bytes",
                                        path=path)
                entries += parser.feed(chunk)
                # a page that does not mark its directories is held to its end: its
                # names are settled by this session, free only then (`_unmarked`)
                if (sink is not None and len(entries) >= _SINK_BATCH
                        and parser.marks_directories):
                    entries = await _sunk(sink, entries, parser)
        entries += parser.close()
    if not parser.is_index:
        shown = f"a page titled {parser.title!r}" if parser.title else "no 'Index of' title"
        raise RemoteFileError(f"not a directory index ({shown})", path=path)
    if not parser.marks_directories:
        return [replace(e, kind="unmarked") if e.kind == "file" else e for e in entries]
    return entries if sink is None else await _sunk(sink, entries, parser)


def names_directory(transport: HttpTransport, location: str, path: str,
                    quoted: str) -> bool:
    """Whether a redirect's `location` is `path/` (`quoted`: as requested) on the server:
    encoded as it should be, or the path decoded as mini_httpd sends it (its UTF-8 bytes
    read as latin-1 by `_rawhttp`, which its answers to HEAD go to); compared as sent
    first, as a decoded `?` or `#` would not parse as part of a path."""
    with contextlib.suppress(UnicodeError):
        location = location.encode("latin-1").decode()
    wanted = path + "/"
    origin = f"{transport.scheme}://{transport.address}"
    if location in (wanted, origin + wanted):
        return True
    try:
        moved = yarl.URL(origin + quoted).join(yarl.URL(location, encoded=True))
        return ((moved.host, moved.port) == (transport.host, transport.port)
                and (moved.raw_path in (wanted, quoted + "/") or moved.path == wanted))
    except ValueError:  # (not a URL: a port out of range, a broken IPv6 address)
        return False


def _check_page(response: aiohttp.ClientResponse, path: str) -> None:
    """A listing comes as HTML, not compressed (it was asked for as identity)."""
    kind = response.headers.get("Content-Type", "").split(";", 1)[0].strip().lower()
    if kind and kind not in _PAGE_TYPES:
        raise RemoteFileError(f"not a directory index (Content-Type {kind})", path=path)
    if response.headers.get("Content-Encoding", "identity") != "identity":
        raise ProtocolError("the listing came compressed although asked not to be",
                            path=path)


async def _sunk(sink: EntrySink, entries: list[RemoteEntry],
                parser: AutoindexParser) -> list[RemoteEntry]:
    """Hand `entries` to the sink (none of a page that is not an index: a login page's
    links are not a listing) and start a new batch."""
    if entries and parser.is_index:
        await sink(entries)
    return []
