"""The exception tree (`_ftperrors` and `_httperrors` translate third-party errors into it).

    MirrorError                      every error this package raises
    ├── TransientError               retrying later may succeed (each retry resumes the .part)
    │   ├── ConnectTimeout           TCP connect + login took longer than Timeouts.connect
    │   ├── TransferStalled          no byte arrived for Timeouts.stall seconds
    │   ├── TruncatedTransfer        the stream ended before the remote size (even after a 226)
    │   ├── ConnectionLost           resets, drops, EOF on the control or data connection
    │   │   └── ConnectionRefused    nothing listens on the port (fatal before the first login)
    │   ├── ProtocolError            a reply we could not parse
    │   │   └── WrongVersion         an answer of another version than the part, or bytes
    │   │                            before a resume point that differ (restarted from 0)
    │   ├── ServerBusy               a 4xx reply (421, 425, 426, 450, 451, 452), HTTP 5xx
    │   │   ├── ServerPaused         S3's 429 or 503 (SlowDown): every session pauses;
    │   │   │                        retried without spending an attempt
    │   │   └── TooManyConnections   421 at greeting, or 530 "too many" after login
    │   └── ChecksumMismatch         the bytes do not hash to the expected MD5 (refetched from 0)
    ├── PermanentError               that file fails at once, never retried
    │   ├── RemoteFileError          a 5xx reply about the file (550, 553, ...)
    │   ├── ResumeRefused            the server refused or ignored REST (the run fetches
    │   │                            whole files from then on: see `_mirror`)
    │   ├── FileDeadlineExceeded     the optional whole-file deadline ran out
    │   └── LocalFileError           writing the local copy failed (disk full, permissions)
    ├── FatalError                   the whole run stops
    │   ├── LoginRefused             530 for credentials (not "too many connections")
    │   ├── ServerUnreachable        no such host, or the port refused the first connection
    │   └── DestinationBusy          another run holds DEST's lock
    ├── BadSource                    a malformed source (URL, preset, host, port, path): raised
    │                                when the call is made, nothing tried (also a ValueError)
    ├── AsyncioRequired              called under another event loop than asyncio (trio)
    └── DatasetError                 a question about DEST as a dataset (`status`,
                                     `load-order`, `ack`) that it cannot answer: DEST holds
                                     no mirror, a file not in the consumer's list, an ack
                                     backwards (nothing was changed)
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

__all__ = [
    "AsyncioRequired",
    "BadSource",
    "ChecksumMismatch",
    "ConnectTimeout",
    "ConnectionLost",
    "DestinationBusy",
    "ConnectionRefused",
    "DatasetError",
    "FatalError",
    "FileDeadlineExceeded",
    "LocalFileError",
    "LoginRefused",
    "MirrorError",
    "PermanentError",
    "ProtocolError",
    "RemoteFileError",
    "ResumeRefused",
    "ServerBusy",
    "ServerPaused",
    "ServerUnreachable",
    "TooManyConnections",
    "TransferStalled",
    "TransientError",
    "TruncatedTransfer",
    "WrongVersion",
]


class MirrorError(Exception):
    """Base of every error raised by pubmed_mirror.

    `path` names the remote file (or directory) concerned, `reply` quotes the server's reply
    when there was one; both appear in `str(error)`.
    """

    def __init__(self, message: str, *, path: str | None = None, reply: str | None = None):
        self.message = message
        self.path = path
        self.reply = reply
        super().__init__(str(self))

    def __str__(self) -> str:
        text = f"{self.path}: {self.message}" if self.path else self.message
        if self.reply:
            text += f" (server said: {self.reply!r})"
        return text


class TransientError(MirrorError):
    """Retrying later may succeed: 4xx replies, resets, stalls, truncated transfers."""


class ConnectTimeout(TransientError):
    """TCP connect plus login did not finish within the connect timeout."""


class TransferStalled(TransientError):
    """No byte was received for the stall timeout."""


class TruncatedTransfer(TransientError):
    """The data stream ended before the remote size was reached."""


class ConnectionLost(TransientError):
    """The control or data connection was reset or closed."""


class ConnectionRefused(ConnectionLost):
    """Nothing listens on the server's port (a daemon restarting, or the wrong port)."""


class ProtocolError(TransientError):
    """The server sent something we could not parse."""


class WrongVersion(ProtocolError):
    """The server answered with other bytes than those of the version the part holds
    (another size or total, validator, a content-coding not asked for, or bytes before a
    resume point that differ from the part's): none of them reach the part, which is
    thrown away; the file is fetched again from 0."""


