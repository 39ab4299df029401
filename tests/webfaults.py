"""Small web servers for the HTTP transport's fault tests: `FaultyWebServer` (aiohttp) serves
a directory listing in nginx's format and files with Range and If-Range support, with faults
injected per GET of a file; `TricklingWebServer` (plain asyncio) answers a listing one byte at
a time; `UnmarkedWebServer` (aiohttp) links its directories without `/`, as mini_httpd does,
with the answers to HEAD the test sets."""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import gzip
import hashlib
import html
import os
import ssl
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

from aiohttp import web


@asynccontextmanager
async def served_app(app: web.Application) -> AsyncIterator[int]:
    """`app` served on 127.0.0.1 until the block ends; its port."""
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    finally:
        await runner.cleanup()


@dataclass(frozen=True)
class WebFault:
    """kind: "close" (send `after` bytes, then drop the connection), "stall" (send `after`
    bytes, then nothing for `seconds`), "429" / "503" (that status, with Retry-After
    `seconds` if given), "ignore_range" (answer 200 with the whole file), "linger" (the
    whole body, then keep the connection open for `seconds` despite Connection: close),
    "version" (another version, `data`, answers a Range: 206 for the range asked up to the
    listed file's end, with `data`'s total), "version_whole" (200 with all of `data`), "gzip"
    (200 with the whole file gzipped, Content-Encoding: gzip, though the client asked for
    identity), "ignore_if_range" (the Range is honoured whatever If-Range says),
    "new_version" (before this GET is answered the file becomes `data`, and its NAME.md5,
    if any, says so), "ok" (no fault: a place in the queue).

    With `replace`, the file on disk becomes those bytes once this GET is over (stamped
    `mtime`, if given): a new version appears between two requests."""

    kind: str
    after: int = 0
    seconds: float | None = None
    data: bytes | None = None
    replace: bytes | None = None
    mtime: float | None = None


@dataclass
class WebStats:
    ranges: dict[str, list[int]] = field(default_factory=dict)  # each GET's start offset
    if_ranges: dict[str, list[str | None]] = field(default_factory=dict)  # each GET's If-Range
    sent: dict[str, int] = field(default_factory=dict)
    statuses: list[tuple[str, int]] = field(default_factory=list)
    # each request as it arrived: (time.monotonic(), method, name, the client's port)
    arrivals: list[tuple[float, str, str, int]] = field(default_factory=list)
    user_agents: list[str] = field(default_factory=list)  # each request's, as it arrived


def server_context(tls: tuple[Path, Path] | None) -> ssl.SSLContext | None:
    if tls is None:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(tls[0], tls[1])
    return context


