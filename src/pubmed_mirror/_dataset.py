"""DEST as a dataset: the PubMed years it holds, what is missing, the order to load it in,
and how far each consumer has loaded.

Everything here reads what DEST's manifest has committed and what DEST's directory holds,
at once: no network, no lock (a mirror writing DEST right now is neither waited for nor
disturbed), nothing written except a consumer's cursor by `acknowledge`. The functions
block (SQLite, one directory scan); from async code run them in a thread.

The definitions every command uses:

- a **data file** is a manifest row that is not the NAME.md5 of another row;
- a file is **final** when it has a manifest row and DEST holds it, a regular file of the
  recorded size; **verified** when it is final, was checked against an MD5 (row md5 not
  NULL) or a checksum (as it landed, or by `verify` since: row verified_at not
  NULL) and `verify` has not found it bad since;
- a DEST's **years** are the years of its PubMed-named data files (`pubmed26n0001.xml.gz`
  is of 2026);
- its **current year** is the newest of those years whose files in the last listing are
  all final and verified (a year the listing no longer holds counts as complete: NCBI
  removes last year's files once the new baseline is out), of those not just begun beside
  the year before (`_pubmed.year_takes_over`); when no year is, the newest of those (a
  first mirror in progress). Files of older years are **superseded**; a newer
  year in the listing or the manifest is **incoming** (a changeover in progress);
- **missing**: listed by the last listing, or recorded, but not final;
- **unverified**: final but never checked (neither MD5 nor checksum); **bad**: `verify` found
  it wrong;
- **extra**: a regular file in DEST's tree (links not entered) that the manifest does not
  record and the last listing does not hold (a listed file without a record is missing),
  other than our state directory, the `.part` of a known file and the NAME.md5 of a known
  NAME;
- **gaps**: numbers between the lowest and highest file number of the current year (in the
  manifest or the listing) that neither holds.
"""

from __future__ import annotations

import os
import stat
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from ._errors import DatasetError, LocalFileError
from ._plan import CHECKSUM_SUFFIX
from ._pubmed import file_order, pubmed_name, pubmed_number, pubmed_year, year_takes_over
from ._state import (
    STATE_DIR,
    ConsumerCursor,
    ListedFile,
    Manifest,
    ManifestEntry,
    RunRecord,
    state_dir,
)
from ._tree import local_tree

__all__ = [
    "DatasetStatus",
    "LoadFile",
    "LoadOrder",
    "acknowledge",
    "consumer_cursor",
    "dataset_status",
    "load_order",
]

_PART_SUFFIXES = (".part", ".part.meta")


@dataclass(frozen=True, slots=True)
class _Holdings:
    """What one DEST holds, as read at one moment."""

    dest: Path  # absolute
    rows: dict[str, ManifestEntry]  # every manifest row, NAME.md5 rows included
    listed: dict[str, ListedFile]  # the last successful listing's data files
    local: dict[str, int]  # the regular files of DEST's tree, with their sizes
    last_run: RunRecord | None
    data: frozenset[str]  # the rows that are data files (not the NAME.md5 of another row)

    def final(self, name: str) -> bool:
        row = self.rows.get(name)
        return row is not None and self.local.get(name) == row.size

    def verified(self, name: str) -> bool:
        row = self.rows.get(name)
        return self.final(name) and row is not None and _checked(row) and row.bad is None

    def of_year(self, year: int) -> list[str]:
        """The PubMed data files of `year` recorded or listed, in load order."""
        names = {n for n in self.data | self.listed.keys() if pubmed_year(n) == year}
        return sorted(names, key=file_order)

    def unloadable(self, name: str) -> str | None:
        """Why a loader cannot take this file now (None: it can)."""
        row = self.rows.get(name)
        if row is None:
            return (f"missing: in the last listing of {self.dest}, not mirrored yet (not "
                    f"fetched yet, or its fetch failed)")
        if row.bad is not None:
            return f"bad: `verify` found it wrong ({row.bad})"
        if not self.final(name):
            return f"missing: recorded, but {self.dest} does not hold it with its size"
        if not _checked(row):
            return "unverified: never checked against an MD5 or the server's checksum"
        return None


def _checked(row: ManifestEntry) -> bool:
    """Whether the recorded version was checked: by an MD5 (recorded with it) or by the
    object's own checksum as it landed, or since by `verify` (`verified_at`)."""
    return row.md5 is not None or row.verified_at is not None


def _mirror_in(dest: str | os.PathLike[str]) -> Path:
    """DEST, absolute; DatasetError when it holds no mirror (it is left as it is)."""
    path = Path(dest).absolute()
    if not (state_dir(path) / "manifest.sqlite").is_file():
        raise DatasetError(f"{dest} holds no mirror (no {STATE_DIR}/manifest.sqlite)")
    return path


