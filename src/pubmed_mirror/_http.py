"""The HTTP(S) transport: everything aiohttp-specific sits here.

A session is one aiohttp ClientSession holding at most one connection (kept alive across
requests), so a pool of N sessions is N connections, as with FTP. A directory is listed by
parsing its autoindex page (`_autoindex`); a file's size and time come from HEAD; reading
from an offset is a `Range` request, and an answer that is not the range asked for is never
appended to a part.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import logging
import re
import socket
import ssl
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from urllib.parse import quote

import aiohttp
import anyio

from . import __version__  # the package is loaded first: this module is imported lazily
from ._autoindex import parse_autoindex
from ._backoff import ServerGate
from ._direct import DirectReceiver, Mover, chunk_for, connect_socket, write_all
from ._errors import (
    ConnectionLost,
    ConnectionRefused,
    ConnectTimeout,
    Phase,
    ProtocolError,
    RemoteFileError,
    ServerBusy,
    ServerUnreachable,
    TransferStalled,
)
from ._ratelimit import TokenBucket
from ._transport import EntryKind, RemoteEntry

__all__ = ["USER_AGENT", "HttpSession", "HttpTransport", "user_agent"]

log = logging.getLogger("pubmed_mirror")

_Entries = list[RemoteEntry]  # HttpSession.list shadows the builtin inside the class

_LISTING_LIMIT = 64 << 20  # a directory page larger than this is not a listing
_HEAD_LIMIT = 64 << 10  # an answer's headers
_CONTENT_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+|\*)")

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
    user_agent: str = USER_AGENT  # may hold the user's address: never in repr

    def __repr__(self) -> str:
        return f"HttpTransport({self.scheme}://{self.address})"

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
            auto_decompress=False, raise_for_status=False, trust_env=False,
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
                       headers: dict[str, str] | None = None, label: str | None = None
                       ) -> AsyncIterator[aiohttp.ClientResponse]:
        """A request whose answer is a success (2xx); anything else is raised, classified
        (naming `label`, the path by default)."""
        await self._pay()
        with _mapped(phase, label or path):
            async with self.client.request(method, _quote(path), headers=headers,
                                           allow_redirects=False) as response:
                if response.status >= 300:
                    await _raise_for(response, label or path, self.transport.gate)
                yield response

    async def list(self, path: str) -> _Entries:
        """The entries of a directory page; a rounded size is asked for with HEAD."""
        directory = path if path.endswith("/") else path + "/"
        async with self._request("GET", directory, phase="list") as response:
            body = bytearray()
            with _mapped("list", path):
                while chunk := await response.content.readany():  # to the end of the page
                    body += chunk
                    if len(body) > _LISTING_LIMIT:
                        raise ProtocolError(f"a listing larger than {_LISTING_LIMIT} bytes",
                                            path=path)
            charset = response.charset or "utf-8"
            if response.headers.get("Content-Encoding", "identity") != "identity":
                raise ProtocolError("the listing came compressed although asked not to be",
                                    path=path)
        entries = []
        try:
            text = body.decode(charset, errors="replace")
        except LookupError:  # a charset Python does not know
            text = body.decode("utf-8", errors="replace")
        for listed in parse_autoindex(text):
            kind: EntryKind = "dir" if listed.is_dir else "file"
            entry = RemoteEntry(listed.name, listed.size, listed.mtime, kind,
                                listed.mtime_resolution)
            if kind == "file" and listed.size is None:
                try:
                    entry = await self.stat(directory + listed.name)
                except (RemoteFileError, ServerBusy, ProtocolError) as exc:
                    # that file alone: its size is asked again when it is fetched
                    log.warning("%s: no size from HEAD (%s)", listed.name, exc)
            entries.append(entry)
        return entries

    async def stat(self, path: str, *, phase: Phase = "stat", kind_check: bool = True,
                   label: str | None = None) -> RemoteEntry:
        """Size (Content-Length) and time (Last-Modified) from HEAD."""
        async with self._request("HEAD", path, phase=phase, label=label) as response:
            length = response.headers.get("Content-Length")
            modified = response.headers.get("Last-Modified")
        size = int(length) if length is not None and length.isdigit() else None
        mtime = None
        if modified:
            with contextlib.suppress(TypeError, ValueError):
                mtime = email.utils.parsedate_to_datetime(modified).timestamp()
        name = path.rstrip("/").rsplit("/", 1)[-1]
        if kind_check and size is None:
            raise ProtocolError("no Content-Length in the answer to HEAD", path=path)
        return RemoteEntry(name, size, mtime)

    @contextlib.asynccontextmanager
    async def open_read(self, path: str, offset: int, *, buffer: int | None = None
                        ) -> AsyncIterator[_Body]:
        """The ranged GET through aiohttp (its buffer: `buffer` is not applied)."""
        headers = {"Range": f"bytes={offset}-"}
        async with self._request("GET", path, phase="retr", headers=headers) as response:
            rest = b""
            if response.status == 206:
                _check_range(response.headers.get("Content-Range", ""), offset, path)
            elif offset:  # a 200 for a range: the whole file; what we hold is read past
                rest = await _skip(response, offset, path)
            body = _Body(response, path, rest)
            try:
                yield body
            finally:
                body.close()

    @contextlib.asynccontextmanager
    async def open_direct(self, path: str, offset: int, *, buffer: int | None = None,
                          mover: Mover = "splice") -> AsyncIterator[_Body | DirectReceiver]:
        """Plain HTTP: the ranged GET on a connection of its own, its body then received
        like an FTP data connection (spliced by `mover`). HTTPS, or an answer that is not
        a plain body: copied from aiohttp's buffer."""
        if self.transport.scheme == "http":
            receiver = await self._raw_get(path, offset, buffer, mover)
            if receiver is not None:
                try:
                    yield receiver  # the body ends with the connection: `finish` closes it
                finally:
                    receiver.close()
                return
        async with self.open_read(path, offset) as body:
            yield body

    async def _raw_get(self, path: str, offset: int, buffer: int | None,
                       mover: Mover) -> DirectReceiver | None:
        """GET with Range and `Connection: close` on a socket of our own, up to the end of
        the headers: the body's receiver (holding the body bytes that came with the
        headers), or None when the answer is not one to receive so (a 200 to a range,
        chunked or encoded: asked again through aiohttp)."""
        await self._pay()
        transport = self.transport
        loop = asyncio.get_running_loop()
        with _mapped("retr", path), anyio.fail_after(transport.stall_timeout):
            sock = await connect_socket(transport.host, transport.port, buffer)
            try:
                await loop.sock_sendall(sock, (
                    f"GET {_quote(path)} HTTP/1.1\r\nHost: {transport.address}\r\n"
                    f"Range: bytes={offset}-\r\nAccept-Encoding: identity\r\n"
                    f"Connection: close\r\nUser-Agent: {transport.user_agent}\r\n\r\n").encode())
                data = b""
                while b"\r\n\r\n" not in data:
                    if len(data) > _HEAD_LIMIT:
                        raise ProtocolError("an answer's headers over 64 KiB", path=path)
                    chunk = await loop.sock_recv(sock, 1 << 16)
                    if not chunk:
                        raise ConnectionLost("connection closed before the answer", path=path)
                    data += chunk
            except BaseException:
                sock.close()
                raise
        head, _, body = data.partition(b"\r\n\r\n")
        try:
            status, reason, headers = _parse_head(head, path)
            if status >= 300:
                await _raise_for_status(status, reason, headers, path, transport.gate)
            plain = ("transfer-encoding" not in headers
                     and headers.get("content-encoding", "identity") == "identity")
            if not plain or (status == 200 and offset) or status not in (200, 206):
                sock.close()
                return None
            if status == 206:
                _check_range(headers.get("content-range", ""), offset, path)
        except BaseException:
            sock.close()
            raise
        length = headers.get("content-length", "")
        return DirectReceiver(sock, mover=mover, chunk=chunk_for(buffer), path=path,
                              prefix=body, length=int(length) if length.isdigit() else None)

    async def aclose(self) -> None:
        self.healthy = False
        await _close(self.client)


