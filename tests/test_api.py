"""The public surface."""

from __future__ import annotations

import pubmed_mirror


def test_all_is_pinned() -> None:
    """__all__ lists exactly the public names (a change here is an API change)."""
    assert sorted(pubmed_mirror.__all__) == sorted([
        "ChecksumMismatch", "ConnectTimeout", "ConnectionLost", "ConnectionRefused", "Event",
        "EventFeed",
        "FatalError", "FileDeadlineExceeded", "FileDone", "FileFailed", "FileProgress",
        "FileQueued", "FileResult", "FileRetrying", "FileSkipped", "FileStarted", "FtpSession",
        "FtpSource", "FtpTransport", "ListingDone", "LocalFileError", "LoginRefused",
        "MirrorError", "MirrorOptions", "MirrorReport", "PermanentError", "PoolStats",
        "ProtocolError", "ReadStream", "RemoteEntry", "RemoteFile", "RemoteFileError",
        "RetryPolicy", "ServerBusy", "ServerUnreachable", "Session", "SessionPool", "Timeouts",
        "TokenBucket", "TooManyConnections", "TransferResult", "TransferStalled",
        "TransientError", "Transport", "TruncatedTransfer", "__version__", "fetch_file",
        "mirror", "mirror_events",
    ])
    for name in pubmed_mirror.__all__:
        assert hasattr(pubmed_mirror, name), name
