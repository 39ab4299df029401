"""What DEST holds, across runs: the manifest (SQLite) and the lock, in DEST/.pubmed-mirror/."""

from __future__ import annotations

import contextlib
import fcntl
import os
import sqlite3
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from ._errors import DestinationBusy, LocalFileError

__all__ = ["STATE_DIR", "DestLock", "Manifest", "ManifestEntry"]

STATE_DIR = ".pubmed-mirror"  # names from the server may not start with this

_SCHEMA = """
CREATE TABLE IF NOT EXISTS files (
    name TEXT PRIMARY KEY,
    size INTEGER NOT NULL,      -- remote size, equal to the local file's
    mtime REAL,                 -- remote mtime (POSIX seconds), stamped on the local file
    md5 TEXT,                   -- hex digest the file was checked against, NULL if none
    fetched_at REAL NOT NULL,   -- when the file became final
    verified_at REAL            -- when its MD5 last matched (fetch or `verify`)
)
"""


@dataclass(frozen=True, slots=True)
class ManifestEntry:
    name: str
    size: int
    mtime: float | None
    md5: str | None
    fetched_at: float
    verified_at: float | None = None


def state_dir(dest: Path) -> Path:
    return dest / STATE_DIR


class Manifest:
    """One row per final file in DEST, written after the file became final.

    SQLite in WAL mode with synchronous=FULL: each record is durable once `record` returns,
    and a crash between a file's rename and its record only costs a re-check next run (the
    file is then confirmed by size, mtime and MD5, not trusted blindly). Thread-safe.
    """

    def __init__(self, path: Path, *, create: bool = True) -> None:
        self.path = path
        self._lock = threading.Lock()
        try:
            if create:
                path.parent.mkdir(parents=True, exist_ok=True)
            # without `create`, a missing manifest reads as an empty one and nothing is written
            target = str(path) if create or path.exists() else ":memory:"
            self._db = sqlite3.connect(target, check_same_thread=False, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.execute(_SCHEMA)
        except (OSError, sqlite3.Error) as exc:
            raise LocalFileError(f"cannot open the manifest {path}: {exc}") from exc

    @classmethod
    def open(cls, dest: Path, *, create: bool = True) -> Manifest:
        return cls(state_dir(dest) / "manifest.sqlite", create=create)

    def __enter__(self) -> Manifest:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def get(self, name: str) -> ManifestEntry | None:
        with self._lock:
            row = self._db.execute(
                "SELECT name, size, mtime, md5, fetched_at, verified_at FROM files"
                " WHERE name = ?", (name,)).fetchone()
        return None if row is None else ManifestEntry(*row)

    def entries(self) -> list[ManifestEntry]:
        with self._lock:
            rows = self._db.execute(
                "SELECT name, size, mtime, md5, fetched_at, verified_at FROM files"
                " ORDER BY name").fetchall()
        return [ManifestEntry(*row) for row in rows]

    def record(self, entry: ManifestEntry) -> None:
        with self._lock, self._errors():
            self._db.execute(
                "INSERT OR REPLACE INTO files VALUES (?, ?, ?, ?, ?, ?)",
                (entry.name, entry.size, entry.mtime, entry.md5, entry.fetched_at,
                 entry.verified_at))

    def mark_verified(self, name: str, when: float) -> None:
        with self._lock, self._errors():
            self._db.execute("UPDATE files SET verified_at = ? WHERE name = ?", (when, name))

    def forget(self, name: str) -> None:
        with self._lock, self._errors():
            self._db.execute("DELETE FROM files WHERE name = ?", (name,))

    @contextlib.contextmanager
    def _errors(self) -> Iterator[None]:
        try:
            yield
        except sqlite3.Error as exc:
            raise LocalFileError(f"cannot write the manifest {self.path}: {exc}") from exc


class DestLock:
    """An exclusive lock on DEST for one run (flock: released even if the process dies)."""

    def __init__(self, dest: Path) -> None:
        self.path = state_dir(dest) / "lock"
        self._fd: int | None = None

    def acquire(self) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise LocalFileError(f"cannot create the lock {self.path}: {exc.strerror}") from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 32).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise DestinationBusy(
                f"{self.path.parent.parent} is being mirrored into by another pubmed-mirror "
                f"(pid {holder}); wait for it to finish") from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd

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
