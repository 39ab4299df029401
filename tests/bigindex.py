"""A huge generated directory for the scale tests and benchmark: an HTTP server that streams
an nginx-style autoindex page of N PMC-shaped names (`PMC1000000.1.xml` ...) without ever
holding them, and a DEST prepared as a mirror of it would leave it (files + manifest rows),
for a no-op incremental run.

    python tests/bigindex.py serve N          # prints the port, serves until killed
    python tests/bigindex.py dest N DEST [s3] # writes the vouched-for DEST (s3: with the
                                              # ETags tests/bigbucket.py lists)
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path

from aiohttp import web

MTIME = datetime(2026, 3, 1, 12, 0, tzinfo=UTC).timestamp()  # every entry's (to the minute)
_SHOWN = "01-Mar-2026 12:00"


def name_of(i: int) -> str:
    return f"PMC{1_000_000 + i}.1.xml"


def size_of(i: int) -> int:
    return 2_000 + (i * 7919) % 50_000


def entries(n: int) -> Iterator[tuple[str, int]]:
    return ((name_of(i), size_of(i)) for i in range(n))


def _page(n: int, batch: int = 2_000) -> Iterator[bytes]:
    yield (b"<html>\r\n<head><title>Index of /pmc/</title></head>\r\n<body>\r\n"
           b"<h1>Index of /pmc/</h1><hr><pre><a href=\"../\">../</a>\r\n")
    lines = []
    for name, size in entries(n):
        lines.append(f'<a href="{name}">{name}</a>{" " * (51 - len(name))}'
                     f"{_SHOWN}{size:>20}\r\n")
        if len(lines) == batch:
            yield "".join(lines).encode()
            lines = []
    yield "".join(lines).encode() + b"</pre><hr></body>\r\n</html>\r\n"


def app(n: int) -> web.Application:
    async def index(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/html"})
        await response.prepare(request)
        if request.method == "HEAD":
            return response
        for chunk in _page(n):
            await response.write(chunk)
        await response.write_eof()
        return response

    application = web.Application()
    application.router.add_get("/pmc/", index)
    return application


async def serve(n: int) -> None:
    await serve_app(app(n))


async def serve_app(application: web.Application) -> None:
    """Serve `application` on 127.0.0.1, print its port, and never return."""
    runner = web.AppRunner(application, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    server = site._server
    assert server is not None
    print(server.sockets[0].getsockname()[1], flush=True)  # type: ignore[union-attr]
    await asyncio.Event().wait()


def vouched_dest(dest: Path, n: int, etag: Callable[[int], str] | None = None) -> None:
    """DEST as a complete mirror of the generated directory would leave it: each file
    (sparse, at its size, stamped with its time) and a manifest row vouching for it.
    The schema comes from the project's Manifest; the rows go in by executemany, since a
    million single records would take minutes. `etag`: each file's recorded ETag (an S3
    listing's), none by default."""
    from pubmed_mirror._state import Manifest

    Manifest.open(dest).close()
    db = vouched_files(dest, ((name_of(i), size_of(i), etag and etag(i)) for i in range(n)))
    db.close()


def vouched_files(dest: Path, files: Iterable[tuple[str, int, str | None]]
                  ) -> sqlite3.Connection:
    """Each (name, size, ETag) as a sparse file at its size and time in DEST (its folders
    made), with a manifest row vouching for it; the manifest's connection, still open."""
    db = sqlite3.connect(dest / ".pubmed-mirror" / "manifest.sqlite")
    now = time.time()
    rows = []
    for name, size, etag in files:
        path = dest / name
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o644)
        os.ftruncate(fd, size)
        os.close(fd)
        os.utime(path, (MTIME, MTIME))
        rows.append((name, size, MTIME, now, etag))
        if len(rows) == 10_000:
            _record(db, rows)
            rows = []
    _record(db, rows)
    return db


def _record(db: sqlite3.Connection, rows: list[tuple[str, int, float, float, str | None]]
            ) -> None:
    with db:
        db.executemany("INSERT OR REPLACE INTO files (name, size, mtime, md5, fetched_at, "
                       "verified_at, bad, etag) VALUES (?, ?, ?, NULL, ?, NULL, NULL, ?)",
                       rows)


if __name__ == "__main__":
    if sys.argv[1] == "serve":
        asyncio.run(serve(int(sys.argv[2])))
    else:
        from bigbucket import etag_of
        vouched_dest(Path(sys.argv[3]), int(sys.argv[2]),
                     etag_of if sys.argv[4:] == ["s3"] else None)
