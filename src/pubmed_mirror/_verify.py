"""`verify`: re-hash what DEST holds against NCBI's .md5 files and the manifest."""

from __future__ import annotations

import errno
import logging
import os
import stat
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import anyio

from ._digest import Checksum, file_checksum, file_md5
from ._errors import DatasetError, LocalFileError, describe, ungrouped
from ._layout import open_read
from ._plan import CHECKSUM_SUFFIX
from ._pubmed import file_order, parse_md5_file
from ._state import DestLock, Manifest, ManifestEntry
from ._tree import behind_link, local_tree, unsafe_path_reason

__all__ = ["FileCheck", "VerifyReport", "verify"]

log = logging.getLogger("pubmed_mirror")

Verdict = Literal["ok", "unchecked", "corrupt", "missing"]


@dataclass(frozen=True, slots=True)
class FileCheck:
    """One file's verdict. `unchecked`: present with the recorded size, but no digest to
    check it against (no NAME.md5, no MD5 in the manifest, no server checksum it can
    compute: the reason says which)."""

    name: str
    verdict: Verdict
    reason: str = ""
    md5: str | None = None  # the MD5 an "ok" file was found to have, when it was checked so


@dataclass(frozen=True, slots=True)
class VerifyReport:
    files: tuple[FileCheck, ...]
    seconds: float
    # why the verdicts could not be recorded in the manifest (a full disk, say); None when
    # they were, or when DEST is read-only (nothing is recorded there, by design)
    record_error: str | None = None

    def with_verdict(self, *verdicts: Verdict) -> tuple[FileCheck, ...]:
        return tuple(f for f in self.files if f.verdict in verdicts)

    @property
    def ok(self) -> bool:
        return not self.with_verdict("corrupt", "missing")

    @property
    def counts(self) -> dict[Verdict, int]:
        """How many files got each verdict."""
        return {v: len(self.with_verdict(v)) for v in ("ok", "unchecked", "corrupt", "missing")}


def _names(dest: Path, rows: dict[str, ManifestEntry]) -> list[str]:
    """The data files to check: those in the manifest, and any NAME beside a NAME.md5 (a
    link too, to be named as not ours)."""
    local = {name for name, st in local_tree(dest)
             if stat.S_ISREG(st.st_mode) or stat.S_ISLNK(st.st_mode)}
    names = {n for n in rows
             if not (n.endswith(CHECKSUM_SUFFIX) and n[: -len(CHECKSUM_SUFFIX)] in rows)}
    names |= {n[: -len(CHECKSUM_SUFFIX)] for n in local if n.endswith(CHECKSUM_SUFFIX)}
    names |= {n for n in local if n + CHECKSUM_SUFFIX in local}
    return sorted((n for n in names if unsafe_path_reason(n) is None), key=file_order)


def _expected(dest: Path, name: str, row: ManifestEntry | None,
              sidecar_recorded: bool) -> str | None:
    """The digest NAME must have; ValueError when the sources disagree or are unreadable.
    A NAME.md5 beside a file the manifest vouches for counts only when the mirror wrote it
    too (recorded): one the user put there is not the server's word (an S3 object's is its
    ETag) and would fail the file at every verify, and have it fetched again each run."""
    sidecar = dest / (name + CHECKSUM_SUFFIX)
    data = _sidecar(sidecar) if row is None or sidecar_recorded else None
    from_file = parse_md5_file(data, name) if data is not None else None
    from_manifest = row.md5 if row is not None else None
    if from_file and from_manifest and from_file != from_manifest:
        raise ValueError(f"{sidecar.name} says {from_file}, the manifest {from_manifest}")
    return from_file or from_manifest


def _sidecar(path: Path) -> bytes | None:
    """NAME.md5's bytes, if DEST has it (a name too long for the file system cannot be
    there); a ValueError for a link, which is never read through."""
    try:
        mode = path.lstat().st_mode
    except OSError as exc:
        if exc.errno in (errno.ENOENT, errno.ENAMETOOLONG):
            return None
        raise
    if stat.S_ISLNK(mode):
        raise ValueError(f"{path.name} is a symbolic link")
    if not stat.S_ISREG(mode):
        return None
    with open_read(path) as f:
        return f.read()


def check_file(dest: Path, name: str, row: ManifestEntry | None,
               sidecar_recorded: bool = False) -> FileCheck:
    """Hash one file and judge it (blocking). `sidecar_recorded`: the manifest records its
    NAME.md5 (`_expected`)."""
    path = dest / name
    if behind_link(dest, name):
        return FileCheck(name, "corrupt", "a directory on its way is a symbolic link (or not "
                                          "a directory), not one this mirror wrote")
    try:
        st = path.lstat()
    except FileNotFoundError:
        return FileCheck(name, "missing", "in the manifest but not in DEST")
    if not stat.S_ISREG(st.st_mode):  # a link leads out of what we wrote: never hashed
        what = "a symbolic link" if stat.S_ISLNK(st.st_mode) else "not a regular file"
        return FileCheck(name, "corrupt", f"{what}, not a file this mirror wrote")
    size = st.st_size
    if row is not None and size != row.size:
        return FileCheck(name, "corrupt", f"{size} bytes, the manifest says {row.size}")
    try:
        expected = _expected(dest, name, row, sidecar_recorded)
    except (ValueError, OSError) as exc:
        return FileCheck(name, "corrupt", f"checksum unreadable: {exc}")
    if expected is None:
        return _by_checksum(path, name, row)
    try:
        actual = file_md5(path)
    except OSError as exc:
        return FileCheck(name, "corrupt", f"unreadable: {exc.strerror or exc}")
    if actual != expected:
        return FileCheck(name, "corrupt", f"MD5 {actual}, expected {expected}")
    return FileCheck(name, "ok", md5=actual)


