"""The ordered stream: FileLanded events strictly in load order, whatever order the files
complete in, so that a loader can apply each file as soon as it may."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from ._events import Event, FileLanded
from ._report import FileResult

__all__ = ["Landings"]


class Landings:
    """Holds each settled file back until every file before it in `order` has settled, then
    emits FileLanded for it and for each settled one after it.

    `order` is the run's load order of what can settle: its unreadable listing lines first
    (a line may name any selected file, so a loader that stops at a failure stops before
    everything), then the selected files. `md5_of(name)` is the recorded digest of a file
    skipped as up to date.
    """

    def __init__(self, order: Sequence[str], dest: Path, emit: Callable[[Event], None],
                 md5_of: Callable[[str], str | None]) -> None:
        self._order = list(order)
        self._next = 0  # the first position not landed yet
        self._settled: dict[str, FileLanded] = {}
        self._dest = dest.absolute()
        self._emit = emit
        self._md5_of = md5_of

    def __repr__(self) -> str:
        return (f"<Landings {self._next}/{len(self._order)} landed, "
                f"{len(self._settled)} held back>")

    def settle(self, result: FileResult) -> None:
        """`result`'s file is done, skipped or failed: land whatever may land now."""
        self._settled[result.name] = self._landed(result)
        while self._next < len(self._order) and self._order[self._next] in self._settled:
            self._emit(self._settled.pop(self._order[self._next]))
            self._next += 1

    def _landed(self, result: FileResult) -> FileLanded:
        if result.status == "failed":
            return FileLanded(result.name, None, None, "failed", result.error, result.exception)
        md5 = result.md5 or (self._md5_of(result.name) if result.status == "skipped" else None)
        return FileLanded(result.name, str(self._dest / result.name), md5, result.status)
