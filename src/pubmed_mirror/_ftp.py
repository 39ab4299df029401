"""The FTP transport: everything aioftp-specific sits here."""

from __future__ import annotations

import asyncio
import calendar
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

import aioftp
import anyio

from ._backoff import ServerGate
from ._direct import MIN_BUFFER, DirectReceiver, Mover, chunk_for, connect_socket
from ._errors import Phase, ProtocolError, RemoteFileError, ResumeRefused, TransferStalled
from ._ftperrors import busy_reply, map_ftp_errors
from ._listing import read_list_line
from ._ratelimit import TokenBucket
from ._receiver import TARGET, Receiver
from ._transport import EntryKind, EntrySink, RemoteEntry, listing_deadline

if TYPE_CHECKING:
    from ._transfer import RemoteFile

__all__ = ["FtpSession", "FtpTransport", "parse_mlsx_time"]

_Entries = list[RemoteEntry]  # FtpSession.list shadows the builtin inside the class

log = logging.getLogger("pubmed_mirror")

class _Closable(Protocol):
    def close(self) -> None: ...


_C = TypeVar("_C", bound=_Closable)

_CLOSE_TIMEOUT = 2.0
_LIST_BUFFER = 256 << 10
_UNREAD = "failed to open directory"  # vsftpd's 226 for a directory it could not list


