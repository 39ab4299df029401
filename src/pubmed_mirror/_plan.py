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
from ._layout import part_path, segment_files
from ._state import STATE_DIR, check_manifest_path, check_state_dir
from ._transfer import RemoteFile, resumable
from ._transport import RemoteEntry
from ._tree import SEPARATOR, unsafe_name_reason

if TYPE_CHECKING:
    from ._lifecycle import Changeover, Deletions
    from ._staging import PlanCounts

__all__ = [
    "ACTION",
    "ACTION_ALONE",
    "MirrorPlan",
    "PlannedFile",
    "Selection",
    "check_writable",
    "current_at",
    "is_current",
    "matches",
    "part_length",
    "same_time",
    "unreadable_entries",
    "unsafe_name_reason",
    "within",
]

log = logging.getLogger("pubmed_mirror")

CHECKSUM_SUFFIX = ".md5"

Action = Literal["fetch", "check", "skip"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Selection:
    include: tuple[str, ...] = ()  # globs; a file must match one (when any is given)
    exclude: tuple[str, ...] = ()  # globs; a file must match none
    newest: int | None = None  # the last N by PubMed file number
    max_files: int | None = None  # then the first N, in load order
    # names at most this many `/` deep (None: any): what a walk's --max-depth reaches, and
    # the same of a listing that is the whole tree at once (S3's prefix)
    max_depth: int | None = None


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


def selects(selection: Selection, name: str) -> bool:
    """Whether `selection` takes the file `name` (its depth and its globs)."""
    if selection.max_depth is not None and name.count(SEPARATOR) > selection.max_depth:
        return False
    return matches(name, selection.include, selection.exclude)


def matches(name: str, include: Sequence[str], exclude: Sequence[str]) -> bool:
    """The name matches one of `include` (when any) and none of `exclude`."""
    if include and not any(glob_matches(name, g) for g in include):
        return False
    return not any(glob_matches(name, g) for g in exclude)


def glob_matches(name: str, glob: str) -> bool:
    """As lftp's `mirror --include-glob`: a glob with k `/` is matched against the last k+1
    components of a nested name (`*.xml` against the file's own name, at any depth;
    `xml/*.xml` against `xml/NAME`)."""
    parts = name.split(SEPARATOR)
    return fnmatchcase(SEPARATOR.join(parts[-(glob.count(SEPARATOR) + 1):]), glob)


def unreadable_entries(entries: Sequence[RemoteEntry], selection: Selection
                       ) -> tuple[RemoteEntry, ...]:
    """The "unreadable" listing lines that may name a selected file or the NAME.md5 of one
    (`--newest` and `--max-files` aside); the others are only logged. In every listing form
    we know the name ends the line, so any tail of it after a space may be the name."""
    found = []
    for entry in entries:
        if entry.kind == "unlisted":  # a directory we could not list may hold any file
            found.append(entry)
        if entry.kind != "unreadable":
            continue
        line = entry.name
        tails = [line, *(line[m.end():] for m in re.finditer(r"\s+", line))]
        if any(selects(selection, t) or (t.endswith(CHECKSUM_SUFFIX) and
                                          selects(selection, t[: -len(CHECKSUM_SUFFIX)]))
               for t in tails if t):
            found.append(entry)
        else:
            log.warning("ignoring a listing line we cannot read (it cannot name a selected "
                        "file): %r", line)
    return tuple(found)


def is_current(local: Path | str, entry: RemoteEntry) -> bool:
    """The local copy is a regular file (a link is not our copy, wherever it leads) with
    the remote size and (when known) the remote mtime."""
    return current_at(local, entry.size, entry.mtime, entry.mtime_resolution)


def current_at(local: Path | str, size: int | None, mtime: float | None,
               resolution: float) -> bool:
    """`is_current` of a listed size, mtime and resolution (as SQL hands them over; paths
    as strings: pathlib cost more than the stat)."""
    try:
        st = os.lstat(local)
    except OSError:
        return False
    if not stat.S_ISREG(st.st_mode) or size is None or st.st_size != size:
        return False
    return mtime is None or within(st.st_mtime, mtime, resolution)


def same_time(mtime: float | None, entry: RemoteEntry) -> bool:
    """`mtime` (stamped from an earlier listing or MDTM) is the listed time, read at the
    listing's resolution: an `ls -l` line shows `Nov 29 12:00` while the file is recent and
    `Nov 29  2026` (the day only) once it is six months old; that is not a new version."""
    return within(mtime, entry.mtime, entry.mtime_resolution)


def within(mtime: float | None, listed: float | None, resolution: float) -> bool:
    """`same_time` of a listed time and resolution (also `SAME_TIME`, in SQL)."""
    if mtime is None or listed is None:
        return mtime == listed
    return listed - 1 < mtime < listed + max(resolution, 1.0)


# Whether the manifest vouches for a staged file (as `_staging` joins them: the listing's
# entry `{s}`, its manifest row `{f}`): recorded complete at exactly the listed size and
# mtime (and ETag, when both name one: S3's), and `verify` has not found it wrong since. An
# entry with neither a time nor a validator (a web page without times whose server's HEAD
# gives neither) has only its size to go by: never vouched for, it is checked (by its MD5
# when it has one) or fetched.
VOUCHED = ("({f}.name IS NOT NULL AND {f}.bad IS NULL AND {s}.size IS NOT NULL AND "
           "({s}.mtime IS NOT NULL OR {s}.validator IS NOT NULL) AND "
           "{f}.size = {s}.size AND {same_time} AND NOT {other_etag} AND NOT {moved} AND "
           "NOT {young})")
# `within({f}.mtime, {s}.mtime, {s}.resolution)` said in SQL: a Python function here was
# called for every row of a million-file plan
SAME_TIME = ("(CASE WHEN {f}.mtime IS NULL OR {s}.mtime IS NULL THEN {f}.mtime IS {s}.mtime "
             "ELSE {s}.mtime - 1 < {f}.mtime AND {f}.mtime < {s}.mtime + "
             "max({s}.resolution, 1.0) END)")
# The record and the listing name different versions by ETag: whatever size and time say,
# the local copy is not of the listed version.
OTHER_ETAG = ("coalesce({f}.etag IS NOT NULL AND {s}.validator IS NOT NULL AND "
              "{f}.etag != {s}.validator, 0)")


# Recorded before the listed time's minute (its resolution) was over: the file may have
# been rewritten since within that minute, at the same size, and the listing cannot tell
# (nginx, Apache and vsftpd show minutes). As the listed time may be the server's local
# time (Apache's pages, vsftpd's use_localtime), read as UTC, up to 14 hours off either way,
# "over" is the listed time plus 14 hours and twice its resolution. Not vouched for while
# that lasts: checked (against its NAME.md5, fetched again: one small request a run), then
# recorded anew.
YOUNG = ("coalesce({s}.resolution > 1 AND {s}.resolution < 86400 AND {f}.fetched_at < "
         "{s}.mtime + 2 * {s}.resolution + 50400, 0)")


# The page shows another time than it showed when the file was recorded (`shown`: both the
# page's own clock), though HEAD's time and ETag are the recorded ones: one of the two is
# stale (lighttpd answers HEAD from a stat cache for a second after a file changed), and
# the record cannot vouch for the file.
MOVED = ("coalesce({s}.shown IS NOT NULL AND {f}.shown IS NOT NULL AND NOT ({f}.shown - 1 < "
         "{s}.shown AND {s}.shown < {f}.shown + 1), 0)")


def _vouched(s: str, f: str) -> str:
    return VOUCHED.format(s=s, f=f, same_time=SAME_TIME.format(s=s, f=f),
                          other_etag=OTHER_ETAG.format(s=s, f=f),
                          moved=MOVED.format(s=s, f=f), young=YOUNG.format(s=s, f=f))


# What a selected file needs: `s` the file, `f` its manifest row, `c` its NAME.md5 on the
# server (NULL when none), `fc` that one's row; `current(name, size, mtime, resolution)`
# the local copy's stat (`is_current`, and no link on its way: behind one, the fetch fails,
# see `_tree.make_parents`); `:verify` a run that checks a file recorded without its MD5.
# A file whose page and HEAD disagree (MOVED) is checked against its NAME.md5, or fetched
# when it has none (a check with nothing to hash against keeps the copy).
def _action(alone: bool) -> str:
    """`ACTION`; `alone`: of a file known to have no NAME.md5 (`c` NULL, not joined)."""
    moved = MOVED.format(s="s", f="f") + ("" if alone else " AND c.name IS NULL")
    decided = f"""CASE
    WHEN NOT current(s.name, s.size, s.mtime, s.resolution) THEN 'fetch'
    WHEN {OTHER_ETAG.format(s="s", f="f")} THEN 'fetch'
    WHEN {moved} THEN 'fetch'
    WHEN NOT {_vouched("s", "f")} THEN 'check'
    """
    if alone:
        return decided + "ELSE 'skip' END"
    return decided + f"""WHEN c.name IS NULL THEN 'skip'
    WHEN :verify AND f.md5 IS NULL THEN 'check'
    WHEN {_vouched("c", "fc")} AND current(c.name, c.size, c.mtime, c.resolution)
        THEN 'skip'
    ELSE 'check' END"""


ACTION = _action(alone=False)
# what `_staging` decides while the listing goes on: files no NAME.md5 can pair with
ACTION_ALONE = _action(alone=True)


def part_length(dest: Path, entry: RemoteEntry) -> int:
    """What a fetch would resume from: NAME.part of this version and its segments."""
    if entry.size is None:
        return 0
    part = part_path(dest / entry.name, dest)
    have = resumable(part, RemoteFile(entry.name, entry.size, entry.mtime))
    if have is None:
        return 0
    with contextlib.suppress(OSError):
        found = [path.lstat() for start, path in segment_files(part) if start >= have]
        have += sum(st.st_size for st in found if stat.S_ISREG(st.st_mode))  # links: not ours
    return have


def check_writable(dest: Path) -> None:
    """Fail before any network I/O when DEST cannot hold our files. A DEST that does not
    exist yet is not created here: its nearest existing parent must be a writable directory.
    A state directory (or lock, or manifest) that is a link out of DEST is refused, and a
    DEST too deep for SQLite to open the manifest in."""
    check_manifest_path(dest)
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
