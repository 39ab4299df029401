"""A real FTP server for tests, with the faults injected in the server.

`FaultyFTPServer` runs pyftpdlib on 127.0.0.1 in a background thread and misbehaves on
purpose, the way real servers (and NCBI's) do: it drops a transfer after exactly N bytes with
426 or with a lying 226, resets the data connection, stalls, kills the control connection,
answers RETR with a canned 4xx/5xx, caps connections (421 at greeting or 530 at login),
throttles, delays every reply and can refuse MLSD. Faults live in the server, so the client
under test is exercised through its real network code, not through mocks.

    with FaultyFTPServer(root) as server:
        server.faults.add("pubmed26n0001.xml.gz", Fault(kind="close_426", after_bytes=1000))
        ...  # point the client at server.url
        assert server.stats.rest_offsets["pubmed26n0001.xml.gz"] == [0, 1000]

Everything pyftpdlib does runs in the server's own thread on its own IOLoop; the only things
shared with the caller are the `FaultPlan` and the `ServerStats`, both behind locks.
"""

from __future__ import annotations

import logging
import os
import socket
import struct
import threading
import time
import warnings
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

with warnings.catch_warnings():
    # pyftpdlib is built on asyncore/asynchat, deprecated in 3.11: importing them first from
    # here must not fail a test run that turns warnings into errors.
    warnings.simplefilter("ignore", DeprecationWarning)
    from pyftpdlib.authorizers import DummyAuthorizer
    from pyftpdlib.handlers import DTPHandler, FTPHandler
    from pyftpdlib.ioloop import IOLoop
    from pyftpdlib.servers import FTPServer

from ._faults import REPLY, Fault, FaultKind, FaultPlan, ServerStats, Tally

__all__ = ["Fault", "FaultKind", "FaultPlan", "FaultyFTPServer", "ServerStats"]

_LOG = logging.getLogger("pyftpdlib")
_TICK = 0.05  # the server thread checks for stop() this often, at the latest
_JOIN_SECONDS = 5.0
_ABORTED = "426 Connection closed; transfer aborted."
_COMPLETE = "226 Transfer complete."
_TOO_MANY_421 = "421 Too many connections"
_TOO_MANY_530 = "530 Sorry, too many connections"
_LOGIN_INCORRECT = "Login incorrect."


@dataclass(frozen=True, slots=True)
class _Config:
    """Everything a session needs from its server, reached through `handler.server.config`."""

    faults: FaultPlan
    tally: Tally
    max_connections: int
    limit_reply: str
    rate: int
    reply_delay: float
    reset_connections: int
    authorizer: Any
    proto_cmds: dict[str, Any]
    passive_ports: range | None
    list_lines: tuple[str, ...] | None
    replies: Mapping[str, str]
    idle_timeout: float


class _Retr:
    """One RETR in flight: its file producer, its fault, and how far it has got."""

    def __init__(self, producer: Any, name: str, fault: Fault | None, tally: Tally) -> None:
        self.name = name
        self.fault = fault
        self.sent = 0
        self._producer = producer
        self._tally = tally

    def more(self) -> bytes:
        data: bytes = self._producer.more()
        return data

    def allowance(self, size: int) -> int:
        """At most `size`, and never past the byte where the fault must fire."""
        if self.fault is None:
            return size
        return min(size, self.fault.after_bytes - self.sent)

    def record(self, size: int) -> None:
        self.sent += size
        self._tally.sent(self.name, size)

    def pop_due(self) -> Fault | None:
        """The fault, once its byte count is reached; it is then disarmed."""
        fault = self.fault
        if fault is None or self.sent < fault.after_bytes:
            return None
        self.fault = None
        return fault


