"""The retry policy and the error classification."""

from __future__ import annotations

import time

import aioftp
import anyio
import pytest

from pubmed_mirror import (
    ConnectionLost,
    LoginRefused,
    RemoteFileError,
    RetryPolicy,
    ServerBusy,
    ServerPaused,
    TooManyConnections,
    TransientError,
)
from pubmed_mirror._ftperrors import classify_reply, map_ftp_errors


def test_backoff_is_exponential_and_capped() -> None:
    """Waits double from `base` and never exceed `cap`."""
    policy = RetryPolicy(base=0.5, factor=2, cap=5)
    assert [policy.delay(n) for n in range(1, 7)] == [0.5, 1, 2, 4, 5, 5]


def test_backoff_generator_follows_delay() -> None:
    """The generator handed to backoff yields the same waits after its priming value."""
    policy = RetryPolicy(base=1, cap=60)
    gen = policy.delays()
    next(gen)
    assert [next(gen) for _ in range(4)] == [policy.delay(n) for n in range(1, 5)]


def test_huge_attempt_numbers_do_not_overflow() -> None:
    """Attempt 10_000 waits `cap` instead of raising OverflowError."""
    assert RetryPolicy(cap=7).delay(10_000) == 7


async def test_transient_errors_are_retried_until_success() -> None:
    """Two transient failures then success: three calls, two on_retry callbacks."""
    calls: list[int] = []
    retries: list[tuple[int, str]] = []

    async def op() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise ConnectionLost("reset", path="f")
        return "ok"

    policy = RetryPolicy(attempts=5, base=0.001, cap=0.001)
    result = await policy.call(op, on_retry=lambda n, wait, exc: retries.append((n, str(exc))))
    assert result == "ok"
    assert len(calls) == 3
    assert [n for n, _ in retries] == [1, 2]


async def test_permanent_errors_are_not_retried() -> None:
    """A 550 fails at once: one call, the error itself goes through."""
    calls: list[int] = []

    async def op() -> None:
        calls.append(1)
        raise RemoteFileError("gone", path="f", reply="550 No such file")

    with pytest.raises(RemoteFileError):
        await RetryPolicy(attempts=5, base=0.001).call(op)
    assert len(calls) == 1


async def test_last_error_goes_through_when_attempts_run_out() -> None:
    """After `attempts` tries the last transient error is raised, not a wrapper."""
    calls: list[int] = []

    async def op() -> None:
        calls.append(1)
        raise ServerBusy(f"busy {len(calls)}", path="f")

    with pytest.raises(ServerBusy, match="busy 3"):
        await RetryPolicy(attempts=3, base=0.001, cap=0.001).call(op)
    assert len(calls) == 3


async def test_pauses_spend_no_attempt_until_the_time_bound() -> None:
    """Answers asking to pause (`ServerPaused`) are retried without spending an attempt,
    each reported with its pause, until the server has been busy (`since`) for `max_time`
    seconds: then the last goes through. Other transient errors among them still count."""
    calls: list[int] = []
    waits: list[float] = []

    async def op() -> str:
        calls.append(1)
        if len(calls) in (3, 6):
            raise ConnectionLost("reset", path="f")
        if len(calls) < 10:
            raise ServerPaused("503", path="f", pause=0.25)
        return "ok"

    policy = RetryPolicy(attempts=3, base=0.001, cap=0.001)
    assert await policy.call(op, on_retry=lambda n, wait, exc: waits.append(wait)) == "ok"
    assert len(calls) == 10 and waits.count(0.25) == 7

    busy_since = time.monotonic()  # the server's gate: busy since then, never served since

    async def always() -> None:
        calls.append(1)
        raise ServerPaused("503", path="f", since=busy_since)

    calls.clear()
    with pytest.raises(ServerPaused):
        await RetryPolicy(attempts=3, max_time=0.5).call(always)
    assert len(calls) > 3  # beyond the attempts, within the time
    with pytest.raises(ServerPaused):  # attempts=1: never retried
        await RetryPolicy(attempts=1).call(always)


async def test_pauses_are_bounded_per_call_when_the_server_seems_to_recover() -> None:
    """The server answers some other request normally between the pauses (its `since` is
    always now): a call meeting nothing but pauses still gives up after `max_time`; one
    whose attempt made progress in between starts its bound again."""
    calls: list[int] = []
    received = [0]

    async def fresh() -> None:
        calls.append(1)
        raise ServerPaused("503", path="f", since=time.monotonic())

    with pytest.raises(ServerPaused):
        await RetryPolicy(attempts=3, max_time=0.5).call(fresh)

    async def progressing() -> str:
        calls.append(1)
        if len(calls) == 1:
            raise ServerPaused("503", path="f", since=time.monotonic())
        if len(calls) == 2:  # bytes came for longer than max_time, then a reset
            received[0] += 1 << 20
            await anyio.sleep(0.6)
            raise ConnectionLost("reset", path="f")
        if len(calls) == 3:
            raise ServerPaused("503", path="f", since=time.monotonic())
        return "done"

    calls.clear()
    policy = RetryPolicy(attempts=3, base=0.01, cap=0.05, max_time=0.5)
    assert await policy.call(progressing, progress=lambda: received[0]) == "done"


def _reply(code: str, text: str) -> aioftp.StatusCodeError:
    return aioftp.StatusCodeError(aioftp.Code("2xx"), aioftp.Code(code), [text])


@pytest.mark.parametrize(
    ("code", "text", "phase", "expected"),
    [
        ("421", " Too many connections", "connect", TooManyConnections),
        ("421", " Service not available", "connect", TooManyConnections),
        ("530", " Sorry, the maximum number of clients (2) from your host", "login",
         TooManyConnections),
        ("530", " Login incorrect.", "login", LoginRefused),
        ("450", " File busy", "retr", ServerBusy),
        ("426", " Connection closed; transfer aborted.", "finish", ServerBusy),
        ("421", " Timeout", "retr", ServerBusy),
        ("550", " No such file", "retr", RemoteFileError),
        ("553", " Not allowed", "retr", RemoteFileError),
    ],
)
def test_replies_are_classified(code: str, text: str, phase: str, expected: type) -> None:
    """Each reply code maps to the error class that decides retry, fail or stop."""
    error = classify_reply(_reply(code, text), phase=phase, path="pubmed26n0001.xml.gz")  # type: ignore[arg-type]
    assert type(error) is expected
    assert "pubmed26n0001.xml.gz" in str(error)
    assert code in str(error)  # the server's reply is quoted


def test_transient_classes() -> None:
    """4xx-style errors are transient; 5xx and login refusals are not."""
    assert issubclass(TooManyConnections, TransientError)
    assert not issubclass(RemoteFileError, TransientError)
    assert not issubclass(LoginRefused, TransientError)


def test_socket_errors_are_translated_once() -> None:
    """A ConnectionResetError inside map_ftp_errors becomes ConnectionLost naming the file."""
    with pytest.raises(ConnectionLost, match="f.gz") as info, map_ftp_errors(
        phase="transfer", path="f.gz"
    ):
        raise ConnectionResetError(104, "Connection reset by peer")
    assert isinstance(info.value.__cause__, ConnectionResetError)
