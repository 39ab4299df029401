"""`pubmed-mirror ls URL`: list a remote directory."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from .._client import list_remote
from .._options import Timeouts
from .._retry import RetryPolicy
from .._transport import RemoteEntry
from .._tree import unsafe_name_reason, unsafe_path_reason
from ._args import (
    EXIT_FAILED,
    EXIT_OK,
    URL_HELP,
    network_options,
    output_options,
    source_url,
)
from ._output import (
    emit_json,
    human_bytes,
    interrupted,
    interruptible,
)

__all__ = ["add_parser", "run"]


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    ls = subparsers.add_parser("ls", help="list a remote directory",
                               description="List a remote directory with sizes and times.")
    ls.add_argument("url", type=source_url, metavar="URL", help=URL_HELP)
    network_options(ls)
    output_options(ls)
    ls.set_defaults(func=run)


async def run(args: argparse.Namespace, console: Console) -> int:
    entries = await interruptible(lambda: list_remote(
        args.url, timeouts=Timeouts(connect=args.connect_timeout, stall=args.stall_timeout),
        retry=RetryPolicy(attempts=args.retries + 1)))
    if entries is None:
        return interrupted(args.json)
    # names below the start are paths where one listing is the whole tree (S3's keys)
    refused = (unsafe_path_reason if getattr(args.url, "lists_whole_tree", False)
               else unsafe_name_reason)
    # a version whose selecting metadata could not be read (the warning says why): the
    # answer is incomplete, as a mirror's would be
    done = EXIT_FAILED if any(e.kind == "unlisted" for e in entries) else EXIT_OK
    if args.json:
        for e in entries:
            emit_json(_entry_json(e, refused))
        return done
    table = Table(title=escape(str(args.url)))
    for column in ("name", "size", "modified (UTC)", "kind"):
        table.add_column(column, justify="right" if column == "size" else "left")
    for e in entries:
        table.add_row(Text(_ls_name(e, refused)), "" if e.size is None else f"{e.size:,}",
                      _utc(e.mtime), e.kind)
    console.print(table)
    files = [e for e in entries if e.kind == "file"]
    unreadable = sum(e.kind == "unreadable" for e in entries)
    unlisted = sum(e.kind == "unlisted" for e in entries)
    console.print(f"{len(files)} files, {human_bytes(sum(e.size or 0 for e in files))}"
                  + (f"; {unreadable} listing lines we cannot read (a mirror that may need "
                     f"them fails)" if unreadable else "")
                  + (f"; {unlisted} not decided (a mirror fails them)"
                     if unlisted else ""), highlight=False)
    return done


def _ls_name(entry: RemoteEntry, refused: Callable[[str], str | None]) -> str:
    if entry.kind == "unreadable":
        return f"{entry.name!r} (cannot read this listing line)"
    if entry.kind == "unlisted":
        return f"{entry.name} (not decided: what selects it could not be read)"
    unsafe = refused(entry.name)
    return entry.name if unsafe is None else f"{entry.name!r} (mirror skips it: {unsafe})"


def _utc(mtime: float | None) -> str:
    if mtime is None:
        return ""
    return datetime.fromtimestamp(mtime, UTC).strftime("%Y-%m-%d %H:%M:%S")


def _entry_json(entry: RemoteEntry, refused: Callable[[str], str | None]) -> dict[str, Any]:
    return {"name": entry.name, "size": entry.size, "mtime": entry.mtime,
            "modified": _utc(entry.mtime) or None, "kind": entry.kind,
            # why the mirror would refuse the name (an unreadable line is no name: its kind says)
            "refused": None if entry.kind == "unreadable" else refused(entry.name)}
