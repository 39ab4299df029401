"""`pubmed-mirror mirror URL --dest DIR`: mirror one remote directory (or plan it: --dry-run)."""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import sys
from collections.abc import Iterator

from rich.cells import cell_len
from rich.console import Console

from .._client import mirror, planning
from .._lifecycle import DeleteLimit
from .._mirror import open_source
from .._options import SPLIT_MIN, MirrorOptions, Timeouts
from .._plan import MirrorPlan, PlannedFile
from .._retry import RetryPolicy
from .._source import AutoSource, FtpSource
from ._args import (
    EXIT_FAILED,
    EXIT_OK,
    PROG,
    URL_HELP,
    directory,
    mirror_options,
    source_url,
)
from ._output import (
    JsonReporter,
    LineReporter,
    emit_json,
    human_bytes,
    interrupted,
    interruptible,
    summary_json,
    summary_table,
)

__all__ = ["add_parser", "run"]


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    m = subparsers.add_parser("mirror", help="mirror the files of one remote directory",
                              description="Mirror the files of one remote directory into DIR.")
    m.add_argument("url", type=source_url, metavar="URL", help=URL_HELP)
    m.add_argument("--dest", required=True, type=directory, metavar="DIR")
    m.add_argument("--dry-run", action="store_true",
                   help="print what would be fetched; transfer nothing")
    mirror_options(m)
    m.set_defaults(func=run)


def _reporter(args: argparse.Namespace, console: Console) -> LineReporter | JsonReporter:
    if args.json:
        return JsonReporter()
    # FTP with HTTP(S) beside it says which files came over the other
    source = open_source(args.url)  # a URL still, when another command built the arguments
    primary = "ftp" if isinstance(source, FtpSource | AutoSource) else getattr(
        source, "scheme", "ftp")
    if console.is_terminal and not args.quiet:
        from ._live import LiveReporter  # rich's Progress, ~15 ms to import: bars only

        return LiveReporter(console, primary=primary)
    return LineReporter(console, quiet=args.quiet, primary=primary)


async def run(args: argparse.Namespace, console: Console) -> int:
    if args.max_delete is not None and not args.delete:
        print(f"{PROG}: warning: --max-delete has no effect without --delete",
              file=sys.stderr)
    if args.dry_run:
        return await _dry_run(args, console)
    reporter = _reporter(args, console)
    report = await interruptible(
        lambda: mirror(args.url, args.dest, _options(args), on_event=reporter),
        lambda: reporter.run(args.progress_every))
    if report is None:
        return interrupted(args.json)
    if args.json:
        emit_json(summary_json(report))
    elif not args.quiet:
        console.print(summary_table(report))
    return EXIT_OK if report.ok else EXIT_FAILED


async def _dry_run(args: argparse.Namespace, console: Console) -> int:
    code = await interruptible(lambda: _print_plan(args, console))
    return interrupted(args.json) if code is None else code


async def _print_plan(args: argparse.Namespace, console: Console) -> int:
    """The plan, printed as its files are read (a million of them are never held)."""
    async with planning(args.url, args.dest, _options(args)) as plan:
        if args.json:
            _print_json(args, plan)
            return EXIT_FAILED if plan.unreadable else EXIT_OK
        console.out(f"dry run: {args.url} -> {args.dest}", highlight=False)
        lines = _plan_lines(args, plan)
        while batch := list(itertools.islice(lines, 1000)):
            console.out("\n".join(batch), highlight=False)
    if plan.changeover is not None:
        console.print(f"a new PubMed year is listed: {plan.changeover.new} would be fetched; "
                      f"{plan.changeover.old} stays until it is complete", highlight=False)
    if args.delete and plan.deletions is not None and plan.deletions.refused:
        console.print(f"would refuse to delete: {plan.deletions.refused}", highlight=False)
    console.print(f"would fetch up to {plan.count('fetch', 'check')} files, "
                  f"{human_bytes(plan.bytes_to_fetch)}; {plan.count('skip')} up to date; "
                  "nothing was transferred", highlight=False)
    return EXIT_FAILED if plan.unreadable else EXIT_OK


def _plan_lines(args: argparse.Namespace, plan: MirrorPlan) -> Iterator[str]:
    """The plan as aligned lines, made as they are printed (a rich Table of 300,000 rows
    took 560 MB and two minutes to lay out)."""
    rows: Iterator[tuple[str, str, str]] = itertools.chain(
        ((f.name, human_bytes(f.size), _action(f)) for f in plan.files),
        ((repr(e.name), "", _FAILS[e.kind]) for e in plan.unreadable),
        ((name, "", f"delete ({reason})") for name, reason in _would_delete(args, plan)))
    width = max([4, *(cell_len(f.name) for f in plan.files)])
    yield f"{'file':{width}}  {'size':>10}  action"
    for name, size, action in rows:
        yield f"{name}{' ' * max(0, width - cell_len(name))}  {size:>10}  {action}"


_FAILS = {"unreadable": "FAIL: cannot read this listing line",
          "unlisted": "FAIL: cannot list this directory, or read what selects its files "
                      "(the warning above says which)"}


def _action(planned: PlannedFile) -> str:
    if planned.action == "fetch" and planned.have:
        return f"fetch (resume at {human_bytes(planned.have)})"
    return {"fetch": "fetch", "check": "check local copy (MD5), fetch if wrong",
            "skip": "up to date"}[planned.action]


def _print_json(args: argparse.Namespace, plan: MirrorPlan) -> None:
    """The plan as one JSON object, written as its files are read: `files` is every
    selected file, as before, but never held as a list."""
    head = {"event": "plan", "bytes_to_fetch": plan.bytes_to_fetch}
    tail = {"unreadable": [e.name for e in plan.unreadable],
            "changeover": None if plan.changeover is None
            else dataclasses.asdict(plan.changeover),
            "delete": [{"name": name, "reason": reason}
                       for name, reason in _would_delete(args, plan)],
            "deletion_refused": plan.deletions.refused if args.delete and plan.deletions
            else None}
    out = sys.stdout
    out.write(json.dumps(head)[:-1] + ', "files": [')
    for i, f in enumerate(plan.files):
        out.write((", " if i else "") + json.dumps(
            {"name": f.name, "size": f.size, "action": f.action, "resume_from": f.have,
             "md5_file": f.checksum is not None}))
    out.write("], " + json.dumps(tail)[1:] + "\n")
    out.flush()


def _would_delete(args: argparse.Namespace, plan: MirrorPlan) -> list[tuple[str, str]]:
    """What `--delete` would remove, as DEST stands now (a changeover's old year only once
    the new one is complete)."""
    return plan.deletions.removable() if args.delete and plan.deletions else []


def _options(args: argparse.Namespace) -> MirrorOptions:
    return MirrorOptions(
        concurrency=args.concurrency,
        rate_limit=args.rate_limit,
        command_rate=args.command_rate,
        include=tuple(args.include),
        exclude=tuple(args.exclude),
        max_files=args.max_files,
        newest=args.newest,
        verify=not args.no_verify,
        split_min=None if args.no_split else SPLIT_MIN,
        splice=not args.no_splice,
        delete=args.delete,
        max_delete=args.max_delete or DeleteLimit(),
        recursive=args.recursive or args.max_depth is not None,
        max_depth=args.max_depth,
        timeouts=Timeouts(connect=args.connect_timeout, stall=args.stall_timeout,
                          file=args.file_timeout),
        retry=RetryPolicy(attempts=args.retries + 1),
    )
