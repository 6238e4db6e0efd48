"""Cluster mode (`portico serve --redis`): nodes sharing token buckets, quotas and usage counts, and
the admin API's changes, through one real redis-server (started by the `redis_server` fixture on a
free loopback port). Real `portico serve` processes, real HTTP through their edges, boto3 against
their admin APIs; Redis killed and restarted under them. The Lua GCRA is held to the core's own
(`rust/throttle.rs`) with hypothesis.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import RedisServer, Server, start_server
from portico import _core

NEVER = 2**64 - 1


# ------------------------------------------------------------------------------------------------
# The Lua GCRA against the core's


def _interval_ns(rate: float, burst: int) -> int:
    """The emission interval the core derives for `rate` (what a drained bucket makes one wait)."""
    buckets = _core.TokenBuckets(None, 16)
    for _ in range(burst):
        assert buckets.try_acquire("probe", rate, burst, 10**12) == 0
    return buckets.try_acquire("probe", rate, burst, 10**12)


steps = st.lists(st.integers(min_value=0, max_value=3_000_000), min_size=1, max_size=60)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    interval_us=st.integers(min_value=1, max_value=2_000_000),
    burst=st.integers(min_value=1, max_value=20),
    gaps_us=steps,
    data=st.data(),
)
def test_the_lua_gcra_decides_as_the_core_does(redis_server: RedisServer, interval_us, burst, gaps_us, data):
    """Same admissions and the same waits as `TokenBuckets` for a limit whose interval is a whole
    number of microseconds (Redis's clock), including chains whose second bucket refuses."""
    rate = 1e6 / interval_us
    # A rate whose interval the core rounds to another nanosecond is Redis's rounded up (below).
    if _interval_ns(rate, burst) != interval_us * 1000:
        return
    account_rate = data.draw(st.sampled_from([rate, rate * 2, 1e6 / (interval_us * 3)]))
    account_burst = data.draw(st.integers(min_value=1, max_value=20))
    if _interval_ns(account_rate, account_burst) % 1000:
        account_rate = rate
    link = _core.ClusterLink(redis_server.url)
    local = _core.TokenBuckets(None, 64)
    key = f"route-{interval_us}-{burst}-{len(gaps_us)}"
    now_us = 1_700_000_000_000_000 + data.draw(st.integers(0, 10**9))
    redis_server.client().flushdb()
    for gap in gaps_us:
        now_us += gap
        chain = [(key, rate, burst), ("account-" + key, account_rate, account_burst)]
        got = link.spend(chain, now_us)
        expected = (-1, 0)
        for index, (name, r, b) in enumerate(chain):
            wait = local.try_acquire(name, r, b, now_us * 1000)
            if wait:
                expected = (index, wait)
                break
        assert got == expected


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    rate=st.floats(min_value=0.01, max_value=50_000),
    burst=st.integers(min_value=1, max_value=50),
    gaps_us=st.lists(st.integers(min_value=0, max_value=500_000), min_size=1, max_size=80),
)
def test_the_lua_gcra_never_admits_more_than_burst_plus_rate_t(
    redis_server: RedisServer, rate, burst, gaps_us
):
    """For any rate (the interval rounded up to a microsecond), every window between two admitted
    requests holds at most `burst + rate * t` of them."""
    link = _core.ClusterLink(redis_server.url)
    redis_server.client().flushdb()
    now_us = 1_800_000_000_000_000
    admitted: list[int] = []
    for gap in gaps_us:
        now_us += gap
        index, wait = link.spend([("k", rate, burst)], now_us)
        if index < 0:
            admitted.append(now_us)
        else:
            assert 0 < wait < NEVER
    for i in range(len(admitted)):
        for j in range(i, len(admitted)):
            assert j - i + 1 <= burst + rate * (admitted[j] - admitted[i]) / 1e6 + 1e-9


def test_a_bucket_that_refuses_everything_refuses_on_redis_too(redis_server: RedisServer):
    link = _core.ClusterLink(redis_server.url)
    assert link.spend([("open", 10.0, 5), ("shut", 0.0, 5)]) == (1, NEVER)
    with pytest.raises(OSError):
        _core.ClusterLink(f"redis://127.0.0.1:{redis_server.port + 1 if redis_server.port < 65535 else 1}/0")


# ------------------------------------------------------------------------------------------------
# Nodes on one Redis


MOCK = {"type": "MOCK", "statusCode": 200, "body": "ok"}
KEY = "ClusterPlanKeyValue0123456789abcd"
SHARED = {"host": "shared1.execute-api.localhost"}
SHOP = {"host": "shop1.execute-api.localhost"}


