"""A far link between two ports on this machine: a TCP relay that holds every byte for half
a round trip each way (the kernel here has no netem; this does it in user space).

    python benchmarks/farlink.py --listen PORT --target PORT --rtt-ms 200 [--ready FILE]

Connections to 127.0.0.1:LISTEN reach 127.0.0.1:TARGET. What a link's handshake costs is
charged too: the server sees the connection rtt/2 after the client made it (the SYN's
way), and the client's first bytes cannot reach the server before 1.5 RTT (the client may
send only once the SYN-ACK is back, one RTT after its connect, and they travel rtt/2). So a
request on a new connection costs two round trips and one on a kept-alive connection one,
as over a real link. Bytes keep their order; there is no bandwidth limit and no window (the
objects the benchmark sends are small).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import time
from pathlib import Path


async def carry(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, delay: float,
                not_before: float) -> None:
    """Every chunk read is written `delay` seconds later (never before `not_before`); the
    end of the stream goes on the same way."""
    due: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

    async def deliver() -> None:
        while True:
            at, data = await due.get()
            wait = at - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            if not data:
                with contextlib.suppress(OSError):
                    writer.write_eof()
                return
            writer.write(data)
            await writer.drain()

    sender = asyncio.create_task(deliver())
    try:
        while data := await reader.read(1 << 16):
            due.put_nowait((max(time.monotonic() + delay, not_before), data))
    except OSError:
        pass
    finally:
        due.put_nowait((max(time.monotonic() + delay, not_before), b""))
        with contextlib.suppress(OSError):
            await sender


async def relay(client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter, target: int,
                delay: float) -> None:
    accepted = time.monotonic()
    try:
        await asyncio.sleep(delay)  # the SYN on its way
        try:
            server_r, server_w = await asyncio.open_connection("127.0.0.1", target)
        except OSError:
            return
        try:
            await asyncio.gather(carry(client_r, server_w, delay, accepted + 3 * delay),
                                 carry(server_r, client_w, delay, 0.0))
        finally:
            server_w.close()
    finally:
        client_w.close()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--listen", type=int, required=True)
    parser.add_argument("--target", type=int, required=True)
    parser.add_argument("--rtt-ms", type=float, required=True)
    parser.add_argument("--ready", type=Path, help="a file written once it listens")
    args = parser.parse_args()
    delay = args.rtt_ms / 2000
    server = await asyncio.start_server(
        lambda r, w: relay(r, w, args.target, delay), "127.0.0.1", args.listen, backlog=512)
    if args.ready:
        args.ready.write_text("listening\n")
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main())
