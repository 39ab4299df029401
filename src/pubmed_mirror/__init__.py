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
    DestinationBusy,
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
    WrongVersion,
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
    list_remote,
    mirror,
    mirror_events,
    plan_mirror,
)
from ._plan import MirrorPlan, PlannedFile
from ._pool import PoolStats, SessionPool
from ._pubmed import PRESETS, parse_md5_file
from ._ratelimit import TokenBucket
from ._retry import RetryPolicy
from ._source import AutoSource, FtpSource, HttpSource
from ._state import Manifest, ManifestEntry
from ._transfer import RemoteFile, TransferResult, fetch_file
from ._transport import DirectStream, ReadStream, RemoteEntry, Session, Source, Transport
from ._verify import FileCheck, VerifyReport, verify

__version__ = "0.1.0"

__all__ = [
    "AutoSource",
    "ChecksumMismatch",
    "ConnectTimeout",
    "ConnectionLost",
    "ConnectionRefused",
    "DestinationBusy",
    "DirectStream",
    "Event",
    "EventFeed",
    "FatalError",
    "FileCheck",
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
    "HttpSource",
    "ListingDone",
    "LocalFileError",
    "LoginRefused",
    "Manifest",
    "ManifestEntry",
    "MirrorError",
    "MirrorOptions",
    "MirrorPlan",
    "MirrorReport",
    "PRESETS",
    "PermanentError",
    "PlannedFile",
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
    "Source",
    "Timeouts",
    "TokenBucket",
    "TooManyConnections",
    "TransferResult",
    "TransferStalled",
    "TransientError",
    "Transport",
    "TruncatedTransfer",
    "VerifyReport",
    "WrongVersion",
    "__version__",
    "fetch_file",
    "list_remote",
    "mirror",
    "mirror_events",
    "parse_md5_file",
    "plan_mirror",
    "verify",
]
