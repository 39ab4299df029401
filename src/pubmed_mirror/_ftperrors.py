"""What an FTP reply or failure means, as the engine's error classes: aioftp's, the
socket's and a timeout's exceptions, and the replies that say the whole server is busy (so
every session pauses: `_backoff`). FTP's counterpart of `_httperrors`; imported with the
FTP transport only, so that a run over HTTP(S) or S3 never loads aioftp."""

from __future__ import annotations

import asyncio
import contextlib
import re
import socket
from collections.abc import Iterator

import aioftp

from ._errors import (
    ConnectionLost,
    ConnectionRefused,
    ConnectTimeout,
    LoginRefused,
    MirrorError,
    Phase,
    ProtocolError,
    RemoteFileError,
    ServerBusy,
    ServerUnreachable,
    TooManyConnections,
    TransferStalled,
)

__all__ = ["busy_reply", "classify_reply", "map_ftp_errors"]


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
