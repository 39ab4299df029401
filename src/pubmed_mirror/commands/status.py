"""`pubmed-mirror status DEST... [--json]`: each DEST as a dataset, offline and read-only."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from rich.console import Console
from rich.markup import escape

from .._dataset import DatasetStatus, dataset_status
from .._state import RunRecord
from ._args import EXIT_FAILED, EXIT_OK, directory, output_options
from ._output import emit_json

__all__ = ["add_parser", "run"]

SHOWN = 10  # names listed per kind of problem; the rest are counted


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser(
        "status", help="what each DEST holds as a dataset (offline, read-only)",
        description="Offline and read-only: each DEST's PubMed years, current year, files "
                    "final / verified / missing / superseded / extra / bad / unverified, "
                    "gaps, and the last run. Exit 0 when every DEST is complete and "
                    "consistent, 1 otherwise.")
    p.add_argument("dests", nargs="+", type=directory, metavar="DEST")
    output_options(p)
    p.set_defaults(func=run)


async def run(args: argparse.Namespace, console: Console) -> int:
    statuses = [dataset_status(dest) for dest in args.dests]  # all known before any output
    for status in statuses:
        if args.json:
            emit_json(status_json(status))
        elif not (args.quiet and status.complete):
            console.print(*_text(status), sep="\n", highlight=False, soft_wrap=True)
    return EXIT_OK if all(s.complete for s in statuses) else EXIT_FAILED


def status_json(status: DatasetStatus) -> dict[str, Any]:
    run = status.last_run
    return {
        "dest": str(status.dest), "years": list(status.years),
        "current_year": status.current_year, "incoming_year": status.incoming_year,
        **{kind: len(getattr(status, kind)) for kind in (
            "final", "verified", "missing", "superseded", "extra", "bad", "unverified")},
        "gaps": list(status.gaps),
        "last_run": None if run is None else {"started": run.started,
                                              "finished": run.finished,
                                              "outcome": run.outcome},
        "complete": status.complete,
    }


def _text(status: DatasetStatus) -> list[str]:
    verdict = ("[green]complete[/]" if status.complete
               else f"[red]INCOMPLETE[/]: {escape(', '.join(status.problems))}")
    lines = [f"{escape(str(status.dest))}: {verdict}", f"  {_years(status)}",
             "  " + ", ".join(f"{len(getattr(status, kind))} {kind}" for kind in (
                 "final", "verified", "missing", "superseded", "extra", "bad", "unverified",
                 "gaps")),
             f"  last run: {_run(status.last_run)}"]
    for kind, names in (("missing", status.missing), ("bad", status.bad),
                        ("unverified, with an MD5 to check", status.unverified_with_md5),
                        ("extra", status.extra), ("gaps", status.gaps)):
        if names:
            lines.append(f"  {kind}: {escape(_names(names))}")
    return lines


def _years(status: DatasetStatus) -> str:
    if not status.years:
        return "years: none (no PubMed-named file recorded)"
    held = ", ".join(map(str, status.years))
    incoming = (f"; {status.incoming_year} incoming (not complete yet)"
                if status.incoming_year else "")
    return f"years: {held}; current {status.current_year}{incoming}"


def _run(run: RunRecord | None) -> str:
    if run is None:
        return "none recorded"
    outcome = run.outcome or "unfinished (running now, or killed)"
    ended = f" - {_utc(run.finished)}" if run.finished is not None else ""
    detail = f" ({run.detail})" if run.detail else ""
    return escape(f"{outcome}{detail}, {_utc(run.started)}{ended} UTC, from {run.source}")


def _utc(when: float) -> str:
    return datetime.fromtimestamp(when, UTC).strftime("%Y-%m-%d %H:%M:%S")


def _names(names: Sequence[str]) -> str:
    more = f" and {len(names) - SHOWN} more" if len(names) > SHOWN else ""
    return ", ".join(names[:SHOWN]) + more
