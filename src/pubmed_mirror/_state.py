"""What DEST holds, across runs: the manifest (SQLite) and the lock, in DEST/.pubmed-mirror/."""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import sqlite3
import stat
import threading
import urllib.parse
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

from ._errors import DestinationBusy, LocalFileError

__all__ = ["STATE_DIR", "ConsumerCursor", "DestLock", "ListedFile", "Manifest",
           "ManifestEntry", "RunRecord", "check_manifest_path", "check_state_dir",
           "make_state_dir"]

log = logging.getLogger("pubmed_mirror")

STATE_DIR = ".pubmed-mirror"  # names from the server may not start with this

_SCHEMA = """
CREATE TABLE IF NOT EXISTS files (
    name TEXT PRIMARY KEY,
    size INTEGER NOT NULL,      -- remote size, equal to the local file's
    mtime REAL,                 -- remote mtime (POSIX seconds), stamped on the local file
    md5 TEXT,                   -- hex digest the file was checked against, NULL if none
    fetched_at REAL NOT NULL,   -- when the file became final
    verified_at REAL,           -- when its MD5 last matched (fetch or `verify`)
    bad TEXT,                   -- why `verify` found the local copy wrong; NULL if it did not
    etag TEXT,                  -- the remote version's strong ETag (S3's), NULL if none
    checksum TEXT,              -- the server's own checksum, ALGORITHM:VALUE (S3's), or NULL
    shown REAL                  -- the time the listing showed, when it was not the remote
                                -- mtime (a web page on its server's local time), or NULL
)
"""
_COLUMNS = "name, size, mtime, md5, fetched_at, verified_at, bad, etag, checksum, shown"
_COLUMN_NAMES = _COLUMNS.split(", ")  # each a ManifestEntry field, in its order
_MARKS = ", ".join("?" * len(_COLUMN_NAMES))
# what the dataset view (`status`, `load-order`, `ack`) needs beyond the files: see _dataset
_DATASET_TABLES = {
    # the data files (not NAME.md5) of the selection in the last successful listing
    "listing": "name TEXT PRIMARY KEY, size INTEGER, mtime REAL",
    # one row per mirror run; outcome NULL until it ends (or forever, if it was killed)
    "runs": "id INTEGER PRIMARY KEY, source TEXT, started REAL, finished REAL, "
            "outcome TEXT, detail TEXT",
    # how far each consumer has loaded (`ack`); `mirror` never touches it
    "cursors": "consumer TEXT PRIMARY KEY, year INTEGER, through TEXT, updated REAL",
    # what a metadata object said, as of its ETag then (a selection by metadata, `_select`)
    "facts": "name TEXT PRIMARY KEY, etag TEXT NOT NULL, facts TEXT NOT NULL",
}


@dataclass(frozen=True, slots=True)
class ManifestEntry:
    name: str
    size: int
    mtime: float | None
    md5: str | None
    fetched_at: float
    verified_at: float | None = None
    bad: str | None = None  # set by `verify`: the next mirror fetches the file again
    etag: str | None = None  # the version's strong ETag, when the server named one (S3)
    checksum: str | None = None  # the server's own for the object, ALGORITHM:VALUE (S3)
    shown: float | None = None  # the listed time, when a HEAD's replaced it (`_sizes`)


@dataclass(frozen=True, slots=True)
class ListedFile:
    name: str
    size: int | None
    mtime: float | None


@dataclass(frozen=True, slots=True)
class RunRecord:
    """One mirror run into DEST. `outcome`: "ok", "failed" (a file failed or was not
    recorded), "interrupted", "error" (the listing failed, or a fatal error); None while the
    run goes on, or for ever when it was killed."""

    id: int
    source: str
    started: float
    finished: float | None
    outcome: str | None
    detail: str | None


@dataclass(frozen=True, slots=True)
class ConsumerCursor:
    """How far a consumer has loaded: every file up to `through` (of `year`)."""

    consumer: str
    year: int
    through: str
    updated: float


def state_dir(dest: Path) -> Path:
    return dest / STATE_DIR