class _FaultyDTP(DTPHandler):  # type: ignore[misc]
    """The data connection: sends byte-exactly, paces, and carries out data faults."""

    timeout = 0  # a stall must last stall_seconds, not pyftpdlib's idle limit
    _resp: tuple[Any, ...]  # pyftpdlib's (reply, log function) sent when the channel closes

    def __init__(self, sock: socket.socket, cmd_channel: Any) -> None:
        self._retr: _Retr | None = None
        self._flip = False  # a corrupt fault fired: the next byte out goes inverted
        self._timer: Any = None
        self._pace_start: float | None = None
        self._paced = 0
        self._channels: set[Any] = cmd_channel.server.channels
        self._rate: int = cmd_channel.server.config.rate
        super().__init__(sock, cmd_channel)
        if not self._closed:
            self._channels.add(self)

    def push_with_producer(self, producer: Any) -> None:
        if isinstance(producer, _Retr):
            self._retr = producer
        super().push_with_producer(producer)

    def _corrupting(self, fault: Fault | None) -> bool:
        """A corrupt fault does not stop the data: it inverts the next byte out."""
        if fault is not None and fault.kind == "corrupt":
            self._flip = True
            return True
        return False

    def send(self, data: bytes) -> int:
        retr = self._retr
        if retr is not None and (fault := retr.pop_due()) is not None \
                and not self._corrupting(fault):
            self._fire(fault, then=self._wake)  # after_bytes=0: nothing goes out at all
            return 0
        size = self._pace(retr.allowance(len(data)) if retr else len(data))
        if size == 0:
            return 0
        chunk = data[:size]
        if self._flip:
            chunk = bytes([chunk[0] ^ 0xFF]) + chunk[1:]
        sent: int = super().send(chunk)
        self._flip = self._flip and sent == 0
        self._paced += sent
        if retr is not None:
            retr.record(sent)
            fault = retr.pop_due()
            if fault is not None and not self._corrupting(fault) and not self._closed:
                self._fire(fault, then=self._wake)
        return sent

    def handle_close(self) -> None:
        # Only reached with a fault still armed when after_bytes was 0 and nothing was left
        # to send (empty file, REST at the end): the fault still fires, instead of the 226.
        fault = self._retr.pop_due() if self._retr is not None else None
        if fault is not None and not self._corrupting(fault) and not self._closed:
            self._fire(fault, then=super().handle_close)
        else:
            super().handle_close()

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._channels.discard(self)
        super().close()

    def _fire(self, fault: Fault, *, then: Callable[[], None]) -> None:
        if fault.kind == "stall":
            self._sleep(fault.stall_seconds, then)  # then go on as if nothing happened
            return
        if fault.kind == "kill_control":
            control = self.cmd_channel
            self._resp = ()  # no reply: the control connection dies right after
            self.close()
            control.close()
            return
        if fault.kind == "reset":
            _reset(self.socket)
        self._resp = (_COMPLETE if fault.kind == "close_226" else _ABORTED, _LOG.debug)
        self.close()  # FIN (or RST), then the reply, as RFC 959 orders it

    def _pace(self, size: int) -> int:
        """How much may go now at the configured rate; 0 after scheduling a wake-up.

        The schedule is byte-exact from the first send (no initial burst), so N bytes take
        at least N / rate seconds; pyftpdlib's ThrottledDTPHandler lets small files through
        at full speed, which would make throttling tests meaningless.
        """
        if not self._rate or size == 0:
            return size
        size = min(size, max(1, self._rate // 20))
        now = time.monotonic()
        if self._pace_start is None:
            self._pace_start = now
        early = self._pace_start + (self._paced + size) / self._rate - now
        if early > 0:
            self._sleep(early, self._wake)
            return 0
        return size

    def _sleep(self, seconds: float, then: Callable[[], None]) -> None:
        """Leave the IOLoop for a while without blocking the server thread or closing."""
        self.del_channel()
        self._timer = self.ioloop.call_later(seconds, self._awake, then,
                                             _errback=self.handle_error)

    def _awake(self, then: Callable[[], None]) -> None:
        self._timer = None
        if not self._closed:
            then()

    def _wake(self) -> None:
        self.add_channel(events=self.ioloop.WRITE)


class _Session(FTPHandler):  # type: ignore[misc]
    """The control connection: counts, limits, delays replies and injects RETR faults."""

    use_sendfile = False  # sendfile could not stop after exactly after_bytes
    dtp_handler = _FaultyDTP
    auth_failed_timeout = 0  # pyftpdlib waits 3 s before a 530; tests should not
    _restart_position: int  # pyftpdlib's pending REST offset

    def __init__(self, conn: socket.socket, server: Any, ioloop: Any = None) -> None:
        config: _Config = server.config
        self._config = config
        self._admitted = False
        self._ordinal = 0
        self._arming: tuple[str, Fault | None] | None = None
        self._delayed: deque[tuple[float, str | None]] = deque()
        self._flush_timer: Any = None
        self.authorizer = config.authorizer
        self.proto_cmds = config.proto_cmds
        self.passive_ports = config.passive_ports
        if config.idle_timeout:
            self.timeout = config.idle_timeout  # then "421 Control connection timed out."
        super().__init__(conn, server, ioloop=ioloop)
        if not self._closed:
            server.channels.add(self)

    # -- connection limit and login

    def handle(self) -> None:
        """Greet, or refuse at the greeting (421), or greet and refuse at PASS (530); or
        reset the connection before any greeting (the first `reset_connections` ones)."""
        config = self._config
        self._ordinal = config.tally.arrive()
        if self._ordinal <= config.reset_connections:
            _reset(self.socket)
            self.close()
            return
        self._admitted = config.tally.admit(config.max_connections)
        if self._admitted or config.limit_reply == "530":
            super().handle()
            return
        self.respond(_TOO_MANY_421)
        self.close_when_done()

    def ftp_PASS(self, line: str) -> None:
        if self._admitted:
            super().ftp_PASS(line)
            return
        self.respond(_TOO_MANY_530)  # proftpd's way: the session ends after saying so
        self.close_when_done()

    def handle_auth_success(self, home: str, password: str, msg_login: str) -> None:
        # counted before the 230 goes out, so a client never sees it early
        self._config.tally.login(password if self.username == "anonymous" else None)
        super().handle_auth_success(home, password, msg_login)

    def handle_auth_failed(self, msg: str, password: str) -> None:
        super().handle_auth_failed(_LOGIN_INCORRECT, password)

    def pre_process_command(self, line: str, cmd: str, arg: str) -> None:
        self._config.tally.command(cmd if cmd == "PASS" else line, self._ordinal)
        canned = self._config.replies.get(cmd)
        if canned is not None and self.authenticated:
            self.respond(canned)
            return
        super().pre_process_command(line, cmd, arg)

    # -- a canned listing

    def ftp_LIST(self, path: str) -> str | None:
        lines = self._config.list_lines
        if lines is None:
            result: str | None = super().ftp_LIST(path)
            return result
        data = "".join(f"{line}\r\n" for line in lines).encode("utf-8", "surrogateescape")
        self.push_dtp_data(data, cmd="LIST")
        return path

    # -- RETR and its faults

    def ftp_RETR(self, file: str) -> str | None:
        name = os.path.basename(file)
        self._config.tally.retr(name, self._restart_position)
        fault = self._config.faults._pop(name)
        if fault is not None and fault.ignore_rest:
            self._restart_position = 0  # 350 was said; the data starts at 0 all the same
        if fault is not None and fault.kind == "none":
            fault = None
        if fault is not None and fault.kind == "reply":
            self._restart_position = 0
            self._drop_data_connection()
            self.respond(fault.reply)
            return None
        self._arming = (name, fault)
        try:
            path: str | None = super().ftp_RETR(file)
        finally:
            self._arming = None
        return path

    def push_dtp_data(self, data: Any, isproducer: bool = False, file: Any = None,
                      cmd: str | None = None) -> None:
        if cmd == "RETR" and isproducer and self._arming is not None:
            data = _Retr(data, *self._arming, self._config.tally)
        super().push_dtp_data(data, isproducer, file, cmd)

    def _drop_data_connection(self) -> None:
        """A refused RETR must not leave a listening or connected data socket behind."""
        self._shutdown_connecting_dtp()
        if self.data_channel is not None:
            self.data_channel.close()

    # -- reply latency

    def push(self, data: str) -> None:
        if not self._config.reply_delay:
            super().push(data)
            return
        self._delayed.append((time.monotonic() + self._config.reply_delay, data))
        self._schedule_flush()

    def close_when_done(self) -> None:
        if self._delayed:
            self._delayed.append((self._delayed[-1][0], None))  # close after the last reply
        else:
            super().close_when_done()

    def _schedule_flush(self) -> None:
        if self._flush_timer is None and self._delayed and not self._closed:
            wait = max(0.0, self._delayed[0][0] - time.monotonic())
            self._flush_timer = self.ioloop.call_later(wait, self._flush,
                                                       _errback=self.handle_error)

    def _flush(self) -> None:
        """Send, in order, every delayed reply that is due (one timer keeps them ordered)."""
        self._flush_timer = None
        now = time.monotonic()
        while self._delayed and self._delayed[0][0] <= now and not self._closed:
            data = self._delayed.popleft()[1]
            if data is None:
                super().close_when_done()
            else:
                super().push(data)
        self._schedule_flush()

    def close(self) -> None:
        if self._flush_timer is not None:
            self._flush_timer.cancel()
            self._flush_timer = None
        if self._admitted:
            self._admitted = False
            self._config.tally.leave()
        self.server.channels.discard(self)
        super().close()


class _Listener(FTPServer):  # type: ignore[misc]
    """pyftpdlib's acceptor on a private IOLoop, knowing every channel it must close."""

    max_cons = 0  # the connection limit is ours (_Session.handle), not pyftpdlib's

    def __init__(self, address: tuple[str, int], config: _Config) -> None:
        self.config = config
        self.channels: set[Any] = set()
        ioloop = IOLoop()
        try:
            super().__init__(address, _Session, ioloop=ioloop)
        except BaseException:
            ioloop.close()
            raise

    def shutdown(self) -> None:
        """Close everything, including channels a stall or throttle took off the IOLoop."""
        for channel in list(self.channels):
            channel.close()
        self.close_all()


def _serve(listener: _Listener, stopping: threading.Event) -> None:
    """Run the IOLoop by hand: pyftpdlib's loop() would configure logging and never stop."""
    ioloop = listener.ioloop
    timeout = _TICK
    try:
        while not stopping.is_set():
            ioloop.poll(timeout)
            soonest = ioloop.sched.poll()
            timeout = _TICK if soonest is None else min(_TICK, soonest)
    finally:
        listener.shutdown()


def _quiet_pyftpdlib() -> None:
    """Keep pyftpdlib's per-command logging out of test output, unless someone asked for it.

    The NullHandler also makes pyftpdlib's is_logging_configured() true, so it never
    installs its own stderr handler.
    """
    if _LOG.level == logging.NOTSET:
        _LOG.setLevel(logging.CRITICAL)
    if not _LOG.handlers:
        _LOG.addHandler(logging.NullHandler())


class FaultyFTPServer:
    """pyftpdlib on 127.0.0.1, in a daemon thread, misbehaving as told by `faults`.

    `root` is served read-only ("elr") to anonymous, or only to `user`/`password` when given
    (anything else gets "530 Login incorrect." at once, not after pyftpdlib's 3 s).
    Over `max_connections` open control connections a new one is refused: "421 Too many
    connections" as the greeting, then closed (vsftpd, pure-ftpd); or with limit_reply "530",
    greeted normally and answered "530 Sorry, too many connections" at PASS, then closed
    (proftpd). `rate_per_connection` paces every data connection to that many bytes/s from
    its first byte; `reply_delay` holds back every control reply without blocking the others.
    The first `reset_connections` control connections are reset (RST) before any greeting,
    like a server or firewall that drops a client at random. `list_lines`, when given, is
    the answer to every LIST (MLSD and MLST are then turned off, as on servers that write
    such listings), whatever the files in `root` are: RETR still serves those. `replies`
    answers the commands it names (after login) with its reply line instead of running them:
    `{"MDTM": "502 Not implemented", "EPSV": "522 Use PASV"}` makes a server without MDTM
    and EPSV, `{"REST": "502 ..."}` one that cannot resume. `idle_timeout` (seconds, 0:
    pyftpdlib's 300) closes a control connection idle that long, saying "421 Control
    connection timed out." first. Stats
    accumulate across restart(). pyftpdlib's logger is set to CRITICAL unless its level was
    set already: set it to DEBUG to watch the sessions.
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        *,
        faults: FaultPlan | None = None,
        max_connections: int = 0,
        limit_reply: Literal["421", "530"] = "421",
        rate_per_connection: int = 0,
        reply_delay: float = 0.0,
        user: str | None = None,
        password: str | None = None,
        disable_mlsd: bool = False,
        passive_ports: range | None = None,
        reset_connections: int = 0,
        list_lines: Sequence[str] | None = None,
        replies: Mapping[str, str] | None = None,
        idle_timeout: float = 0.0,
    ) -> None:
        _check_options(max_connections, limit_reply, rate_per_connection, reply_delay,
                       user, password)
        self.host = "127.0.0.1"
        self.port = 0
        self.root = os.path.realpath(root)
        self.faults = faults if faults is not None else FaultPlan()
        self._tally = Tally()
        self._config = _Config(
            faults=self.faults,
            tally=self._tally,
            max_connections=max_connections,
            limit_reply=limit_reply,
            rate=rate_per_connection,
            reply_delay=reply_delay,
            reset_connections=reset_connections,
            authorizer=_authorizer(self.root, user, password),
            proto_cmds=_commands(disable_mlsd or list_lines is not None),
            passive_ports=passive_ports,
            list_lines=None if list_lines is None else tuple(list_lines),
            replies=_check_replies(replies or {}),
            idle_timeout=idle_timeout,
        )
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()

    @property
    def url(self) -> str:
        """`ftp://127.0.0.1:PORT/`, once the server has listened (port 0 would mean 21)."""
        if not self.port:
            raise RuntimeError("FaultyFTPServer.url: the server has no port until start() "
                               "(or `with FaultyFTPServer(...) as server:`)")
        return f"ftp://{self.host}:{self.port}/"

    @property
    def stats(self) -> ServerStats:
        """A copy, so assertions see one consistent moment."""
        return self._tally.snapshot()

    def start(self) -> None:
        """Listen (on the previous port after a stop, else on a free one) and serve.

        The socket listens before this returns, so clients may connect at once.
        """
        if self._thread is not None:
            raise RuntimeError("FaultyFTPServer is already running")
        _quiet_pyftpdlib()
        listener = _Listener((self.host, self.port), self._config)
        self.port = listener.address[1]
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=_serve, args=(listener, self._stopping),
                                        name=f"FaultyFTPServer:{self.port}", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Close every connection (control and data) and the listener; safe to call twice."""
        thread, self._thread = self._thread, None
        if thread is None:
            return
        self._stopping.set()
        thread.join(_JOIN_SECONDS)
        if thread.is_alive():
            raise RuntimeError(f"FaultyFTPServer thread did not stop in {_JOIN_SECONDS} s")

    def restart(self) -> None:
        """Drop every connection and listen again on the same port, like a daemon restart."""
        self.stop()
        self.start()

    def __enter__(self) -> FaultyFTPServer:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "running" if self._thread is not None else "stopped"
        return (f"<FaultyFTPServer ftp://{self.host}:{self.port}/ {state}, "
                f"{self._tally.open} open>")


def _reset(sock: socket.socket) -> None:
    """Linger 0: the next close() sends RST, discarding what is still queued for the peer."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


def _check_options(max_connections: int, limit_reply: str, rate: int, reply_delay: float,
                   user: str | None, password: str | None) -> None:
    if max_connections < 0 or rate < 0 or reply_delay < 0:
        raise ValueError("max_connections, rate_per_connection and reply_delay must be >= 0")
    if limit_reply not in ("421", "530"):
        raise ValueError(f"limit_reply must be '421' or '530', not {limit_reply!r}")
    if (user is None) != (password is None):
        raise ValueError("give both user and password, or neither (anonymous)")


def _check_replies(replies: Mapping[str, str]) -> dict[str, str]:
    for command, reply in replies.items():
        if not REPLY.fullmatch(reply):
            raise ValueError(f"{command}: one FTP reply line like '502 No', not {reply!r}")
    return {command.upper(): reply for command, reply in replies.items()}


def _authorizer(root: str, user: str | None, password: str | None) -> Any:
    authorizer = DummyAuthorizer()
    if user is None or password is None:
        authorizer.add_anonymous(root, perm="elr")
    else:
        authorizer.add_user(user, password, root, perm="elr")
    return authorizer


def _commands(disable_mlsd: bool) -> dict[str, Any]:
    """pyftpdlib's command table, minus MLSD/MLST when asked (they then get 500, like vsftpd,
    and FEAT stops advertising MLST)."""
    table: dict[str, Any] = dict(FTPHandler.proto_cmds)
    if disable_mlsd:
        del table["MLSD"], table["MLST"]
    return table
