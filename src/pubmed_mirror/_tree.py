"""Nested names: the contract every source follows for files below its start directory.

A file's name (a `RemoteEntry`'s, a manifest row's, a planned file's, `FileDone.name`, the
JSON `name`) is a relative POSIX path: `a/b/c`, components separated by `/`; a flat
source's names have no `/`. It lands at `DEST/a/b/c`.

- `unsafe_name_reason` judges one component (a name in one directory listing);
  `unsafe_path_reason` a whole relative path, each component by the same rules, and no
  empty ones (`a//b`, `/a`, `a/`). A source drops what either refuses, with a warning.
- A run drops, with a warning, a path that would land on the same local file as another on
  DEST's file system (`FoldRule`, probed once at DEST: does it fold case, does it normalise
  unicode?), and a path that is a file in one entry and a directory in another (`a` and
  `a/b`): the first in sorted order wins, so every run keeps the same one (the rule is a
  query over the staged listing: `_staging.Staging.finish`).
- `make_parents` creates `DEST/a/b` as needed, and refuses (LocalFileError) a link or a
  non-directory anywhere between DEST and the file: nothing is ever written through a
  link inside DEST. `behind_link` says whether reading a path would go through one.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import re
import stat
import tempfile
import unicodedata
from dataclasses import dataclass
from pathlib import Path

from ._errors import LocalFileError, local_errors
from ._layout import OWN_SUFFIXES
from ._state import STATE_DIR, Manifest

__all__ = ["FoldRule", "behind_link", "local_tree", "make_parents", "probe_folding",
           "unsafe_name_reason", "unsafe_path_reason"]

log = logging.getLogger("pubmed_mirror")

SEPARATOR = "/"
# C0 and C1 controls, and the bidi marks and overrides that make a name display as another
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")


# the longest file name (one path component, in bytes) Linux's file systems take
NAME_MAX = 255


def unsafe_name_reason(name: str) -> str | None:
    """Why one name from a directory listing (one path component) must not become a local
    name (None when it is safe)."""
    if not name or name in (".", ".."):
        return "empty or dot name"
    if "/" in name or "\\" in name:
        return "contains a path separator"
    if ".." in name:
        return "contains '..'"
    if _CONTROL.search(name):
        return "contains NUL, control or bidi characters"
    try:
        name.encode()
    except UnicodeEncodeError:  # (bytes a listing read with surrogateescape)
        return "not UTF-8"
    if len(_local_bytes(name)) > NAME_MAX:
        return f"longer than a local file name may be ({NAME_MAX} bytes)"
    # exactly the names we may create or remove in DEST: NAME + a suffix of ours, and the
    # state directory (check_writable's probe takes a random name no file has: O_EXCL)
    if any(name.endswith(s) and name != s for s in OWN_SUFFIXES):
        return "clashes with our partial-file names"
    if name == STATE_DIR:
        return "clashes with our state directory"
    return None


def _local_bytes(name: str) -> bytes:
    """The name as the file system gets it (an undecodable byte of a listing is one byte
    again); a lone surrogate nothing decoded counts as its three UTF-8 bytes."""
    try:
        return os.fsencode(name)
    except UnicodeEncodeError:
        return name.encode("utf-8", "surrogatepass")


def unsafe_path_reason(path: str) -> str | None:
    """Why a relative path `a/b/c` (an S3 key below the prefix, a file found by a recursive
    listing) must not become `DEST/a/b/c` (None when it is safe): an empty component
    (`a//b`, a leading or trailing `/`), or a component `unsafe_name_reason` refuses."""
    parts = path.split(SEPARATOR)
    if len(parts) > 1 and not all(parts):
        return "empty path component (a leading, trailing or double '/')"
    for part in parts:
        reason = unsafe_name_reason(part)
        if reason is not None:
            return reason if len(parts) == 1 else f"component {part!r}: {reason}"
    return None


@dataclass(frozen=True, slots=True)
class FoldRule:
    """How a file system compares names: `case` (a and A are one file), `normalise` (the
    NFC and NFD forms of é are one file)."""

    case: bool = False
    normalise: bool = False

    def key(self, path: str) -> str:
        """What the file system sees as the same name (equal keys: the same file)."""
        if self.normalise:
            path = unicodedata.normalize("NFC", path)
        return path.casefold() if self.case else path


_PROBE = "\u00c5"  # Å, NFC: its NFD form is A + a combining ring; its lower case å


def probe_folding(dest: Path) -> FoldRule:
    """Ask DEST's file system, once, whether it folds case or normalises unicode: a probe
    file named with an NFC capital Å, looked up as å and as its NFD form. A DEST where no
    probe can be made (read-only: a dry run) is taken to fold nothing."""
    try:
        fd, name = tempfile.mkstemp(dir=dest, prefix=".pubmed-mirror-probe-",
                                    suffix=_PROBE)
    except OSError as exc:
        log.debug("cannot probe %s for case and unicode folding: %s", dest, exc)
        return FoldRule()
    try:
        stem = name[: -len(_PROBE)]
        return FoldRule(case=os.path.lexists(stem + _PROBE.lower()),
                        normalise=os.path.lexists(stem + unicodedata.normalize("NFD", _PROBE)))
    finally:
        os.close(fd)
        with contextlib.suppress(OSError):
            os.unlink(name)


def make_parents(dest: Path, name: str) -> None:
    """Create the directories of `DEST/name` below DEST as needed; LocalFileError when one
    of them is a link (never written through, wherever it leads) or not a directory. DEST
    itself may be a link (the user's choice)."""
    folder = dest
    for part in name.split(SEPARATOR)[:-1]:
        folder = folder / part
        try:
            try:
                mode = folder.lstat().st_mode
            except FileNotFoundError:
                with contextlib.suppress(FileExistsError):  # made meanwhile: looked at below
                    _mkdir(folder)
                mode = folder.lstat().st_mode
        except OSError as exc:  # (a path too long for this system: that file fails)
            raise LocalFileError(f"cannot use {folder}: {exc.strerror or exc}",
                                 path=name) from exc
        if not stat.S_ISDIR(mode):
            what = "a symbolic link" if stat.S_ISLNK(mode) else "not a directory"
            raise LocalFileError(f"{folder} is {what}: {name} is not written through it",
                                 path=name)


def give_way(dest: Path, manifest: Manifest, markers: list[str]) -> None:
    """Folder markers that now have files below them on the server (`Staging.markers`):
    the empty file a run before landed for each, when nothing was listed below it yet,
    goes with its record, so that the directory the files need can be made (else every
    run failed them: "not a directory"). Only a recorded file that is still empty: a
    file the user wrote there, or into it, stays (and the files below it fail)."""
    for name in markers:
        row = manifest.get(name)
        if row is None or row.size != 0 or behind_link(dest, name):  # (a link: not ours)
            continue
        path = dest / name
        try:
            with local_errors(path):
                if not stat.S_ISREG((found := path.lstat()).st_mode) or found.st_size:
                    continue
                path.unlink()
        except (FileNotFoundError, LocalFileError):
            continue
        manifest.delete(name)
        log.warning("%s: the empty file a run before landed for this folder marker is "
                    "removed: files are listed below it now", name)


def _mkdir(folder: Path) -> None:
    try:
        folder.mkdir()
    except FileExistsError:
        raise
    except OSError as exc:
        raise LocalFileError(f"cannot create {folder}: {exc.strerror or exc}") from exc


def behind_link(dest: Path, name: str) -> bool:
    """Whether a directory between DEST and `DEST/name` is a link or not a directory (then
    `DEST/name` is not a file of this mirror, whatever is there). A missing one is not."""
    folder = os.fspath(dest)  # (strings: pathlib cost more than the lstat, once a folder)
    for part in name.split(SEPARATOR)[:-1]:
        folder = os.path.join(folder, part)
        try:
            if not stat.S_ISDIR(os.lstat(folder).st_mode):
                return True
        except OSError as exc:
            return exc.errno not in (errno.ENOENT, errno.ENAMETOOLONG)
    return False


def local_tree(dest: Path) -> list[tuple[str, os.stat_result]]:
    """Every entry below DEST that is not a directory, as (relative POSIX name, lstat),
    without following links (a link is listed, never entered) and without the state
    directory. Blocking."""
    found: list[tuple[str, os.stat_result]] = []
    pending = [(dest, "")]
    while pending:
        folder, prefix = pending.pop()
        with os.scandir(folder) as entries:
            for entry in entries:
                if not prefix and entry.name == STATE_DIR:
                    continue
                name = prefix + entry.name
                if entry.is_dir(follow_symlinks=False):
                    pending.append((Path(entry.path), name + SEPARATOR))
                else:
                    found.append((name, entry.stat(follow_symlinks=False)))
    return found
