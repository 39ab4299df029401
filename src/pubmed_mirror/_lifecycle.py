"""The dataset's lifecycle in DEST: files that leave the listing, and PubMed's yearly
changeover.

Every December NCBI publishes a new baseline (`pubmed27n0001.xml.gz` ...) and then removes
the previous year's baseline and update files. A loader must never see DEST without a
complete year, nor last year's updates beside this year's baseline. So, for PubMed-named
files:

- while the listing holds a year newer than files DEST holds, older years are not fetched
  any more; they stay, untouched and usable, until every listed file of the new year is
  final and verified in DEST;
- then they are *superseded*: removed by a run with `delete`, otherwise kept and reported.

Other files recorded in the manifest that the listing no longer holds are removed only
with `delete`, and only when the listing is not empty and the removal stays within the
limit (`DeleteLimit`). A file the manifest never recorded is never touched.

Deciding (`plan_deletions`) is pure; `delete_files` removes what was decided, files first
and then their manifest rows: a run killed in between leaves rows whose files are gone,
which the next run sees as still to delete (or to fetch, when listed again).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterable, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, replace
from pathlib import Path

from ._errors import local_errors
from ._plan import CHECKSUM_SUFFIX, Selection, matches, select_files
from ._pubmed import pubmed_year
from ._state import Manifest, ManifestEntry
from ._transfer import discard_part, part_path
from ._transport import RemoteEntry

__all__ = ["Changeover", "DeleteLimit", "Deletions", "Listed", "changeover",
           "current_entries", "delete_files", "listed_files", "newest_year", "plan_deletions",
           "refusal", "retired"]

@dataclass(frozen=True, slots=True, kw_only=True)
class DeleteLimit:
    """How many files a run may delete for having left the listing: at most `count`, or at
    most `share` of the files the manifest records (the default: half). Superseded years are
    not counted: their removal waits for the new year to be complete instead."""

    count: int | None = None
    share: float | None = 0.5

    def __post_init__(self) -> None:
        if (self.count is None) == (self.share is None):
            raise ValueError("give a count or a share of files to delete at most, not both")
        if self.count is not None and self.count < 0:
            raise ValueError("the delete count must be >= 0")
        if self.share is not None and not 0 <= self.share <= 1:
            raise ValueError("the delete share must be between 0 and 1")

    def allows(self, deleting: int, recorded: int) -> bool:
        if self.count is not None:
            return deleting <= self.count
        assert self.share is not None
        return deleting <= math.floor(self.share * recorded + 1e-9)

    def __str__(self) -> str:
        return str(self.count) if self.count is not None else f"{self.share:.0%}"


@dataclass(frozen=True, slots=True)
class Changeover:
    """The listing holds PubMed files of year `new`; DEST still holds files of `old` (and
    perhaps earlier years)."""

    old: int
    new: int


@dataclass(frozen=True, slots=True)
class Deletions:
    """What a run removes (`delete`) or reports (`superseded`), and why it refused to."""

    gone: tuple[str, ...] = ()  # recorded, no longer listed
    superseded: tuple[str, ...] = ()  # of a year older than a complete newer one
    refused: str | None = None  # why nothing of `gone` may be deleted

    def removable(self) -> list[tuple[str, str]]:
        """(name, reason) of everything a run with `delete` removes."""
        why_gone = "no longer on the server"
        return ([(name, "superseded by a newer year") for name in self.superseded]
                + ([] if self.refused else [(name, why_gone) for name in self.gone]))


def newest_year(names: Iterable[str]) -> int | None:
    return max((y for n in names if (y := pubmed_year(n)) is not None), default=None)


def changeover(held: Iterable[str], listed: Iterable[str]) -> Changeover | None:
    """A changeover while the listing's newest PubMed year is newer than what DEST holds."""
    new = newest_year(listed)
    if new is None:
        return None
    older = [y for n in held if (y := pubmed_year(n)) is not None and y < new]
    return Changeover(max(older), new) if older else None


def retired(name: str, listed_newest: int | None) -> bool:
    """A PubMed file of a year older than the newest the listing holds: never fetched."""
    year = pubmed_year(name)
    return year is not None and listed_newest is not None and year < listed_newest


