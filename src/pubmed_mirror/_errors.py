"""The exception tree, and the one place where third-party errors are translated into it.

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
    │   ├── ServerBusy               a 4xx reply (421, 425, 426, 450, 451, 452)
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
import re
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

import aioftp

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

# proftpd: "530 Sorry, the maximum number of clients (2) from your host are already connected."
# pyftpdlib/pure-ftpd/vsftpd: "421 Too many connections", "421 There are too many connections..."
_TOO_MANY = re.compile(r"too many|maximum number|max.*(clients|connections)|limit", re.IGNORECASE)


def _reply_text(exc: aioftp.StatusCodeError) -> tuple[str, str]:
    code = str(exc.received_codes[-1]) if exc.received_codes else "???"
    lines = [line.strip() for line in exc.info if line and line.strip()]
    return code, f"{code} {' '.join(lines)}".strip()


def classify_reply(
    exc: aioftp.StatusCodeError, *, phase: Phase, path: str | None
) -> MirrorError:
    """Turn an FTP reply that was not the expected one into the matching MirrorError."""
    code, reply = _reply_text(exc)
    too_many = bool(_TOO_MANY.search(reply))
    if code == "421" and phase in ("connect", "login"):
        return TooManyConnections("connection refused by the server", path=path, reply=reply)
    if code == "530" and phase in ("connect", "login"):
        if too_many:
            return TooManyConnections("login refused: too many connections", path=path, reply=reply)
        return LoginRefused("login refused", path=path, reply=reply)
    if code.startswith("4"):
        return ServerBusy(f"transient reply during {phase}", path=path, reply=reply)
    if code.startswith("5"):
        return RemoteFileError(f"permanent reply during {phase}", path=path, reply=reply)
    return ProtocolError(f"unexpected reply during {phase}", path=path, reply=reply)


def busy_reply(exc: aioftp.StatusCodeError) -> str | None:
    """The reply, when it says the whole server is busy (421 "service not available", or
    530 "too many"), so that every session should pause; None for any other reply."""
    code, reply = _reply_text(exc)
    if code == "421" and _IDLE.search(reply):  # that session idled too long: not load
        return None
    if code == "421" or (code == "530" and _TOO_MANY.search(reply)):
        return reply
    return None


_IDLE = re.compile(r"idle|time ?out|timed out", re.IGNORECASE)


@contextlib.contextmanager
def map_ftp_errors(*, phase: Phase, path: str | None) -> Iterator[None]:
    """Translate aioftp, socket and timeout errors into the project's tree (the only such place)."""
    try:
        yield
    except MirrorError:
        raise
    except aioftp.StatusCodeError as exc:
        raise classify_reply(exc, phase=phase, path=path) from exc
    except TimeoutError as exc:
        if phase in ("connect", "login"):
            raise ConnectTimeout("connect timed out", path=path) from exc
        raise TransferStalled(f"no reply or data during {phase}", path=path) from exc
    except socket.gaierror as exc:
        raise ServerUnreachable(f"cannot resolve host: {exc.strerror}", path=path) from exc
    except ConnectionRefusedError as exc:
        raise ConnectionRefused(f"connection refused during {phase}", path=path) from exc
    except (ConnectionError, EOFError, asyncio.IncompleteReadError) as exc:
        detail = type(exc).__name__ if not str(exc) else f"{type(exc).__name__}: {exc}"
        raise ConnectionLost(f"connection lost during {phase} ({detail})", path=path) from exc
    except OSError as exc:
        raise ConnectionLost(f"network error during {phase}: {exc}", path=path) from exc
    except (ValueError, IndexError, UnicodeDecodeError, aioftp.AIOFTPException) as exc:
        raise ProtocolError(f"bad server response during {phase}: {exc!r}", path=path) from exc


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