def _config(rate: float, burst: int, quota: int = 1000) -> dict:
    """An HTTP API whose `GET /limited` is throttled at rate/burst, and a REST API whose
    `GET /items` takes an API key in a plan with a daily quota."""
    return {
        "apis": [
            {
                "name": "shared",
                "id": "shared1",
                "routes": [{"route": "GET /limited", "integration": MOCK}],
                "stages": [
                    {
                        "name": "$default",
                        "routeSettings": {
                            "GET /limited": {"throttlingRateLimit": rate, "throttlingBurstLimit": burst}
                        },
                    }
                ],
            },
            {
                "name": "shop",
                "id": "shop1",
                "protocolType": "REST",
                "routes": [{"routeKey": "GET /items", "integration": MOCK, "apiKeyRequired": True}],
                "stages": [{"stageName": "prod"}],
            },
        ],
        "apiKeys": [{"name": "partner", "value": KEY, "enabled": True}],
        "usagePlans": [
            {
                "name": "gold",
                "apiKeys": ["partner"],
                "quota": {"limit": quota, "period": "DAY", "offset": 0},
                "apiStages": [{"apiId": "shop1", "stage": "prod"}],
            }
        ],
    }


def _nodes(tmp_path: Path, redis_server: RedisServer, count: int, config: dict, *flags: str) -> list[Server]:
    """`count` nodes on one Redis, each with its own data directory and two workers."""
    nodes = []
    try:
        for n in range(count):
            workdir = tmp_path / f"node{n}"
            workdir.mkdir()
            args = ["--redis", redis_server.url, "--data-dir", str(workdir / "data")]
            # This machine's two cores run the nodes, Redis and the clients at once: a call past the
            # default 5 ms would be decided on the node's own buckets (tested on its own, below).
            args += ["--redis-timeout-ms", "250", *flags]
            nodes.append(start_server(config, workdir, workers=2, extra_args=args))
    except BaseException:
        for node in nodes:
            node.stop()
        raise
    return nodes


@pytest.fixture
def cluster(tmp_path: Path, redis_server: RedisServer):
    started: list[Server] = []

    def start(count: int, config: dict, *flags: str) -> list[Server]:
        nodes = _nodes(tmp_path, redis_server, count, config, *flags)
        started.extend(nodes)
        return nodes

    yield start
    for node in started:
        node.stop()


def _hammer(nodes: list[Server], path: str, seconds: float, headers: dict | None = None, threads: int = 6):
    """Requests from `threads` clients, round robin over the nodes, for `seconds`: the statuses
    and bodies answered, and how long it took."""

    def client(index: int) -> list[tuple[int, str]]:
        answers = []
        with httpx.Client(timeout=5) as http:
            deadline = time.monotonic() + seconds
            i = index
            while time.monotonic() < deadline:
                node = nodes[i % len(nodes)]
                i += 1
                r = http.get(node.url + path, headers=headers)
                answers.append((r.status_code, r.text))
        return answers

    started = time.monotonic()
    with ThreadPoolExecutor(threads) as pool:
        results = [a for answers in pool.map(client, range(threads)) for a in answers]
    return results, time.monotonic() - started


@pytest.mark.parametrize("count", [2, 3])
def test_nodes_share_a_routes_throttle(cluster, count: int):
    """Together the nodes admit what one bucket admits (burst + rate * t), not `count` times it."""
    rate, burst = 20.0, 10
    nodes = cluster(count, _config(rate, burst))
    answers, elapsed = _hammer(nodes, "/limited", 2.0, headers=SHARED)
    admitted = sum(1 for status, _ in answers if status == 200)
    throttled = sum(1 for status, _ in answers if status == 429)
    assert admitted + throttled == len(answers)
    one_bucket = burst + rate * elapsed
    assert throttled > admitted, "the load is well above the limit"
    assert admitted <= one_bucket + 1
    # Well above what one node's share would be, and far below `count` buckets.
    assert admitted >= burst + rate * (elapsed - 0.5)
    for node in nodes:
        assert "unreachable" not in node.log


@pytest.mark.parametrize("count", [2, 3])
def test_a_quota_is_never_exceeded_across_nodes(cluster, redis_server: RedisServer, count: int):
    quota = 37
    nodes = cluster(count, _config(1000, 1000, quota=quota))
    answers, _ = _hammer(nodes, "/prod/items", 1.5, headers={**SHOP, "x-api-key": KEY})
    admitted = [a for a in answers if a[0] == 200]
    refused = [a for a in answers if a[0] == 429]
    assert len(admitted) == quota
    assert len(refused) == len(answers) - quota > 0
    assert all("Limit Exceeded" in body for _, body in refused)
    # Redis holds the day's count; every node's table mirrors what it last saw of it.
    keys = redis_server.client().keys("portico:d:*")
    assert [int(redis_server.client().get(k)) for k in keys] == [quota]
