"""pubmed-mirror: mirror NCBI PubMed's FTP tree fast, politely and without ever a wrong file.

    import anyio
    from pubmed_mirror import MirrorOptions, mirror

    async def main() -> None:
        report = await mirror("ftp://ftp.ncbi.nlm.nih.gov/pubmed/updatefiles/", "pubmed",
                              MirrorOptions(concurrency=4, include=("*.xml.gz",)))
        print(len(report.done), "fetched,", len(report.failed), "failed")

    anyio.run(main)
"""

from typing import TYPE_CHECKING

from ._client import MirrorClient, list_remote, mirror, mirror_events, plan_mirror
from ._dataset import (
    DatasetStatus,
    LoadFile,
    LoadOrder,
    acknowledge,
    consumer_cursor,
    dataset_status,
    load_order,
)
from ._errors import (
    AsyncioRequired,
    BadSource,
    ChecksumMismatch,
    ConnectionLost,
    ConnectionRefused,
    ConnectTimeout,
    DatasetError,
    DestinationBusy,
    FatalError,
    FileDeadlineExceeded,
    LocalFileError,
    LoginRefused,
    MirrorError,
    PermanentError,
    ProtocolError,
    RemoteFileError,
    ResumeRefused,
    ServerBusy,
    ServerPaused,
    ServerUnreachable,
    TooManyConnections,
    TransferStalled,
    TransientError,
    TruncatedTransfer,
    WrongVersion,
)
from ._events import (
    BaselineChanged,
    Event,
    FileDeleted,
    FileDone,
    FileFailed,
    FileLanded,
    FileProgress,
    FileQueued,
    FileRetrying,
    FileSkipped,
    FileStarted,
    ListingDone,
)
from ._feed import EventFeed
from ._lifecycle import DeleteLimit
from ._options import MirrorOptions, Timeouts
from ._plan import MirrorPlan, PlannedFile
from ._pool import PoolStats, SessionPool
from ._pubmed import PRESETS, parse_md5_file
from ._ratelimit import TokenBucket
from ._report import FileResult, MirrorReport
from ._retry import RetryPolicy
from ._s3 import S3Source
from ._source import AutoSource, FtpSource, HttpSource, S3Options, parse_source
from ._state import ConsumerCursor, Manifest, ManifestEntry, RunRecord
from ._transfer import RemoteFile, TransferResult, fetch_file
from ._transport import DirectStream, ReadStream, RemoteEntry, Session, Source, Transport
from ._verify import FileCheck, VerifyReport, verify

if TYPE_CHECKING:  # imported when first used (`__getattr__`)
    from ._ftp import FtpSession, FtpTransport

__version__ = "0.1.0"

__all__ = [
    "AsyncioRequired",
    "AutoSource",
    "BadSource",
    "BaselineChanged",
    "DeleteLimit",
    "FileDeleted",
    "ChecksumMismatch",
    "ConnectTimeout",
    "ConnectionLost",
    "ConnectionRefused",
    "ConsumerCursor",
    "DatasetError",
    "DatasetStatus",
    "DestinationBusy",
    "DirectStream",
    "Event",
    "EventFeed",
    "FatalError",
    "FileCheck",
    "FileDeadlineExceeded",
    "FileDone",
    "FileFailed",
    "FileLanded",
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
    "LoadFile",
    "LoadOrder",
    "LocalFileError",
    "LoginRefused",
    "Manifest",
    "ManifestEntry",
    "MirrorClient",
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
    "ResumeRefused",
    "RetryPolicy",
    "RunRecord",
    "S3Options",
    "S3Source",
    "ServerBusy",
    "ServerPaused",
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
    "acknowledge",
    "consumer_cursor",
    "dataset_status",
    "fetch_file",
    "list_remote",
    "load_order",
    "mirror",
    "mirror_events",
    "parse_md5_file",
    "parse_source",
    "plan_mirror",
    "verify",
]


def __getattr__(name: str) -> object:
    """The FTP transport's classes, imported when first asked for: a run over HTTP(S) or S3
    (and `status`, `load-order`, `ack`) never loads aioftp."""
    if name in ("FtpSession", "FtpTransport"):
        from . import _ftp

        return getattr(_ftp, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
