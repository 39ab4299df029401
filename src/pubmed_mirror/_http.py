"""The HTTP(S) transport: everything aiohttp-specific sits here.

A session is one aiohttp ClientSession holding at most one connection (kept alive across
requests), so a pool of N sessions is N connections, as with FTP. A directory is listed by
parsing its autoindex page as it arrives (`_autoindex`); a file's size and time come from
HEAD (a rounded listed size is settled by `_sizes`); reading from an offset is a `Range`
request (with `If-Range` when resuming), and an answer that is not the range asked for,
of the part's version, is never appended to a part (`_httpcheck`).

Timeouts: an answer's headers must be in within the stall timeout of the request being
sent (headers trickling in are no progress); a body may not go silent for longer; a
listing must be complete within `listing_deadline`.
"""

from __future__ import annotations

import contextlib
import email.utils
import functools
import logging
import math
import socket
import ssl
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar
from urllib.parse import quote

import aiohttp
import anyio

from . import __version__  # the package is loaded first: this module is imported lazily
from ._autoindex import AutoindexParser
from ._backoff import ServerGate
from ._direct import DirectReceiver, Mover, chunk_for, connect_socket, write_all
from ._errors import (
    ConnectionLost,
    ConnectionRefused,
    ConnectTimeout,
    LoginRefused,
    Phase,
    ProtocolError,
    RemoteFileError,
    ServerBusy,
    ServerUnreachable,
    TransferStalled,
)
from ._httpcheck import check_answer, request_headers, validator
from ._proxy import Proxy
from ._ratelimit import TokenBucket
from ._transfer import RemoteFile
from ._transport import RemoteEntry, listing_deadline

__all__ = ["USER_AGENT", "HttpSession", "HttpTransport", "user_agent"]

log = logging.getLogger("pubmed_mirror")

_Entries = list[RemoteEntry]  # HttpSession.list shadows the builtin inside the class
_T = TypeVar("_T")

_LISTING_LIMIT = 64 << 20  # a directory page larger than this is not a listing
_HEAD_LIMIT = 64 << 10  # an answer's headers
_PAGE_TYPES = ("text/html", "application/xhtml+xml")

USER_AGENT = f"pubmed-mirror/{__version__}"


def user_agent(address: str | None) -> str:
    """Who is asking: the tool and version, and a contact when the user gave one (the
    etiquette NCBI asks of anonymous FTP, kept over HTTP)."""
    return USER_AGENT if address is None else f"{USER_AGENT} (+mailto:{address})"


@dataclass(frozen=True, slots=True, kw_only=True)
class HttpTransport:
    """Opens sessions to one web server (`scheme` "http" or "https")."""

    scheme: str
    host: str
    port: int
    probe: str = "/"  # a path requested (HEAD) when a session opens: the source directory
    connect_timeout: float = 30.0
    stall_timeout: float = 60.0
    command_bucket: TokenBucket | None = None
    ssl_context: ssl.SSLContext | None = None  # https: None means the system's trust store
    gate: ServerGate = field(default_factory=ServerGate)  # shared by the sessions it opens
    proxy: Proxy | None = None  # every request goes through it (CONNECT for https)
    user_agent: str = USER_AGENT  # may hold the user's address: never in repr

    def __repr__(self) -> str:
        via = f" via {self.proxy}" if self.proxy else ""
        return f"HttpTransport({self.scheme}://{self.address}{via})"

    @property
    def address(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    async def connect(self) -> HttpSession:
        """A session whose first connection is made (and, for https, verified) at once."""
        connector = aiohttp.TCPConnector(
            limit=1, ssl=(self.ssl_context or True) if self.scheme == "https" else False,
            enable_cleanup_closed=False)
        client = aiohttp.ClientSession(
            base_url=f"{self.scheme}://{self.address}", connector=connector,
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=self.connect_timeout,
                                          sock_read=self.stall_timeout),
            auto_decompress=False, raise_for_status=False,
            # the proxy is chosen by `_proxy` (curl's rules), not by aiohttp's reading
            trust_env=False, proxy=self.proxy.url if self.proxy else None,
            proxy_auth=(aiohttp.BasicAuth(self.proxy.user, self.proxy.password or "")
                        if self.proxy and self.proxy.user is not None else None),
            trace_configs=[_ANSWER_TRACE],
            # never compressed: a gzipped index page is not a listing, a compressed body
            # not the file (Debian's nginx and Apache compress text/html by default)
            headers={"Accept-Encoding": "identity", "User-Agent": self.user_agent})
        session = HttpSession(client, self)
        try:
            await self.gate.wait()  # not within the connect timeout
            with anyio.fail_after(self.connect_timeout):
                await session.stat(self.probe, phase="connect", kind_check=False,
                                   label=f"{self.scheme}://{self.address}{self.probe}")
        except TimeoutError:
            await _close(client)
            raise ConnectTimeout(f"no answer within {self.connect_timeout:g} s",
                                 path=self.address) from None
        except BaseException:
            await _close(client)
            raise
        return session