class ServerBusy(TransientError):
    """The server answered with a transient (4xx) reply."""


class ServerPaused(ServerBusy):
    """An object store (S3) asked every session to slow down (429, 503 SlowDown): the
    server's gate waits it out (`_backoff`), `pause` seconds from the answer. Retried
    without spending an attempt of `--retries` (`_retry`) while the server has been busy
    for less than the policy's time bound, counted from `since` (the monotonic time of the
    first busy answer since it last answered a request normally)."""

    def __init__(self, message: str, *, path: str | None = None, reply: str | None = None,
                 pause: float = 0.0, since: float | None = None):
        super().__init__(message, path=path, reply=reply)
        self.pause = pause
        self.since = since


class TooManyConnections(ServerBusy):
    """The server refused a connection for being over its per-client limit."""


class ChecksumMismatch(TransientError):
    """The downloaded bytes do not match the expected MD5; the copy is discarded."""


class PermanentError(MirrorError):
    """This file cannot be fetched; retrying will not help."""


class RemoteFileError(PermanentError):
    """The server answered a request about the file with a permanent (5xx) reply."""


class ResumeRefused(PermanentError):
    """The server cannot resume this file: it refused REST, or said yes and sent from byte
    0 (or gives nothing to tell whether a part is of the same version). Retrying the resume
    will not help; a fetch from byte 0 may."""


class FileDeadlineExceeded(PermanentError):
    """The whole-file deadline passed before the file was complete."""


class LocalFileError(PermanentError):
    """Writing the local copy failed (disk full, permission denied, ...)."""


class FatalError(MirrorError):
    """The run cannot go on at all."""


class LoginRefused(FatalError):
    """The server refused the credentials."""


class ServerUnreachable(FatalError):
    """The host name does not resolve, or its port refused the run's first connection."""


class DestinationBusy(FatalError):
    """Another run is mirroring into the same destination."""


class DatasetError(MirrorError):
    """DEST cannot answer this question as a dataset (bad usage: nothing was changed)."""


class BadSource(MirrorError, ValueError):
    """The source is malformed: a URL, preset, host, port or path we cannot use. A ValueError
    too, as a bad argument is."""


class AsyncioRequired(MirrorError):
    """The library runs on asyncio only (aioftp, the FTP client it builds on, is
    asyncio-only); it was called under another event loop (trio)."""


def require_asyncio() -> None:
    """AsyncioRequired unless an asyncio event loop runs this call: under trio, aioftp would
    fail later with a bare RuntimeError from deep inside a connection."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        raise AsyncioRequired(
            "pubmed-mirror runs on asyncio only (aioftp is asyncio-only), not under trio or "
            "another event loop: use asyncio.run(...) or anyio.run(..., backend=\"asyncio\")"
        ) from None


Phase = Literal["connect", "login", "list", "stat", "retr", "transfer", "finish", "quit"]


@contextlib.contextmanager
def local_errors(path: Path) -> Iterator[None]:
    """Writing (or reading) a local file failed: LocalFileError naming it ("disk full" for
    ENOSPC)."""
    try:
        yield
    except OSError as exc:
        reason = "disk full" if exc.errno == errno.ENOSPC else exc.strerror or str(exc)
        raise LocalFileError(f"cannot write {path}: {reason}", path=path.name) from exc


def lone_error(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """The one error a task group's ExceptionGroup stands for: an interrupt first, then the
    first MirrorError, then the first other leaf."""
    leaves: list[BaseException] = []

    def flatten(exc: BaseException) -> None:
        if isinstance(exc, BaseExceptionGroup):
            for inner in exc.exceptions:
                flatten(inner)
        else:
            leaves.append(exc)

    flatten(group)
    for kind in (KeyboardInterrupt, SystemExit, MirrorError):
        for leaf in leaves:
            if isinstance(leaf, kind):
                return leaf
    return leaves[0]


@contextlib.contextmanager
def ungrouped() -> Iterator[None]:
    """Let a task group's error out as itself, not wrapped in an ExceptionGroup: callers of
    the API (and the CLI's one-line errors) catch MirrorError, OSError and KeyboardInterrupt."""
    try:
        yield
    except BaseExceptionGroup as group:
        leaf = lone_error(group)
        raise leaf from leaf.__cause__


def describe(error: BaseException) -> str:
    """One line for a log or a report."""
    if isinstance(error, MirrorError):
        return str(error)
    return f"{type(error).__name__}: {error}" if str(error) else type(error).__name__
