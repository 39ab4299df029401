"""What an HTTP answer or failure means, as the engine's error classes: a status (and its
`Retry-After`, which pauses every session: `_backoff`), a proxy's refusal, aiohttp's and
the network's exceptions. HTTP's counterpart of `_ftperrors`."""

from __future__ import annotations

import contextlib
import email.utils
import socket
import ssl
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING

import aiohttp

from ._errors import (
    ConnectionLost,
    ConnectionRefused,
    ConnectTimeout,
    LoginRefused,
    Phase,
    RemoteFileError,
    ServerBusy,
    ServerPaused,
    ServerUnreachable,
    TransferStalled,
)
from ._proxy import Proxy

if TYPE_CHECKING:
    from ._http import HttpTransport

__all__ = ["Redirected", "first_line", "mapped", "proxy_refused", "raise_for", "raise_for_status",
           "retry_after", "unparsed"]


def proxy_refused(status: int, reason: str, path: str, proxy: Proxy | None
                  ) -> LoginRefused | ServerUnreachable | ConnectionRefused | ConnectTimeout:
    """The proxy's refusal, fatal for the run (no retry gets past a proxy that says no);
    or its failure to reach the server (tinyproxy's 500 "Unable to connect", squid's 503,
    a 502; 504 for a connect that timed out): as that connection refused or timed out
    without a proxy, fatal at the run's first connection, else retried."""
    reply = f"{status} {reason}".strip()
    named = "the proxy" if proxy is None else f"the proxy {proxy.url}"  # (no credentials)
    if status in (401, 407):  # tinyproxy answers a CONNECT without credentials 401
        return LoginRefused(f"{named} demands credentials it did not accept (set them in "
                            "the proxy URL in https_proxy/http_proxy or in ~/.netrc)",
                            path=path, reply=reply)
    if status in (500, 502, 503, 504):
        failed = ConnectTimeout if status == 504 else ConnectionRefused
        return failed(f"{named} could not connect to the server", path=path, reply=reply)
    return ServerUnreachable(f"{named} refused the connection to the server",
                             path=path, reply=reply)


class Redirected(RemoteFileError):
    """A 3xx (never followed: `location` is where it points, as the server said it)."""

    def __init__(self, message: str, *, path: str | None = None, reply: str | None = None,
                 location: str | None = None) -> None:
        super().__init__(message, path=path, reply=reply)
        self.location = location


async def raise_for(response: aiohttp.ClientResponse, path: str,
                    transport: HttpTransport) -> None:
    await raise_for_status(response.status, response.reason or "",
                           {k.lower(): v for k, v in response.headers.items()}, path,
                           transport)


async def raise_for_status(status: int, reason: str, headers: dict[str, str], path: str,
                           transport: HttpTransport) -> None:
    """The error an answer of `status` from `transport`'s server (or its proxy) is; a busy
    answer closes its gate. An object store's 429 and 503 ask to slow down (S3's
    SlowDown), a pause that spends no retry (`ServerPaused`)."""
    gate, proxy = transport.gate, transport.proxy
    reply = f"{status} {reason}".strip()
    if status == 407:  # only a proxy asks this (plain http: its answer to the request)
        raise proxy_refused(status, reason, path, proxy)
    # plain http through a proxy: the answer may be the proxy's own (its 403 for a
    # destination it refuses, its 502 for one it cannot reach), nothing tells which
    server = "the server" if proxy is None else f"the server (through the proxy {proxy.url})"
    if status in (408, 429) or status >= 500:
        wait = retry_after(headers.get("retry-after"))
        if status in (429, 503) or wait is not None:  # every session pauses (`_backoff`)
            pause = gate.close(wait, reply=f"{path}: {reply}")
            if transport.object_store:
                raise ServerPaused(f"{server} answered {reply}", path=path, reply=reply,
                                   pause=pause, since=gate.busy_since)
        raise ServerBusy(f"{server} answered {reply}", path=path, reply=reply)
    if 300 <= status < 400:
        raise Redirected(f"redirected ({reply}) to {headers.get('location')}",
                         path=path, reply=reply, location=headers.get("location"))
    raise RemoteFileError(f"{server} answered {reply}", path=path, reply=reply)


