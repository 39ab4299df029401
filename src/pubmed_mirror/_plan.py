"""The plan: from a listing and what DEST holds, which files to fetch, check or leave alone."""

from __future__ import annotations

import contextlib
import errno
import itertools
import logging
import os
import re
import shutil
import stat
import tempfile
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from fnmatch import fnmatchcase
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from ._errors import LocalFileError
from ._layout import OWN_SUFFIXES, part_path, segment_files
from ._pubmed import file_order
from ._state import STATE_DIR, Manifest, ManifestEntry, check_state_dir
from ._transfer import RemoteFile, resumable
from ._transport import RemoteEntry

if TYPE_CHECKING:
    from ._lifecycle import Changeover, Deletions
    from ._staging import PlanCounts

__all__ = [
    "MirrorPlan",
    "PlannedFile",
    "action_of",
    "part_length",
    "Selection",
    "check_writable",
    "is_current",
    "make_plan",
    "select_files",
    "unreadable_entries",
    "unsafe_name_reason",
]

log = logging.getLogger("pubmed_mirror")

CHECKSUM_SUFFIX = ".md5"
# C0 and C1 controls, and the bidi marks and overrides that make a name display as another
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")

Action = Literal["fetch", "check", "skip"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Selection:
    include: tuple[str, ...] = ()  # globs; a file must match one (when any is given)
    exclude: tuple[str, ...] = ()  # globs; a file must match none
    newest: int | None = None  # the last N by PubMed file number
    max_files: int | None = None  # then the first N, in load order


@dataclass(frozen=True, slots=True)
class PlannedFile:
    """One data file and what to do with it.

    `checksum` is its NAME.md5 on the server, which travels with it. `action`: fetch it;
    check the local copy (size and mtime match but the manifest cannot vouch for it: confirm
    by MD5, fetch if that fails); or skip it (the manifest vouches for it). `have` is the
    length of a NAME.part a fetch would resume from.
    """

    entry: RemoteEntry
    checksum: RemoteEntry | None
    action: Action
    have: int = 0

    @property
    def name(self) -> str:
        return self.entry.name

    @property
    def size(self) -> int:
        return self.entry.size or 0


@dataclass(frozen=True, slots=True)
class MirrorPlan:
    """What a run would do. `files`: every selected file in load order; a run's own plan
    iterates them from the staged listing (`_staging`) batch by batch, and `counts` then
    gives their numbers without iterating (`plan_mirror` returns them as a tuple)."""

    files: Collection[PlannedFile]
    # listing lines we cannot read that may name a selected file: the run fails on each
    unreadable: tuple[RemoteEntry, ...] = ()
    changeover: Changeover | None = None  # a newer PubMed year is listed than DEST holds
    deletions: Deletions | None = None  # as DEST stands before the run (see `_lifecycle`)
    counts: PlanCounts | None = None

    def with_action(self, *actions: Action) -> tuple[PlannedFile, ...]:
        return tuple(f for f in self.files if f.action in actions)

    def count(self, *actions: Action) -> int:
        """How many files have these actions."""
        if self.counts is not None:
            return self.counts.of(*actions)
        return len(self.with_action(*actions))

    @property
    def bytes_to_fetch(self) -> int:
        """Bytes a run would receive at most (checks that pass receive nothing)."""
        if self.counts is not None:
            return self.counts.bytes_to_fetch
        return sum(f.size - f.have for f in self.with_action("fetch", "check"))


def unsafe_name_reason(name: str) -> str | None:
    """Why a name from the server must not become a local path (None when it is safe)."""
    if not name or name in (".", ".."):
        return "empty or dot name"
    if "/" in name or "\\" in name:
        return "contains a path separator"
    if ".." in name:
        return "contains '..'"
    if _CONTROL.search(name):
        return "contains NUL, control or bidi characters"
    # exactly the names we may create or remove in DEST: NAME + a suffix of ours, and the
    # state directory (check_writable's probe takes a random name no file has: O_EXCL)
    if any(name.endswith(s) and name != s for s in OWN_SUFFIXES):
        return "clashes with our partial-file names"
    if name == STATE_DIR:
        return "clashes with our state directory"
    return None


def _safe_files(entries: Sequence[RemoteEntry]) -> list[RemoteEntry]:
    safe = []
    for entry in entries:
        if entry.kind != "file":
            if entry.kind == "link":
                log.warning("skipping symlink entry %r", entry.name)
            continue
        reason = unsafe_name_reason(entry.name)
        if reason is not None:
            log.warning("skipping entry %r: %s", entry.name, reason)
            continue
        safe.append(entry)
    return safe


def _selected(name: str, selection: Selection) -> bool:
    return matches(name, selection.include, selection.exclude)


def matches(name: str, include: Sequence[str], exclude: Sequence[str]) -> bool:
    """The name matches one of `include` (when any) and none of `exclude`."""
    if include and not any(fnmatchcase(name, g) for g in include):
        return False
    return not any(fnmatchcase(name, g) for g in exclude)


def select_files(entries: Sequence[RemoteEntry], selection: Selection
                 ) -> list[tuple[RemoteEntry, RemoteEntry | None]]:
    """The data files to consider, in PubMed load order, each with its NAME.md5 if listed.

    A NAME.md5 whose NAME is listed is never a file of its own: it goes with NAME when NAME
    is selected, and not at all otherwise. Symlinks and unsafe names are dropped (logged).
    """
    files = {e.name: e for e in _safe_files(entries)}
    checksums = {n: files[n + CHECKSUM_SUFFIX] for n in files if n + CHECKSUM_SUFFIX in files}
    companions = {c.name for c in checksums.values()}
    chosen = sorted((e for e in files.values()
                     if e.name not in companions and _selected(e.name, selection)),
                    key=lambda e: file_order(e.name))
    if selection.newest is not None:
        chosen = chosen[max(0, len(chosen) - selection.newest):] if selection.newest else []
    if selection.max_files is not None:
        chosen = chosen[: selection.max_files]
    return [(e, checksums.get(e.name)) for e in chosen]


def unreadable_entries(entries: Sequence[RemoteEntry], selection: Selection
                       ) -> tuple[RemoteEntry, ...]:
    """The "unreadable" listing lines that may name a selected file or the NAME.md5 of one
    (`--newest` and `--max-files` aside); the others are only logged. In every listing form
    we know the name ends the line, so any tail of it after a space may be the name."""
    found = []
    for entry in entries:
        if entry.kind != "unreadable":
            continue
        line = entry.name
        tails = [line, *(line[m.end():] for m in re.finditer(r"\s+", line))]
        if any(_selected(t, selection) or (t.endswith(CHECKSUM_SUFFIX) and
                                           _selected(t[: -len(CHECKSUM_SUFFIX)], selection))
               for t in tails if t):
            found.append(entry)
        else:
            log.warning("ignoring a listing line we cannot read (it cannot name a selected "
                        "file): %r", line)
    return tuple(found)


def is_current(local: Path | str, entry: RemoteEntry) -> bool:
    """The local copy is a regular file (a link is not our copy, wherever it leads) with
    the remote size and (when known) the remote mtime."""
    try:
        st = os.lstat(local)
    except OSError:
        return False
    if not stat.S_ISREG(st.st_mode) or entry.size is None or st.st_size != entry.size:
        return False
    return entry.mtime is None or same_time(st.st_mtime, entry)


def same_time(mtime: float | None, entry: RemoteEntry) -> bool:
    """`mtime` (stamped from an earlier listing or MDTM) is the listed time, read at the
    listing's resolution: an `ls -l` line shows `Nov 29 12:00` while the file is recent and
    `Nov 29  2026` (the day only) once it is six months old; that is not a new version."""
    if mtime is None or entry.mtime is None:
        return mtime == entry.mtime
    return entry.mtime - 1 < mtime < entry.mtime + max(entry.mtime_resolution, 1.0)


def _vouched(row: ManifestEntry | None, entry: RemoteEntry) -> bool:
    """The manifest recorded this file complete at exactly the remote size and mtime, and
    `verify` has not found it wrong since."""
    return (row is not None and row.bad is None and entry.size is not None
            and row.size == entry.size and same_time(row.mtime, entry))


def part_length(local: Path, entry: RemoteEntry) -> int:
    """What a fetch would resume from: NAME.part of this version and its segments."""
    if entry.size is None:
        return 0
    part = part_path(local)
    have = resumable(part, RemoteFile(entry.name, entry.size, entry.mtime))
    if have is None:
        return 0
    with contextlib.suppress(OSError):
        found = [path.lstat() for start, path in segment_files(part) if start >= have]
        have += sum(st.st_size for st in found if stat.S_ISREG(st.st_mode))  # links: not ours
    return have


def action_of(dest: Path, entry: RemoteEntry, checksum: RemoteEntry | None,
              row: ManifestEntry | None, checksum_row: ManifestEntry | None,
              verify: bool) -> Action:
    """What a selected file needs, given its manifest row and its NAME.md5's (blocking:
    stats the local copies; paths as strings: pathlib cost more than the stat)."""
    if not is_current(os.path.join(dest, entry.name), entry):
        return "fetch"
    if not _vouched(row, entry):
        return "check"
    if checksum is None:
        return "skip"
    if verify and row is not None and row.md5 is None:
        return "check"  # recorded by a --no-verify run: confirm it by MD5 now
    if _vouched(checksum_row, checksum) and is_current(os.path.join(dest, checksum.name),
                                                       checksum):
        return "skip"
    return "check"


def make_plan(dest: Path, manifest: Manifest,
              files: Sequence[tuple[RemoteEntry, RemoteEntry | None]], *,
              verify: bool = True, unreadable: Sequence[RemoteEntry] = ()) -> MirrorPlan:
    """What to do with each selected file, given DEST and its manifest (blocking: stats).
    With `verify`, a file recorded without its MD5 is checked against NAME.md5.
    `unreadable`: the listing lines that may name a selected file (`unreadable_entries`)."""
    planned = []
    for entry, checksum in files:
        action = action_of(dest, entry, checksum, manifest.get(entry.name),
                           None if checksum is None else manifest.get(checksum.name), verify)
        have = part_length(dest / entry.name, entry) if action == "fetch" else 0
        planned.append(PlannedFile(entry, checksum, action, have))
    return MirrorPlan(tuple(planned), tuple(unreadable))


def check_writable(dest: Path) -> None:
    """Fail before any network I/O when DEST cannot hold our files. A DEST that does not
    exist yet is not created here: its nearest existing parent must be a writable directory.
    A state directory (or lock, or manifest) that is a link out of DEST is refused."""
    try:
        if dest.exists() or dest.is_symlink():
            with tempfile.NamedTemporaryFile(dir=dest, prefix=".pubmed-mirror-probe-"):
                pass
            check_state_dir(dest)
            return
        parent = next(p for p in dest.absolute().parents if p.exists())
        if not parent.is_dir():
            raise NotADirectoryError(errno.ENOTDIR, f"{parent} is not a directory")
        if not os.access(parent, os.W_OK | os.X_OK):
            raise PermissionError(errno.EACCES, f"cannot create it in {parent}")
    except OSError as exc:
        raise LocalFileError(f"destination {dest} is not writable: {exc.strerror or exc}") from exc


def create_dest(dest: Path) -> list[Path]:
    """Create DEST (and its parents) if needed: the directories this made, DEST last; none
    when DEST was there (or someone else made it meanwhile)."""
    if dest.is_dir():
        return []
    dest = dest.absolute()
    missing = [dest, *itertools.takewhile(lambda p: not p.exists() and not p.is_symlink(),
                                          dest.parents)]
    made = []
    for folder in reversed(missing):
        try:
            folder.mkdir()
        except FileExistsError:  # made by someone else meanwhile: not ours to remove
            continue
        except OSError as exc:
            raise LocalFileError(f"cannot create {dest}: {exc.strerror or exc}") from exc
        made.append(folder)
    return made if made and made[-1] == dest else []


def remove_unused_dest(made: Sequence[Path]) -> None:
    """Undo `create_dest`, which made the directories `made` (DEST last), for a run that put
    no file into DEST (say the listing failed): DEST goes, then each parent it made, as long
    as they are empty."""
    dest = made[-1]
    with contextlib.suppress(OSError):
        if all(p.name == STATE_DIR for p in dest.iterdir()):
            shutil.rmtree(dest / STATE_DIR, ignore_errors=True)
            for folder in reversed(made):
                folder.rmdir()  # stops at one that someone else has put something in