# what the state directory holds that a link must never stand in for (SQLite puts the
# journal beside the file a link points to)
_KEPT = ("lock", "manifest.sqlite", "manifest.sqlite-wal", "manifest.sqlite-shm",
         "manifest.sqlite-journal")


def check_state_dir(dest: Path) -> None:
    """Refuse a state directory, lock or manifest that is a link (it would put them outside
    DEST) or not what it should be. Refused, not replaced: the link may be the user's, and
    replacing it would silently drop the manifest it leads to."""
    folder = state_dir(dest)
    if _checked(folder, stat.S_IFDIR):
        for name in _KEPT:
            _checked(folder / name, stat.S_IFREG)


def _checked(path: Path, kind: int) -> bool:
    """Whether `path` exists; a LocalFileError if it is a link or not of `kind`."""
    try:
        mode = path.lstat().st_mode
    except (FileNotFoundError, NotADirectoryError):  # (DEST is a file: said elsewhere)
        return False
    except OSError as exc:
        raise LocalFileError(f"cannot use {path}: {exc.strerror or exc}") from exc
    if stat.S_ISLNK(mode):
        raise LocalFileError(f"{path} is a symbolic link: pubmed-mirror keeps its state "
                             "inside DEST and follows no link out of it; remove the link")
    if stat.S_IFMT(mode) != kind:
        what = "a directory" if kind == stat.S_IFDIR else "a regular file"
        raise LocalFileError(f"{path} is not {what}: remove it")
    return True


def make_state_dir(dest: Path, sub: str | None = None) -> Path:
    """DEST's state directory (or `sub` in it), created when missing (DEST too), never
    through a link. A link or file where `sub` should be is replaced by a directory: what
    is kept there (parts, their records, segments) is only ever started again."""
    folder = state_dir(dest)
    try:
        if not _checked(folder, stat.S_IFDIR):
            folder.mkdir(parents=True, exist_ok=True)
            _checked(folder, stat.S_IFDIR)  # made meanwhile? exist_ok would follow a link
        if sub is None:
            return folder
        folder = folder / sub
        try:
            folder.mkdir()
        except FileExistsError:
            if stat.S_ISDIR(folder.lstat().st_mode):
                return folder
            log.warning("%s is not a directory: replaced by one", folder)
            folder.unlink()
            folder.mkdir()
    except OSError as exc:
        raise LocalFileError(f"cannot create {folder}: {exc.strerror or exc}") from exc
    return folder