async def _close(client: aiohttp.ClientSession) -> None:
    """Close a session even while cancelled (bounded): never leave it open behind us."""
    with anyio.CancelScope(shield=True), anyio.move_on_after(2.0):
        await client.close()


class HttpSession:
    """One aiohttp ClientSession with one connection; `healthy` until closed (a broken
    connection is replaced by the next request, so an error does not spoil the session)."""

    def __init__(self, client: aiohttp.ClientSession, transport: HttpTransport) -> None:
        self.client = client
        self.transport = transport
        self.healthy = True

    def __repr__(self) -> str:
        return f"<HttpSession {self.transport.address}>"

    async def _pay(self) -> None:
        await self.transport.gate.wait()
        if self.transport.command_bucket is not None:
            await self.transport.command_bucket.acquire(1)

    @contextlib.asynccontextmanager
    async def _request(self, method: str, path: str, *, phase: Phase,
                       headers: dict[str, str] | None = None, label: str | None = None,
                       paid: bool = False) -> AsyncIterator[aiohttp.ClientResponse]:
        """A request whose answer is a success (2xx); anything else is raised, classified
        (naming `label`, the path by default). Its headers must be in within the stall
        timeout of the request being sent. `paid`: its command token was taken already."""
        if not paid:
            await self._pay()
        waiting = _AnswerWait(self.transport.stall_timeout)
        with _mapped(phase, label or path):
            with waiting.scope:
                response = await self.client.request(
                    method, _quote(path), headers=headers, allow_redirects=False,
                    trace_request_ctx=waiting)
            if waiting.scope.cancelled_caught:
                raise TransferStalled(f"no answer within {self.transport.stall_timeout:g} s "
                                      f"of the request during {phase}", path=label or path)
            async with response:
                if response.status >= 300:
                    await _raise_for(response, label or path, self.transport.gate)
                self.transport.gate.served()
                yield response

    async def list(self, path: str) -> _Entries:
        """The entries of a directory's index page; a rounded size stays None, with the
        bounds it was shown as, for the caller to settle (`_sizes`: the manifest or HEAD)."""
        directory = path if path.endswith("/") else path + "/"
        deadline = listing_deadline(self.transport.stall_timeout)
        await self._pay()  # (waiting for its turn is not the listing's time)
        with anyio.move_on_after(deadline) as whole:
            listed = await self._index(directory, path)
        if whole.cancelled_caught:
            raise TransferStalled(f"the listing was not complete within {deadline:g} s",
                                  path=path)
        return listed

    async def _index(self, directory: str, path: str) -> _Entries:
        """The entries of the index page, parsed as the page arrives (never held whole)."""
        async with self._request("GET", directory, phase="list", paid=True) as response:
            _check_page(response, path)
            parser = AutoindexParser(response.charset)
            entries: _Entries = []
            received = 0
            with _mapped("list", path):
                while chunk := await response.content.readany():  # to the end of the page
                    received += len(chunk)
                    if received > _LISTING_LIMIT:
                        raise ProtocolError(f"a listing larger than {_LISTING_LIMIT} bytes",
                                            path=path)
                    entries += parser.feed(chunk)
            entries += parser.close()
        if not parser.is_index:
            shown = f"a page titled {parser.title!r}" if parser.title else "no 'Index of' title"
            raise RemoteFileError(f"not a directory index ({shown})", path=path)
        return entries

    async def stat(self, path: str, *, phase: Phase = "stat", kind_check: bool = True,
                   label: str | None = None) -> RemoteEntry:
        """Size (Content-Length), time (Last-Modified) and validator from HEAD."""
        async with self._request("HEAD", path, phase=phase, label=label) as response:
            length = response.headers.get("Content-Length")
            modified = response.headers.get("Last-Modified")
            named = validator(response.headers)
        size = int(length) if length is not None and length.isdigit() else None
        mtime = None
        if modified:
            with contextlib.suppress(TypeError, ValueError):
                mtime = email.utils.parsedate_to_datetime(modified).timestamp()
        name = path.rstrip("/").rsplit("/", 1)[-1]
        if kind_check and size is None:
            raise ProtocolError("no Content-Length in the answer to HEAD", path=path)
        return RemoteEntry(name, size, mtime, validator=named)

    @contextlib.asynccontextmanager
    async def open_read(self, path: str, offset: int, *, buffer: int | None = None,
                        expect: RemoteFile | None = None) -> AsyncIterator[_Body]:
        """The ranged GET through aiohttp (its buffer: `buffer` is not applied); an answer
        not of `expect` raises WrongVersion (see `_httpcheck`)."""
        headers = request_headers(offset, expect)
        async with self._request("GET", path, phase="retr", headers=headers) as response:
            skip = check_answer(response.status, response.headers, path, offset, expect)
            rest = await _skip(response, skip, path) if skip else b""
            body = _Body(response, path, rest)
            try:
                yield body
            finally:
                body.close()

    @contextlib.asynccontextmanager
    async def open_direct(self, path: str, offset: int, *, buffer: int | None = None,
                          mover: Mover = "splice", expect: RemoteFile | None = None
                          ) -> AsyncIterator[_Body | _RawBody]:
        """The ranged GET on a connection of its own, its body then received like an FTP
        data connection: plain HTTP spliced by `mover`, HTTPS decrypted by `recv_into`
        straight into the part's buffer (through aiohttp it went through asyncio's TLS
        buffers and three more copies: twice the CPU, benchmarks/results/WHY.md). An
        answer that is not a plain body: copied from aiohttp's buffer."""
        receiver = await self._raw_get(path, offset, buffer, mover, expect)
        if receiver is None:
            async with self.open_read(path, offset, expect=expect) as body:
                yield body
            return
        try:
            yield receiver  # the body ends with the connection: `finish` closes it
        finally:
            receiver.close()

    async def _raw_get(self, path: str, offset: int, buffer: int | None, mover: Mover,
                       expect: RemoteFile | None) -> _RawBody | None:
        """GET with Range and `Connection: close` on a socket of our own, up to the end of
        the headers: the body's receiver (holding the body bytes that came with the
        headers), or None when the answer is not one to receive so (a 200 to a range, or
        chunked: asked again through aiohttp). An answer of another version is raised."""
        await self._pay()
        transport = self.transport
        asked = "".join(f"{k}: {v}\r\n" for k, v in request_headers(offset, expect).items())
        target = _quote(path)
        if transport.proxy is not None and transport.scheme == "http":
            # the absolute-form request to the proxy (RFC 9112 3.2.2), which passes the
            # body on as it came, so the splice path stays (https: a CONNECT tunnel)
            target = f"http://{transport.address}{target}"
            if (credentials := transport.proxy.authorization()) is not None:
                asked += f"Proxy-Authorization: {credentials}\r\n"
        with _mapped("retr", path), anyio.fail_after(transport.stall_timeout):
            sock = await self._connect_direct(buffer, path)
            try:
                await _send_all(sock, (
                    f"GET {target} HTTP/1.1\r\nHost: {transport.address}\r\n{asked}"
                    "Accept-Encoding: identity\r\n"
                    f"Connection: close\r\nUser-Agent: {transport.user_agent}\r\n\r\n").encode())
                head, body = await _read_head(sock, path)
            except BaseException:
                sock.close()
                raise
        try:
            status, reason, headers = _parse_head(head, path)
            if status >= 300:
                await _raise_for_status(status, reason, headers, path, transport.gate)
            transport.gate.served()
            skip = check_answer(status, headers, path, offset, expect)
            if skip or "transfer-encoding" in headers:
                sock.close()
                return None
        except BaseException:
            sock.close()
            raise
        length = headers.get("content-length", "")
        return _RawBody(sock, mover=mover if transport.scheme == "http" else "recv",
                        chunk=chunk_for(buffer), path=path, prefix=body,
                        length=int(length) if length.isdigit() else None,
                        validator=validator(headers))

    async def _connect_direct(self, buffer: int | None, path: str) -> socket.socket:
        """A connection to the server for one body, through the proxy if any (https: a
        CONNECT tunnel), with TLS for https, verified as aiohttp's sessions are."""
        transport, proxy = self.transport, self.transport.proxy
        peer = (proxy.host, proxy.port) if proxy else (transport.host, transport.port)
        sock = await connect_socket(*peer, buffer)
        if transport.scheme == "http":
            return sock
        try:
            if proxy is not None:
                await _tunnel(sock, transport.address, proxy, path)
            tls = (transport.ssl_context or _system_trust()).wrap_socket(
                sock, server_hostname=transport.host, do_handshake_on_connect=False,
                suppress_ragged_eofs=False)  # a body cut short is a lost connection
        except BaseException:
            sock.close()
            raise
        try:
            await _nonblocking(tls, tls.do_handshake)
        except BaseException:
            tls.close()
            raise
        return tls

    async def aclose(self) -> None:
        self.healthy = False
        await _close(self.client)


