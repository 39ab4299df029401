"""The PubMed years of a run's staged listing beside DEST's (the queries of the yearly
changeover, `_lifecycle`): DEST's year, whether a newer one listed is the one that
replaces it (by its shape, `_pubmed.year_takes_over`), whether it is complete, and what it
then supersedes. Each function queries a connection of `_staging`'s (its `staged` table
and the manifest's `main.files`, with `pubmed_year` and `pubmed_number` registered);
blocking.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from ._pubmed import year_takes_over

__all__ = ["DATA", "held_year", "listed_newest", "superseded", "takes_over"]

# a listed PubMed data file of the selection (of `staged s`), whatever its year
_OF_YEAR = "s.kind = 'file' AND s.safe AND s.selected AND NOT s.checksum"

# a data file of the manifest (of `main.files f`): every row but the NAME.md5 of a
# recorded NAME
DATA = ("NOT (f.name GLOB '*.md5' AND substr(f.name, 1, length(f.name) - 4) IN "
        "(SELECT name FROM main.files))")


def listed_newest(db: sqlite3.Connection) -> int | None:
    """The newest PubMed year the run's listing holds (of the files it plans)."""
    year: int | None = db.execute("SELECT max(year) FROM staged WHERE listed").fetchone()[0]
    return year


def held_year(db: sqlite3.Connection, new: int | None, *, listed: bool = False) -> int | None:
    """The newest PubMed year older than `new` that the manifest records (`listed`: or
    the listing holds: a first mirror's)."""
    if new is None:
        return None
    held: int | None = db.execute(
        "SELECT max(y) FROM (SELECT pubmed_year(name) AS y FROM main.files WHERE name "
        "GLOB 'pubmed*') WHERE y < ?", (new,)).fetchone()[0]
    if listed:
        seen = db.execute(f"SELECT max(year) FROM staged s WHERE {_OF_YEAR} AND "
                          "year < ?", (new,)).fetchone()[0]
        held = seen if held is None else held if seen is None else max(held, seen)
    return held


def takes_over(db: sqlite3.Connection, new: int, old: int) -> bool:
    """Whether the listed year `new` is the one that replaces `old` by its shape
    (`_pubmed.year_takes_over`)."""
    numbers = [r[0] for r in db.execute(
        f"SELECT pubmed_number(name) FROM staged s WHERE {_OF_YEAR} AND year = ?", (new,))]
    old_listed = db.execute(f"SELECT count(*) FROM staged s WHERE {_OF_YEAR} AND "
                            "year = ?", (old,)).fetchone()[0]
    return year_takes_over(numbers, int(old_listed))


def superseded(db: sqlite3.Connection, dest: Path, new: int | None) -> tuple[str, ...]:
    """The recorded data files of years older than `new` (the newest listed), once `new`
    replaces DEST's year (`takes_over`) and is complete in DEST (`_year_complete`)."""
    old = held_year(db, new)
    if new is None or old is None or not takes_over(db, new, old):
        return ()
    if not _year_complete(db, dest, new):
        return ()
    return tuple(r[0] for r in db.execute(
        f"SELECT f.name FROM main.files f WHERE {DATA} AND pubmed_year(f.name) < ? "
        "ORDER BY f.name", (new,)))


def _year_complete(db: sqlite3.Connection, dest: Path, year: int) -> bool:
    """Every listed file of `year` final (DEST holds it, a regular file of the recorded
    size) and, when the year comes with NAME.md5 files, verified (by its MD5, or a
    checksum, or `verify` since); one listed before its NAME.md5 (an upload under way)
    must have been checked too."""
    checked = db.execute("SELECT 1 FROM staged WHERE companion AND year = ? LIMIT 1",
                         (year,)).fetchone() is not None
    rows = db.execute(
        "SELECT s.name, f.size, coalesce(f.md5, f.verified_at), f.bad, f.name IS NULL "
        "FROM staged s LEFT JOIN main.files f ON f.name = s.name WHERE s.listed AND "
        "s.year = ?", (year,))
    for name, size, md5, bad, missing in rows:
        if missing or bad is not None or (checked and md5 is None):
            return False
        try:
            if (dest / name).lstat().st_size != size:
                return False
        except OSError:
            return False
    return True
