"""`pubmed-mirror verify DEST`: re-hash DEST against its .md5 files and the manifest."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from rich.console import Console
from rich.markup import escape

from .._verify import FileCheck, VerifyReport, verify
from ._args import (
    EXIT_FAILED,
    EXIT_OK,
    directory,
    output_options,
)
from ._output import (
    emit_json,
    interrupted,
    interruptible,
)

__all__ = ["add_parser", "run"]


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    v = subparsers.add_parser("verify", help="re-hash DEST against the .md5 files and manifest",
                              description="Re-hash every file of DEST against its NAME.md5 and "
                                          "the manifest; exit 1 if any is corrupt or missing.")
    v.add_argument("dest", type=directory, metavar="DEST")
    output_options(v)
    v.set_defaults(func=run)


async def run(args: argparse.Namespace, console: Console) -> int:
    def show(check: FileCheck) -> None:
        if args.json:
            emit_json({"event": "check", **dataclasses.asdict(check)})
        elif check.verdict in ("corrupt", "missing"):
            console.print(f"[red]{check.verdict.upper()}[/]  {escape(check.name)}: "
                          f"{escape(check.reason)}", highlight=False)
        elif args.verbose:
            reason = f": {check.reason}" if check.verdict == "unchecked" else ""
            console.print(f"{check.verdict:9} {check.name}{reason}", highlight=False,
                          markup=False, soft_wrap=True)

    report = await interruptible(lambda: verify(args.dest, on_file=show))
    if report is None:
        return interrupted(args.json)
    if args.json:
        emit_json({"event": "summary", "ok": report.ok,
                   **{f"{v}_files": n for v, n in report.counts.items()},
                   "record_error": report.record_error})
    else:
        if not args.quiet or not report.ok:
            console.print(_verify_line(args.dest, report), highlight=False, soft_wrap=True)
        if report.record_error:
            console.print(f"[yellow]verdicts not recorded[/] in the manifest: "
                          f"{escape(report.record_error)}; the next mirror does not know "
                          f"them: run verify again once it can write", highlight=False,
                          soft_wrap=True)
    return EXIT_OK if report.ok else EXIT_FAILED


def _verify_line(dest: Path, report: VerifyReport) -> str:
    if not report.files:
        return f"verify {escape(str(dest))}: nothing to verify (no manifest records, no .md5 files)"
    counts = report.counts
    verdict = "[green]all good[/]" if report.ok else "[red]PROBLEMS FOUND[/]"
    return (f"verify {escape(str(dest))}: {verdict}: {counts['ok']} match their MD5 or "
            f"checksum, {counts['corrupt']} corrupt, {counts['missing']} missing, "
            f"{counts['unchecked']} without one (size only) ({report.seconds:.1f} s)")
