"""Where a file being received keeps its state in DEST, and how those files are opened.

Beside NAME there is only NAME.part, and only when that name fits the file system and NAME
is at DEST's top level (a nested name `a/b/NAME` keeps its part in the state directory).
Everything else lives in DEST's state directory under NAME's key (a hash of NAME, or of
`a/b/NAME`: short, whatever NAME's length):

    STATE/parts/KEY.meta        the remote version the part was started from (its record),
                                written through KEY.meta.tmp
    STATE/parts/KEY.part        the part, for a NAME too long for NAME.part beside it
    STATE/segments/KEY.START    a split file's segments (see `_tail`)

Earlier versions kept NAME.part.meta (and NAME.part.meta.tmp) beside NAME.part and named
segments NAME.part.START: those are still read, and removed with the part.

Nothing here is opened through a link: a link where one of our files should be is replaced
by a regular file (when we create it) or not believed (when we read it).
"""

from __future__ import annotations

import contextlib
import errno
import functools
import hashlib
import os
import re
import stat
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from ._state import STATE_DIR, make_state_dir

__all__ = [
    "OWN_SUFFIXES",
    "any_part_recorded",
    "create_file",
    "legacy_records",
    "make_part_dir",
    "make_part_dirs",
    "meta_path",
    "open_read",
    "owner",
    "part_path",
    "part_records",
    "read_record",
    "recorded_parts",
    "regular_size",
    "segment_files",
    "segment_path",
]

PART_SUFFIX = ".part"
# NAME + one of these, in DEST, is ours: NAME.part, and what earlier versions kept beside it
OWN_SUFFIXES = (PART_SUFFIX, ".part.meta", ".part.meta.tmp")
_PARTS = "parts"
_SEGMENTS = "segments"
_KEY = re.compile("[0-9a-f]{32}")


def part_path(dest: Path, root: Path | None = None) -> Path:
    """Where NAME (`dest`) is received: NAME.part beside it when that name fits, else
    STATE/parts/KEY.part. A nested name (`root`/a/b/NAME, see `_tree`) is always received
    in `root`'s STATE/parts, under the key of `a/b/NAME`: its record and segments go there
    too, so the directories of the tree hold only the files themselves."""
    if root is not None and dest.parent != root:
        relative = dest.relative_to(root).as_posix()
        return root / STATE_DIR / _PARTS / f"{_key(relative)}{PART_SUFFIX}"
    beside = dest.with_name(dest.name + PART_SUFFIX)
    if len(_encoded(beside.name)) <= _name_max(dest.parent):
        return beside
    return dest.parent / STATE_DIR / _PARTS / f"{_key(dest.name)}{PART_SUFFIX}"


def owner(part: Path) -> tuple[Path, str]:
    """The directory NAME is in, and NAME's key, for a path `part_path` gave."""
    folder = part.parent
    if folder.name == _PARTS and folder.parent.name == STATE_DIR and _KEY.fullmatch(part.stem):
        return folder.parent.parent, part.stem
    return folder, _key(part.name.removesuffix(PART_SUFFIX))


def meta_path(part: Path) -> Path:
    """The part's record: the remote version it was started from."""
    folder, key = owner(part)
    return folder / STATE_DIR / _PARTS / f"{key}.meta"


def legacy_records(part: Path) -> list[Path]:
    """The record (and its temp file) an earlier version kept beside NAME.part, as far as
    their names fit (those that do not cannot be there)."""
    if owner(part)[0] != part.parent:
        return []
    longest = _name_max(part.parent)
    meta = part.with_name(part.name + ".meta")
    return [p for p in (meta, meta.with_name(meta.name + ".tmp"))
            if len(_encoded(p.name)) <= longest]


def recorded_parts(dest: Path) -> Callable[[str], bool]:
    """Whether NAME in DEST may have a part to resume, from one look at DEST and its parts
    directory: a part is resumed only from its record (KEY.meta, or NAME.part.meta an
    earlier version kept beside it), so a plan of a million files need not look for each.
    DEST itself is looked at on the first ask: a plan with nothing to fetch (a no-op run
    over a million files in one directory) never reads it."""
    keys: set[str] = set()
    legacy: list[set[str]] = []  # DEST's legacy records, once read
    with contextlib.suppress(OSError), os.scandir(dest / STATE_DIR / _PARTS) as found:
        keys.update(e.name[:-5] for e in found if e.name.endswith(".meta"))

    def may_resume(name: str) -> bool:
        if _key(name) in keys:
            return True
        if not legacy:
            legacy.append(_legacy_parts(dest))
        return name in legacy[0]

    return may_resume


def part_records(dest: Path) -> list[Path]:
    """The records of the parts DEST's state directory holds (KEY.meta: a nested name's,
    or one too long for NAME.part beside it)."""
    with contextlib.suppress(OSError), os.scandir(dest / STATE_DIR / _PARTS) as found:
        return [Path(e.path) for e in found
                if e.name.endswith(".meta") and _KEY.fullmatch(e.name[:-5])]
    return []


