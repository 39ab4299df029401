"""The token bucket, driven by an injected clock (no sleeping)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from conftest import FakeClock
from pubmed_mirror import TokenBucket


def test_bucket_starts_empty() -> None:
    """The first reservation waits its full cost: a new bucket grants no free burst."""
    clock = FakeClock(100.0)
    bucket = TokenBucket(1000, burst=500, clock=clock)
    assert bucket.reserve(250) == pytest.approx(0.25)


def test_idle_time_refills_up_to_burst_only() -> None:
    """A long idle period grants at most `burst` tokens."""
    clock = FakeClock(100.0)
    bucket = TokenBucket(1000, burst=500, clock=clock)
    clock.now += 60
    assert bucket.reserve(500) == 0.0
    assert bucket.reserve(100) == pytest.approx(0.1)


@pytest.mark.parametrize("chunk", [1, 1000, 65536, 1 << 20])
def test_concurrent_reservations_queue_in_order(chunk: int) -> None:
    """Back-to-back reservations are spaced so the aggregate never exceeds the rate."""
    clock = FakeClock(100.0)
    bucket = TokenBucket(1 << 20, burst=1 << 20, clock=clock)
    waits = [bucket.reserve(chunk) for _ in range(10)]
    assert waits == sorted(waits)
    assert waits[-1] == pytest.approx(10 * chunk / (1 << 20))


@given(
    rate=st.floats(min_value=1, max_value=1e9),
    chunks=st.lists(st.integers(min_value=0, max_value=1 << 20), min_size=1, max_size=50),
    gaps=st.lists(st.floats(min_value=0, max_value=5), min_size=50, max_size=50),
)
def test_long_run_rate_never_exceeds_cap(rate: float, chunks: list[int], gaps: list[float]) -> None:
    """However chunks and pauses interleave, bytes released by time t <= burst + rate * t."""
    clock = FakeClock(100.0)
    start = clock.now
    burst = max(1.0, rate / 10)
    bucket = TokenBucket(rate, burst=burst, clock=clock)
    released = 0
    for chunk, gap in zip(chunks, gaps, strict=False):
        clock.now += gap
        wait = bucket.reserve(chunk)
        released += chunk
        clock.now += wait  # the caller sleeps, then uses its tokens
        elapsed = clock.now - start
        assert released <= burst + rate * elapsed + 1e-6 * max(1.0, released)


@pytest.mark.parametrize("rate", [0, -1, float("inf"), float("nan")])
def test_bad_rate_rejected(rate: float) -> None:
    """A rate that is not a positive finite number is refused."""
    with pytest.raises(ValueError):
        TokenBucket(rate)


async def test_acquire_sleeps_for_the_reserved_time() -> None:
    """acquire() really waits (here 50 ms for 50 tokens at 1000/s)."""
    import anyio

    bucket = TokenBucket(1000, burst=100)
    start = anyio.current_time()
    await bucket.acquire(50)
    assert anyio.current_time() - start >= 0.045
