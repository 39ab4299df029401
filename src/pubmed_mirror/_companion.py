"""NAME.md5, the checksum file that travels with NAME: fetched from the server once per
digest, read for NAME's MD5, written beside the final NAME and recorded with it; and the one
the mirror wrote beside an earlier version of NAME, gone once none travels."""

from __future__ import annotations

import contextlib
import logging
import time
from pathlib import Path

from ._errors import LocalFileError, ProtocolError, TruncatedTransfer, describe, local_errors
from ._plan import CHECKSUM_SUFFIX
from ._pubmed import parse_md5_file
from ._state import Manifest, ManifestEntry
from ._transport import RemoteEntry, Session
from ._whole import fetch_small, write_atomically

__all__ = ["Companion"]

log = logging.getLogger("pubmed_mirror")

_LIMIT = 64 << 10  # an NCBI .md5 is ~60 bytes; anything this big is not one


class Companion:
    """NAME's NAME.md5 on the server (`listed`: None when none is listed) and its bytes,
    once fetched (`data`; None again after `forget`, as the server may have replaced both)."""

    def __init__(self, name: str, listed: RemoteEntry | None) -> None:
        self.name = name
        self.listed = listed
        self.data: bytes | None = None

    def forget(self) -> None:
        self.data = None

    async def md5(self, session: Session, path: str, *, stall_timeout: float) -> str:
        """NAME's digest, from NAME.md5 at `path` (fetched once, checked against its listed
        size, then parsed). A short or unreadable NAME.md5 is a transient error: it is
        fetched again."""
        assert self.listed is not None
        if self.data is None:
            data = await fetch_small(session, path, limit=_LIMIT, stall_timeout=stall_timeout)
            if self.listed.size is not None and len(data) != self.listed.size:
                raise TruncatedTransfer(f"checksum file: {len(data)} bytes, the listing says "
                                        f"{self.listed.size}", path=path)
            self.data = data
        try:
            return parse_md5_file(self.data, self.name)
        except ValueError as exc:
            self.data = None
            raise ProtocolError(f"cannot read the checksum file: {exc}", path=path) from None

    def write(self, dest: Path, manifest: Manifest) -> None:
        """Beside the final NAME: NAME.md5 written and recorded when it travels (listed and
        fetched); else one the mirror wrote beside an earlier version goes (`_drop`)."""
        if self.listed is None or self.data is None:
            self._drop(dest, manifest)
            return
        write_atomically(dest / self.listed.name, self.data, self.listed.mtime, dest)
        manifest.record(ManifestEntry(self.listed.name, len(self.data), self.listed.mtime,
                                      None, time.time(), shown=self.listed.shown))

    def _drop(self, dest: Path, manifest: Manifest) -> None:
        """No NAME.md5 travels with NAME now: one the mirror wrote beside an earlier version
        of NAME may no longer say what NAME is (`verify` would call the file corrupt, and
        so every run fetch it again), and goes with its record. One the mirror never
        recorded is not its own: it stays."""
        companion = self.name + CHECKSUM_SUFFIX
        if manifest.get(companion) is None:
            return
        path = dest / companion
        try:
            with local_errors(path):
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
        except LocalFileError as exc:
            log.warning("%s: not removed, though it no longer describes %s: %s", path,
                        self.name, describe(exc))
            return
        manifest.delete(companion)
