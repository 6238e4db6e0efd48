"""GCRA token buckets: the AWS token-bucket invariant, recovery, refusal and cross-process sharing."""

from __future__ import annotations

import math
import subprocess
import sys
import textwrap

from hypothesis import given, settings
from hypothesis import strategies as st

from portico._core import TokenBuckets, monotonic_ns

S = 1_000_000_000
NEVER = 2**64 - 1


@settings(max_examples=300, deadline=None)
@given(
    rate=st.one_of(st.floats(0.001, 1.0), st.floats(1.0, 5000.0)),
    burst=st.integers(1, 40),
    start=st.integers(0, 10**6 * S),
    gaps=st.lists(
        st.one_of(st.just(0), st.integers(0, 10**6), st.integers(0, 3 * S)), min_size=1, max_size=200
    ),
)
def test_never_more_than_burst_plus_rate_times_elapsed(rate, burst, start, gaps):
    buckets = TokenBuckets(capacity=16)
    now = start
    admitted: list[int] = []
    for gap in gaps:
        now += gap
        wait = buckets.try_acquire("k", rate, burst, now)
        if wait == 0:
            admitted.append(now)
        else:
            assert 0 < wait <= math.ceil(S / rate) + 1
    # Every window between two admitted requests (a full bucket at its start is the worst case).
    for i in range(len(admitted)):
        for j in range(i, len(admitted)):
            elapsed = (admitted[j] - admitted[i]) / S
            assert j - i + 1 <= burst + rate * elapsed + 1e-9


@settings(max_examples=200, deadline=None)
@given(rate=st.floats(0.01, 100_000.0), burst=st.integers(1, 30), start=st.integers(0, 10**9 * S))
def test_recovers_at_the_configured_rate(rate, burst, start):
    buckets = TokenBuckets(capacity=16)
    for _ in range(burst):
        assert buckets.try_acquire("r", rate, burst, start) == 0
    wait = buckets.try_acquire("r", rate, burst, start)
    interval = S / rate
    assert interval <= wait < interval + 1.000001
    assert buckets.try_acquire("r", rate, burst, start + wait - 1) > 0
    assert buckets.try_acquire("r", rate, burst, start + wait) == 0
    # After burst intervals the bucket is full again.
    later = start + wait + burst * wait
    assert all(buckets.try_acquire("r", rate, burst, later) == 0 for _ in range(burst))
    assert buckets.try_acquire("r", rate, burst, later) > 0


def test_rate_or_burst_zero_refuses_everything():
    buckets = TokenBuckets()
    assert buckets.try_acquire("z", 0.0, 10, S) == NEVER
    assert buckets.try_acquire("z", 10.0, 0, S) == NEVER
    assert buckets.try_acquire("z", 0.0, 0) == NEVER


def test_keys_are_independent_and_clock_is_monotonic():
    buckets = TokenBuckets()
    assert buckets.try_acquire("a", 1.0, 1) == 0
    assert buckets.try_acquire("a", 1.0, 1) > 0
    assert buckets.try_acquire("b", 1.0, 1) == 0
    t1 = monotonic_ns()
    assert monotonic_ns() >= t1 > 0


def test_full_table_still_works():
    buckets = TokenBuckets(capacity=2)
    for i in range(100):
        assert buckets.try_acquire(f"k{i}", 1.0, 1, S) == 0
        assert buckets.try_acquire(f"k{i}", 1.0, 1, S) > 0


CHILD = textwrap.dedent(
    """
    import sys
    from portico._core import TokenBuckets
    path, now, n, go = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    buckets = TokenBuckets(path, capacity=1024)
    sys.stdout.write("ready\\n"); sys.stdout.flush()
    sys.stdin.readline()  # start together
    print(sum(buckets.try_acquire("shared", 2.0, 25, now) == 0 for _ in range(n)))
    """
)


def spawn(path, now, n):
    return subprocess.Popen(
        [sys.executable, "-c", CHILD, str(path), str(now), str(n), "go"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )


def test_two_processes_share_one_file(tmp_path):
    path = tmp_path / "buckets"
    now = 1_000 * S
    children = [spawn(path, now, 40) for _ in range(2)]  # create the file concurrently
    for child in children:
        assert child.stdout.readline() == "ready\n"
    for child in children:
        child.stdin.write("go\n")
        child.stdin.flush()
    counts = [int(child.communicate(timeout=30)[0]) for child in children]
    assert sum(counts) == 25, counts
    # The state outlives the processes and is visible here; the capacity is the file's.
    here = TokenBuckets(str(path), capacity=8)
    assert here.capacity == 1024
    assert here.try_acquire("shared", 2.0, 25, now) == S // 2
    # Half a second later one more token, which a fresh process sees too.
    child = spawn(path, now + S // 2, 3)
    child.stdout.readline()
    child.stdin.write("go\n")
    child.stdin.flush()
    assert int(child.communicate(timeout=30)[0]) == 1
    assert here.try_acquire("shared", 2.0, 25, now + S // 2) > 0