class _AnswerWait:
    """The stall timeout for an answer's headers, from the request being sent (traced:
    a new connection's connect has its own timeout) until its headers are in."""

    def __init__(self, stall: float) -> None:
        self.scope = anyio.CancelScope(deadline=math.inf)
        self._stall = stall

    def sent(self) -> None:
        self.scope.deadline = anyio.current_time() + self._stall


async def _on_headers_sent(session: aiohttp.ClientSession, context: object,
                           params: aiohttp.TraceRequestHeadersSentParams) -> None:
    waiting = getattr(context, "trace_request_ctx", None)
    if isinstance(waiting, _AnswerWait):
        waiting.sent()


_ANSWER_TRACE = aiohttp.TraceConfig()
_ANSWER_TRACE.on_request_headers_sent.append(_on_headers_sent)


class _RawBody(DirectReceiver):
    """A plain HTTP body on a connection of its own, received like an FTP data connection."""

    def __init__(self, sock: socket.socket, *, validator: str | None, **kwargs: Any) -> None:
        super().__init__(sock, **kwargs)
        self.validator: str | None = validator


class _Body:
    """A response body as both a ReadStream and a DirectStream (copied, never spliced)."""

    mover: Mover = "recv"

    def __init__(self, response: aiohttp.ClientResponse, path: str, first: bytes) -> None:
        self._response = response
        self._path = path
        self._stash = first  # received, not yet handed out
        self.validator: str | None = validator(response.headers)

    async def readable(self) -> None:
        if not self._stash and not self._response.content.at_eof():
            with _mapped("transfer", self._path):
                self._stash = await self._response.content.readany()

    def move(self, fd: int, offset: int, limit: int) -> int:
        data = self._stash or self._response.content.read_nowait(limit)
        if not data:
            if self._response.content.at_eof():
                return 0
            raise BlockingIOError
        chunk, self._stash = data[:limit], data[limit:]
        write_all(fd, memoryview(chunk), offset)
        return len(chunk)

    async def read(self) -> memoryview:
        if not self._stash:
            await self.readable()
        data, self._stash = self._stash, b""
        return memoryview(data)

    async def finish(self) -> None:
        self._response.release()

    def close(self) -> None:
        if not self._response.content.at_eof():
            self._response.close()  # the rest is not wanted: the connection goes


