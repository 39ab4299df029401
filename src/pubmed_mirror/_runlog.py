"""What a mirror run leaves in the manifest for the dataset view (`_dataset`): the listing
it worked from, and the run itself with its outcome. Best effort: failing to record these
(a full disk, say) is logged and never fails the run."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Protocol, TypeVar

import anyio

from ._errors import LocalFileError, describe
from ._staging import Staging
from ._state import Manifest

__all__ = ["record_listing", "recorded_run"]

log = logging.getLogger("pubmed_mirror")
T = TypeVar("T")


class _Result(Protocol):
    """What the run log needs of a file's result (`FileResult`)."""

    @property
    def status(self) -> str: ...

    @property
    def record_error(self) -> str | None: ...


async def record_listing(staging: Staging) -> None:
    """The listing succeeded: its data files of the selection become DEST's `listing`,
    whole. --newest and --max-files are a run's choice, not the dataset's: not applied."""
    await _best_effort("the listing", staging.record_listing)


@asynccontextmanager
async def recorded_run(manifest: Manifest, source: str,
                       results: Sequence[_Result]) -> AsyncIterator[None]:
    """A row in `runs` for the run inside the block: written when it starts, given its
    outcome when it ends ("ok", "failed" from `results`, "interrupted", "error"), even when
    it is cancelled."""
    with anyio.CancelScope(shield=True):  # a row without its id could never be finished
        run_id = await _best_effort("the run's start", manifest.start_run, source,
                                    time.time())
    outcome, detail = "interrupted", None
    try:
        yield
        failed = sum(r.status == "failed" for r in results)
        unrecorded = sum(r.record_error is not None for r in results)
        outcome = "failed" if failed or unrecorded else "ok"
        detail = ", ".join(f"{n} {what}" for n, what in (
            (failed, "failed"), (unrecorded, "not recorded")) if n) or None
    except Exception as exc:  # a failed listing, a fatal error (a cancellation is not one)
        outcome, detail = "error", describe(exc)
        raise
    finally:
        if run_id is not None:
            with anyio.CancelScope(shield=True):
                await _best_effort("the run's outcome", manifest.finish_run, run_id,
                                   time.time(), outcome, detail)


async def _best_effort(what: str, write: Callable[..., T], *args: object) -> T | None:
    try:
        return await anyio.to_thread.run_sync(write, *args)
    except LocalFileError as exc:
        log.warning("%s: not recorded in the manifest: %s", what, describe(exc))
        return None