def _by_checksum(path: Path, name: str, row: ManifestEntry | None) -> FileCheck:
    """No MD5: the server's own checksum the manifest recorded, when it can be computed
    (S3's full-object SHA-256, SHA-1, CRC32); otherwise only the size was checked."""
    try:
        checksum = Checksum.parse(row.checksum) if row and row.checksum else None
    except ValueError as exc:
        return FileCheck(name, "corrupt", f"checksum unreadable: {exc}")
    if checksum is None or not checksum.checkable:
        why = checksum.why_unchecked() if checksum else "no MD5 or checksum known"
        return FileCheck(name, "unchecked", f"only its size checked: {why}")
    try:
        actual = checksum.encode(file_checksum(path, checksum.algorithm))
    except OSError as exc:
        return FileCheck(name, "corrupt", f"unreadable: {exc.strerror or exc}")
    if actual != checksum.value:
        return FileCheck(name, "corrupt",
                         f"{checksum.algorithm.upper()} {actual}, expected {checksum.value}")
    return FileCheck(name, "ok")


async def verify(
    dest: str | os.PathLike[str],
    *,
    on_file: Callable[[FileCheck], None] | None = None,
    workers: int = 2,
) -> VerifyReport:
    """Re-hash every file of DEST that has a NAME.md5 or a manifest record, `workers` at a
    time. The manifest learns the verdicts (when DEST is writable; verify also works on a
    read-only DEST): a passing file's `verified_at` is updated, and a corrupt or missing
    file's record is marked bad, so that the next mirror fetches it again. When the manifest
    cannot be written (a full disk) every file is still checked and reported, and the
    report's `record_error` says why the verdicts (from then on) were not recorded."""
    dest_path = Path(dest)
    if not await anyio.Path(dest_path).is_dir():
        raise DatasetError(f"{dest_path} holds no mirror (not a directory)")  # (as status)
    started = time.monotonic()
    # a mirror running into DEST would race with us: refuse, before reading anything
    with DestLock(dest_path, shared=not Manifest.can_write(dest_path)):
        manifest, error = _open_manifest(dest_path)
        with manifest:
            verdicts = _Verdicts(manifest, error)
            checks = await _check_all(dest_path, verdicts, workers, on_file)
            # a verdict lost in a power cut would let a bad file be skipped
            await anyio.to_thread.run_sync(verdicts.checkpoint)
    return VerifyReport(tuple(checks), time.monotonic() - started, verdicts.error)


def _open_manifest(dest: Path) -> tuple[Manifest, str | None]:
    """The manifest, writable when it can be; on a full disk (no room even for SQLite's
    shared-memory file) opened read-only, with the reason nothing will be recorded."""
    try:
        return Manifest.open(dest, create=False), None
    except LocalFileError as exc:
        if not Manifest.can_write(dest):
            raise
        log.warning("%s: the verdicts are not recorded (the files are still checked)", exc)
        return Manifest.open(dest, create=False, read_only=True), describe(exc)


class _Verdicts:
    """Records verdicts in the manifest until a write fails (a full disk, say): from then on
    the files are still checked and reported, and `error` says why they were not recorded.
    Thread-safe."""

    def __init__(self, manifest: Manifest, error: str | None) -> None:
        self.manifest = manifest
        self.error = error
        self._lock = threading.Lock()

    @property
    def recording(self) -> bool:
        return self.manifest.writable and self.error is None

    def learn(self, check: FileCheck) -> None:
        if check.verdict == "ok":
            self._write(self.manifest.mark_verified, check.name, time.time(), check.md5)
        elif check.verdict in ("corrupt", "missing"):
            self._write(self.manifest.mark_bad, check.name, check.reason)

    def checkpoint(self) -> None:
        self._write(self.manifest.checkpoint)

    def _write(self, write: Callable[..., None], *args: object) -> None:
        if not self.recording:
            return
        try:
            write(*args)
        except LocalFileError as exc:
            with self._lock:
                first, self.error = self.error is None, self.error or describe(exc)
            if first:
                log.warning("%s: the verdicts are not recorded (the files are still checked)",
                            self.error)


async def _check_all(dest: Path, verdicts: _Verdicts, workers: int,
                     on_file: Callable[[FileCheck], None] | None) -> list[FileCheck]:
    rows = {e.name: e for e in verdicts.manifest.entries()}
    names = await anyio.to_thread.run_sync(_names, dest, rows)
    checks: dict[str, FileCheck] = {}
    limiter = anyio.CapacityLimiter(workers)

    async def one(name: str) -> None:
        check = await anyio.to_thread.run_sync(check_file, dest, name, rows.get(name),
                                               name + CHECKSUM_SUFFIX in rows,
                                               limiter=limiter)
        if verdicts.recording and name in rows:
            await anyio.to_thread.run_sync(verdicts.learn, check)
        checks[name] = check
        if on_file is not None:
            on_file(check)

    with ungrouped():
        async with anyio.create_task_group() as tg:
            for name in names:
                tg.start_soon(one, name)
    return [checks[n] for n in names]