class Manifest:
    """One row per final file in DEST, written after the file became final.

    SQLite in WAL mode with synchronous=NORMAL: never corrupted by a crash, but a power loss
    may forget the last records (an fsync per record cost more than a small file's whole
    transfer). Forgetting is safe: the manifest only ever vouches for a local file whose size
    and mtime still match the listing, and a file it does not know is confirmed by MD5 (or
    fetched), never trusted blindly. Thread-safe.
    """

    def __init__(self, path: Path, *, create: bool = True, read_only: bool = False) -> None:
        self.path = path
        self._lock = threading.Lock()
        # without `create`: a missing manifest reads as an empty one (nothing is written), and
        # one we may not write (read-only DEST, or `read_only`) is opened read-only:
        # `writable` is then False
        check_state_dir(path.parent.parent)
        self.writable = not read_only and (create or _can_write(path))
        try:
            if create:
                make_state_dir(path.parent.parent)
            if self.writable:
                self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
                self._db.execute("PRAGMA journal_mode=WAL")
                self._db.execute("PRAGMA synchronous=NORMAL")
                self._db.execute(_SCHEMA)
                self._add_bad_column()
                _create_dataset_tables(self._db)
            else:
                self._db = self._read_only(path)
            # an older manifest opened read-only lacks the dataset tables: they read as empty
            self._tables = {row[0] for row in self._db.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table'")}
            # an older manifest opened read-only lacks `bad`, `etag`, `checksum` or `shown`: NULL
            known = {row[1] for row in self._db.execute("PRAGMA table_info(files)")}
            self._columns = ", ".join(c if c in known else "NULL" for c in _COLUMN_NAMES)
        except (OSError, sqlite3.Error) as exc:
            raise LocalFileError(f"cannot open the manifest {path}: {_reason(exc)}") from exc

    def _add_bad_column(self) -> None:
        """Manifests written before the `bad` (`etag`, `checksum`, `shown`) column existed
        get it."""
        known = {row[1] for row in self._db.execute("PRAGMA table_info(files)")}
        for column, kind in (("bad", "TEXT"), ("etag", "TEXT"), ("checksum", "TEXT"),
                             ("shown", "REAL")):
            if column not in known:
                self._db.execute(f"ALTER TABLE files ADD COLUMN {column} {kind}")

    @staticmethod
    def _read_only(path: Path) -> sqlite3.Connection:
        if not path.exists():
            db = sqlite3.connect(":memory:", check_same_thread=False, isolation_level=None)
            db.execute(_SCHEMA)
            _create_dataset_tables(db)
            return db
        # a WAL database cannot be opened with mode=ro without its -shm file, which a clean
        # close removes and a read-only directory cannot get back: then read it as immutable
        uri = f"file:{urllib.parse.quote(str(path.resolve()))}"
        try:
            return _opened(f"{uri}?mode=ro")
        except sqlite3.Error:
            wal = path.with_name(path.name + "-wal")
            if wal.exists() and wal.stat().st_size > 0:
                log.warning("%s: reading the manifest without its last changes (%s was left "
                            "by a run that did not finish, and DEST is read-only)", path, wal)
            return _opened(f"{uri}?immutable=1")

    @classmethod
    def open(cls, dest: Path, *, create: bool = True, read_only: bool = False) -> Manifest:
        return cls(_manifest_path(dest), create=create, read_only=read_only)

    @staticmethod
    def can_write(dest: Path) -> bool:
        """DEST has a manifest this process may update (`open(dest, create=False)` would
        open it writable)."""
        return _can_write(_manifest_path(dest))

    def __enter__(self) -> Manifest:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        with self._lock:
            self._db.close()

    @contextlib.contextmanager
    def connection(self) -> Iterator[sqlite3.Connection]:
        """The database, held for one caller (`_staging`'s set-based queries); an SQLite
        error inside is a LocalFileError."""
        with self._lock, self._errors():
            yield self._db

    def columns(self, alias: str) -> str:
        """The select list of a ManifestEntry from `files` (as `alias`)."""
        return ", ".join(c if c == "NULL" else f"{alias}.{c}"
                         for c in self._columns.split(", "))

    def get(self, name: str) -> ManifestEntry | None:
        with self._lock:
            row = self._db.execute(f"SELECT {self._columns} FROM files WHERE name = ?",
                                   (name,)).fetchone()
        return None if row is None else ManifestEntry(*row)

    def holds_below(self, folder: str) -> bool:
        """Whether a file is recorded below the directory `folder` (`folder/...`)."""
        with self._lock:
            return self._db.execute("SELECT 1 FROM files WHERE name > ? AND name < ? LIMIT 1",
                                    (folder + "/", folder + "0")).fetchone() is not None

    def entries(self) -> list[ManifestEntry]:
        with self._lock:
            rows = self._db.execute(f"SELECT {self._columns} FROM files ORDER BY name"
                                    ).fetchall()
        return [ManifestEntry(*row) for row in rows]

    def record(self, entry: ManifestEntry) -> None:
        with self._lock, self._errors():
            self._db.execute(f"INSERT OR REPLACE INTO files ({_COLUMNS}) VALUES ({_MARKS})",
                             tuple(getattr(entry, column) for column in _COLUMN_NAMES))

    def forget(self, *names: str) -> None:
        """Remove these files' rows (their files were deleted), in one statement."""
        marks = ", ".join("?" * len(names))
        with self._lock, self._errors():
            self._db.execute(f"DELETE FROM files WHERE name IN ({marks})", names)

    def mark_verified(self, name: str, when: float, md5: str | None = None) -> None:
        """`verify` found the local copy right (`md5`: by that MD5, now recorded)."""
        with self._lock, self._errors():
            self._db.execute("UPDATE files SET verified_at = ?, bad = NULL, md5 = coalesce(?, "
                             "md5) WHERE name = ?", (when, md5, name))

    def checkpoint(self) -> None:
        """Make every record so far durable (the WAL is synced, then copied in)."""
        with self._lock, self._errors():
            self._db.execute("PRAGMA wal_checkpoint(FULL)")

    def mark_bad(self, name: str, reason: str) -> None:
        """`verify` found the local copy wrong: the manifest no longer vouches for it."""
        with self._lock, self._errors():
            self._db.execute("UPDATE files SET bad = ? WHERE name = ?", (reason, name))

    def delete(self, name: str) -> None:
        """NAME is no longer in DEST: forget its row."""
        with self._lock, self._errors():
            self._db.execute("DELETE FROM files WHERE name = ?", (name,))

    # -- the dataset view's tables (see _dataset) ------------------------------------------

    def replace_listing(self, files: Iterable[ListedFile]) -> None:
        """The last successful listing's data files, instead of the previous ones (whole)."""
        with self._lock, self._errors(), self._transaction():
            self._db.execute("DELETE FROM listing")
            self._db.executemany("INSERT INTO listing (name, size, mtime) VALUES (?, ?, ?)",
                                 ((f.name, f.size, f.mtime) for f in files))

    def listing(self) -> list[ListedFile]:
        return [ListedFile(*row) for row in self._select("listing", "name, size, mtime")]

    def start_run(self, source: str, started: float) -> int:
        """A run begins: its row, with no outcome yet; returns its id."""
        with self._lock, self._errors():
            cursor = self._db.execute("INSERT INTO runs (source, started) VALUES (?, ?)",
                                      (source, started))
        assert cursor.lastrowid is not None
        return cursor.lastrowid

    def finish_run(self, run_id: int, finished: float, outcome: str,
                   detail: str | None) -> None:
        with self._lock, self._errors():
            self._db.execute("UPDATE runs SET finished = ?, outcome = ?, detail = ? "
                             "WHERE id = ?", (finished, outcome, detail, run_id))

    def last_run(self) -> RunRecord | None:
        rows = self._select("runs", "id, source, started, finished, outcome, detail",
                            "ORDER BY id DESC LIMIT 1")
        return RunRecord(*rows[0]) if rows else None

    def get_cursor(self, consumer: str) -> ConsumerCursor | None:
        rows = self._select("cursors", "consumer, year, through, updated",
                            "WHERE consumer = ?", (consumer,))
        return ConsumerCursor(*rows[0]) if rows else None

    def set_cursor(self, cursor: ConsumerCursor) -> None:
        with self._lock, self._errors():
            self._db.execute("INSERT OR REPLACE INTO cursors (consumer, year, through, "
                             "updated) VALUES (?, ?, ?, ?)",
                             (cursor.consumer, cursor.year, cursor.through, cursor.updated))

    def facts(self, names: Sequence[str]) -> dict[str, tuple[str, str]]:
        """What each of these metadata objects said when last read: (its ETag, the facts)."""
        marks = ", ".join("?" * len(names))
        with self._errors():  # (read on every listing page: a LocalFileError, one line)
            rows = self._select("facts", "name, etag, facts", f"WHERE name IN ({marks})",
                                tuple(names))
        return {name: (etag, facts) for name, etag, facts in rows}

    def keep_facts(self, rows: Sequence[tuple[str, str, str]]) -> None:
        """Remember what metadata objects said: (name, ETag, facts) each."""
        if rows and self.writable:
            with self._lock, self._errors():
                self._db.executemany("INSERT OR REPLACE INTO facts VALUES (?, ?, ?)", rows)

    def _select(self, table: str, columns: str, tail: str = "",
                args: tuple[object, ...] = ()) -> list[Any]:
        if table not in self._tables:
            return []
        with self._lock:
            return self._db.execute(f"SELECT {columns} FROM {table} {tail}", args).fetchall()

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[None]:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")


    @contextlib.contextmanager
    def _errors(self) -> Iterator[None]:
        try:
            yield
        except sqlite3.Error as exc:
            raise LocalFileError(f"cannot write the manifest {self.path}: {_reason(exc)}"
                                 ) from exc


# SQLite's names for a full disk: its database or log, or its shared-memory file
_DISK_FULL = ("SQLITE_FULL", "SQLITE_IOERR_SHMSIZE")


def _reason(exc: OSError | sqlite3.Error) -> str:
    """SQLite's message, saying "disk full" when that is what it means ("disk I/O error" is
    all it says when the shared-memory file finds no space)."""
    if isinstance(exc, sqlite3.Error) and getattr(exc, "sqlite_errorname", "") in _DISK_FULL:
        return f"disk full ({exc})"
    return str(exc)


def _create_dataset_tables(db: sqlite3.Connection) -> None:
    for table, columns in _DATASET_TABLES.items():
        db.execute(f"CREATE TABLE IF NOT EXISTS {table} ({columns})")


def _manifest_path(dest: Path) -> Path:
    return state_dir(dest) / "manifest.sqlite"


# the longest full path SQLite opens a database at (its unix VFS: 512 bytes, less room for
# the "-journal" it may add; measured with SQLite 3.40); a longer one it refuses with no
# more than "unable to open database file"
_MANIFEST_PATH_MAX = 504


def check_manifest_path(dest: Path) -> None:
    """Refuse a DEST whose manifest's path (links resolved, as SQLite does) is too long for
    SQLite to open, before anything is made or asked."""
    path = _manifest_path(Path(os.path.realpath(dest)))
    size = len(os.fsencode(path))
    if size > _MANIFEST_PATH_MAX:
        raise LocalFileError(f"destination {dest} has too long a path: SQLite cannot open "
                             f"the manifest there ({size} bytes with {STATE_DIR}/"
                             f"manifest.sqlite, at most {_MANIFEST_PATH_MAX})")


def _can_write(path: Path) -> bool:
    return path.exists() and os.access(path, os.W_OK) and os.access(path.parent, os.W_OK)


def _opened(uri: str) -> sqlite3.Connection:
    """A read-only connection that has been seen to work (sqlite opens lazily)."""
    db = sqlite3.connect(uri, uri=True, check_same_thread=False, isolation_level=None)
    try:
        db.execute("SELECT count(*) FROM files").fetchone()
    except sqlite3.Error:
        db.close()
        raise
    return db


class DestLock:
    """A lock on DEST (flock: released even if the process dies). A run that writes takes it
    exclusively; `shared` is for a reader that may not write (a read-only `verify`): it waits
    for no one, but refuses while a writer holds DEST, and needs no lock file to exist."""

    def __init__(self, dest: Path, *, shared: bool = False) -> None:
        self.path = state_dir(dest) / "lock"
        self.shared = shared
        self._fd: int | None = None

    def acquire(self) -> None:
        fd = self._open()
        if fd is None:
            return
        try:
            fcntl.flock(fd, (fcntl.LOCK_SH if self.shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 32).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise DestinationBusy(
                f"{self.path.parent.parent} is being mirrored into by another pubmed-mirror "
                f"(pid {holder}); wait for it to finish") from None
        if not self.shared:
            with contextlib.suppress(OSError):  # the pid only informs; a full disk may refuse
                os.ftruncate(fd, 0)
                os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd

    def _open(self) -> int | None:
        check_state_dir(self.path.parent.parent)
        if self.shared:  # no lock file: no run has ever written here, nothing to wait for
            try:
                return os.open(self.path, os.O_RDONLY | os.O_NOFOLLOW)
            except OSError:
                return None
        make_state_dir(self.path.parent.parent)
        try:
            return os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644)
        except OSError as exc:
            raise LocalFileError(f"cannot create the lock {self.path}: {exc.strerror}") from exc

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing drops the flock
            self._fd = None

    def __enter__(self) -> DestLock:
        self.acquire()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.release()