def _read(dest: str | os.PathLike[str]) -> _Holdings:
    """DEST's manifest and files; DatasetError when DEST holds no mirror."""
    path = _mirror_in(dest)
    with Manifest.open(path, create=False, read_only=True) as manifest:
        rows = {e.name: e for e in manifest.entries()}
        listed = {f.name: f for f in manifest.listing()}
        last_run = manifest.last_run()
    data = frozenset(n for n in rows if not (n.endswith(CHECKSUM_SUFFIX)
                                             and n[: -len(CHECKSUM_SUFFIX)] in rows))
    return _Holdings(path, rows, listed, _local_files(path), last_run, data)


def _local_files(dest: Path) -> dict[str, int]:
    """The regular files of DEST's tree (nested names `a/b/c`), links neither entered nor
    counted."""
    try:
        return {name: st.st_size for name, st in local_tree(dest) if stat.S_ISREG(st.st_mode)}
    except OSError as exc:
        raise LocalFileError(f"cannot read {dest}: {exc.strerror or exc}") from exc


# -- the definitions ------------------------------------------------------------------------------


def _years(names: Iterable[str]) -> set[int]:
    return {y for y in map(pubmed_year, names) if y is not None}


def _current_year(held: _Holdings) -> int | None:
    """The newest year whose listed files are all verified, of those that are the one
    that replaces the year before (`_pubmed.year_takes_over`: not a stray file of a year
    to come, a baseline half uploaded or an upload with a hole); when none is, the newest
    of those."""
    years = sorted(_years(held.data | held.listed.keys()), reverse=True)
    whole = []
    for year, before in zip(years, [*years[1:], None], strict=False):
        names = ([n for n in held.listed if pubmed_year(n) == year]
                 or [n for n in held.data if pubmed_year(n) == year])
        if before is None or year_takes_over(
                [pubmed_number(n) or 0 for n in names],
                sum(pubmed_year(n) == before for n in held.listed)):
            whole.append(year)
    for year in whole:
        if year in _years(held.data) and all(
                held.verified(n) for n in held.listed if pubmed_year(n) == year):
            return year
    held_years = [y for y in whole if y in _years(held.data)]
    return held_years[0] if held_years else None


def _gaps(held: _Holdings, year: int | None) -> list[str]:
    if year is None:
        return []
    present = {n for n in map(pubmed_number, held.of_year(year)) if n is not None}
    if not present:
        return []
    return [pubmed_name(year, n) for n in range(min(present), max(present) + 1)
            if n not in present]


def _extra(held: _Holdings) -> list[str]:
    known = held.rows.keys() | held.listed.keys()

    def ours(name: str) -> bool:
        if name in known or name.startswith(STATE_DIR):
            return True
        return any(name.endswith(s) and name[: -len(s)] in known
                   for s in (CHECKSUM_SUFFIX, *_PART_SUFFIXES))

    return sorted((n for n in held.local if not ours(n)), key=file_order)


# -- status ---------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DatasetStatus:
    """One DEST as a dataset (see the definitions in this module's docstring). Each field
    but the years and the last run names the files concerned, in load order."""

    dest: Path
    years: tuple[int, ...]
    current_year: int | None
    incoming_year: int | None
    final: tuple[str, ...]
    verified: tuple[str, ...]
    missing: tuple[str, ...]
    superseded: tuple[str, ...]
    extra: tuple[str, ...]
    bad: tuple[str, ...]
    unverified: tuple[str, ...]
    # the unverified files whose NAME.md5 DEST holds: they could have been checked
    unverified_with_md5: tuple[str, ...]
    gaps: tuple[str, ...]
    last_run: RunRecord | None

    @property
    def problems(self) -> list[str]:
        """Why DEST is not complete and consistent, one short phrase each (empty: it is)."""
        found = [f"{len(files)} {what}" for what, files in (
            ("missing", self.missing), ("bad", self.bad),
            ("unverified (an MD5 is there to check them)", self.unverified_with_md5),
            ("extra", self.extra), ("gaps", self.gaps)) if files]
        if self.last_run is None:
            found.append("no mirror run recorded")
        elif self.last_run.outcome != "ok":
            found.append(f"last run {self.last_run.outcome or 'unfinished'}")
        return found

    @property
    def complete(self) -> bool:
        """Nothing missing, bad, unverified where an MD5 is at hand, extra or gapped, and
        the last run ended "ok"."""
        return not self.problems


