"""What `pubmed-mirror demo` serves: an offline, PubMed-shaped tree on loopback.

`make_pubmed_tree` (`pubmed_mirror.testing`'s, with its defaults) writes a dozen gzipped
PubMed-style XML files with NCBI's `.md5` files (plus a README and a stats page that the
default selection leaves out); `DemoServer` serves a directory with aioftp's server on
127.0.0.1, in its own thread and event loop, throttled per connection so the progress display
is worth watching.
"""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from types import TracebackType

import aioftp

from .testing._trees import make_pubmed_tree

__all__ = ["DemoServer", "make_pubmed_tree"]

class _Server(aioftp.Server):
    async def dispatcher(self, reader: asyncio.StreamReader,
                         writer: asyncio.StreamWriter) -> None:
        try:
            await super().dispatcher(reader, writer)
        except asyncio.CancelledError:
            # closing the server cancels its sessions; on Python 3.11 asyncio's streams print
            # a traceback for a cancelled connection task (cpython gh-113538)
            pass


class DemoServer:
    """aioftp's server on 127.0.0.1 (a free port), anonymous and read-only, in its own
    thread and event loop; downloads throttled to `rate_per_connection` bytes/s each."""

    host = "127.0.0.1"

    def __init__(self, root: Path, *, rate_per_connection: int = 512 << 10) -> None:
        self.root = root
        self.rate_per_connection = rate_per_connection
        self.port = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None

    @property
    def url(self) -> str:
        return f"ftp://{self.host}:{self.port}/"

    def start(self) -> None:
        self._thread = threading.Thread(target=self._serve, name="pubmed-mirror-demo",
                                        daemon=True)
        self._thread.start()
        self._ready.wait(10)
        if self._error is not None:
            raise self._error
        if not self.port:
            self.stop()
            raise RuntimeError("the demo server did not start within 10 s")

    def _serve(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as exc:  # handed to start(), which re-raises it
            self._error = exc
            self._ready.set()

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        user = aioftp.User(base_path=self.root, home_path="/", permissions=[
            aioftp.Permission("/", readable=True, writable=False)])
        server = _Server([user], write_speed_limit_per_connection=self.rate_per_connection)
        await server.start(self.host, 0)
        try:
            self.port = server.server_port
            self._ready.set()
            await self._stop.wait()
        finally:
            await server.close()

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
            self._thread.join(10)
        self._thread = None

    def __enter__(self) -> DemoServer:
        self.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()
