"""The commands, a module each.

Each module has `add_parser(subparsers)`, which adds its subcommand and sets the parser's
`func` to its `async def run(args, console) -> int` (the exit code)."""

from __future__ import annotations

import argparse

from . import ack, demo, load_order, ls, mirror, status, verify

__all__ = ["add_parsers"]


def add_parsers(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    for command in (mirror, verify, ls, demo, status, load_order, ack):
        command.add_parser(subparsers)