class FaultyWebServer:
    """`validators`: GET and HEAD answers carry ETag and Last-Modified (as nginx's and
    Apache's do); without, neither. `head_modified`: HEAD carries Last-Modified (when
    `validators`). `page`: served instead of the directory listing (a login page, say).
    `stale_heads`: HEAD's size and the validators of every answer come from the first look
    at each file, as from a stat cache that never expires (lighttpd's holds one for a
    second), while the listing and the bodies are read afresh."""

    def __init__(self, root: Path, *, extra_names: list[str] | None = None,
                 rate: int = 0, rounded: bool = False, validators: bool = True,
                 head_modified: bool = True, page: str | None = None,
                 tls: tuple[Path, Path] | None = None, stale_heads: bool = False) -> None:
        self.root = root
        self.faults: dict[str, list[WebFault]] = {}
        self.stats = WebStats()
        self.extra_names = extra_names or []  # listed (hostile names), never served
        self.rate = rate  # bytes/s per response, 0: unlimited
        self.rounded = rounded  # sizes shown as Apache and NCBI do: "1.4M"
        self.validators = validators
        self.head_modified = head_modified
        self.page = page
        self.tls = tls
        self.port = 0
        self.stale_heads = stale_heads
        self._looked: dict[str, tuple[int, float]] = {}  # stale_heads: (size, mtime) a name

    def add(self, name: str, *faults: WebFault) -> None:
        self.faults.setdefault(name, []).extend(faults)

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}/pubmed/"

    @asynccontextmanager
    async def running(self) -> AsyncIterator[FaultyWebServer]:
        app = web.Application(middlewares=[self._arrived])
        app.router.add_get("/pubmed/", self._listing)
        app.router.add_route("*", "/pubmed/{name}", self._file)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=server_context(self.tls))
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        try:
            yield self
        finally:
            await runner.cleanup()

    @web.middleware
    async def _arrived(self, request: web.Request, handler: Any) -> web.StreamResponse:
        peer = request.transport.get_extra_info("peername") if request.transport else None
        self.stats.arrivals.append((time.monotonic(), request.method,
                                    request.match_info.get("name", ""), peer[1] if peer else 0))
        self.stats.user_agents.append(request.headers.get("User-Agent", ""))
        response: web.StreamResponse = await handler(request)
        return response

    async def _listing(self, request: web.Request) -> web.Response:
        if self.page is not None:
            return web.Response(text=self.page, content_type="text/html")
        lines = ['<html><head><title>Index of /pubmed/</title></head><body>'
                 '<h1>Index of /pubmed/</h1><hr><pre><a href="../">../</a>']
        names = sorted(p.name for p in self.root.iterdir()) + self.extra_names
        for name in names:
            path = self.root / name
            size, mtime = (path.stat().st_size, path.stat().st_mtime) if path.exists() else (
                1234, 0.0)
            when = time.strftime("%d-%b-%Y %H:%M", time.gmtime(mtime))
            shown = f"{size / (1 << 20):.1f}M" if self.rounded else str(size)
            lines.append(f'<a href="{quote(name)}">{html.escape(name)}</a>'
                         f"{' ' * 20}{when}{shown:>20}")
        lines.append("</pre><hr></body></html>")
        return web.Response(text="\n".join(lines), content_type="text/html")

    def _validators(self, path: Path, *, head: bool = False) -> dict[str, str]:
        """As nginx: ETag "<mtime hex>-<size hex>", Last-Modified."""
        if not self.validators:
            return {}
        size, mtime = self._stat(path)
        found = {"ETag": f'"{int(mtime):x}-{size:x}"'}
        if self.head_modified or not head:
            found["Last-Modified"] = email.utils.formatdate(mtime, usegmt=True)
        return found

    def _stat(self, path: Path) -> tuple[int, float]:
        st = path.stat()
        if not self.stale_heads:
            return st.st_size, st.st_mtime
        return self._looked.setdefault(path.name, (st.st_size, st.st_mtime))

    async def _file(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        path = self.root / name
        if "/" in name or not path.is_file():
            raise web.HTTPNotFound()
        data = path.read_bytes()
        if request.method == "HEAD":
            return web.Response(headers={"Content-Length": str(self._stat(path)[0]),
                                         **self._validators(path, head=True)})
        start = 0
        header = request.headers.get("Range", "")
        if header.startswith("bytes=") and header.endswith("-"):
            start = int(header[6:-1])
        self.stats.ranges.setdefault(name, []).append(start)
        self.stats.if_ranges.setdefault(name, []).append(request.headers.get("If-Range"))
        queue = self.faults.get(name) or []
        fault = queue.pop(0) if queue else None
        if fault is not None and fault.kind == "new_version" and fault.data is not None:
            data = fault.data
            path.write_bytes(data)
            checksum = path.with_name(name + ".md5")
            if checksum.exists():
                checksum.write_text(f"MD5({name})= {hashlib.md5(data).hexdigest()}\n")
        try:
            return await self._answer(request, name, path, data, start, fault)
        finally:
            if fault is not None and fault.replace is not None:
                path.write_bytes(fault.replace)
                if fault.mtime is not None:
                    os.utime(path, (fault.mtime, fault.mtime))

    def _range_holds(self, request: web.Request, path: Path, fault: WebFault | None) -> bool:
        """If-Range: the range is served only when the validator is the current one."""
        if_range = request.headers.get("If-Range")
        if if_range is None or (fault is not None and fault.kind == "ignore_if_range"):
            return True
        return if_range in self._validators(path).values()

    async def _answer(self, request: web.Request, name: str, path: Path, data: bytes,
                      start: int, fault: WebFault | None) -> web.StreamResponse:
        kind = fault.kind if fault is not None else None
        if fault is not None and kind in ("429", "503"):
            headers = {} if fault.seconds is None else {"Retry-After": f"{fault.seconds:g}"}
            self.stats.statuses.append((name, int(kind)))
            return web.Response(status=int(kind), headers=headers)
        if kind == "ignore_range" or not self._range_holds(request, path, fault):
            start = 0
        headers = self._validators(path)
        body, total, end = data[start:], len(data), len(data)
        if fault is not None and fault.data is not None and kind == "version":
            body, total = fault.data[start:len(data)], len(fault.data)  # up to the listed end
        elif fault is not None and fault.data is not None and kind == "version_whole":
            start, body, total, end = 0, fault.data, len(fault.data), len(fault.data)
        elif kind == "gzip":
            start, body = 0, gzip.compress(data)
            headers["Content-Encoding"] = "gzip"
        status = 206 if start else 200
        response = web.StreamResponse(status=status, headers=headers)
        response.content_length = len(body)
        if start:
            response.headers["Content-Range"] = f"bytes {start}-{end - 1}/{total}"
        self.stats.statuses.append((name, status))
        await response.prepare(request)
        cut = fault.after if fault is not None and kind in ("close", "stall") else None
        await self._send(response, name, body, cut)
        if fault is not None and kind == "stall":
            await asyncio.sleep(fault.seconds or 30)
        if fault is not None and kind == "linger":
            await response.write_eof()
            await asyncio.sleep(fault.seconds or 30)
            return response
        if cut is not None and request.transport is not None:
            request.transport.close()  # mid-body: the client sees the connection end early
            return response
        await response.write_eof()
        return response

    async def _send(self, response: web.StreamResponse, name: str, body: bytes,
                    cut: int | None) -> None:
        sent = 0
        step = 64 << 10
        while sent < len(body):
            if cut is not None and sent >= cut:
                break
            end = min(len(body), sent + step, cut if cut is not None else len(body))
            await response.write(body[sent:end])
            self.stats.sent[name] = self.stats.sent.get(name, 0) + end - sent
            sent = end
            if self.rate:
                await asyncio.sleep(step / self.rate)


class TricklingWebServer:
    """Answers HEAD at once and a GET of the listing one byte every `interval` seconds:
    `part` "head" trickles the status line and headers, "body" the page after prompt
    headers. `sent` counts the bytes of GET answers written."""

    def __init__(self, *, part: str, interval: float = 0.5, length: int = 400,
                 tls: tuple[Path, Path] | None = None) -> None:
        self.part = part
        self.interval = interval
        self.length = length  # bytes of page to trickle (then the rest, at once)
        self.tls = tls
        self.port = 0
        self.sent = 0
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}/pubmed/"

    @asynccontextmanager
    async def running(self) -> AsyncIterator[TricklingWebServer]:
        server = await asyncio.start_server(self._serve, "127.0.0.1", 0,
                                            ssl=server_context(self.tls))
        self.port = server.sockets[0].getsockname()[1]
        try:
            yield self
        finally:
            server.close()
            for task in list(self._tasks):
                task.cancel()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(server.wait_closed(), 2)

    def _page(self) -> bytes:
        rows = "".join(f'<a href="pubmed26n{i:04d}.xml.gz">pubmed26n{i:04d}.xml.gz</a>'
                       f"   01-Jan-2026 00:00   {1000 + i}\n" for i in range(40))
        return ("<html><head><title>Index of /pubmed/</title></head><body>"
                f"<h1>Index of /pubmed/</h1><pre>\n{rows}</pre></body></html>").encode()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            while True:
                request = await reader.readuntil(b"\r\n\r\n")
                if request.startswith(b"HEAD "):
                    writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\n"
                                 b"Content-Length: 0\r\n\r\n")
                    await writer.drain()
                    continue
                await self._trickle(writer)
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError,
                ssl.SSLError):
            pass
        finally:
            self._tasks.discard(task)
            writer.close()

    async def _trickle(self, writer: asyncio.StreamWriter) -> None:
        page = self._page()
        head = (f"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\n"
                f"Content-Length: {len(page)}\r\n\r\n").encode()
        slow, fast = (head, page) if self.part == "head" else (page[:self.length],
                                                                page[self.length:])
        if self.part != "head":
            writer.write(head)
        for i in range(len(slow)):
            writer.write(slow[i:i + 1])
            await writer.drain()
            self.sent += 1
            await asyncio.sleep(self.interval)
        writer.write(fast)
        await writer.drain()