def dataset_status(dest: str | os.PathLike[str]) -> DatasetStatus:
    """DEST as a dataset, from what its manifest has committed and what it holds (blocking;
    read-only: works on a read-only DEST and beside a running mirror). DatasetError when
    DEST holds no mirror."""
    held = _read(dest)
    data = held.data
    current = _current_year(held)
    newer = [y for y in _years(data | held.listed.keys()) if _older(current, y)]
    final = [n for n in data if held.final(n)]
    unverified = [n for n in final if not _checked(held.rows[n]) and held.rows[n].bad is None]

    def ordered(names: Iterable[str]) -> tuple[str, ...]:
        return tuple(sorted(names, key=file_order))

    return DatasetStatus(
        dest=held.dest,
        years=tuple(sorted(_years(data))),
        current_year=current,
        incoming_year=max(newer) if newer else None,
        final=ordered(final),
        verified=ordered(n for n in final if held.verified(n)),
        missing=ordered(n for n in data | held.listed.keys()
                        if not held.final(n) and not _older(pubmed_year(n), current)),
        superseded=ordered(n for n in data if _older(pubmed_year(n), current)),
        extra=tuple(_extra(held)),
        bad=ordered(n for n in data if held.rows[n].bad is not None),
        unverified=ordered(unverified),
        unverified_with_md5=ordered(n for n in unverified if n + CHECKSUM_SUFFIX in held.rows
                                    or n + CHECKSUM_SUFFIX in held.local),
        gaps=tuple(_gaps(held, current)),
        last_run=held.last_run,
    )


def _older(year: int | None, current: int | None) -> bool:
    return year is not None and current is not None and year < current


# -- load order and consumers ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LoadFile:
    """One file to load: its absolute path, and what identifies it."""

    path: Path
    name: str
    md5: str | None  # (None: checked by the server's own checksum, not an MD5)
    year: int
    number: int
    dest: Path


@dataclass(frozen=True, slots=True)
class LoadOrder:
    """The files a loader must apply, in order: the current year's baseline, then that
    year's update files. `complete` is False when the list stopped early, at `stopped_at`
    (a file's name; None when it could not start at all), for `reason`. `reload`: the
    consumer's cursor is of an older year: a new baseline arrived, and it must reload from
    it (the list starts from the baseline)."""

    files: tuple[LoadFile, ...]
    year: int | None
    complete: bool
    stopped_at: str | None = None
    reason: str | None = None
    consumer: str | None = None
    reload: bool = False
    cursor: ConsumerCursor | None = None  # the consumer's, as it was read


@dataclass(frozen=True, slots=True)
class _Walk:
    files: tuple[LoadFile, ...]
    stopped_at: str | None = None
    reason: str | None = None


def _walk(sequence: Sequence[tuple[_Holdings, str]], year: int,
          after: int | None) -> _Walk:
    """The files of `sequence` (in load order) numbered after `after`, up to the first gap
    or the first file a loader cannot take."""
    files: list[LoadFile] = []
    previous = after
    for held, name in sequence:
        number = pubmed_number(name)
        assert number is not None  # `of_year` gives PubMed names only
        if after is not None and number <= after:
            continue
        if previous is not None and number != previous + 1:
            if number <= previous:
                return _Walk(tuple(files), name, f"numbered like a file before it (in "
                                                 f"{held.dest})")
            return _Walk(tuple(files), pubmed_name(year, previous + 1),
                         "a gap: neither DEST records or lists it")
        why = held.unloadable(name)
        if why is not None:
            return _Walk(tuple(files), name, why)
        files.append(LoadFile(held.dest / name, name, held.rows[name].md5, year, number,
                              held.dest))
        previous = number
    return _Walk(tuple(files))


