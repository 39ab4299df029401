"""The politeness budget a run spends: bytes/s, commands/s and connections to a server. A
`MirrorClient` holds one and shares it among its mirrors; a one-shot `mirror()` has its own."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from ._backoff import ServerGate
from ._ratelimit import TokenBucket

__all__ = ["Budget", "ConnectionCap", "bytes_bucket", "command_bucket"]


def bytes_bucket(rate: int | None) -> TokenBucket | None:
    # a quarter second's worth of burst (16 KiB .. 1 MiB); a larger chunk waits off its debt
    return None if rate is None else TokenBucket(rate, burst=min(1 << 20, max(16 << 10, rate / 4)))


def command_bucket(rate: float | None) -> TokenBucket | None:
    return None if rate is None else TokenBucket(rate, burst=max(1.0, rate))


class ConnectionCap:
    """At most `limit` connections to one server over every pool that shares this cap.

    Pools take a slot before they connect and give it back once the connection is closed.
    A pool that finds no slot queues (`queued`) and is woken when one is given back; while
    other pools queue, a pool neither takes a free slot before them nor keeps a session it
    is done with (it closes it: `wanted_by_others`), so mirrors sharing a server take turns.
    """

    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError("a connection cap must be >= 1")
        self.limit = limit
        self.used = 0
        self._queued: dict[object, tuple[int, Callable[[], None]]] = {}  # owner: (tasks, wake)

    def __repr__(self) -> str:
        return f"<ConnectionCap {self.used}/{self.limit} used, {len(self._queued)} pools queued>"

    def free_for(self, owner: object) -> bool:
        """A slot is free, and `owner` queues for it or no pool does (`take`'s rule)."""
        return self.used < self.limit and (owner in self._queued or not self._queued)

    def take(self, owner: object) -> bool:
        """Take a slot for `owner`, unless none is free or other pools queue before it."""
        if not self.free_for(owner):
            return False
        self.used += 1
        return True

    def give(self) -> None:
        """A connection was closed: its slot is free."""
        self.used -= 1
        self._wake()

    def wanted_by_others(self, owner: object) -> bool:
        """Another pool waits for a slot."""
        return any(other is not owner for other in self._queued)

    @contextmanager
    def queued(self, owner: object, wake: Callable[[], None]) -> Iterator[None]:
        """While a task of `owner` waits for a slot: `wake` is called when one may be free."""
        tasks, _ = self._queued.get(owner, (0, wake))
        self._queued[owner] = (tasks + 1, wake)
        try:
            yield
        finally:
            tasks, _ = self._queued.pop(owner)
            if tasks > 1:
                self._queued[owner] = (tasks - 1, wake)
            self._wake()  # a free slot it leaves unclaimed goes to the others

    def _wake(self) -> None:
        for _, wake in list(self._queued.values()):
            wake()


@dataclass(frozen=True, slots=True)
class Budget:
    """What one run spends from: shared with other runs when they come from one client."""

    bytes: TokenBucket | None  # all bytes received
    commands: TokenBucket | None  # FTP commands and HTTP requests
    connections: ConnectionCap | None  # sessions to the run's server
    gate: ServerGate = field(default_factory=ServerGate)  # the run's server's back-off

    @classmethod
    def of(cls, rate_limit: int | None, command_rate: float | None,
           connections: int | None = None) -> Budget:
        """A budget of its own."""
        return cls(bytes_bucket(rate_limit), command_bucket(command_rate),
                   None if connections is None else ConnectionCap(connections))
