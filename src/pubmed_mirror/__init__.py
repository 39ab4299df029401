"""pubmed-mirror: mirror NCBI PubMed's FTP tree fast, politely and without ever a wrong file.

    import anyio
    from pubmed_mirror import MirrorOptions, mirror

    async def main() -> None:
        report = await mirror("ftp://ftp.ncbi.nlm.nih.gov/pubmed/updatefiles/", "pubmed",
                              MirrorOptions(concurrency=4, include=("*.xml.gz",)))
        print(len(report.done), "fetched,", len(report.failed), "failed")

    anyio.run(main)
"""

from ._errors import (
    ChecksumMismatch,
    ConnectionLost,
    ConnectionRefused,
    ConnectTimeout,
    FatalError,
    FileDeadlineExceeded,
    LocalFileError,
    LoginRefused,
    MirrorError,
    PermanentError,
    ProtocolError,
    RemoteFileError,
    ServerBusy,
    ServerUnreachable,
    TooManyConnections,
    TransferStalled,
    TransientError,
    TruncatedTransfer,
)
from ._events import (
    Event,
    FileDone,
    FileFailed,
    FileProgress,
    FileQueued,
    FileRetrying,
    FileSkipped,
    FileStarted,
    ListingDone,
)
from ._ftp import FtpSession, FtpTransport
from ._mirror import (
    EventFeed,
    FileResult,
    MirrorOptions,
    MirrorReport,
    Timeouts,
    mirror,
    mirror_events,
)
from ._pool import PoolStats, SessionPool
from ._ratelimit import TokenBucket
from ._retry import RetryPolicy
from ._source import FtpSource
from ._transfer import RemoteFile, TransferResult, fetch_file
from ._transport import ReadStream, RemoteEntry, Session, Transport

__version__ = "0.1.0"

__all__ = [
    "ChecksumMismatch",
    "ConnectTimeout",
    "ConnectionLost",
    "ConnectionRefused",
    "Event",
    "EventFeed",
    "FatalError",
    "FileDeadlineExceeded",
    "FileDone",
    "FileFailed",
    "FileProgress",
    "FileQueued",
    "FileResult",
    "FileRetrying",
    "FileSkipped",
    "FileStarted",
    "FtpSession",
    "FtpSource",
    "FtpTransport",
    "ListingDone",
    "LocalFileError",
    "LoginRefused",
    "MirrorError",
    "MirrorOptions",
    "MirrorReport",
    "PermanentError",
    "PoolStats",
    "ProtocolError",
    "ReadStream",
    "RemoteEntry",
    "RemoteFile",
    "RemoteFileError",
    "RetryPolicy",
    "ServerBusy",
    "ServerUnreachable",
    "Session",
    "SessionPool",
    "Timeouts",
    "TokenBucket",
    "TooManyConnections",
    "TransferResult",
    "TransferStalled",
    "TransientError",
    "Transport",
    "TruncatedTransfer",
    "__version__",
    "fetch_file",
    "mirror",
    "mirror_events",
]
