"""The listing, staged: a run's entries go into a temporary table of the manifest's SQLite
database as they arrive, in batches, and the selection, the comparison with the manifest,
the changeover and the deletions are set-based queries over it (the rules are `_plan`'s
and `_lifecycle`'s, which say them for lists). A run never holds its whole listing, plan or
manifest as Python objects: at 1,000,000 entries that was ~600 MB.

The table is TEMP: private to this connection (a `status` reading the manifest meanwhile
never sees it), on disk past a small cache, gone when the run closes the manifest; it works
on a read-only manifest too (a dry run into a read-only DEST).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import sqlite3
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ._layout import recorded_parts
from ._lifecycle import Changeover, DeleteLimit, Deletions, refusal
from ._plan import (
    ACTION,
    ACTION_ALONE,
    CHECKSUM_SUFFIX,
    Action,
    PlannedFile,
    Selection,
    current_at,
    part_length,
    selects,
    unreadable_entries,
)
from ._pubmed import file_order, pubmed_number, pubmed_year
from ._sight import HIDING, sight_condition, sight_test
from ._state import ManifestEntry
from ._transport import RemoteEntry
from ._tree import SEPARATOR, FoldRule, behind_link, unsafe_path_reason
from ._years import DATA, held_year, listed_newest, superseded, takes_over

__all__ = ["PlanCounts", "StagedFiles", "Staging"]

log = logging.getLogger("pubmed_mirror")

BATCH = 5_000  # rows per transaction or fetch: big enough to amortise, small to hold

_TABLE = """
CREATE TEMP TABLE staged (
    seq INTEGER PRIMARY KEY,    -- listing order: ties of the load order keep it
    name TEXT NOT NULL UNIQUE,  -- a name listed twice: the first entry wins
    size INTEGER, mtime REAL, kind TEXT NOT NULL, resolution REAL NOT NULL,
    validator TEXT, shown_lo INTEGER, shown_hi INTEGER, md5 TEXT,
    shown REAL,                 -- the listed time a HEAD's replaced (RemoteEntry.shown)
    ord BLOB NOT NULL,          -- file_order(name) in UTF-8: bytes sort as the key does
    year INTEGER,               -- pubmed_year of the name (of NAME, for NAME.md5)
    checksum INTEGER NOT NULL,  -- the name ends in .md5
    safe INTEGER NOT NULL,      -- a file whose name may become a local path
    selected INTEGER NOT NULL,  -- and it matches the globs
    companion INTEGER NOT NULL DEFAULT 0,  -- NAME.md5 of a safe NAME: goes with NAME only
    paired INTEGER NOT NULL DEFAULT 0,     -- a NAME whose NAME.md5 is its companion
    listed INTEGER NOT NULL DEFAULT 0,     -- a data file of the selection (the dataset's)
    chosen INTEGER NOT NULL DEFAULT 0,     -- one this run plans (--newest, --max-files)
    fold TEXT,                  -- a file's name as DEST's file system compares it
    action TEXT, have INTEGER NOT NULL DEFAULT 0,
    fed INTEGER NOT NULL DEFAULT 0  -- decided while the listing went on: the decide_early
                                    -- call's number
)
"""
# each nested name's directories (`a`, `a/b` for `a/b/c`; `a`, `a/` for `a//b`) as rows (seq,
# owner, folder), of the rows of `{0}` (a table and its WHERE clause), made by SQLite in one
# statement (row by row from Python, interleaved with the scan, it took 5 s for 200,000
# names): the first directory of each, then, by a recursive CTE, the deeper ones of the names
# that have them (the CTE's queue costs; at 200,000 names one level deep, 0.2 s against 0.5 s
# with every name through it)
_FOLDERS = ("SELECT seq, name AS owner, substr(name, 1, instr(name, '/') - 1) AS folder FROM "
            "{0} AND instr(name, '/') UNION ALL SELECT * FROM (WITH RECURSIVE parts(seq, "
            "owner, folder, rest) AS (SELECT seq, name, substr(name, 1, instr(name, '/') - 1), "
            "substr(name, instr(name, '/') + 1) FROM {0} AND instr(substr(name, instr(name, "
            "'/') + 1), '/') UNION ALL SELECT seq, owner, folder || '/' || substr(rest, 1, "
            "instr(rest, '/') - 1), substr(rest, instr(rest, '/') + 1) FROM parts WHERE "
            "instr(rest, '/')) SELECT seq, owner, folder FROM parts WHERE instr(folder, '/'))")
_ENTRY = "{0}.name, {0}.size, {0}.mtime, {0}.kind, {0}.resolution, {0}.validator, " \
         "{0}.shown_lo, {0}.shown_hi, {0}.md5, {0}.shown"
_WIDTH = 10  # columns of _ENTRY
_ROWS = ("name, seq, size, mtime, kind, resolution, validator, shown_lo, shown_hi, md5, "
         "shown, ord, year, checksum, safe, selected")


@dataclass(frozen=True, slots=True)
class PlanCounts:
    """The plan in numbers: files per action and what a run would receive at most."""

    fetch: int = 0
    check: int = 0
    skip: int = 0
    bytes_to_fetch: int = 0
    total_bytes: int = 0  # of every planned file

    def of(self, *actions: Action) -> int:
        return sum(getattr(self, a) for a in actions)


def _entry(row: tuple[Any, ...]) -> RemoteEntry:
    name, size, mtime, kind, resolution, validator, low, high, md5, shown = row
    return RemoteEntry(name, size, mtime, kind, resolution, validator,
                       None if low is None else (low, high), md5, shown)


class Staging:
    """The staged listing of one run, in `connection`'s database (the manifest's: see
    `Manifest.connection`); `columns(alias)` is the manifest's select list for `files`."""

    def __init__(self, connection: Callable[[], Any], columns: Callable[[str], str],
                 selection: Selection) -> None:
        self._connection = connection
        self._columns = columns
        self.selection = selection
        self._seq = 0
        # the PubMed year whose older ones are retired: the newest listed once it is the
        # one that replaces DEST's (`_years.takes_over`), DEST's own until then
        self.newest: int | None = None
        self.markers: list[str] = []  # the folder markers dropped (`_drop_clashes`)
        self._may_resume: Callable[[str], bool] | None = None  # DEST's recorded parts
        self._decided = 0  # decide_early's calls so far

    @property
    def staged(self) -> int:
        """How many entries the listing gave (a name listed twice counted twice)."""
        return self._seq

    def start(self) -> None:
        """An empty table (again, for a listing retried from the start)."""
        self._seq = 0
        with self._connection() as db:
            # 16 MiB each, then the files: the joins read both in load order
            db.execute("PRAGMA temp.cache_size = -16384")
            db.execute("PRAGMA main.cache_size = -16384")
            db.execute("DROP TABLE IF EXISTS temp.staged")
            db.execute(_TABLE)
            db.create_function("pubmed_year", 1, pubmed_year, deterministic=True)
            db.create_function("pubmed_number", 1, pubmed_number, deterministic=True)
            db.create_function("selected_name", 1, self._selected, deterministic=True)

    def _selected(self, name: str) -> int:
        return int(selects(self.selection, name))

    def holds(self, name: str) -> bool:
        """Whether the listing gave `name`, of any kind (blocking)."""
        with self._connection() as db:
            row = db.execute("SELECT 1 FROM staged WHERE name = ?", (name,)).fetchone()
        return row is not None

    def add(self, entries: Iterable[RemoteEntry]) -> None:
        """Stage a batch of the listing, in one transaction (blocking). A name listed
        twice keeps its first entry; a directory that could not be listed ("unlisted") or
        was not entered ("loop") takes the place of its "dir" entry."""
        rows = [self._row(e) for e in entries if _utf8(e)]
        marks = ", ".join("?" * len(_ROWS.split(", ")))
        with self._connection() as db:
            db.execute("BEGIN")
            db.executemany(f"INSERT OR IGNORE INTO staged ({_ROWS}) VALUES ({marks})",
                           (r for r in rows if r[4] not in HIDING))
            db.executemany(f"INSERT OR REPLACE INTO staged ({_ROWS}) VALUES ({marks})",
                           (r for r in rows if r[4] in HIDING))
            db.execute("COMMIT")

    def _row(self, entry: RemoteEntry) -> tuple[Any, ...]:
        self._seq += 1
        name = entry.name
        if entry.kind == "link":
            log.warning("skipping symlink entry %r", name)
        elif entry.kind == "other":
            log.warning("skipping entry %r: neither a file nor a directory", name)
        safe = entry.kind == "file" and _safe(entry)
        shown = entry.size_shown or (None, None)
        return (name, self._seq, entry.size, entry.mtime, entry.kind, entry.mtime_resolution,
                entry.validator, shown[0], shown[1], entry.md5, entry.shown,
                file_order(name).encode(),
                pubmed_year(name.removesuffix(CHECKSUM_SUFFIX)),
                name.endswith(CHECKSUM_SUFFIX), safe, safe and self._selected(name))

    def finish(self, fold: FoldRule) -> None:
        """The listing is complete: the files of the retired PubMed years (older than the
        newest listed, when it is the one that replaces DEST's year by its shape:
        `_years.takes_over`; else older than DEST's own, which is fetched whole) and those that
        clash on DEST's file system (`fold`) drop out; then NAME.md5 companions, the
        dataset's files and the ones this run plans are marked.

        A NAME.md5 whose NAME is listed is never a file of its own: it goes with NAME when
        NAME is selected, and not at all otherwise. The plan is in PubMed load order;
        `--newest N` keeps the last N of the selection, `--max-files N` then the first N."""
        sel = self.selection
        with self._connection() as db:
            db.execute("CREATE INDEX temp.staged_order ON staged (ord, seq)")
            new = db.execute("SELECT max(year) FROM staged WHERE kind = 'file' "
                             "AND NOT checksum").fetchone()[0]
            old = held_year(db, new, listed=True)
            self.newest = new if old is None or takes_over(db, new, old) else old
            self._drop_clashes(db, fold)
            db.execute("UPDATE staged SET companion = 1 WHERE checksum AND safe AND "
                       "substr(name, 1, length(name) - 4) IN (SELECT name FROM staged "
                       "WHERE safe)")
            db.execute("UPDATE staged SET paired = 1 WHERE name IN (SELECT substr(name, 1, "
                       "length(name) - 4) FROM staged WHERE companion)")
            # without --newest and --max-files the run plans the whole dataset: one pass
            every = sel.newest is None and sel.max_files is None
            # (the files decided early are marked so: `_decide`)
            db.execute(f"UPDATE staged SET listed = 1, chosen = {int(every)} WHERE NOT fed AND "
                       f"safe AND selected AND NOT companion AND NOT {self._retired()}",
                       self._newest())
            if every:
                return
            total = db.execute("SELECT count(*) FROM staged WHERE listed").fetchone()[0]
            start = 0 if sel.newest is None else max(0, total - sel.newest)
            count = total - start if sel.newest is None or sel.newest else 0
            if sel.max_files is not None:
                count = min(count, sel.max_files)
            db.execute("UPDATE staged SET chosen = 1 WHERE seq IN (SELECT seq FROM staged "
                       "WHERE listed ORDER BY ord, seq LIMIT ? OFFSET ?)", (count, start))

    def _drop_clashes(self, db: sqlite3.Connection, fold: FoldRule) -> None:
        """`_tree`'s rule for paths that cannot land beside the others, each dropped with a
        warning: one that lands on the same local file as another under `fold`, one that is
        another's directory, one whose directory is another file; the first in sorted order
        stays (of those the first two rules keep), but for an empty object named as another's
        directory (a folder marker some S3 tools write without its `/`): it goes, the files
        below it stay. Flat names compared as they are cannot clash (a name is staged
        once): nothing to do, at any size."""
        # (a name refused already, `_safe`, is neither dropped again nor in another's way)
        live = f"kind = 'file' AND safe AND NOT {self._retired()}"
        nested = db.execute(f"SELECT 1 FROM staged WHERE {live} AND instr(name, '/') "
                            "LIMIT 1", self._newest()).fetchone()
        if fold == FoldRule():
            # only the third rule can drop a name (its folders sort before it); not one
            # decided early: none of its folders was listed (`decide_early`), nor can be
            # later in a sorted listing
            if nested:
                folders = _FOLDERS.format(f"staged WHERE NOT fed AND {live}")
                dropped = self._drop(
                    db, "SELECT o.seq, o.name, 'an empty object named as the directory of "
                    "' || quote(min(p.owner)) || ' (a folder marker)' "
                    f"FROM ({folders}) p JOIN staged o ON o.name = p.folder AND "
                    f"o.kind = 'file' AND o.size = 0 AND o.safe AND NOT "
                    f"{self._retired('o.')} GROUP BY o.seq", self._newest())
                # (those a selected file lands below: `_tree.give_way`)
                self.markers = [m for m in dropped if db.execute(
                    "SELECT 1 FROM staged WHERE selected AND name > ? AND name < ? LIMIT 1",
                    (m + SEPARATOR, m + chr(ord(SEPARATOR) + 1))).fetchone()]
                self._drop(db, f"SELECT p.seq, p.owner, 'its directory ' || quote(o.name) || "
                           f"' is the file ' || quote(o.name) FROM ({folders}) p "
                           f"JOIN staged o ON o.name = p.folder AND o.kind = 'file' AND "
                           f"o.safe AND NOT {self._retired('o.')} GROUP BY p.seq",
                           self._newest())
            return
        db.create_function("fold_key", 1, fold.key, deterministic=True)
        db.execute(f"UPDATE staged SET fold = fold_key(name) WHERE {live}", self._newest())
        db.execute("CREATE INDEX temp.staged_fold ON staged (fold, name)")
        self._drop(db, "SELECT s.seq, s.name, 'lands on the same local file as ' || "
                   "quote(o.name) || ' on this file system' FROM staged s JOIN staged o ON "
                   "o.fold = s.fold AND o.name < s.name GROUP BY s.seq")
        db.execute("CREATE TEMP TABLE folders (key TEXT, name TEXT, owner TEXT)")
        db.execute("INSERT INTO folders SELECT fold_key(folder), folder, owner FROM ("
                   f"{_FOLDERS.format('staged WHERE fold IS NOT NULL')})")
        db.execute("CREATE INDEX temp.folders_key ON folders (key, owner)")
        self._drop(db, "SELECT s.seq, s.name, 'is a directory of ' || quote(min(d.owner)) "
                   "FROM staged s JOIN folders d ON d.key = s.fold AND d.owner < s.name "
                   "GROUP BY s.seq")
        self._drop(db, "SELECT s.seq, s.name, 'its directory ' || quote(d.name) || ' is the "
                   "file ' || quote(o.name) FROM folders d JOIN staged s ON s.name = d.owner "
                   "AND s.fold IS NOT NULL JOIN staged o ON o.fold = d.key AND o.name < "
                   "s.name GROUP BY s.seq")
        db.execute("DROP TABLE temp.folders")

    @staticmethod
    def _drop(db: sqlite3.Connection, query: str, params: dict[str, Any] | None = None
              ) -> list[str]:
        """The files `query` finds (seq, name, why) are not safe to land: dropped, logged;
        their names returned."""
        found = db.execute(query, params or {}).fetchall()
        for _, name, why in found:
            log.warning("skipping entry %r: %s", name, why)
        db.executemany("UPDATE staged SET safe = 0, selected = 0, fold = NULL WHERE seq = ?",
                       [(seq,) for seq, _, _ in found])
        return [name for _, name, _ in found]

    def _retired(self, alias: str = "") -> str:
        return f"coalesce({alias}year < :newest, 0)"

    def _newest(self) -> dict[str, int | None]:
        return {"newest": self.newest}

    def rollback(self, mark: int) -> None:
        """Forget the entries staged after `mark` (`staged` then): a listing that failed
        part way and is asked again, or a directory found to be a loop (blocking)."""
        with self._connection() as db:
            db.execute("DELETE FROM staged WHERE seq > ?", (mark,))

    def unreadable(self) -> tuple[RemoteEntry, ...]:
        """The unreadable listing lines that may name a selected file (`_plan`'s rule)."""
        with self._connection() as db:
            rows = db.execute(f"SELECT {_ENTRY.format('staged')} FROM staged WHERE kind IN "
                              "('unreadable', 'unlisted') ORDER BY seq").fetchall()
        return unreadable_entries([_entry(r) for r in rows], self.selection)

    # -- sizes ----------------------------------------------------------------------------

    def unsized(self, after: int) -> list[tuple[int, RemoteEntry, ManifestEntry | None]]:
        """The next batch (by listing order, after `after`) of planned files and their
        NAME.md5 whose size the listing rounded or that it shows without a time, each with
        its manifest row."""
        with self._connection() as db:
            rows = db.execute(
                f"SELECT s.seq, {_ENTRY.format('s')}, {self._columns('f')} FROM staged s "
                "LEFT JOIN main.files f ON f.name = s.name WHERE (s.size IS NULL OR "
                "s.mtime IS NULL) AND s.kind = 'file' AND s.seq > ? AND (s.chosen OR "
                "(s.companion AND "
                "substr(s.name, 1, length(s.name) - 4) IN (SELECT name FROM staged "
                "WHERE chosen))) ORDER BY s.seq LIMIT ?", (after, BATCH)).fetchall()
        return [(r[0], _entry(r[1:1 + _WIDTH]),
                 None if r[1 + _WIDTH] is None else ManifestEntry(*r[1 + _WIDTH:]))
                for r in rows]

    def set_sizes(self, entries: Iterable[RemoteEntry]) -> None:
        rows = [(e.size, e.mtime, e.mtime_resolution, e.validator, e.shown, e.name)
                for e in entries if e.size is not None]
        with self._connection() as db:
            db.execute("BEGIN")
            db.executemany("UPDATE staged SET size = ?, mtime = ?, resolution = ?, "
                           "validator = ?, shown = ?, shown_lo = NULL, shown_hi = NULL "
                           "WHERE name = ?", rows)
            db.execute("COMMIT")

    # -- the plan -------------------------------------------------------------------------

    def compare(self, dest: Path, *, verify: bool) -> PlanCounts:
        """Each planned file's action (`_plan.ACTION`), in one statement over the staged
        listing joined with the manifest: no Python object per file, one stat each (in
        `current`); then what a fetch would resume from, where a part is recorded
        (blocking). Files decided early (`decide_early`) keep their action."""
        with self._connection() as db:
            self._stat_functions(db, dest)
            db.execute("BEGIN")
            self._decide(db, "WHERE chosen AND NOT fed", {"verify": verify})
            db.execute("COMMIT")
        return self.counts()

    def _decide(self, db: sqlite3.Connection, where: str, params: dict[str, Any], *,
                decided: str | None = None) -> int:
        """The action (`_plan.ACTION`) of the staged files `where` says, in one statement
        over the staged listing joined with the manifest; then, of those to fetch whose part
        is recorded, what the fetch would resume from; how many were decided. `params`:
        `verify`, and what the clauses name. With `decided` (the WHERE that finds them
        after), each decided file's `fed` is set to `:mark` in the same pass, and it is
        marked as `finish` would mark it (listed, chosen): it has no NAME.md5 (its action
        is `ACTION_ALONE`'s) and nothing after can drop it."""
        if decided:
            action = (f"SELECT {ACTION_ALONE} FROM staged s LEFT JOIN {self._manifest()} f "
                      "ON f.name = s.name WHERE s.seq = staged.seq")
            marks = ", fed = :mark, listed = 1, chosen = 1"
        else:
            action = (f"SELECT {ACTION} FROM staged s LEFT JOIN staged c ON c.name = s.name "
                      f"|| '{CHECKSUM_SUFFIX}' AND c.companion LEFT JOIN {self._manifest()} f "
                      f"ON f.name = s.name LEFT JOIN {self._manifest()} fc ON fc.name = c.name "
                      "WHERE s.seq = staged.seq")
            marks = ""
        count: int = db.execute(f"UPDATE staged SET action = ({action}){marks} {where}",
                                params).rowcount
        db.execute("UPDATE staged SET have = have(name, size, mtime, resolution) "
                   f"{decided or where} AND action = 'fetch' AND may_resume(name)", params)
        return count

    def _stat_functions(self, db: sqlite3.Connection, dest: Path) -> None:
        """`current`, `may_resume` and `have` of DEST's files, for `ACTION` (the parts DEST
        records are looked up once a run)."""
        folder = os.path.join(dest, "")  # (joined by hand: cheaper)
        # the last folder looked at, and whether a link is on its way: a listing gives a
        # folder's names together, so one look per folder (setdefault's default was a look
        # per file: a third of a nested no-op's decisions), and never a dict of every folder
        looked: str | None = None
        linked = False

        def current(name: str, size: int | None, mtime: float | None,
                    resolution: float) -> bool:
            nonlocal looked, linked
            if SEPARATOR in name:  # a link on the way: not our copy
                parent = name.rsplit(SEPARATOR, 1)[0]
                if looked != parent:
                    looked, linked = parent, behind_link(dest, name)
                if linked:
                    return False
            return current_at(folder + name, size, mtime, resolution)

        if self._may_resume is None:
            self._may_resume = recorded_parts(dest)
        db.create_function("current", 4, current)
        db.create_function("may_resume", 1, self._may_resume)
        db.create_function("have", 4, lambda *row: part_length(dest, RemoteEntry(
            row[0], row[1], row[2], "file", row[3])))

    # -- the pipelined plan: a sorted listing's files decided as its pages land --------------

    def decide_early(self, after: int, dest: Path, *, verify: bool) -> int:
        """Decide now, by `ACTION_ALONE`, the files staged after `after` (by seq) whose action the
        rest of the listing cannot change, and mark them fed; how many (blocking).

        Only for a listing that gives every name once, in UTF-8 binary order (SQLite's
        text order) across its pages, and never takes a page back (`Source.sorted_listing`),
        and for a run with no `--newest`/`--max-files` and a DEST that folds no names
        (the caller's to check). Then every rule of `finish` that drops or pairs a name
        looks only at smaller names (`_drop_clashes` keeps the first in sorted order), all
        staged already, except these, held back for the plan after the listing: a name
        ending in .md5; a name whose NAME.md5 is listed or may still be (it sorts after
        the last name staged); a PubMed file name (a newer year listed later retires it);
        a name one of whose directories is listed as an entry; an unsized or untimed one;
        an empty one until the listing has passed the names it may be the directory of
        (`NAME/...`, all below `NAME0`: a folder marker, `_drop_clashes`)."""
        self._decided += 1  # this call's mark in `fed`: its files, for the parts' pass
        with self._connection() as db:
            last = db.execute("SELECT max(name) FROM staged").fetchone()[0]
            params = {"after": after, "suffix": CHECKSUM_SUFFIX, "last": last,
                      "verify": verify, "mark": self._decided}
            self._stat_functions(db, dest)
            db.execute("BEGIN")
            # one pass: the rows' choice, the held-back ones left out and the action set
            ready = self._decide(
                db, "WHERE seq > :after AND NOT fed AND kind = 'file' AND safe AND "
                "selected AND NOT checksum AND year IS NULL AND size IS NOT NULL AND mtime IS "
                "NOT NULL AND name || :suffix < :last AND (size > 0 OR (name || '0' <= :last "
                "AND NOT EXISTS (SELECT 1 FROM staged d WHERE d.name > staged.name || '/' AND "
                "d.name < staged.name || '0'))) AND NOT EXISTS (SELECT 1 FROM staged c "
                "WHERE c.name = staged.name || :suffix) AND seq NOT IN (SELECT p.seq FROM "
                f"({_FOLDERS.format('staged WHERE seq > :after AND NOT fed')}) p JOIN staged d "
                "ON d.name = p.folder)", params, decided="WHERE seq > :after AND fed = :mark")
            db.execute("COMMIT")
        return ready

    def early(self, after: int) -> tuple[list[PlannedFile], int]:
        """The next batch of files decided early (`decide_early`), in listing order after
        seq `after`; and the seq to go on from."""
        with self._connection() as db:
            rows = db.execute(f"SELECT {_ENTRY.format('s')}, s.action, s.have, s.seq FROM "
                              "staged s WHERE s.fed AND s.seq > ? ORDER BY s.seq LIMIT ?",
                              (after, BATCH)).fetchall()
        files = [PlannedFile(_entry(r[:_WIDTH]), None, r[_WIDTH], r[_WIDTH + 1]) for r in rows]
        return files, (rows[-1][-1] if rows else after)

    def _manifest(self) -> str:
        """The manifest's files as a table with every column (NULL for those an older
        manifest opened read-only lacks)."""
        names = [f.name for f in dataclasses.fields(ManifestEntry)]
        picked = self._columns("m").split(", ")
        return ("(SELECT " + ", ".join(f"{p} AS {n}" for p, n in zip(picked, names,
                                                                       strict=True))
                + " FROM main.files m)")

    def counts(self) -> PlanCounts:
        with self._connection() as db:
            # one scan, no sort (a GROUP BY action sorted a million rows)
            fetch, check, skip, left, total = db.execute(
                "SELECT coalesce(sum(action = 'fetch'), 0), coalesce(sum(action = 'check'), 0), "
                "coalesce(sum(action = 'skip'), 0), coalesce(sum(CASE WHEN action IN "
                "('fetch', 'check') THEN coalesce(size, 0) - have END), 0), "
                "coalesce(sum(coalesce(size, 0)), 0) FROM staged WHERE chosen").fetchone()
        return PlanCounts(fetch, check, skip, bytes_to_fetch=left, total_bytes=total)

    def planned(self, after: tuple[bytes, int], actions: tuple[Action, ...]
                ) -> tuple[list[PlannedFile], tuple[bytes, int]]:
        """The next batch of planned files with these actions, in load order, after the
        key `after` ((b"", 0) first); and the key to go on from."""
        marks = ", ".join("?" * len(actions))
        with self._connection() as db:
            rows = db.execute(
                f"SELECT {_ENTRY.format('s')}, {_ENTRY.format('c')}, s.action, s.have, "
                "s.ord, s.seq FROM staged s LEFT JOIN staged c ON c.name = s.name || '.md5'"
                f" AND c.companion WHERE s.chosen AND NOT s.fed AND s.action IN ({marks}) AND "
                "(s.ord, s.seq) > (?, ?) ORDER BY s.ord, s.seq LIMIT ?",
                (*actions, *after, BATCH)).fetchall()
        w = _WIDTH
        files = [PlannedFile(_entry(r[:w]), None if r[w] is None else _entry(r[w:2 * w]),
                             r[2 * w], r[2 * w + 1]) for r in rows]
        return files, ((rows[-1][-2], rows[-1][-1]) if rows else after)

    def files(self, *actions: Action) -> Iterator[PlannedFile]:
        """Every planned file with these actions (all: none given), in load order
        (blocking, batch by batch)."""
        after: tuple[bytes, int] = (b"", 0)
        while True:
            batch, after = self.planned(after, actions or ("fetch", "check", "skip"))
            if not batch:
                return
            yield from batch

    # -- the dataset: the listing's record, the changeover, deletions ------------------------

    def record_listing(self) -> None:
        """The dataset's files of this listing become DEST's `listing`, whole (blocking)."""
        with self._connection() as db:
            db.execute("BEGIN IMMEDIATE")
            try:
                db.execute("DELETE FROM main.listing")
                db.execute("INSERT INTO main.listing (name, size, mtime) SELECT name, size, "
                           "mtime FROM staged WHERE listed ORDER BY ord, seq")
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")

    def changeover(self) -> Changeover | None:
        """`_lifecycle.changeover` of what the manifest holds and the dataset's files: a
        newer year listed with the shape of the one that replaces DEST's (a stray file of
        a year to come is no changeover)."""
        with self._connection() as db:
            new = listed_newest(db)
            old = held_year(db, new)
            if new is None or old is None or not takes_over(db, new, old):
                return None
        return Changeover(old, new)

    def deletions(self, dest: Path, limit: DeleteLimit, *, depth: int | None = None,
                  gone: bool = True) -> Deletions:
        """`_lifecycle.plan_deletions`, over the manifest and the staged listing (blocking:
        stats the newest year's files). Only a recorded file this listing could have shown
        can be gone (and counts among the recorded): `depth` levels of `/` at most (None:
        any), not in or below a directory it could not list. `gone=False`: the superseded
        files only (a pass over every recorded file spared: a run without `--delete`)."""
        with self._connection() as db:
            new = listed_newest(db)
            old_years = superseded(db, dest, new)
            if not gone:
                return Deletions((), old_years, None)
            sight = sight_condition(db, depth)
            recorded = db.execute(f"SELECT count(*) FROM main.files f WHERE {DATA} AND "
                                  f"{sight}").fetchone()[0]
            listed = db.execute("SELECT count(*) FROM staged WHERE listed").fetchone()[0]
            # a file still listed but not landing (a clash dropped it: `_drop_clashes`) is
            # on the server: never gone
            gone_names = tuple(r[0] for r in db.execute(
                f"SELECT f.name FROM main.files f WHERE {DATA} AND f.name NOT IN "
                "(SELECT name FROM staged WHERE listed OR (kind = 'file' AND NOT safe)) "
                "AND NOT coalesce(pubmed_year(f.name)"
                f" < ?, 0) AND selected_name(f.name) AND {sight} ORDER BY f.name", (new,)))
        return Deletions(gone_names, old_years,
                         refusal(len(gone_names), recorded, listed, limit))

    def in_sight(self, depth: int | None) -> Callable[[str], bool]:
        """Whether the listing could have shown a name (`_sight`), for names outside the
        manifest (blocking)."""
        with self._connection() as db:
            seen = sight_test(db, depth)
        return (lambda name: True) if seen is None else (lambda name: bool(seen(name)))




def _utf8(entry: RemoteEntry) -> bool:
    """Whether an entry's name is UTF-8 (read with surrogateescape, a name that is not
    holds lone surrogates): one that is not cannot be kept in the manifest, and is skipped
    with a warning, as an unsafe name is."""
    try:
        entry.name.encode()
    except UnicodeEncodeError:
        log.warning("skipping entry %r: its name is not UTF-8", entry.name)
        return False
    return True


def _safe(entry: RemoteEntry) -> bool:
    reason = unsafe_path_reason(entry.name)
    if reason is not None:
        log.warning("skipping entry %r: %s", entry.name, reason)
    return reason is None


class StagedFiles:
    """A plan's files as the staged listing holds them: iterated batch by batch in load
    order, never all in memory; valid while the run's manifest is open."""

    def __init__(self, staging: Staging, counts: PlanCounts) -> None:
        self.staging = staging
        self.counts = counts

    def __iter__(self) -> Iterator[PlannedFile]:
        return self.staging.files()

    def __len__(self) -> int:
        return self.counts.of("fetch", "check", "skip")

    def __contains__(self, item: object) -> bool:
        return any(f == item for f in self)

    def materialized(self) -> tuple[PlannedFile, ...]:
        return tuple(self)
