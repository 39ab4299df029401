"""`pubmed-mirror demo`: serve a generated PubMed-shaped tree on 127.0.0.1, mirror it, verify it."""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import anyio
from rich.console import Console

from .._plan import check_writable
from .._source import parse_source
from . import mirror as mirror_command
from . import verify as verify_command
from ._args import (
    EXIT_OK,
    directory,
    output_options,
    parse_rate,
    positive_int,
)
from ._output import (
    human_bytes,
)

__all__ = ["add_parser", "run"]


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    d = subparsers.add_parser("demo", help="mirror a generated PubMed-shaped tree, offline",
                              description="Serve a generated PubMed-shaped tree on 127.0.0.1, "
                                          "mirror it with the real engine, then verify it.")
    d.add_argument("--dest", type=directory, metavar="DIR", help="keep the mirror here")
    d.add_argument("--files", type=positive_int, default=12, metavar="N")
    d.add_argument("--rate-per-connection", type=parse_rate, default=512 << 10,
                   metavar="RATE", help="the demo server's throttle, default 512K")
    d.add_argument("--concurrency", type=positive_int, default=4, metavar="N")
    output_options(d)
    d.set_defaults(func=run)


async def run(args: argparse.Namespace, console: Console) -> int:
    from .._demo import DemoServer, make_pubmed_tree
    from ..cli import build_parser  # (which imports this module)

    with tempfile.TemporaryDirectory(prefix="pubmed-mirror-demo-") as tmp:
        root = Path(tmp) / "server"
        names = await anyio.to_thread.run_sync(lambda: make_pubmed_tree(root, files=args.files))
        dest = args.dest or Path(tmp) / "mirror"
        with DemoServer(root, rate_per_connection=args.rate_per_connection) as server:
            url = f"{server.url}pubmed/updatefiles/"
            if not args.json:
                console.print(
                    f"demo: serving {len(names)} generated PubMed files (+ .md5) at {url}, "
                    f"{human_bytes(args.rate_per_connection)}/s per connection\n"
                    f"demo: pubmed-mirror mirror {url} --dest {dest} --include '*.xml.gz'",
                    highlight=False, markup=False, soft_wrap=True)
            argv = ["mirror", url, "--dest", str(dest), "--include", "*.xml.gz",
                    "--concurrency", str(args.concurrency)]
            argv += ["--json"] if args.json else ["-q"] if args.quiet else []
            mirror_args = build_parser().parse_args(argv)
            mirror_args.url = parse_source(url)  # (what `cli.main` does with a URL)
            check_writable(dest)
            code = await mirror_command.run(mirror_args, console)
        if code != EXIT_OK:
            return code
        if not args.json:
            console.print(f"demo: pubmed-mirror verify {dest}", highlight=False, markup=False,
                          soft_wrap=True)
        return await verify_command.run(build_parser().parse_args(
            ["verify", str(dest), *(["--json"] if args.json else [])]), console)