def _receiver_sizes(buffer: int | None) -> dict[str, int]:
    """Receiver sizes that read at most `buffer` bytes ahead of the consumer (a rate limit's
    burst), kernel included; the fast defaults when None."""
    if buffer is None:
        return {}
    buffer = max(buffer, MIN_BUFFER)
    return {"capacity": buffer, "target": min(buffer // 2, TARGET), "kernel_buffer": buffer}


def parse_mlsx_time(value: str) -> float | None:
    """'YYYYMMDDHHMMSS[.fff]' (UTC, RFC 3659) -> POSIX seconds, None when malformed."""
    whole, _, fraction = value.partition(".")
    try:
        stamp = datetime.strptime(whole, "%Y%m%d%H%M%S")
    except ValueError:
        return None
    seconds = float(calendar.timegm(stamp.timetuple()))
    if fraction.isdigit():
        seconds += float("0." + fraction)
    return seconds


class _Client(aioftp.Client):
    """aioftp's client, with every command sent charged to the shared command bucket, and
    held at the server's gate while the server is busy.

    A step that runs under a deadline pays for its commands first (`prepay`: the gate, then
    the tokens), so waiting is never mistaken for a silent server; its commands then go out
    without waiting. A busy reply (421, 530 "too many") to any command closes the gate.
    """

    def __init__(self, *, command_bucket: TokenBucket | None, gate: ServerGate,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._command_bucket = command_bucket
        self._gate = gate
        self._credit = 0

    async def prepay(self, commands: int) -> None:
        await self._gate.wait()
        if self._command_bucket is not None:
            await self._command_bucket.acquire(commands)
        self._credit += commands

    async def command(self, command: str | None = None, *args: Any, **kwargs: Any) -> Any:
        if command:
            if self._credit:
                self._credit -= 1
            else:
                await self.prepay(1)
                self._credit -= 1
        try:
            answer = await super().command(command, *args, **kwargs)
        except aioftp.StatusCodeError as exc:
            if (reply := busy_reply(exc)) is not None:
                self._gate.close(reply=reply)
            raise
        self._gate.served()
        return answer


@contextlib.contextmanager
def _deadline(seconds: float, *, phase: Phase, path: str | None) -> Any:
    """Fail with the phase's timeout error when the block takes longer than `seconds`."""
    with map_ftp_errors(phase=phase, path=path), anyio.fail_after(seconds):
        yield


@dataclass(frozen=True, slots=True, kw_only=True)
class FtpTransport:
    """Opens logged-in FTP sessions to one server."""

    host: str
    port: int = 21
    user: str = "anonymous"
    password: str = "anonymous@"
    connect_timeout: float = 30.0
    stall_timeout: float = 60.0
    command_bucket: TokenBucket | None = None
    gate: ServerGate = field(default_factory=ServerGate)  # shared by the sessions it opens

    def __repr__(self) -> str:  # never show the password
        return f"FtpTransport({self.user}@{self.address})"

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    async def connect(self) -> FtpSession:
        client = _Client(
            command_bucket=self.command_bucket,
            gate=self.gate,
            socket_timeout=self.stall_timeout,
            connection_timeout=self.connect_timeout,
        )
        await client.prepay(2)  # USER, PASS
        try:
            with _deadline(self.connect_timeout, phase="connect", path=self.address):
                await client.connect(self.host, self.port)
                with map_ftp_errors(phase="login", path=self.address):
                    await client.login(self.user, self.password)
        except BaseException:
            client.close()
            raise
        return FtpSession(client, stall_timeout=self.stall_timeout)


class _DataStream:
    """The data connection of one RETR (or listing) and the final reply that ends it."""

    validator: str | None = None  # an FTP answer does not name its version

    def __init__(self, session: FtpSession, path: str, *, phase: Phase = "transfer") -> None:
        self._session = session
        self._path = path
        self._phase = phase
        self.reply = ""  # the final reply, once `finish` read it

    def close(self) -> None:
        raise NotImplementedError

    async def finish(self) -> None:
        """The final reply read (kept: `reply`): the session is back in sync."""
        self.close()
        with _deadline(self._session.stall_timeout, phase="finish", path=self._path):
            code, info = await self._session.client.command(None, "2xx", "1xx")
        self._session.healthy = True  # the final reply is read: back in sync
        self.reply = f"{code} {' '.join(info).strip()}"


class FtpReadStream(_DataStream):
    """Received into memory with one copy (see `_receiver`): listings, checksum files."""

    def __init__(self, session: FtpSession, path: str, receiver: Receiver, *,
                 phase: Phase = "transfer") -> None:
        super().__init__(session, path, phase=phase)
        self._receiver = receiver

    async def read(self) -> memoryview:
        with map_ftp_errors(phase=self._phase, path=self._path):
            return await self._receiver.read()

    def close(self) -> None:
        self._receiver.close()


class FtpDirectStream(_DataStream):
    """Received straight into a file (see `_direct`): the files mirrored."""

    def __init__(self, session: FtpSession, path: str, receiver: DirectReceiver) -> None:
        super().__init__(session, path)
        self._receiver = receiver

    @property
    def mover(self) -> Mover:
        return self._receiver.mover

    def move(self, fd: int, offset: int, limit: int) -> int:
        return self._receiver.move(fd, offset, limit)

    async def readable(self) -> None:
        await self._receiver.readable()

    def close(self) -> None:
        self._receiver.close()


class FtpSession:
    """One logged-in aioftp client. After any error mid-command it is out of sync: discard it."""

    def __init__(self, client: _Client, *, stall_timeout: float) -> None:
        self.client = client
        self.stall_timeout = stall_timeout
        self.healthy = True
        self._mlsd = True
        self._epsv = True
        self._refused: set[str] = set()  # SIZE, MDTM, MLST: commands the server lacks
        self._binary = False  # TYPE I is sent once per session
        # data connections go to the address the control connection reached: no DNS lookup
        # per file, and never another host of a round-robin name
        self._data_host = _peer_host(client)

    async def _type_i(self) -> None:
        if not self._binary:
            await self.client.command("TYPE I", "200")
            self._binary = True

    def __repr__(self) -> str:
        return f"<FtpSession {'healthy' if self.healthy else 'broken'}>"

    @property
    def stale(self) -> bool:
        """The server closed the control connection (EOF, reset), or spoke unasked (a
        "421 Idle timeout" before closing), while the session sat idle: its next command
        would fail. Nothing is sent to find out."""
        reader: Any = self.client.stream.reader
        return bool(reader.exception() is not None or reader._eof or reader._buffer)

    async def _open_data(self, command: str, connect: Callable[[str, int], Awaitable[_C]], *,
                         phase: Phase, path: str, offset: int = 0) -> _C:
        """TYPE I, EPSV (PASV after a 5xx), `connect`, REST, `command`: the data connection.

        Unhealthy from here until the final reply is read (`_DataStream.finish`). The
        data address is the control connection's peer, never the one PASV names.
        """
        self.healthy = False
        client = self.client
        await client.prepay((3 if offset else 2) + (not self._binary))
        with _deadline(self.stall_timeout, phase=phase, path=path):
            await self._type_i()
            connection = await connect(self._data_host, await self._passive_port())
        try:
            with _deadline(self.stall_timeout, phase=phase, path=path):
                if offset:
                    await self._rest(offset, path)
                await client.command(command, "1xx")
        except BaseException:
            connection.close()
            raise
        return connection

    async def _passive_port(self) -> int:
        """The data port: EPSV's, or PASV's when EPSV is refused (with any code: 522 "use
        another protocol" included) or answered with something unreadable; PASV then for the
        rest of the session."""
        client = self.client
        if self._epsv:
            try:
                _, info = await client.command("EPSV", "229")
                return int(client.parse_epsv_response(info[-1])[1])
            except (aioftp.StatusCodeError, ValueError, IndexError) as exc:
                log.info("EPSV did not work (%s): PASV for this session", exc)
                self._epsv = False
        _, info = await client.command("PASV", "227")
        return int(client.parse_pasv_response(info[-1])[1])

    async def _rest(self, offset: int, path: str) -> None:
        """REST: a server that does not implement it (500-504) cannot resume."""
        code, info = await self.client.command(f"REST {offset}", ("350", "50x"))
        if code.matches("50x"):
            raise ResumeRefused("the server does not resume (REST refused)", path=path,
                                reply=f"{code} {' '.join(info).strip()}")

    @contextlib.asynccontextmanager
    async def open_read(self, path: str, offset: int, *, buffer: int | None = None,
                        expect: RemoteFile | None = None) -> AsyncIterator[FtpReadStream]:
        receiver = await self._open_data(f"RETR {path}", _receiver(buffer), phase="retr",
                                         path=path, offset=offset)
        stream = FtpReadStream(self, path, receiver)
        try:
            yield stream
        finally:
            stream.close()

    @contextlib.asynccontextmanager
    async def open_direct(self, path: str, offset: int, *, buffer: int | None = None,
                          mover: Mover = "splice", expect: RemoteFile | None = None
                          ) -> AsyncIterator[FtpDirectStream]:
        async def connect(host: str, port: int) -> DirectReceiver:
            sock = await connect_socket(host, port, buffer)
            try:
                return DirectReceiver(sock, mover=mover, chunk=chunk_for(buffer), path=path)
            except BaseException:
                sock.close()
                raise

        receiver = await self._open_data(f"RETR {path}", connect, phase="retr", path=path,
                                         offset=offset)
        stream = FtpDirectStream(self, path, receiver)
        try:
            yield stream
        finally:
            stream.close()

    async def list(self, path: str, sink: EntrySink | None = None) -> _Entries:
        """The directory's entries; with `sink`, handed to it in batches (the listing's
        lines are read whole first: a failed LIST gives the sink nothing)."""
        if self._mlsd:
            try:
                lines = await self._list_lines(f"MLSD {path}", path)
                return await _parsed(lines, lambda line: _mlsd_list_entry(self.client, line),
                                     sink)
            except RemoteFileError as exc:
                if not (exc.reply or "").startswith("50"):  # 500-504: MLSD not understood
                    raise
                self._mlsd = False
        # `dir`, not `dir/`: proftpd lists a linked `dir/` as nothing (a `current` link)
        lines = await self._list_lines(f"LIST {path.rstrip('/') or '/'}", path)
        # vsftpd lists a directory it may not read as its own line, and one that is not
        # there as nothing, with "226 Directory send OK"; asked for `dir/`, it says "226
        # Transfer done (but failed to open directory)" (`_UNREAD`). Asked in those shapes
        # only
        if len(lines) < 2 and (not lines or _names_itself(read_list_line(lines[0]), path)):
            await self._list_lines(f"LIST {path.rstrip('/')}/", path)
        return await _parsed(lines, read_list_line, sink)

    async def _list_lines(self, command: str, path: str) -> tuple[bytes, ...]:
        receiver = await self._open_data(command, _receiver(_LIST_BUFFER), phase="list",
                                         path=path)
        stream = FtpReadStream(self, path, receiver, phase="list")
        data = bytearray()
        deadline = listing_deadline(self.stall_timeout)
        try:
            with anyio.move_on_after(deadline) as whole:
                while True:
                    with _deadline(self.stall_timeout, phase="list", path=path):
                        chunk = await stream.read()
                    if not chunk:
                        break
                    data += chunk
        finally:
            stream.close()
        if whole.cancelled_caught:
            raise TransferStalled(f"the listing was not complete within {deadline:g} s",
                                  path=path)
        await stream.finish()
        if _UNREAD in (reply := stream.reply).lower():  # no 550 for it: a 226 (see `list`)
            raise RemoteFileError("cannot list the directory", path=path,
                                  reply=reply)
        return tuple(line for line in bytes(data).splitlines() if line.strip())

    async def stat(self, path: str) -> RemoteEntry:
        """SIZE and MDTM (after TYPE I: proftpd and pyftpdlib refuse SIZE in ASCII mode);
        MLST's facts for what they do not give (aioftp's server lacks SIZE, some servers
        MDTM). What the server cannot tell at all is None: not knowing is not an error of
        the file's."""
        self.healthy = False
        await self.client.prepay(2 + (not self._binary))
        with _deadline(self.stall_timeout, phase="stat", path=path):
            await self._type_i()
            info = await self._optional(f"SIZE {path}")
            size = None if info is None else _int_reply(info, path)
            info = await self._optional(f"MDTM {path}")
            mtime = None if info is None else parse_mlsx_time(info[-1].strip())
            if size is None or mtime is None:
                facts = await self._mlst(path)
                size = size if size is not None else facts.size
                mtime = mtime if mtime is not None else facts.mtime
        self.healthy = True
        return RemoteEntry(path.rsplit("/", 1)[-1], size, mtime)

    async def _optional(self, command: str) -> tuple[str, ...] | None:
        """A command's 213 reply, or None when the server does not implement it (500-504,
        remembered for the session)."""
        verb = command.split(" ", 1)[0]
        if verb in self._refused:
            return None
        code, info = await self.client.command(command, ("213", "50x"))
        if code.matches("50x"):
            self._refused.add(verb)
            return None
        return tuple(info)

    async def _mlst(self, path: str) -> RemoteEntry:
        """MLST's size and time; both None when the server has no MLST."""
        name = path.rsplit("/", 1)[-1]
        if "MLST" in self._refused:
            return RemoteEntry(name, None, None)
        code, info = await self.client.command(f"MLST {path}", ("2xx", "50x"))
        if code.matches("50x"):
            self._refused.add("MLST")
            return RemoteEntry(name, None, None)
        facts_line = next((line for line in info if "=" in line), "")
        try:
            # (the entry line begins with one space, RFC 3659 7.2; the name ends the line)
            entry = _mlsd_entry(self.client, facts_line.removeprefix(" ").encode())
        except ValueError:
            entry = None
        if entry is None:
            raise ProtocolError("bad MLST reply", path=path, reply=" ".join(info))
        return RemoteEntry(name, entry.size, entry.mtime, entry.kind)

    async def aclose(self) -> None:
        with anyio.CancelScope(shield=True), anyio.move_on_after(_CLOSE_TIMEOUT):
            if self.healthy:
                with contextlib.suppress(Exception):
                    await self.client.command("QUIT", "2xx")
        self.client.close()


def _receiver(buffer: int | None) -> Callable[[str, int], Awaitable[Receiver]]:
    """Connects a data connection received into memory (see `_receiver_sizes`)."""
    async def connect(host: str, port: int) -> Receiver:
        _, receiver = await asyncio.get_running_loop().create_connection(
            lambda: Receiver(**_receiver_sizes(buffer)), host, port)
        return receiver

    return connect


def _peer_host(client: aioftp.Client) -> str:
    """The address the control connection reached (an IPv6 link-local one with its zone)."""
    peer = client.stream.writer.get_extra_info("peername")
    if not peer:
        return str(client.server_host)
    host = str(peer[0])
    if len(peer) == 4 and peer[3] and "%" not in host:  # IPv6: (host, port, flow, scope)
        host = f"{host}%{peer[3]}"
    return host


def _int_reply(info: Sequence[str], path: str) -> int:
    try:
        return int(info[-1].strip())
    except ValueError:
        raise ProtocolError("bad SIZE reply", path=path, reply=" ".join(info)) from None


def _kind(value: str) -> EntryKind:
    value = value.lower()
    if value == "file":
        return "file"
    if value in ("dir", "cdir", "pdir"):
        return "dir"
    if value.startswith(("os.unix=slink", "os.unix=symlink")) or value == "link":
        return "link"
    return "other"


def _mlsd_entry(client: aioftp.Client, line: bytes) -> RemoteEntry | None:
    """One MLSD/MLST line, `facts SP name` (RFC 3659): the name is everything after the
    first space, as it is (aioftp's parser strips its trailing spaces and normalises it
    as a path, so that `note.txt ` was asked for as `note.txt`); None for this directory
    and its parent. ValueError when it cannot be read."""
    # (a name that is not of the encoding is kept as bytes, to be skipped by name)
    text = line.decode(client.encoding, errors="surrogateescape").rstrip("\r\n")
    found, space, name = text.partition(" ")
    if not space:
        raise ValueError(f"not an MLSx line: {text!r}")
    facts = {}
    for fact in found.removesuffix(";").split(";"):
        key, _, value = fact.partition("=")
        facts[key.lower()] = value
    kind = _kind(facts.get("type", ""))
    if kind == "dir" and facts.get("type", "") != "dir":  # cdir, pdir: this one and its parent
        return None
    return _entry(name, facts, kind)


def _names_itself(entry: RemoteEntry | None, path: str) -> bool:
    """Whether a listing's one entry is the listed directory's own line (vsftpd's way; a
    link's, when the directory is a link to one it cannot open)."""
    return entry is not None and entry.kind in ("dir", "link") and entry.name == path.rstrip(
        "/").rpartition("/")[2]


def _mlsd_list_entry(client: aioftp.Client, line: bytes) -> RemoteEntry | None:
    """An MLSD line that cannot be read is reported as "unreadable", as a LIST line is."""
    try:
        return _mlsd_entry(client, line)
    except ValueError:  # UnicodeDecodeError too
        text = line.decode("utf-8", errors="backslashreplace")
        return RemoteEntry(text, None, None, "unreadable")


def _entry(name: str, facts: Mapping[str, Any], kind: EntryKind) -> RemoteEntry | None:
    """One MLSD/MLST line's facts, as aioftp parses them."""
    if name in (".", ".."):
        return None
    size = str(facts.get("size", ""))
    # a directory's `unique` (device and inode: proftpd, pure-ftpd, pyftpdlib) tells two
    # look-alike directories apart (`_walk`: `x/x` below `x`, each holding only `x`)
    unique = facts.get("unique") if kind == "dir" else None
    return RemoteEntry(name, int(size) if size.isdigit() else None,
                       parse_mlsx_time(str(facts.get("modify", ""))), kind,
                       validator=f"unique={unique}" if unique else None)


async def _parsed(lines: tuple[bytes, ...], read: Callable[[bytes], RemoteEntry | None],
                  sink: EntrySink | None, batch: int = 5_000) -> _Entries:
    """The listing's lines read as entries: returned, or handed to `sink` batch by batch."""
    if sink is None:
        return [e for line in lines if (e := read(line))]
    for start in range(0, len(lines), batch):
        await sink([e for line in lines[start:start + batch] if (e := read(line))])
    return []
