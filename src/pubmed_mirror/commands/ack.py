"""`pubmed-mirror ack UPDATES_DEST --consumer NAME --through FILE`: a consumer's cursor."""

from __future__ import annotations

import argparse
from pathlib import PurePath

from rich.console import Console

from .._dataset import acknowledge
from ._args import EXIT_OK, directory

__all__ = ["add_parser", "consumer_name", "run"]


def consumer_name(text: str) -> str:
    """An argparse type: a consumer's name, printable and not empty."""
    if not text.strip() or not text.isprintable() or len(text) > 200:
        raise argparse.ArgumentTypeError(f"invalid consumer name {text!r}: printable "
                                         f"characters, 1 to 200 of them")
    return text


def _file_name(text: str) -> str:
    """FILE as a name: the path `load-order` printed is taken too."""
    name = PurePath(text).name
    if not name:
        raise argparse.ArgumentTypeError(f"invalid file {text!r}: a file name is needed")
    return name


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser(
        "ack", help="record that a consumer has loaded everything up to a file",
        description="Record in UPDATES_DEST's manifest that consumer NAME has loaded every "
                    "file of its load order up to FILE; `load-order --consumer NAME` lists "
                    "only what comes after it. `mirror` never moves the cursor.")
    p.add_argument("updates", type=directory, metavar="UPDATES_DEST")
    p.add_argument("--consumer", required=True, type=consumer_name, metavar="NAME")
    p.add_argument("--through", required=True, type=_file_name, metavar="FILE",
                   help="the last file loaded (its name, or the path load-order printed)")
    p.set_defaults(func=run, verbose=False)


async def run(args: argparse.Namespace, console: Console) -> int:
    cursor = acknowledge(args.updates, args.consumer, args.through)
    console.print(f"{cursor.consumer}: acknowledged through {cursor.through} ({cursor.year})",
                  markup=False, highlight=False, soft_wrap=True)
    return EXIT_OK