class BodyToHeadServer:
    """Answers every request (HEAD included) `status` with `Connection: close` and an error
    page, all in one write, as tinyproxy answers its refusals: a body after a HEAD's answer
    that aiohttp's parser refuses. `requests` holds each request line."""

    def __init__(self, status: str) -> None:
        self.status = status
        self.port = 0
        self.requests: list[str] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/pubmed/"

    @asynccontextmanager
    async def running(self) -> AsyncIterator[BodyToHeadServer]:
        server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = server.sockets[0].getsockname()[1]
        try:
            yield self
        finally:
            server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(server.wait_closed(), 2)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request = await reader.readuntil(b"\r\n\r\n")
            self.requests.append(request.split(b"\r\n", 1)[0].decode("latin-1"))
            page = f"<html><body><h1>{self.status}</h1></body></html>\n".encode()
            writer.write(f"HTTP/1.0 {self.status}\r\nContent-Type: text/html\r\n"
                         f"Connection: close\r\n\r\n".encode() + page)
            await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


@dataclass
class UnmarkedWebServer:
    """`files` (relative name -> bytes) below /d/, listed as mini_httpd lists them: `.`,
    `..` and every name without `/`, with its size (a directory's: 4096) and a time. HEAD
    and GET of a directory without its `/` answer 302 to it with it. `heads`: what HEAD of
    a name answers instead, (status, Location or None); `head_delay`: seconds every HEAD of
    a name waits first; `asked`: the names HEAD asked, `most_heads`: the most at once."""

    files: dict[str, bytes]
    heads: dict[str, tuple[int, str | None]] = field(default_factory=dict)
    head_delay: float = 0.0
    port: int = 0
    asked: list[str] = field(default_factory=list)  # the names HEAD asked, in order
    most_heads: int = 0  # the most HEADs of names answered at once
    _heads: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/d/"

    @asynccontextmanager
    async def running(self) -> AsyncIterator[UnmarkedWebServer]:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        async with served_app(app) as self.port:
            yield self

    def _folders(self) -> set[str]:
        return {name.rsplit("/", 1)[0] for name in self.files if "/" in name}

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        name = request.path.removeprefix("/d/")
        folders = self._folders()
        if name == "" or name.rstrip("/") in folders and name.endswith("/"):
            below = name
            names = sorted({n[len(below):].split("/", 1)[0] for n in self.files
                            if n.startswith(below)})
            rows = "".join(
                f'<a href="{n}">{n}</a>    06Dec2026 12:00    '
                f'{len(self.files[below + n]) if below + n in self.files else 4096}\n'
                for n in [".", "..", *names])
            return web.Response(text=f"<title>Index of /d/{below}</title><pre>\n{rows}</pre>",
                                content_type="text/html")
        if request.method == "HEAD":
            self.asked.append(name)
            self._heads += 1
            self.most_heads = max(self.most_heads, self._heads)
            try:
                await asyncio.sleep(self.head_delay)
            finally:
                self._heads -= 1
            if name in self.heads:
                status, where = self.heads[name]
                return web.Response(status=status,
                                    headers={"Location": where} if where else {})
        if name in folders:
            return web.Response(status=302, headers={"Location": f"/d/{name}/"})
        if name not in self.files:
            return web.Response(status=404)
        return web.Response(body=self.files[name],
                            headers={"Last-Modified": "Sun, 06 Dec 2026 12:00:00 GMT"})