def load_order(baseline: str | os.PathLike[str], updates: str | os.PathLike[str], *,
               consumer: str | None = None) -> LoadOrder:
    """What a loader must apply, in order: BASELINE's current year, ascending, then UPDATES'
    files of that year, ascending; stopping at the first gap, or missing, bad or unverified
    file. With `consumer`, only what comes after its cursor (`acknowledge`), unless the
    cursor is of an older year: then from the baseline, with `reload` True. Blocking,
    read-only; DatasetError when a DEST holds no mirror."""
    base, upd = _read(baseline), _read(updates)
    cursor = _get_cursor(upd.dest, consumer) if consumer is not None else None
    year = _current_year(base)
    if year is None:
        return LoadOrder((), None, False, None, f"{base.dest} holds no PubMed baseline file",
                         consumer)
    if cursor is not None and cursor.year > year:
        return LoadOrder((), year, False, None,
                         f"the consumer is at {cursor.through} of {cursor.year}, but "
                         f"{base.dest}'s current year is {year}: wait until it is complete "
                         f"again", consumer)
    sequence = [(base, n) for n in base.of_year(year)]
    if upd.dest != base.dest:  # one DEST may hold both (its update files then are its own)
        sequence += [(upd, n) for n in upd.of_year(year)]
    after = None
    if cursor is not None and cursor.year == year:
        if cursor.through not in {name for _, name in sequence}:
            return LoadOrder((), year, False, cursor.through,
                             "the consumer's cursor names a file that neither DEST holds",
                             consumer)
        after = pubmed_number(cursor.through)
    walk = _walk(sequence, year, after)
    reason = walk.reason or _updates_moved_on(base, upd, year)
    return LoadOrder(walk.files, year, reason is None, walk.stopped_at, reason,
                     consumer, reload=cursor is not None and cursor.year < year,
                     cursor=cursor)


def _updates_moved_on(base: _Holdings, upd: _Holdings, year: int) -> str | None:
    """Why BASELINE's `year` cannot be brought up to date: UPDATES holds no update file of
    it but files of a newer year (its own changeover retired `year`'s before BASELINE's
    new year was complete); None when that is not so."""
    if upd.dest == base.dest or upd.of_year(year):
        return None
    newer = [y for y in _years(upd.data | upd.listed.keys()) if y > year]
    if not newer:
        return None
    return (f"{upd.dest} holds no update file of {year}, only of {max(newer)}: wait until "
            f"{base.dest}'s {max(newer)} baseline is complete")


def consumer_cursor(updates: str | os.PathLike[str], consumer: str) -> ConsumerCursor | None:
    """How far `consumer` has loaded (None: it never acknowledged a file). Blocking."""
    return _get_cursor(_mirror_in(updates), consumer)


def _get_cursor(dest: Path, consumer: str) -> ConsumerCursor | None:
    with Manifest.open(dest, create=False, read_only=True) as manifest:
        return manifest.get_cursor(consumer)


def acknowledge(updates: str | os.PathLike[str], consumer: str,
                through: str) -> ConsumerCursor:
    """`consumer` has loaded everything up to `through` (a file of its current list: a
    final, verified file of UPDATES, with every update file of its year before it; or a
    baseline file of the same year, numbered below UPDATES' first update file of that year,
    if it holds one yet: `load_order` stops at a cursor naming a file neither DEST
    holds). The cursor lives in UPDATES' manifest; `mirror` never moves it. DatasetError,
    with nothing changed, for a file not in the list, or one before the cursor. Blocking."""
    held = _read(updates)
    year, number = pubmed_year(through), pubmed_number(through)
    if year is None or number is None:
        raise DatasetError(f"{through}: not a PubMed data file name (pubmedYYnNNNN.xml.gz)")
    _check_listed(held, through, year, number)
    with Manifest.open(held.dest, create=False) as manifest:
        if not manifest.writable:
            raise LocalFileError(f"{held.dest}: the manifest is read-only; the cursor of "
                                 f"{consumer} cannot be recorded")
        now = manifest.get_cursor(consumer)
        if now is not None and (now.year, pubmed_number(now.through) or 0) > (year, number):
            raise DatasetError(f"{consumer} is at {now.through} already: acknowledging "
                               f"{through} would move it backwards")
        cursor = ConsumerCursor(consumer, year, through, time.time())
        manifest.set_cursor(cursor)
    return cursor


def _check_listed(held: _Holdings, name: str, year: int, number: int) -> None:
    """DatasetError unless `name` is in the consumer's list (see `acknowledge`)."""
    ours = held.of_year(year)
    if name in ours:
        walk = _walk([(held, n) for n in ours[: ours.index(name) + 1]], year, None)
        if walk.reason is not None:
            raise DatasetError(f"{name} is not in the consumer's list: it stops at "
                               f"{walk.stopped_at} ({walk.reason})")
        return
    known = _years(held.data | held.listed.keys())
    if known and year > max(known) + 1:  # (a baseline file of the year after: a changeover's;
        # none known: an updates DEST before its first update, whose consumer took a baseline)
        raise DatasetError(f"{name} is not in the consumer's list: {held.dest} holds no "
                           f"file of {year} or of the year before it")
    if not ours:
        return  # a baseline file: no update file of its year yet to be numbered below
    first = pubmed_number(ours[0])
    if first is None or number >= first:
        raise DatasetError(f"{name} is not in the consumer's list: {held.dest} neither "
                           f"holds it nor is it a baseline file (numbered below {ours[0]})")
