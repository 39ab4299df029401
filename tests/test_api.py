"""The public surface."""

from __future__ import annotations

import pubmed_mirror


def test_all_is_pinned() -> None:
    """__all__ lists exactly the public names (a change here is an API change)."""
    assert sorted(pubmed_mirror.__all__) == sorted([
        "AsyncioRequired", "BadSource", "FileLanded", "MirrorClient",
        "AutoSource", "BaselineChanged", "DeleteLimit", "FileDeleted",
        "ChecksumMismatch", "ConnectTimeout", "ConnectionLost", "ConnectionRefused",
        "DestinationBusy", "DirectStream", "Event", "EventFeed", "FatalError", "FileCheck",
        "FileDeadlineExceeded",
        "FileDone", "FileFailed", "FileProgress", "FileQueued", "FileResult", "FileRetrying",
        "FileSkipped", "FileStarted", "FtpSession", "FtpSource", "FtpTransport", "HttpSource",
        "ListingDone",
        "LocalFileError", "LoginRefused", "Manifest", "ManifestEntry", "MirrorError",
        "MirrorOptions", "MirrorPlan", "MirrorReport", "PRESETS", "PermanentError",
        "PlannedFile",
        "PoolStats", "ProtocolError", "ReadStream", "RemoteEntry", "RemoteFile", "RemoteFileError",
        "ResumeRefused", "RetryPolicy", "ServerBusy", "ServerPaused", "ServerUnreachable",
        "Session", "SessionPool", "Source",
        "Timeouts", "TokenBucket", "TooManyConnections", "TransferResult", "TransferStalled",
        "TransientError", "Transport", "TruncatedTransfer", "VerifyReport", "WrongVersion",
        "__version__",
        "fetch_file", "list_remote", "mirror", "mirror_events", "parse_md5_file", "plan_mirror",
        "verify",
        # the dataset view (issue 15)
        "ConsumerCursor", "DatasetError", "DatasetStatus", "LoadFile", "LoadOrder", "RunRecord",
        "acknowledge", "consumer_cursor", "dataset_status", "load_order",
        # a URL or preset with its options, e.g. the anonymous FTP email (issue 16)
        "parse_source",
        # the s3:// source and how it is reached (issue 17)
        "S3Options", "S3Source",
    ])
    for name in pubmed_mirror.__all__:
        assert hasattr(pubmed_mirror, name), name