def unparsed(exc: aiohttp.ClientResponseError) -> bool:
    """Whether aiohttp raised it for an answer its parser refused (its `status` is then
    aiohttp's own 400, not the answer's: see ClientResponse.start)."""
    return isinstance(exc.__cause__, aiohttp.http_exceptions.HttpProcessingError)


def retry_after(value: str | None) -> float | None:
    if not value:
        return None
    if value.strip().isdigit():
        return float(value.strip())
    with contextlib.suppress(TypeError, ValueError):
        when = email.utils.parsedate_to_datetime(value).timestamp()
        return max(0.0, when - time.time())
    return None


def first_line(exc: BaseException) -> str:
    """What an error says, in one short line: a parser's message (ClientResponseError)
    goes on to quote the bytes it choked on (a proxy's whole error page)."""
    if isinstance(exc, aiohttp.ClientResponseError):
        text = (exc.message or "").splitlines()
        return f"{exc.status}, {text[0]}" if text else str(exc.status)
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


@contextlib.contextmanager
def mapped(phase: Phase, path: str, proxy: Proxy | None = None) -> Iterator[None]:
    """aiohttp's and the network's errors as the engine's classes (`proxy`: the one the
    request goes through, named in its refusals)."""
    try:
        yield
    except aiohttp.ClientConnectorCertificateError as exc:
        raise ServerUnreachable(f"the server's certificate is not trusted: "
                                f"{exc.certificate_error}", path=path) from exc
    except ssl.SSLCertVerificationError as exc:  # a body's own connection (`_raw_get`)
        raise ServerUnreachable(f"the server's certificate is not trusted: "
                                f"{exc.verify_message}", path=path) from exc
    except aiohttp.ClientHttpProxyError as exc:  # the proxy's answer to CONNECT
        raise proxy_refused(exc.status, exc.message, path, proxy) from exc
    except aiohttp.ClientProxyConnectionError as exc:
        raise (ConnectionRefused if isinstance(exc.os_error, ConnectionRefusedError)
               else ConnectionLost)(f"cannot connect to the proxy during {phase}: "
                                    f"{exc.os_error}", path=path) from exc
    except aiohttp.ClientConnectorDNSError as exc:
        raise ConnectionRefused(f"no such host ({exc.os_error})", path=path) from exc
    except aiohttp.ClientConnectorError as exc:
        if isinstance(exc.os_error, ConnectionRefusedError | socket.gaierror):
            raise ConnectionRefused(f"cannot connect during {phase}: {exc.os_error}",
                                    path=path) from exc
        raise ConnectionLost(f"cannot connect during {phase}: {exc.os_error}",
                             path=path) from exc
    except aiohttp.ConnectionTimeoutError as exc:
        raise ConnectTimeout(f"no connection within the connect timeout during {phase}",
                             path=path) from exc
    except aiohttp.ServerTimeoutError as exc:
        raise TransferStalled(f"no data during {phase}: {exc}", path=path) from exc
    except ConnectionRefusedError as exc:
        raise ConnectionRefused(f"connection refused during {phase}", path=path) from exc
    except (aiohttp.ClientPayloadError, aiohttp.ServerDisconnectedError,
            aiohttp.ClientOSError, aiohttp.ClientResponseError, ConnectionError) as exc:
        raise ConnectionLost(f"connection lost during {phase} ({first_line(exc)})",
                             path=path) from exc
    except TimeoutError as exc:
        raise TransferStalled(f"no answer during {phase}", path=path) from exc
    except OSError as exc:  # socket.gaierror, an unreachable network: not a local file
        raise ConnectionLost(f"network error during {phase}: {exc}", path=path) from exc
