"""What a mirror run did: a result per file, and the run's report."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from ._errors import MirrorError

__all__ = ["FileResult", "MirrorReport", "Status"]


Status = Literal["done", "skipped", "failed"]


@dataclass(frozen=True, slots=True)
class FileResult:
    name: str
    status: Status
    size: int | None
    received: int = 0  # bytes received in this run
    resumed_from: int = 0
    attempts: int = 0
    seconds: float = 0.0
    error: str | None = None
    md5: str | None = None  # the digest the file was checked against (None: not checked)
    # done or skipped, but its record could not be written (see FileDone.record_error)
    record_error: str | None = None
    exception: MirrorError | None = field(default=None, compare=False)  # failed: the error
    via: str = ""  # done: the protocol it came over ("ftp", "https", "http")
    repaired: bool = False  # done over the fallback after it failed over FTP (`_repair`)


@dataclass(frozen=True, slots=True)
class MirrorReport:
    files: tuple[FileResult, ...]
    seconds: float
    deleted: tuple[str, ...] = ()  # removed from DEST (`delete`), with their NAME.md5
    superseded: tuple[str, ...] = ()  # of a PubMed year a complete newer one replaces
    deletion_refused: str | None = None  # why files gone from the listing were kept
    # files skipped as the manifest vouches for them: counted, not in `files` (a run over
    # a million of them would hold a million results)
    up_to_date: int = 0

    def _with(self, status: Status) -> tuple[FileResult, ...]:
        return tuple(f for f in self.files if f.status == status)

    @property
    def done(self) -> tuple[FileResult, ...]:
        return self._with("done")

    @property
    def skipped(self) -> tuple[FileResult, ...]:
        """Files checked and found good (by MD5): kept, not fetched; the ones skipped
        without a check are only counted (`up_to_date`, and both in `skipped_count`)."""
        return self._with("skipped")

    @property
    def skipped_count(self) -> int:
        """Every file not fetched because the local copy is good."""
        return len(self.skipped) + self.up_to_date

    @property
    def failed(self) -> tuple[FileResult, ...]:
        return self._with("failed")

    @property
    def bytes_received(self) -> int:
        return sum(f.received for f in self.files)

    @property
    def retries(self) -> int:
        return sum(max(0, f.attempts - 1) for f in self.files)

    @property
    def via(self) -> dict[str, int]:
        """How many files were fetched over each protocol ({"ftp": 7, "https": 1})."""
        return dict(Counter(f.via for f in self.done if f.via))

    @property
    def repaired(self) -> tuple[str, ...]:
        """The files fetched over the fallback because FTP could not deliver them."""
        return tuple(f.name for f in self.done if f.repaired)

    @property
    def unrecorded(self) -> tuple[FileResult, ...]:
        """Files that are final and correct but whose record could not be written."""
        return tuple(f for f in self.files if f.record_error is not None)

    @property
    def ok(self) -> bool:
        """Every file is done or up to date, and recorded, and no deletion was refused."""
        return not self.failed and not self.unrecorded and self.deletion_refused is None