class _Body:
    """A response body as both a ReadStream and a DirectStream (copied, never spliced)."""

    mover: Mover = "recv"

    def __init__(self, response: aiohttp.ClientResponse, path: str, first: bytes) -> None:
        self._response = response
        self._path = path
        self._stash = first  # received, not yet handed out

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


def _check_range(content_range: str, offset: int, path: str) -> None:
    match = _CONTENT_RANGE.fullmatch(content_range)
    if match is None or int(match.group(1)) != offset:
        raise ProtocolError(f"asked for bytes from {offset}, got {content_range!r}", path=path)


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
    if status in (408, 429) or status >= 500:
        wait = _retry_after(headers.get("retry-after"))
        if status in (429, 503) or wait is not None:  # every session pauses (`_backoff`)
            gate.close(wait, reply=f"{path}: {reply}")
        raise ServerBusy(f"the server answered {reply}", path=path, reply=reply)
    if 300 <= status < 400:
        raise RemoteFileError(f"redirected ({reply}) to {headers.get('location')}",
                              path=path, reply=reply)
    raise RemoteFileError(f"the server answered {reply}", path=path, reply=reply)


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    if value.strip().isdigit():
        return float(value.strip())
    with contextlib.suppress(TypeError, ValueError):
        when = email.utils.parsedate_to_datetime(value).timestamp()
        return max(0.0, when - time.time())
    return None


@contextlib.contextmanager
def _mapped(phase: Phase, path: str) -> Iterator[None]:
    """aiohttp's and the network's errors as the engine's classes."""
    try:
        yield
    except aiohttp.ClientConnectorCertificateError as exc:
        raise ServerUnreachable(f"the server's certificate is not trusted: "
                                f"{exc.certificate_error}", path=path) from exc
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
        raise ConnectionLost(f"connection lost during {phase} ({exc})", path=path) from exc
    except TimeoutError as exc:
        raise TransferStalled(f"no answer during {phase}", path=path) from exc
    except OSError as exc:  # socket.gaierror, an unreachable network: not a local file
        raise ConnectionLost(f"network error during {phase}: {exc}", path=path) from exc