@dataclass
class ConnectionLog:
    """A TCP relay to 127.0.0.1:`target` that notes when it accepted each connection;
    `url` is the endpoint to give. `hold`: seconds each connection after the first
    `held_after` waits before its bytes go on (a far server slow to take new ones)."""

    target: int
    accepted: list[float] = field(default_factory=list)
    port: int = 0
    hold: float = 0.0
    held_after: int = 1
    most_open: int = 0  # the most connections the client held open at once
    _now_open: int = 0
    _open: list[asyncio.StreamWriter] = field(default_factory=list)
    _more: threading.Condition = field(default_factory=threading.Condition)

    def wait_for(self, count: int, timeout: float = 5.0) -> int:
        """(Blocking) until `count` connections were accepted, or `timeout`: how many."""
        with self._more:
            self._more.wait_for(lambda: len(self.accepted) >= count, timeout)
            return len(self.accepted)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @contextmanager
    def running(self) -> Iterator[ConnectionLog]:
        async def serve(started: threading.Event, stop: asyncio.Event) -> None:
            server = await asyncio.start_server(self._relay, "127.0.0.1", 0)
            self.port = server.sockets[0].getsockname()[1]
            started.set()
            async with server:
                await stop.wait()
                for writer in self._open:
                    writer.close()
                server.close()
                await server.wait_closed()
                relaying = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
                for task in relaying:
                    task.cancel()
                await asyncio.gather(*relaying, return_exceptions=True)

        with in_thread(serve):
            yield self

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with self._more:
            self.accepted.append(time.monotonic())
            self._more.notify_all()
            self._now_open += 1
            self.most_open = max(self.most_open, self._now_open)
            held = self.hold if len(self.accepted) > self.held_after else 0.0
        self._open.append(writer)
        await asyncio.sleep(held)
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target)
        self._open.append(up_writer)

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            try:
                while data := await src.read(1 << 16):
                    dst.write(data)
                    await dst.drain()
            except OSError:
                pass
            finally:
                dst.close()

        async def from_client() -> None:
            try:
                await pipe(reader, up_writer)
            finally:  # the client has closed it (its answer may still be on its way)
                with self._more:
                    self._now_open -= 1

        await asyncio.gather(from_client(), pipe(up_reader, writer))


@contextmanager
def in_thread(serve: Callable[[threading.Event, asyncio.Event], Awaitable[None]]
              ) -> Iterator[None]:
    """`serve(started, stop)` on an event loop of its own in a thread, from when it sets
    `started` until the block ends (then `stop` is set and it must return)."""
    loop = asyncio.new_event_loop()
    started, stop = threading.Event(), asyncio.Event()
    thread = threading.Thread(target=loop.run_until_complete, args=(serve(started, stop),),
                              daemon=True)
    thread.start()
    assert started.wait(10)
    try:
        yield
    finally:
        loop.call_soon_threadsafe(stop.set)
        thread.join(10)
        loop.close()
