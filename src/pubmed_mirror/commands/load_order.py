"""`pubmed-mirror load-order BASELINE_DEST UPDATES_DEST [--json] [--consumer NAME]`: the
files in the order a loader must apply them, up to the first one it cannot."""

from __future__ import annotations

import argparse
import sys

from rich.console import Console

from .._dataset import LoadOrder, load_order
from ._args import EXIT_FAILED, EXIT_OK, directory
from ._output import emit_json
from .ack import consumer_name

__all__ = ["add_parser", "run"]


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser(
        "load-order", help="the verified files in the order a loader must apply them",
        description="The current year's baseline files ascending, then that year's update "
                    "files ascending: one absolute path per line, stopping at the first "
                    "gap, missing, bad or unverified file (exit 1, saying why on stderr). "
                    "Offline and read-only.")
    p.add_argument("baseline", type=directory, metavar="BASELINE_DEST")
    p.add_argument("updates", type=directory, metavar="UPDATES_DEST")
    p.add_argument("--consumer", type=consumer_name, metavar="NAME",
                   help="only what NAME has not acknowledged (see `ack`)")
    p.add_argument("--json", action="store_true",
                   help="one JSON object per file, then one saying where the list ends")
    p.set_defaults(func=run, verbose=False)


async def run(args: argparse.Namespace, console: Console) -> int:
    order = load_order(args.baseline, args.updates, consumer=args.consumer)
    if order.reload and order.cursor is not None:
        print(f"{order.consumer} must reload from the baseline: a new baseline ({order.year}) "
              f"arrived after its cursor ({order.cursor.through}, of {order.cursor.year})",
              file=sys.stderr)
    for f in order.files:
        if args.json:
            emit_json({"path": str(f.path), "name": f.name, "md5": f.md5, "year": f.year,
                       "number": f.number, "dest": str(f.dest)})
        else:
            print(f.path)
    if args.json:
        emit_json({"complete": order.complete, "stopped_at": order.stopped_at,
                   "reason": order.reason, "reload": order.reload,
                   "consumer": order.consumer})
    else:
        sys.stdout.flush()
        print(_ending(order), file=sys.stderr)
    return EXIT_OK if order.complete else EXIT_FAILED


def _ending(order: LoadOrder) -> str:
    if order.complete:
        return "complete"
    at = f" at {order.stopped_at}" if order.stopped_at else ""
    return f"stopped{at}: {order.reason}"
