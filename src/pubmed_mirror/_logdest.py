"""Which mirror a log record belongs to: every record of the `pubmed_mirror` logger carries
`record.dest`, the absolute DEST of the mirror whose work logged it (None outside a mirror),
so that several mirrors in one process can be told apart (`%(dest)s` in a format)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path

__all__ = ["logging_dest"]

# A context variable, not an argument: the run's tasks (and the worker threads anyio starts
# for them) inherit it, so every log call of the engine is tagged without being changed.
_DEST: ContextVar[str | None] = ContextVar("pubmed_mirror_dest", default=None)


class _DestFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "dest"):  # extra={"dest": ...} of a caller wins
            record.dest = _DEST.get()
        return True


logging.getLogger("pubmed_mirror").addFilter(_DestFilter())


@contextmanager
def logging_dest(dest: Path) -> Iterator[str]:
    """Tag the records logged in this context (and in the tasks it starts) with `dest`."""
    token = _DEST.set(str(dest.absolute()))
    try:
        yield str(dest.absolute())
    finally:
        _DEST.reset(token)