def _quote(path: str) -> str:
    return quote(path, safe="/")


@functools.cache
def _system_trust() -> ssl.SSLContext:
    """The system's trust store, for a transport given no context (made once: loading it
    takes ~50 ms of CPU here)."""
    return ssl.create_default_context()


async def _nonblocking(sock: socket.socket, call: Callable[[], _T], *,
                       sending: bool = False) -> _T:
    """`call` on a non-blocking socket, plain or TLS, waiting as it asks until it goes
    through (TLS may want to read to send, and the other way round)."""
    while True:
        try:
            return call()
        except ssl.SSLWantReadError:
            await anyio.wait_readable(sock)
        except ssl.SSLWantWriteError:
            await anyio.wait_writable(sock)
        except BlockingIOError:
            await (anyio.wait_writable if sending else anyio.wait_readable)(sock)


async def _send_all(sock: socket.socket, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[await _nonblocking(sock, functools.partial(sock.send, view),
                                       sending=True):]


async def _read_head(sock: socket.socket, path: str) -> tuple[bytes, bytes]:
    """An answer's status line and headers, and the bytes after them that came along."""
    data = b""
    while b"\r\n\r\n" not in data:
        if len(data) > _HEAD_LIMIT:
            raise ProtocolError("an answer's headers over 64 KiB", path=path)
        chunk = await _nonblocking(sock, functools.partial(sock.recv, 1 << 16))
        if not chunk:
            raise ConnectionLost("connection closed before the answer", path=path)
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    return head, rest


async def _tunnel(sock: socket.socket, address: str, proxy: Proxy, path: str) -> None:
    """CONNECT through the proxy to the server at `address`; a refusal is the proxy's."""
    asked = f"CONNECT {address} HTTP/1.1\r\nHost: {address}\r\n"
    if (credentials := proxy.authorization()) is not None:
        asked += f"Proxy-Authorization: {credentials}\r\n"
    await _send_all(sock, f"{asked}\r\n".encode())
    head, rest = await _read_head(sock, path)
    status, reason, _ = _parse_head(head, path)
    if not 200 <= status < 300:
        raise _proxy_refused(status, reason, path)
    if rest:  # the server's side of the tunnel speaks only after our ClientHello
        raise ProtocolError("the proxy answered CONNECT with bytes of its own", path=path)


def _check_page(response: aiohttp.ClientResponse, path: str) -> None:
    """A listing comes as HTML, not compressed (it was asked for as identity)."""
    kind = response.headers.get("Content-Type", "").split(";", 1)[0].strip().lower()
    if kind and kind not in _PAGE_TYPES:
        raise RemoteFileError(f"not a directory index (Content-Type {kind})", path=path)
    if response.headers.get("Content-Encoding", "identity") != "identity":
        raise ProtocolError("the listing came compressed although asked not to be",
                            path=path)


async def _skip(response: aiohttp.ClientResponse, offset: int, path: str) -> bytes:
    """Read past the first `offset` bytes of a whole-file answer to a range request (the
    server ignores Range): never appended, they are what the part holds already. Each read
    is bounded by the stall timeout (aiohttp's sock_read); the bytes after them are
    returned. They pass outside --rate-limit: a server that ignores Range costs that."""
    log.warning("%s: the server ignores Range: reading past %d bytes", path, offset)
    left = offset
    with _mapped("transfer", path):
        while left:
            chunk = await response.content.readany()
            if not chunk:
                raise ProtocolError("the answer ended before the range asked for", path=path)
            if len(chunk) > left:
                return chunk[left:]
            left -= len(chunk)
    return b""


def _parse_head(head: bytes, path: str) -> tuple[int, str, dict[str, str]]:
    """Status, reason and headers (names lowercased) of an HTTP/1.x answer."""
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or not parts[1].isdigit():
        raise ProtocolError(f"not an HTTP answer: {lines[0][:80]!r}", path=path)
    headers = {}
    for line in lines[1:]:
        name, colon, value = line.partition(":")
        if colon:
            headers[name.strip().lower()] = value.strip()
    return int(parts[1]), parts[2] if len(parts) > 2 else "", headers


async def _raise_for(response: aiohttp.ClientResponse, path: str, gate: ServerGate) -> None:
    await _raise_for_status(response.status, response.reason or "",
                            {k.lower(): v for k, v in response.headers.items()}, path, gate)


async def _raise_for_status(status: int, reason: str, headers: dict[str, str],
                            path: str, gate: ServerGate) -> None:
    reply = f"{status} {reason}".strip()
    if status == 407:  # only a proxy asks this (plain http: its answer to the request)
        raise _proxy_refused(status, reason, path)
    if status in (408, 429) or status >= 500:
        wait = _retry_after(headers.get("retry-after"))
        if status in (429, 503) or wait is not None:  # every session pauses (`_backoff`)
            gate.close(wait, reply=f"{path}: {reply}")
        raise ServerBusy(f"the server answered {reply}", path=path, reply=reply)
    if 300 <= status < 400:
        raise RemoteFileError(f"redirected ({reply}) to {headers.get('location')}",
                              path=path, reply=reply)
    raise RemoteFileError(f"the server answered {reply}", path=path, reply=reply)


def _proxy_refused(status: int, reason: str, path: str) -> LoginRefused | ServerUnreachable:
    """The proxy's refusal, fatal for the run (no retry gets past a proxy that says no)."""
    reply = f"{status} {reason}".strip()
    if status in (401, 407):  # tinyproxy answers a CONNECT without credentials 401
        return LoginRefused("the proxy demands credentials it did not accept (set them in "
                            "the proxy URL in https_proxy/http_proxy or in ~/.netrc)",
                            path=path, reply=reply)
    return ServerUnreachable("the proxy refused the connection to the server",
                             path=path, reply=reply)


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    if value.strip().isdigit():
        return float(value.strip())
    with contextlib.suppress(TypeError, ValueError):
        when = email.utils.parsedate_to_datetime(value).timestamp()
        return max(0.0, when - time.time())
    return None


def _first_line(exc: BaseException) -> str:
    """What an error says, in one short line: a parser's message (ClientResponseError)
    goes on to quote the bytes it choked on (a proxy's whole error page)."""
    if isinstance(exc, aiohttp.ClientResponseError):
        text = (exc.message or "").splitlines()
        return f"{exc.status}, {text[0]}" if text else str(exc.status)
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


@contextlib.contextmanager
def _mapped(phase: Phase, path: str) -> Iterator[None]:
    """aiohttp's and the network's errors as the engine's classes."""
    try:
        yield
    except aiohttp.ClientConnectorCertificateError as exc:
        raise ServerUnreachable(f"the server's certificate is not trusted: "
                                f"{exc.certificate_error}", path=path) from exc
    except ssl.SSLCertVerificationError as exc:  # a body's own connection (`_raw_get`)
        raise ServerUnreachable(f"the server's certificate is not trusted: "
                                f"{exc.verify_message}", path=path) from exc
    except aiohttp.ClientHttpProxyError as exc:  # the proxy's answer to CONNECT
        raise _proxy_refused(exc.status, exc.message, path) from exc
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
        raise ConnectionLost(f"connection lost during {phase} ({_first_line(exc)})",
                             path=path) from exc
    except TimeoutError as exc:
        raise TransferStalled(f"no answer during {phase}", path=path) from exc
    except OSError as exc:  # socket.gaierror, an unreachable network: not a local file
        raise ConnectionLost(f"network error during {phase}: {exc}", path=path) from exc

