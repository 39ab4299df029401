"""The dataset's lifecycle in DEST: files that leave the listing, and PubMed's yearly
changeover.

Every December NCBI publishes a new baseline (`pubmed27n0001.xml.gz` ...) and then removes
the previous year's baseline and update files. A loader must never see DEST without a
complete year, nor last year's updates beside this year's baseline. So, for PubMed-named
files:

- while the listing holds a year newer than files DEST holds, and shaped as the year that
  replaces DEST's (`_pubmed.year_takes_over`: not a baseline half uploaded, an upload with
  a hole, nor a stray file of a year to come), older years are not fetched any more; they
  stay, untouched and usable, until every listed file of the new year is final and
  verified in DEST;
- then they are *superseded*: removed by a run with `delete`, otherwise kept and reported.

Other files recorded in the manifest that the listing no longer holds are removed only
with `delete`, and only when the listing is not empty and the removal stays within the
limit (`DeleteLimit`). A file the manifest never recorded is never touched.

Deciding is `_staging`'s (`Staging.changeover`, `Staging.deletions`: queries over the
staged listing and the manifest); `delete_files` removes what was decided, files first
and then their manifest rows: a run killed in between leaves rows whose files are gone,
which the next run sees as still to delete (or to fetch, when listed again).
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from ._errors import local_errors
from ._layout import (
    PART_SUFFIX,
    any_part_recorded,
    meta_path,
    part_records,
    recorded_parts,
)
from ._plan import CHECKSUM_SUFFIX
from ._state import Manifest
from ._transfer import discard_part, part_name, part_path
from ._tree import behind_link, unsafe_path_reason

__all__ = ["Changeover", "DeleteLimit", "Deletions", "delete_files", "refusal", "remove_emptied"]

log = logging.getLogger("pubmed_mirror")

@dataclass(frozen=True, slots=True, kw_only=True)
class DeleteLimit:
    """How many files a run may delete for having left the listing: at most `count`, or at
    most `share` of the files the manifest records (the default: half). Superseded years are
    not counted: their removal waits for the new year to be complete instead."""

    count: int | None = None
    share: float | None = 0.5

    def __post_init__(self) -> None:
        if (self.count is None) == (self.share is None):
            raise ValueError("give a count or a share of files to delete at most, not both")
        if self.count is not None and self.count < 0:
            raise ValueError("the delete count must be >= 0")
        if self.share is not None and not 0 <= self.share <= 1:
            raise ValueError("the delete share must be between 0 and 1")

    def allows(self, deleting: int, recorded: int) -> bool:
        if self.count is not None:
            return deleting <= self.count
        assert self.share is not None
        return deleting <= math.floor(self.share * recorded + 1e-9)

    def __str__(self) -> str:
        return str(self.count) if self.count is not None else f"{self.share:.0%}"


@dataclass(frozen=True, slots=True)
class Changeover:
    """The listing holds PubMed files of year `new`; DEST still holds files of `old` (and
    perhaps earlier years)."""

    old: int
    new: int


@dataclass(frozen=True, slots=True)
class Deletions:
    """What a run removes (`delete`) or reports (`superseded`), and why it refused to."""

    gone: tuple[str, ...] = ()  # recorded, no longer listed
    superseded: tuple[str, ...] = ()  # of a year older than a complete newer one
    refused: str | None = None  # why nothing of `gone` may be deleted

    def removable(self) -> list[tuple[str, str]]:
        """(name, reason) of everything a run with `delete` removes."""
        why_gone = "no longer on the server"
        return ([(name, "superseded by a newer year") for name in self.superseded]
                + ([] if self.refused else [(name, why_gone) for name in self.gone]))


def refusal(gone: int, recorded: int, listed: int, limit: DeleteLimit) -> str | None:
    """Why `gone` recorded files (of `recorded`) may not be deleted after a listing of
    `listed` data files; None when they may."""
    if gone and not listed:
        return f"the listing holds no file: {gone} recorded files would go; nothing deleted"
    if gone and not limit.allows(gone, recorded):
        return (f"{gone} of the {recorded} recorded files are no longer listed, "
                f"more than --max-delete {limit}: nothing deleted")
    return None


def delete_files(dest: Path, manifest: Manifest, names: Sequence[str]) -> None:
    """Remove each NAME with its NAME.md5 when the mirror wrote that too (the manifest
    records the NAME.md5 that travelled with NAME; one the user put beside it stays), any
    part of either, and then their manifest rows (files first: see the module's
    docstring); then the directories of a nested NAME that this left empty (they held only
    what the server no longer has). A NAME behind a link in DEST is not ours to remove:
    its rows go, the link and what it leads to stay. Blocking."""
    for name in names:
        if behind_link(dest, name):
            log.warning("%s: not deleted, a directory on its way is a link (or not a "
                        "directory): only its record goes", dest / name)
        else:
            companion = name + CHECKSUM_SUFFIX
            ours = manifest.get(companion) is not None
            for each in (name, companion):
                path = dest / each
                with local_errors(path):
                    if each == name or ours:
                        with contextlib.suppress(FileNotFoundError):
                            path.unlink()
                    discard_part(part_path(path, dest))
        manifest.forget(name, name + CHECKSUM_SUFFIX)
        if not behind_link(dest, name):
            remove_emptied(dest, name)


def discard_stale_parts(dest: Path, manifest: Manifest, staged: Callable[[str], bool],
                        selected: Callable[[str], bool]) -> None:
    """`--delete`: remove the part (with its record and segments) of each NAME that
    neither the listing nor the manifest holds, of the names the selection takes (and the
    listing could have shown): what a run cut short left of a file the server has since
    removed (`status` calls a top-level one extra for ever). A top-level NAME.part is
    found beside it, and is ours only with its record (one without is the user's own
    file); a part under the state directory (a nested name's) by the name its record
    gives (one an earlier version recorded gives none: it stays). DEST is looked at only
    when some part is recorded (a part is made with its record): a run over a million
    files in DEST with nothing cut short does not read it. Blocking."""
    if not any_part_recorded(dest):
        return
    ours = recorded_parts(dest)  # a NAME.part with no record of ours is the user's
    try:
        with os.scandir(dest) as found:
            names = [e.name[:-len(PART_SUFFIX)] for e in found
                     if e.name.endswith(PART_SUFFIX) and e.is_file(follow_symlinks=False)
                     and ours(e.name[:-len(PART_SUFFIX)])]
    except OSError:
        return
    for record in part_records(dest):
        name = part_name(record)
        if (name is not None and unsafe_path_reason(name) is None
                and meta_path(part_path(dest / name, dest)) == record):  # (its own)
            names.append(name)
    for name in dict.fromkeys(names):
        if selected(name) and not staged(name) and manifest.get(name) is None:
            discard_part(part_path(dest / name, dest))
            log.info("%s: its part is removed: no longer on the server", name)


def remove_emptied(dest: Path, name: str) -> None:
    """Remove the directories of `DEST/name` below DEST, deepest first, while they are
    empty (rmdir never removes one that holds anything, nor a link)."""
    folder = (dest / name).parent
    while folder != dest:
        try:
            folder.rmdir()
        except OSError:
            return
        folder = folder.parent
