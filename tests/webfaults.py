"""A small aiohttp web server for the HTTP transport's fault tests: a directory listing in
nginx's format, files with Range support, and faults injected per GET of a file."""

from __future__ import annotations

import asyncio
import email.utils
import html
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

from aiohttp import web


@dataclass(frozen=True)
class WebFault:
    """kind: "close" (send `after` bytes, then drop the connection), "stall" (send `after`
    bytes, then nothing for `seconds`), "429" / "503" (that status, with Retry-After
    `seconds` if given), "ignore_range" (answer 200 with the whole file), "linger" (the
    whole body, then keep the connection open for `seconds` despite Connection: close)."""

    kind: str
    after: int = 0
    seconds: float | None = None


@dataclass
class WebStats:
    ranges: dict[str, list[int]] = field(default_factory=dict)  # each GET's start offset
    sent: dict[str, int] = field(default_factory=dict)
    statuses: list[tuple[str, int]] = field(default_factory=list)
    # each request as it arrived: (time.monotonic(), method, name, the client's port)
    arrivals: list[tuple[float, str, str, int]] = field(default_factory=list)
    user_agents: list[str] = field(default_factory=list)  # each request's, as it arrived


class FaultyWebServer:
    def __init__(self, root: Path, *, extra_names: list[str] | None = None,
                 rate: int = 0, rounded: bool = False) -> None:
        self.root = root
        self.faults: dict[str, list[WebFault]] = {}
        self.stats = WebStats()
        self.extra_names = extra_names or []  # listed (hostile names), never served
        self.rate = rate  # bytes/s per response, 0: unlimited
        self.rounded = rounded  # sizes shown as Apache and NCBI do: "1.4M"
        self.port = 0

    def add(self, name: str, *faults: WebFault) -> None:
        self.faults.setdefault(name, []).extend(faults)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/pubmed/"

    @asynccontextmanager
    async def running(self) -> AsyncIterator[FaultyWebServer]:
        app = web.Application(middlewares=[self._arrived])
        app.router.add_get("/pubmed/", self._listing)
        app.router.add_route("*", "/pubmed/{name}", self._file)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
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
        lines = ['<html><body><h1>Index of /pubmed/</h1><hr><pre><a href="../">../</a>']
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

    async def _file(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        path = self.root / name
        if "/" in name or not path.is_file():
            raise web.HTTPNotFound()
        data = path.read_bytes()
        if request.method == "HEAD":
            modified = email.utils.formatdate(path.stat().st_mtime, usegmt=True)
            return web.Response(headers={"Content-Length": str(len(data)),
                                         "Last-Modified": modified})
        start = 0
        header = request.headers.get("Range", "")
        if header.startswith("bytes=") and header.endswith("-"):
            start = int(header[6:-1])
        self.stats.ranges.setdefault(name, []).append(start)
        queue = self.faults.get(name) or []
        fault = queue.pop(0) if queue else None
        if fault is not None and fault.kind in ("429", "503"):
            headers = {} if fault.seconds is None else {"Retry-After": f"{fault.seconds:g}"}
            self.stats.statuses.append((name, int(fault.kind)))
            return web.Response(status=int(fault.kind), headers=headers)
        if fault is not None and fault.kind == "ignore_range":
            start = 0
        status = 206 if start else 200
        response = web.StreamResponse(status=status)
        response.content_length = len(data) - start
        if start:
            response.headers["Content-Range"] = f"bytes {start}-{len(data) - 1}/{len(data)}"
        self.stats.statuses.append((name, status))
        await response.prepare(request)
        body = data[start:]
        cut = fault.after if fault is not None and fault.kind in ("close", "stall") else None
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
        if fault is not None and fault.kind == "stall":
            await asyncio.sleep(fault.seconds or 30)
        if fault is not None and fault.kind == "linger":
            await response.write_eof()
            await asyncio.sleep(fault.seconds or 30)
            return response
        if cut is not None and request.transport is not None:
            request.transport.close()  # mid-body: the client sees the connection end early
            return response
        await response.write_eof()
        return response
