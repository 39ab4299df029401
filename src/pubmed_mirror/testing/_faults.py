"""The faults a `FaultyFTPServer` deals (`Fault`, queued per file in a `FaultPlan`) and what
it saw (`ServerStats`, kept by a `_Tally` behind a lock). Plain data: no pyftpdlib here."""

from __future__ import annotations

import posixpath
import re
import threading
import time
from collections import deque
from dataclasses import dataclass, field, replace
from typing import Literal, get_args

__all__ = ["REPLY", "Fault", "FaultKind", "FaultPlan", "ServerStats", "Tally"]

FaultKind = Literal["close_426", "close_226", "reset", "stall", "kill_control", "reply",
                    "corrupt", "none"]

REPLY = re.compile(r"[1-5]\d\d [^\r\n]*")  # one FTP reply line


@dataclass(frozen=True, slots=True, kw_only=True)
class Fault:
    """One misbehaviour, applied to one RETR.

    - close_426: close the data connection (FIN), reply "426 Connection closed; transfer
      aborted." -- the honest drop.
    - close_226: close it and reply "226 Transfer complete." -- silent truncation.
    - reset: close it with SO_LINGER 0 (RST: the client gets ECONNRESET and loses whatever
      was still queued), then reply 426.
    - stall: send nothing for `stall_seconds`, closing nothing and replying nothing; then, if
      the client is still there, carry on and finish the file normally.
    - kill_control: close data and control connections (FIN, as when a server process dies),
      no reply.
    - reply: answer RETR with `reply` verbatim, send no data, close any data connection.
    - corrupt: flip the byte at `after_bytes` (all its bits) and finish normally with 226:
      the full size arrives, with wrong contents -- only a checksum can tell.
    - none: serve the RETR normally (with `ignore_rest`, the lie alone).

    `ignore_rest`: the REST before this RETR was answered "350 Restarting at position N",
    yet the data starts at byte 0 (a server that lies about resuming).

    Data faults fire once exactly `after_bytes` bytes of *this* RETR (counted from its REST
    offset) have been handed to the kernel; a RETR that ends before that is served normally
    and the fault is spent anyway. `after_bytes` equal to what remains fires after the last
    byte, instead of the normal 226.
    """

    kind: FaultKind
    after_bytes: int = 0
    reply: str = "450 Injected transient failure"
    stall_seconds: float = 3600.0
    ignore_rest: bool = False

    def __post_init__(self) -> None:
        if self.kind not in get_args(FaultKind):
            raise ValueError(f"unknown fault kind {self.kind!r}")
        if self.after_bytes < 0:
            raise ValueError("after_bytes must be >= 0")
        if self.stall_seconds < 0:
            raise ValueError("stall_seconds must be >= 0")
        if not REPLY.fullmatch(self.reply):
            raise ValueError(f"reply must be one FTP reply line like '450 Busy': {self.reply!r}")


class FaultPlan:
    """Thread-safe: per file name, a FIFO of faults; each RETR of that file pops the next one.

    None left means the RETR is served normally. Names are base names (a path given to `add`
    is reduced to its last component), because that is how the server tallies RETRs too.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._queues: dict[str, deque[Fault]] = {}

    def add(self, name: str, *faults: Fault) -> None:
        """Queue `faults` for the next RETRs of `name`, after any already queued."""
        with self._lock:
            self._queues.setdefault(posixpath.basename(name), deque()).extend(faults)

    def pending(self, name: str) -> int:
        """How many faults are still waiting for RETRs of `name`."""
        with self._lock:
            return len(self._queues.get(posixpath.basename(name), ()))

    def _pop(self, name: str) -> Fault | None:
        with self._lock:
            queue = self._queues.get(name)
            return queue.popleft() if queue else None

    def __repr__(self) -> str:
        with self._lock:
            waiting = {name: len(q) for name, q in self._queues.items() if q}
        return f"<FaultPlan {waiting}>"


@dataclass
class ServerStats:
    """What the server saw; `FaultyFTPServer.stats` hands out copies, never the live one."""

    logins: int = 0
    connections: int = 0
    refused: int = 0
    max_concurrent: int = 0
    retr: dict[str, int] = field(default_factory=dict)
    rest_offsets: dict[str, list[int]] = field(default_factory=dict)
    bytes_sent: dict[str, int] = field(default_factory=dict)
    commands: int = 0
    # each command as it arrived: (time.monotonic(), its line (PASS: the verb alone), the
    # control connection's ordinal)
    command_log: list[tuple[float, str, int]] = field(default_factory=list)
    # the password of each anonymous login, as given (an address by etiquette); a named
    # user's password is a secret and never recorded
    anonymous_passwords: list[str] = field(default_factory=list)

    def snapshot(self) -> ServerStats:
        """A deep enough copy that later server activity cannot change it."""
        return replace(
            self,
            retr=dict(self.retr),
            rest_offsets={name: list(offsets) for name, offsets in self.rest_offsets.items()},
            bytes_sent=dict(self.bytes_sent),
            command_log=list(self.command_log),
            anonymous_passwords=list(self.anonymous_passwords),
        )


class Tally:
    """The live `ServerStats` plus the open-connection count, all behind one lock."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._stats = ServerStats()
        self._open = 0

    def snapshot(self) -> ServerStats:
        with self._lock:
            return self._stats.snapshot()

    @property
    def open(self) -> int:
        with self._lock:
            return self._open

    def arrive(self) -> int:
        """Count a new control connection; return its ordinal (1 for the first)."""
        with self._lock:
            self._stats.connections += 1
            return self._stats.connections

    def admit(self, limit: int) -> bool:
        """False when a new connection is over `limit` open ones (0 = no limit)."""
        with self._lock:
            if limit and self._open >= limit:
                self._stats.refused += 1
                return False
            self._open += 1
            self._stats.max_concurrent = max(self._stats.max_concurrent, self._open)
            return True

    def leave(self) -> None:
        with self._lock:
            self._open -= 1

    def login(self, anonymous_password: str | None) -> None:
        with self._lock:
            self._stats.logins += 1
            if anonymous_password is not None:
                self._stats.anonymous_passwords.append(anonymous_password)

    def command(self, line: str, connection: int) -> None:
        with self._lock:
            self._stats.commands += 1
            self._stats.command_log.append((time.monotonic(), line, connection))

    def retr(self, name: str, offset: int) -> None:
        with self._lock:
            self._stats.retr[name] = self._stats.retr.get(name, 0) + 1
            self._stats.rest_offsets.setdefault(name, []).append(offset)
            self._stats.bytes_sent.setdefault(name, 0)

    def sent(self, name: str, size: int) -> None:
        with self._lock:
            self._stats.bytes_sent[name] = self._stats.bytes_sent.get(name, 0) + size
