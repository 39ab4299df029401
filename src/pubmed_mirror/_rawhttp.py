"""HTTP/1.1 on a socket of our own: a request sent and an answer's head read on a plain or
TLS socket (non-blocking, as the event loop wants), and the proxy's CONNECT tunnel. The
bodies read this way are received like FTP data (`_direct`)."""

from __future__ import annotations

import functools
import socket
import ssl
from collections.abc import Callable
from typing import TypeVar

import anyio

from ._errors import ConnectionLost, ProtocolError
from ._httperrors import proxy_refused
from ._proxy import Proxy

__all__ = ["HEAD_LIMIT", "nonblocking", "parse_head", "read_head", "send_all",
           "system_trust", "tunnel"]

HEAD_LIMIT = 64 << 10  # an answer's headers
_T = TypeVar("_T")


@functools.cache
def system_trust() -> ssl.SSLContext:
    """The system's trust store, for a transport given no context: the one aiohttp loaded
    when it was imported (its default for verified HTTPS, the same `create_default_context`)
    where it has it, else one made here, once (loading the store takes ~50 ms of CPU)."""
    import aiohttp.connector

    made = getattr(aiohttp.connector, "_SSL_CONTEXT_VERIFIED", None)
    return made if isinstance(made, ssl.SSLContext) else ssl.create_default_context()


async def nonblocking(sock: socket.socket, call: Callable[[], _T], *,
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


async def send_all(sock: socket.socket, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[await nonblocking(sock, functools.partial(sock.send, view),
                                       sending=True):]


async def read_head(sock: socket.socket, path: str) -> tuple[bytes, bytes]:
    """An answer's status line and headers, and the bytes after them that came along."""
    data = b""
    while b"\r\n\r\n" not in data:
        if len(data) > HEAD_LIMIT:
            raise ProtocolError("an answer's headers over 64 KiB", path=path)
        chunk = await nonblocking(sock, functools.partial(sock.recv, 1 << 16))
        if not chunk:
            raise ConnectionLost("connection closed before the answer", path=path)
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    return head, rest


async def tunnel(sock: socket.socket, address: str, proxy: Proxy, path: str) -> None:
    """CONNECT through the proxy to the server at `address`; a refusal is the proxy's."""
    asked = f"CONNECT {address} HTTP/1.1\r\nHost: {address}\r\n"
    if (credentials := proxy.authorization()) is not None:
        asked += f"Proxy-Authorization: {credentials}\r\n"
    await send_all(sock, f"{asked}\r\n".encode())
    head, rest = await read_head(sock, path)
    status, reason, _ = parse_head(head, path)
    if not 200 <= status < 300:
        raise proxy_refused(status, reason, path, proxy)
    if rest:  # the server's side of the tunnel speaks only after our ClientHello
        raise ProtocolError("the proxy answered CONNECT with bytes of its own", path=path)


def parse_head(head: bytes, path: str) -> tuple[int, str, dict[str, str]]:
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
