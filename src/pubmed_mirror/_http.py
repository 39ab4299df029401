"""The HTTP(S) transport: sessions over aiohttp (what their answers and errors mean:
`_httperrors`; a large body's connection of its own: `_rawhttp`).

A session is one aiohttp ClientSession holding at most one connection (kept alive across
requests), so a pool of N sessions is N connections, as with FTP. A directory is listed by
parsing its autoindex page as it arrives (`_httpindex`, `_autoindex`; a page that does not
mark its directories, whole: `_unmarked`); a file's size and
time come from HEAD (a rounded listed size is settled by `_sizes`); reading from an offset
is a `Range` request (with `If-Range` when resuming), and an answer that is not the range
asked for, of the part's version, is never appended to a part (`_httpcheck`).

Timeouts: an answer's headers must be in within the stall timeout of the request being
sent (headers trickling in are no progress); a body may not go silent for longer; a
listing must be complete within `listing_deadline` (`_httpindex`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import socket
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import quote

import aiohttp
import anyio
import yarl

from . import __version__  # the package is loaded first: this module is imported lazily
from ._backoff import ServerGate
from ._direct import DirectReceiver, Mover, chunk_for, connect_socket, write_all
from ._errors import (
    ConnectTimeout,
    Phase,
    ProtocolError,
    TransferStalled,
    TransientError,
)
from ._httpcheck import check_answer, head_entry, request_headers, validator
from ._httperrors import Redirected, mapped, raise_for, raise_for_status, unparsed
from ._httpindex import names_directory, read_index
from ._proxy import Proxy
from ._ratelimit import TokenBucket
from ._rawhttp import (
    nonblocking,
    parse_head,
    read_head,
    send_all,
    system_trust,
    tunnel,
)
from ._transfer import RemoteFile
from ._transport import EntrySink, RemoteEntry
from ._whole import IN_MEMORY

__all__ = ["USER_AGENT", "HttpSession", "HttpTransport", "user_agent"]

log = logging.getLogger("pubmed_mirror")

_Entries = list[RemoteEntry]  # HttpSession.list shadows the builtin inside the class

# on every request: a cache on the way (a proxy's, a CDN's) asks the server before it
# answers, never a listing, a size or a body from memory alone (a replaced file came back
# in its old version on every retry through a caching squid); `Pragma` for HTTP/1.0 caches
_FRESH = {"Cache-Control": "no-cache", "Pragma": "no-cache"}

# a body smaller than this comes on the session's kept-alive connection, not spliced on one
# of its own: it fits in one of asyncio's reads (256 KiB at most), so a splice saves no copy
# worth having, and a new connection costs a handshake, a round trip on a far link (4 KiB
# S3 objects at 200 ms RTT, measured: 0.42 s from start to done each on connections of
# their own, 0.23 s kept alive); it is received into memory (`_whole`) unless resumed
_OWN_CONNECTION = IN_MEMORY

USER_AGENT = f"pubmed-mirror/{__version__}"


class Signer(Protocol):
    """Signs requests (S3 with credentials, `_s3`): `fresh` before each, off the event loop
    where it must reach the network; then the headers to add that sign `method` of `url`
    (absolute, as sent) with `headers`."""

    async def fresh(self) -> None: ...

    def __call__(self, method: str, url: str,
                 headers: Mapping[str, str]) -> Mapping[str, str]: ...


# an answer that is not a success, before the generic classification: may raise its own error
# after reading the body (S3's <Error><Code>), else returns and the generic error is raised
ErrorReader = Callable[[aiohttp.ClientResponse, str], Awaitable[None]]


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
    # a path requested (HEAD) when a session opens: the source directory (None: no probe,
    # the first request connects)
    probe: str | None = "/"
    connect_timeout: float = 30.0
    stall_timeout: float = 60.0
    command_bucket: TokenBucket | None = None
    ssl_context: ssl.SSLContext | None = None  # https: None means the system's trust store
    gate: ServerGate = field(default_factory=ServerGate)  # shared by the sessions it opens
    proxy: Proxy | None = None  # every request goes through it (CONNECT for https)
    user_agent: str = USER_AGENT  # may hold the user's address: never in repr
    signer: Signer | None = None  # signs every request (S3 with credentials)
    # an object store (S3): an answer's Content-Encoding says how the object is stored (its
    # metadata), its body is the stored bytes, taken as they are, and its ETag names the
    # object's version at any offset (`_httpcheck.check_answer`); a 429 or 503 asks to slow
    # down, waited out at the gate without spending a retry (`ServerPaused`)
    object_store: bool = False

    def __repr__(self) -> str:
        via = f" via {self.proxy}" if self.proxy else ""
        return f"HttpTransport({self.scheme}://{self.address}{via})"

    @property
    def address(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    @property
    def host_header(self) -> str:
        """The Host a request names (aiohttp's form: no port when it is the scheme's)."""
        default = {"http": 80, "https": 443}.get(self.scheme)
        return self.address if self.port != default else self.address.rsplit(":", 1)[0]

    @property
    def fixed_headers(self) -> dict[str, str]:
        """What every request says: never compressed (a gzipped index page is not a
        listing, a compressed body not the file: Debian's nginx and Apache compress
        text/html by default), who asks, and to caches on the way `_FRESH`."""
        return {"Accept-Encoding": "identity", "User-Agent": self.user_agent, **_FRESH}

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
            trace_configs=[_ANSWER_TRACE], headers=self.fixed_headers)
        session = HttpSession(client, self)
        if self.probe is None:
            return session
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

    reads_whole = True  # a small file is received into memory (`_whole`)

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
                       paid: bool = False, query: str = "",
                       on_error: ErrorReader | None = None
                       ) -> AsyncIterator[aiohttp.ClientResponse]:
        """A request whose answer is a success (2xx); anything else is raised, classified
        (by `on_error` first, when given; naming `label`, the path by default). Its headers
        must be in within the stall timeout of the request being sent. `paid`: its command
        token was taken already. `query`: the query string, encoded."""
        if not paid:
            await self._pay()
        target = _quote(path) + (f"?{query}" if query else "")
        unsigned = headers or {}
        headers = await self._signed(method, target, unsigned)
        waiting = _AnswerWait(self.transport.stall_timeout)
        shown, proxy = label or path, self.transport.proxy
        with mapped(phase, shown, proxy):
            try:
                with waiting.scope:
                    response = await self.client.request(
                        method, yarl.URL(target, encoded=True), headers=headers,
                        allow_redirects=False, trace_request_ctx=waiting)
            except aiohttp.ClientResponseError as exc:
                if unparsed(exc) and self.transport.scheme == "http":
                    await self._raise_status(method, target, unsigned, phase, shown)
                raise
            if waiting.scope.cancelled_caught:
                raise TransferStalled(f"no answer within {self.transport.stall_timeout:g} s "
                                      f"of the request during {phase}", path=shown)
            async with response:
                if response.status >= 300:
                    if on_error is not None:
                        await on_error(response, shown)
                    await raise_for(response, shown, self.transport)
                self.transport.gate.served()
                yield response

    async def _signed(self, method: str, target: str,
                      headers: dict[str, str]) -> dict[str, str]:
        """`headers` with the transport's signature for this request, if it signs."""
        signer = self.transport.signer
        if signer is None:
            return headers
        await signer.fresh()
        url = f"{self.transport.scheme}://{self.transport.host_header}{target}"
        return {**headers, **signer(method, url, {**headers,
                                                  "Host": self.transport.host_header})}

    async def list(self, path: str, sink: EntrySink | None = None) -> _Entries:
        """The entries of a directory's index page (`_httpindex.read_index`)."""
        return await read_index(self, path, sink)

    async def is_directory(self, path: str) -> bool:
        """Whether `path` (a name a page links without `/`) is a directory: HEAD answered
        with a redirect to `path/` on this server (mini_httpd: 302). An answer of the file
        is False; any other error is raised as a HEAD's."""
        try:
            async with self._request("HEAD", path, phase="stat"):
                return False
        except Redirected as exc:
            if exc.location is None or not names_directory(self.transport, exc.location,
                                                           path, _quote(path)):
                raise
            return True

    async def stat(self, path: str, *, phase: Phase = "stat", kind_check: bool = True,
                   label: str | None = None) -> RemoteEntry:
        """Size (Content-Length), time (Last-Modified) and validator from HEAD."""
        async with self._request("HEAD", path, phase=phase, label=label) as response:
            entry = head_entry({k.lower(): v for k, v in response.headers.items()},
                               path.rstrip("/").rsplit("/", 1)[-1])
        if kind_check and entry.size is None:
            raise ProtocolError("no Content-Length in the answer to HEAD", path=path)
        return entry

    @contextlib.asynccontextmanager
    async def open_read(self, path: str, offset: int, *, buffer: int | None = None,
                        expect: RemoteFile | None = None) -> AsyncIterator[_Body]:
        """The ranged GET through aiohttp (its buffer: `buffer` is not applied); an answer
        not of `expect` raises WrongVersion (see `_httpcheck`)."""
        headers = request_headers(offset, expect)
        async with self._request("GET", path, phase="retr", headers=headers) as response:
            skip = check_answer(response.status, response.headers, path, offset, expect,
                                store=self.transport.object_store)
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
        """A large body (`_OWN_CONNECTION`): the ranged GET on a connection of its own, its
        body then received like an FTP data connection: plain HTTP spliced by `mover`, HTTPS
        decrypted by `recv_into` straight into the part's buffer (through aiohttp it went
        through asyncio's TLS buffers and three more copies: twice the CPU,
        benchmarks/results/WHY.md). A small body (one round trip on a far link, not two or
        three), or an answer that is not a plain body: copied from aiohttp's buffer, on the
        session's kept-alive connection."""
        if _own_connection(offset, expect):
            receiver = await self._raw_get(path, offset, buffer, mover, expect)
            if receiver is not None:
                try:
                    yield receiver  # the body ends with the connection: `finish` closes it
                finally:
                    receiver.close()
                return
        async with self.open_read(path, offset, expect=expect) as body:
            yield body

    async def _raw_get(self, path: str, offset: int, buffer: int | None, mover: Mover,
                       expect: RemoteFile | None) -> _RawBody | None:
        """GET with Range and `Connection: close` on a socket of our own, up to the end of
        the headers: the body's receiver (holding the body bytes that came with the
        headers), or None when the answer is not one to receive so (a 200 to a range, or
        chunked: asked again through aiohttp). An answer of another version is raised."""
        await self._pay()
        transport = self.transport
        sock, head, body = await self._raw_request(
            "GET", _quote(path), request_headers(offset, expect), phase="retr", label=path,
            buffer=buffer)
        try:
            status, reason, headers = parse_head(head, path)
            if status >= 300:
                await raise_for_status(status, reason, headers, path, transport)
            transport.gate.served()
            skip = check_answer(status, headers, path, offset, expect,
                                store=transport.object_store)
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

    async def _raw_request(self, method: str, target: str, headers: dict[str, str], *,
                           phase: Phase, label: str, buffer: int | None = None
                           ) -> tuple[socket.socket, bytes, bytes]:
        """`method` of `target` (the encoded path and query) with `headers` (signed here, when
        the transport signs) and `Connection: close` on a connection of our own
        (`_connect_direct`), read up to the end of the answer's headers: the socket, the
        head and the body bytes that came with it."""
        transport = self.transport
        asked = "".join(f"{k}: {v}\r\n" for k, v in
                        (await self._signed(method, target, headers)).items())
        if transport.proxy is not None and transport.scheme == "http":
            # the absolute-form request to the proxy (RFC 9112 3.2.2), which passes the
            # body on as it came, so the splice path stays (https: a CONNECT tunnel)
            target = f"http://{transport.address}{target}"
            if (credentials := transport.proxy.authorization()) is not None:
                asked += f"Proxy-Authorization: {credentials}\r\n"
        with mapped(phase, label, transport.proxy), anyio.fail_after(transport.stall_timeout):
            sock = await self._connect_direct(buffer, label)
            fixed = {**transport.fixed_headers, "Connection": "close"}
            asked += "".join(f"{k}: {v}\r\n" for k, v in fixed.items())
            try:
                await send_all(sock, f"{method} {target} HTTP/1.1\r\nHost: "
                                     f"{transport.host_header}\r\n{asked}\r\n".encode())
                head, body = await read_head(sock, label)
            except BaseException:
                sock.close()
                raise
        return sock, head, body

    async def _raise_status(self, method: str, target: str, headers: dict[str, str],
                            phase: Phase, label: str) -> None:
        """Raise what the status of an answer aiohttp could not parse says, read by asking
        again on a socket of our own: llhttp refuses a body after a HEAD's answer that says
        `Connection: close` (tinyproxy's 407 and 403 carry their error page), and the status
        line is lost with the answer. Returns when the status is a success or cannot be
        read: the caller's error stands."""
        await self._pay()
        try:
            sock, head, _ = await self._raw_request(method, target, headers, phase=phase,
                                                    label=label)
            sock.close()
            status, reason, answer = parse_head(head, label)
        except TransientError:
            return
        if status >= 300:
            await raise_for_status(status, reason, answer, label, self.transport)

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
                await tunnel(sock, transport.address, proxy, path)
            tls = (transport.ssl_context or system_trust()).wrap_socket(
                sock, server_hostname=transport.host, do_handshake_on_connect=False,
                suppress_ragged_eofs=False)  # a body cut short is a lost connection
        except BaseException:
            sock.close()
            raise
        try:
            await nonblocking(tls, tls.do_handshake)
        except BaseException:
            tls.close()
            raise
        return tls

    async def warm(self) -> None:
        """Make the connection the next request will use, sending nothing: its handshake
        (and TLS's) taken while something else is awaited (`SessionPool.warm`). Not through
        a proxy (a connection there is keyed by more than the server). A failure is left
        for that request to meet: it connects again."""
        if self.transport.proxy is not None or self.client.connector is None:
            return
        url = yarl.URL.build(scheme=self.transport.scheme, host=self.transport.host,
                             port=self.transport.port)
        # keyed as the session's own requests are (aiohttp's ConnectionKey: host, port,
        # TLS, `ssl` left as True, no proxy), so the next one takes it from the pool
        request = aiohttp.ClientRequest("GET", url, loop=asyncio.get_running_loop())
        try:
            connection = await self.client.connector.connect(request, [], self.client.timeout)
        except (OSError, aiohttp.ClientError, TimeoutError) as exc:
            log.debug("%s: no connection ahead of the first request (%s)",
                      self.transport.address, exc)
            return
        connection.release()

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
            with mapped("transfer", self._path):
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


def _own_connection(offset: int, expect: RemoteFile | None) -> bool:
    """Whether the body asked for is large enough for a connection of its own (an unknown
    size is taken to be)."""
    return expect is None or expect.size - offset >= _OWN_CONNECTION


def _quote(path: str) -> str:
    return quote(path, safe="/")


async def _skip(response: aiohttp.ClientResponse, offset: int, path: str) -> bytes:
    """Read past the first `offset` bytes of a whole-file answer to a range request (the
    server ignores Range): never appended, they are what the part holds already. Each read
    is bounded by the stall timeout (aiohttp's sock_read); the bytes after them are
    returned. They pass outside --rate-limit: a server that ignores Range costs that."""
    log.warning("%s: the server ignores Range: reading past %d bytes", path, offset)
    left = offset
    with mapped("transfer", path):
        while left:
            chunk = await response.content.readany()
            if not chunk:
                raise ProtocolError("the answer ended before the range asked for", path=path)
            if len(chunk) > left:
                return chunk[left:]
            left -= len(chunk)
    return b""