def any_part_recorded(dest: Path) -> bool:
    """Whether DEST's state directory holds any part's record: none, and no part of DEST
    is one a run can resume (nor one to tidy), without a look at DEST itself."""
    with contextlib.suppress(OSError), os.scandir(dest / STATE_DIR / _PARTS) as found:
        return any(e.name.endswith(".meta") for e in found)
    return False


def _legacy_parts(dest: Path) -> set[str]:
    """The NAMEs of the NAME.part.meta records in DEST (an earlier version's)."""
    suffix = PART_SUFFIX + ".meta"
    with contextlib.suppress(OSError), os.scandir(dest) as found:
        return {e.name[:-len(suffix)] for e in found if e.name.endswith(suffix)}
    return set()


def segment_path(part: Path, start: int) -> Path:
    """Where the span of NAME starting at `start` is received (see `_tail`): a file in the
    state directory, out of the way of DEST's listing."""
    folder, key = owner(part)
    return folder / STATE_DIR / _SEGMENTS / f"{key}.{start}"


def segment_files(part: Path) -> list[tuple[int, Path]]:
    """NAME's segment files (also those an earlier version named NAME.part.START), with
    their START; none when the segments directory is not ours (a link)."""
    first = segment_path(part, 0)
    prefixes = [first.name[:-1]]
    if owner(part)[0] == part.parent:
        prefixes.append(part.name + ".")
    found = []
    with contextlib.suppress(OSError):
        if _in_state_dir(first):
            for path in first.parent.iterdir():
                for prefix in prefixes:
                    start = path.name[len(prefix):]
                    if path.name.startswith(prefix) and start.isdigit() and start.isascii():
                        found.append((int(start), path))
    return found


def make_part_dir(part: Path) -> None:
    """The directory a part goes in when it has no record nor segments (a file written
    whole, `_whole`), made when it is the state directory's (never through a link); NAME's
    own directory, where a part beside NAME goes, is the caller's to make."""
    folder = owner(part)[0]
    if folder != part.parent:
        make_state_dir(folder, _PARTS)


def make_part_dirs(part: Path) -> None:
    """The directories a part, its record and its segments go in, made (a link where one
    should be is replaced first)."""
    folder = owner(part)[0]
    folder.mkdir(parents=True, exist_ok=True)
    for sub in (_PARTS, _SEGMENTS):
        make_state_dir(folder, sub)


def read_record(part: Path) -> str:
    """The part's record; one an earlier version left beside the part if there is no other.
    Both at once: which one the part is from is unknown, so neither (a ValueError)."""
    current = meta_path(part)
    records = [p for p in (current, *legacy_records(part)[:1]) if p.is_symlink() or p.exists()]
    if len(records) != 1 or (records[0] == current and not _in_state_dir(current)):
        raise ValueError("no record, or two")
    # O_NONBLOCK: a FIFO there reads as empty instead of waiting for a writer
    fd = os.open(records[0], os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    with open(fd, "rb") as f:
        return f.read(1 << 16).decode()


def regular_size(path: Path) -> int:
    """The length of a regular file (an OSError for anything else: a link is not ours)."""
    st = path.lstat()
    if not stat.S_ISREG(st.st_mode):
        raise OSError(errno.EINVAL, "not a regular file", str(path))
    return st.st_size


def create_file(path: Path) -> int:
    """A new empty file at `path`, open for writing: whatever was there is removed first (a
    link is replaced, never written through)."""
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
    return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o666)


def open_read(path: Path) -> BinaryIO:
    """`path` opened for reading, unless it is a link (an OSError then)."""
    return open(os.open(path, os.O_RDONLY | os.O_NOFOLLOW), "rb")


def _in_state_dir(path: Path) -> bool:
    """`path`'s directory and the state directory above it are directories, not links (an
    lstat of `path` itself would follow them)."""
    try:
        return all(stat.S_ISDIR(p.lstat().st_mode) for p in (path.parent, path.parent.parent))
    except OSError:
        return False


def _key(name: str) -> str:
    return hashlib.sha256(_encoded(name)).hexdigest()[:32]


def _encoded(name: str) -> bytes:
    """The name as the file system sees it."""
    try:
        return os.fsencode(name)
    except UnicodeError:
        return name.encode("utf-8", "surrogatepass")


def _name_max(folder: Path) -> int:
    """The longest file name `folder` takes, in bytes (255 on the usual file systems)."""
    try:
        return _asked_name_max(folder)
    except (OSError, ValueError):  # not there yet (a dry run), or nothing to ask
        return 255


@functools.lru_cache(maxsize=1024)
def _asked_name_max(folder: Path) -> int:
    """pathconf's answer, asked once per directory (it was a statfs eight times per small
    file): a file system's limit does not change under a run, and a stale answer would
    only move a part between NAME.part and the state directory, where a resume misses it."""
    return os.pathconf(folder, "PC_NAME_MAX")
