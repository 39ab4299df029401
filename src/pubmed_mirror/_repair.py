"""Per-file repair over the other protocol: a file that fails over FTP after its retries
(a 550, an MD5 that never matches, drops on every attempt) is fetched over the HTTPS tree of
the same directory before it is declared failed, with the same MD5 requirement, resuming
NAME.part where its size and time agree. Only for a run that uses FTP: one that fell back
to HTTPS for the whole run (`_source.FallbackTransport`) has no other protocol left."""

from __future__ import annotations

from ._pool import SessionPool
from ._source import AutoSource, FallbackTransport, HttpSource
from ._transport import Source, Transport

__all__ = ["Repair"]


class Repair:
    """The fallback's own pool of sessions (opened only when a file needs it)."""

    def __init__(self, source: HttpSource, pool: SessionPool,
                 fallback: FallbackTransport) -> None:
        self.source = source
        self.pool = pool
        self._fallback = fallback

    @classmethod
    def of(cls, source: Source, transport: Transport, size: int) -> Repair | None:
        """The repair a run over `source` through `transport` has, if any."""
        if not isinstance(source, AutoSource) or not isinstance(transport, FallbackTransport):
            return None
        return cls(source.https, SessionPool(transport.https, size=size), transport)

    @property
    def via(self) -> str:
        """The fallback's protocol: "https" (NCBI's tree), or "http" for a plain --fallback."""
        return self.source.scheme

    @property
    def available(self) -> bool:
        """The run uses FTP (not HTTPS for the whole run already)."""
        return self._fallback.using == "ftp"

    async def aclose(self) -> None:
        await self.pool.aclose()