@dataclass(frozen=True, slots=True)
class Listed:
    """The listing's data files that match the run's globs (not cut by `newest` or
    `max_files`: those choose what a run fetches, not what the dataset is), and which of
    them have a NAME.md5 on the server."""

    names: tuple[str, ...]
    checksums: frozenset[str]


def current_entries(entries: Sequence[RemoteEntry]) -> list[RemoteEntry]:
    """The listing without the PubMed files (and their NAME.md5) of years older than the
    newest it holds: those are never fetched."""
    newest = newest_year(e.name for e in entries if e.kind == "file")
    return [e for e in entries if not retired(e.name.removesuffix(CHECKSUM_SUFFIX), newest)]


def listed_files(entries: Sequence[RemoteEntry], selection: Selection) -> Listed:
    files = select_files(entries, replace(selection, newest=None, max_files=None))
    return Listed(tuple(e.name for e, _ in files),
                  frozenset(e.name for e, checksum in files if checksum is not None))


def data_rows(rows: Sequence[ManifestEntry]) -> list[ManifestEntry]:
    """The manifest's data files: every row but the NAME.md5 of a recorded NAME."""
    names = {row.name for row in rows}
    return [row for row in rows
            if not (row.name.endswith(CHECKSUM_SUFFIX)
                    and row.name[: -len(CHECKSUM_SUFFIX)] in names)]


def year_complete(dest: Path, rows: dict[str, ManifestEntry], listed: Sequence[str],
                  checksums: AbstractSet[str], year: int) -> bool:
    """Every listed file of `year` is final in DEST: recorded, present with its recorded
    size, not found bad, and verified by MD5 where the server has its NAME.md5."""
    for name in listed:
        if pubmed_year(name) != year:
            continue
        row = rows.get(name)
        if row is None or row.bad is not None or (name in checksums and row.md5 is None):
            return False
        try:
            if (dest / name).lstat().st_size != row.size:
                return False
        except OSError:
            return False
    return True


def plan_deletions(dest: Path, rows: Sequence[ManifestEntry], listed: Sequence[str],
                   checksums: AbstractSet[str], *, include: tuple[str, ...],
                   exclude: tuple[str, ...], limit: DeleteLimit) -> Deletions:
    """What leaves DEST: files of superseded years once the newest listed year is complete,
    and (within `limit`, never from an empty listing) recorded files of the selection the
    listing no longer holds. `listed`: the data files listed (NAME.md5 aside); `checksums`:
    the listed files that have a NAME.md5 on the server. Blocking (stats)."""
    data = data_rows(rows)
    by_name = {row.name: row for row in rows}
    new = newest_year(listed)
    superseded: tuple[str, ...] = ()
    if new is not None and year_complete(dest, by_name, listed, checksums, new):
        superseded = tuple(r.name for r in data if retired(r.name, new))
    listed_set = set(listed)
    gone = tuple(r.name for r in data
                 if r.name not in listed_set and not retired(r.name, new)
                 and matches(r.name, include, exclude))
    refused = refusal(len(gone), len(data), len(listed), limit)
    return Deletions(gone, superseded, refused)


def refusal(gone: int, recorded: int, listed: int, limit: DeleteLimit) -> str | None:
    """Why `gone` recorded files (of `recorded`) may not be deleted after a listing of
    `listed` data files; None when they may."""
    if gone and not listed:
        return f"the listing holds no file: {gone} recorded files would go; nothing deleted"
    if gone and not limit.allows(gone, recorded):
        return (f"{gone} of the {recorded} recorded files are no longer listed, "
                f"more than --max-delete {limit}: nothing deleted")
    return None


def delete_files(dest: Path, manifest: Manifest, names: Sequence[str]) -> None:
    """Remove each NAME with its NAME.md5, any part of either, and then their manifest rows
    (files first: see the module's docstring). Blocking."""
    for name in names:
        for each in (name, name + CHECKSUM_SUFFIX):
            path = dest / each
            with local_errors(path):
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
                discard_part(part_path(path))
        manifest.forget(name, name + CHECKSUM_SUFFIX)
