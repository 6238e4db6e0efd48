"""Cluster mode (`portico serve --redis`): nodes sharing token buckets, quotas and usage counts, and
the admin API's changes, through one real redis-server (started by the `redis_server` fixture on a
free loopback port). Real `portico serve` processes, real HTTP through their edges, boto3 against
their admin APIs; Redis killed and restarted under them. The Lua GCRA is held to the core's own
(`rust/throttle.rs`) with hypothesis.
"""

from __future__ import annotations

import datetime as dt
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from admin_e2e import ACCESS_KEY_ID, FILE_CONFIG, SECRET, VERSIONS, AdminServer, rest_echo_api, wait_for
from conftest import RedisServer, Server, free_port, run_portico, start_server
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


def test_leased_tokens_keep_the_stated_bound(cluster):
    """Workers lease blocks of rate * lease tokens while a bucket has room: over the run the nodes
    admit at most burst + rate * (t + lease), and still about what one bucket admits."""
    rate, burst, lease = 200.0, 40, 0.05
    nodes = cluster(3, _config(rate, burst), "--redis-lease-ms", str(lease * 1000))
    answers, elapsed = _hammer(nodes, "/limited", 2.0, headers=SHARED)
    admitted = sum(1 for status, _ in answers if status == 200)
    assert len(answers) - admitted > admitted, "the load is well above the limit"
    assert admitted <= burst + rate * (elapsed + lease) + 1
    # Leases must not strand tokens: most of what one bucket allows is admitted. Loose, since on a
    # loaded machine the hammer's clock runs on after its last requests were answered.
    assert admitted >= 0.6 * (burst + rate * elapsed)


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


# ------------------------------------------------------------------------------------------------
# Faults


def _lines(node: Server, text: str) -> int:
    return node.log.count(text)


def _wait_for_log(nodes: list[Server], text: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if all(text in node.log for node in nodes):
            return
        time.sleep(0.05)
    raise AssertionError(f"not every node logged {text!r}:\n" + "\n---\n".join(n.log for n in nodes))


LOST = "unreachable ("
BACK = "reachable again: throttles and quotas are shared again"


def test_redis_killed_and_restarted_under_two_nodes(cluster, redis_server: RedisServer):
    """Killed: every request is still answered (fail-open: each node applies its own buckets, so
    together they admit more than one bucket), one line per node says so. Restarted: one line per
    node, and the nodes share the bucket again."""
    rate, burst = 20.0, 10
    nodes = cluster(2, _config(rate, burst))
    answers, elapsed = _hammer(nodes, "/limited", 1.0, headers=SHARED)
    assert sum(1 for status, _ in answers if status == 200) <= burst + rate * elapsed + 1

    redis_server.kill()
    answers, elapsed = _hammer(nodes, "/limited", 2.0, headers=SHARED)
    statuses = {status for status, _ in answers}
    assert statuses <= {200, 429}, statuses
    admitted = sum(1 for status, _ in answers if status == 200)
    # The nodes' own buckets went on from the shared state each last saw: about twice the rate.
    assert rate * elapsed < admitted <= 2 * (burst + rate * elapsed) + 2
    _wait_for_log(nodes, LOST)

    redis_server.start()
    _wait_for_log(nodes, BACK)
    time.sleep(burst / rate)  # the restarted Redis's bucket is full; let the nodes' drain too
    answers, elapsed = _hammer(nodes, "/limited", 2.0, headers=SHARED)
    assert sum(1 for status, _ in answers if status == 200) <= burst + rate * elapsed + 1
    for node in nodes:
        # One line per node (two workers each), not one per worker or per failed call.
        assert _lines(node, LOST) == 1, node.log
        assert _lines(node, BACK) == 1, node.log


def test_a_hung_redis_delays_no_request_beyond_the_timeout(cluster, redis_server: RedisServer):
    """SIGSTOPped, Redis answers nothing and its connections stay open: requests are decided on
    the node's own buckets after --redis-timeout-ms, the health check declares it lost, and when it
    runs again the node shares again."""
    nodes = cluster(1, _config(1000, 1000), "--redis-timeout-ms", "20")
    node = nodes[0]
    assert httpx.get(node.url + "/limited", headers=SHARED).status_code == 200
    redis_server.freeze()
    try:
        slowest = 0.0
        with httpx.Client(timeout=5) as http:
            for _ in range(40):
                started = time.monotonic()
                assert http.get(node.url + "/limited", headers=SHARED).status_code == 200
                slowest = max(slowest, time.monotonic() - started)
        # No hang: a request waits at most the timeout on Redis (the bound is generous for CI).
        assert slowest < 1.0
        _wait_for_log(nodes, LOST)
    finally:
        redis_server.thaw()
    _wait_for_log(nodes, BACK)
    # Decided on Redis again (every worker reconnects within the health check's interval).
    before = _script_calls(redis_server)
    deadline = time.monotonic() + 5
    while _script_calls(redis_server) == before and time.monotonic() < deadline:
        assert httpx.get(node.url + "/limited", headers=SHARED).status_code == 200
        time.sleep(0.05)
    assert _script_calls(redis_server) > before


def _script_calls(redis_server: RedisServer) -> int:
    stats = redis_server.client().info("commandstats")
    return sum(stats.get(f"cmdstat_{name}", {}).get("calls", 0) for name in ("evalsha", "eval"))


def test_fail_closed_refuses_what_redis_cannot_decide(cluster, redis_server: RedisServer):
    nodes = cluster(1, _config(1000, 1000), "--redis-fail", "closed")
    node = nodes[0]
    assert httpx.get(node.url + "/limited", headers=SHARED).status_code == 200
    redis_server.kill()
    _wait_for_log(nodes, LOST)
    assert "refused, 429 (fail-closed)" in node.log
    r = httpx.get(node.url + "/limited", headers=SHARED)
    assert (r.status_code, r.json()) == (429, {"message": "Too Many Requests"})
    r = httpx.get(node.url + "/prod/items", headers={**SHOP, "x-api-key": KEY})
    assert r.status_code == 429
    redis_server.start()
    _wait_for_log(nodes, BACK)
    # The node logs its return once, when its first worker reconnects; the other worker finds
    # Redis at its own next health check (every 250 ms), so a first 200 says nothing about the
    # other worker: within 5 s, 20 requests in a row (spread over both workers) must be admitted.
    deadline = time.monotonic() + 5
    admitted_in_a_row = 0
    while admitted_in_a_row < 20:
        assert time.monotonic() < deadline, "a worker still refuses 5 s after Redis came back"
        if httpx.get(node.url + "/limited", headers=SHARED).status_code == 200:
            admitted_in_a_row += 1
        else:
            admitted_in_a_row = 0
            time.sleep(0.05)


def test_counts_made_during_an_outage_are_handed_back(cluster, redis_server: RedisServer):
    """A quota counted by each node on its own while Redis is down is added to the shared count
    when Redis is back (here Redis kept its data: it was frozen, not killed)."""
    quota = 100
    nodes = cluster(2, _config(1000, 1000, quota=quota))
    headers = {**SHOP, "x-api-key": KEY}
    for i in range(10):
        assert httpx.get(nodes[i % 2].url + "/prod/items", headers=headers).status_code == 200
    redis_server.freeze()
    try:
        _wait_for_log(nodes, LOST)
        # Every worker's health check has found Redis lost: no request's call is left waiting in
        # the frozen Redis (one would be applied when it runs again, on top of the local count).
        time.sleep(1.0)
        for i in range(12):
            assert httpx.get(nodes[i % 2].url + "/prod/items", headers=headers).status_code == 200
    finally:
        redis_server.thaw()
    _wait_for_log(nodes, BACK)
    client = redis_server.client()
    [period_key] = client.keys("portico:q:*")
    [day_key] = client.keys("portico:d:*")
    # Each worker hands back its own counts when it reconnects (within the health check interval).
    deadline = time.monotonic() + 5
    while int(client.get(period_key)) < 22 and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.5)
    assert int(client.get(period_key)) == int(client.get(day_key)) == 22


# ------------------------------------------------------------------------------------------------
# The admin API's changes, served by every node


def _admin_nodes(tmp_path: Path, redis_server: RedisServer, names: list[str]) -> list[AdminServer]:
    nodes = []
    for name in names:
        workdir = tmp_path / name
        workdir.mkdir()
        admin_port = free_port()
        data_dir = workdir / "state"
        args = ["--redis", redis_server.url, "--admin-port", str(admin_port), "--data-dir", str(data_dir)]
        args += ["--admin-key", f"{ACCESS_KEY_ID}:{SECRET}"]
        server = start_server(FILE_CONFIG, workdir, functions=VERSIONS, extra_args=args)
        nodes.append(AdminServer(server, f"http://127.0.0.1:{admin_port}", data_dir))
    return nodes


@pytest.fixture
def admin_cluster(tmp_path: Path, redis_server: RedisServer):
    started: list[AdminServer] = []

    def start(*names: str) -> list[AdminServer]:
        nodes = _admin_nodes(tmp_path, redis_server, list(names))
        started.extend(nodes)
        return nodes

    yield start
    for node in started:
        node.server.stop()


def test_an_admin_change_on_one_node_is_served_by_the_others_within_a_second(admin_cluster):
    a, b = admin_cluster("a", "b")
    apigw = a.client("apigateway")
    api_id = rest_echo_api(apigw, "replicated")
    apigw.create_deployment(restApiId=api_id, stageName="prod")

    def health(node: AdminServer) -> int:
        return httpx.get(node.url + "/prod/health", headers={"host": node.host(api_id)}).status_code

    _, waited = wait_for(lambda: health(b) == 200, timeout=5)
    assert waited < 1.0, waited
    # Node B's admin API reads the same documents.
    assert b.client("apigateway").get_rest_api(restApiId=api_id)["name"] == "replicated"

    # API keys: created, bound and then disabled on node A; node B refuses the key within a second.
    root = next(r["id"] for r in apigw.get_resources(restApiId=api_id)["items"] if r["path"] == "/")
    items = apigw.create_resource(restApiId=api_id, parentId=root, pathPart="items")
    apigw.put_method(
        restApiId=api_id,
        resourceId=items["id"],
        httpMethod="GET",
        authorizationType="NONE",
        apiKeyRequired=True,
    )
    apigw.put_integration(
        restApiId=api_id,
        resourceId=items["id"],
        httpMethod="GET",
        type="MOCK",
        requestTemplates={"application/json": '{"statusCode": 200}'},
    )
    apigw.put_method_response(restApiId=api_id, resourceId=items["id"], httpMethod="GET", statusCode="200")
    apigw.put_integration_response(
        restApiId=api_id, resourceId=items["id"], httpMethod="GET", statusCode="200"
    )
    apigw.create_deployment(restApiId=api_id, stageName="prod")

    # Both nodes serve the deployment with /items (before it, {proxy+} answered /items, keyless).
    def keyless(node: AdminServer) -> int:
        return httpx.get(node.url + "/prod/items", headers={"host": node.host(api_id)}).status_code

    wait_for(lambda: keyless(a) == keyless(b) == 403, timeout=5)
    key = apigw.create_api_key(name="partner", value=KEY, enabled=True)
    plan = apigw.create_usage_plan(name="gold", apiStages=[{"apiId": api_id, "stage": "prod"}])
    apigw.create_usage_plan_key(usagePlanId=plan["id"], keyId=key["id"], keyType="API_KEY")

    def items_status(node: AdminServer) -> int:
        headers = {"host": node.host(api_id), "x-api-key": KEY}
        return httpx.get(node.url + "/prod/items", headers=headers).status_code

    wait_for(lambda: items_status(b) == 200, timeout=5)
    # Counted on either node, usage is the cluster's: GetUsage on both shows all of them.
    wait_for(lambda: items_status(a) == 200, timeout=5)
    for _ in range(4):
        assert items_status(a) == 200
    today = dt.datetime.now(dt.UTC).date().isoformat()

    def used(node: AdminServer) -> int:
        usage = node.client("apigateway").get_usage(usagePlanId=plan["id"], startDate=today, endDate=today)
        return usage["items"].get(key["id"], [[0, 0]])[0][0]

    # Counts reach GetUsage through the flush to Redis: seconds on a loaded machine.
    wait_for(lambda: used(a) == 6 and used(b) == 6, timeout=15)
    apigw.update_api_key(
        apiKey=key["id"], patchOperations=[{"op": "replace", "path": "/enabled", "value": "false"}]
    )
    _, waited = wait_for(lambda: items_status(b) == 403, timeout=5)
    assert waited < 1.0, waited

    # A change made on node B reaches node A the same way; deleting the API is served everywhere.
    b.client("apigateway").delete_rest_api(restApiId=api_id)
    _, waited = wait_for(lambda: health(a) in (403, 404), timeout=5)
    assert waited < 1.0, waited
    with pytest.raises(a.client("apigateway").exceptions.NotFoundException):
        a.client("apigateway").get_rest_api(restApiId=api_id)


def test_a_node_that_joins_later_serves_what_was_made_before(admin_cluster):
    (a,) = admin_cluster("a")
    apigw = a.client("apigateway")
    api_id = rest_echo_api(apigw, "early")
    apigw.create_deployment(restApiId=api_id, stageName="prod")
    (c,) = admin_cluster("c")
    status = lambda: httpx.get(c.url + "/prod/health", headers={"host": c.host(api_id)}).status_code  # noqa: E731
    wait_for(lambda: status() == 200, timeout=5)
    assert [api["id"] for api in c.client("apigateway").get_rest_apis()["items"]] == [api_id]


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--redis", "http://127.0.0.1:6379/0"], "give redis://HOST:PORT/DB"),
        (["--redis", "redis://127.0.0.1:notaport/0"], "not a URL"),
        (["--redis", "redis://127.0.0.1:6379/zero"], "the database must be a number"),
        (["--redis", "redis://127.0.0.1:6379/0", "--redis-timeout-ms", "0"], "--redis-timeout-ms"),
        (["--redis", "redis://127.0.0.1:6379/0", "--redis-lease-ms", "-1"], "--redis-lease-ms"),
    ],
)
def test_unusable_redis_options_stop_the_server_with_a_message(
    tmp_path: Path, flags: list[str], message: str
):
    config = tmp_path / "portico.yaml"
    config.write_text(yaml.safe_dump(_config(10, 5)))
    done = run_portico("serve", str(config), "--port", str(free_port()), *flags)
    assert done.returncode != 0
    assert f"portico: --redis: {message}" in done.stderr


def test_a_node_starts_and_serves_while_redis_is_down(tmp_path: Path):
    """Redis unreachable from the start: the node serves on its own buckets and says so once."""
    workdir = tmp_path / "node"
    workdir.mkdir()
    args = ["--redis", f"redis://127.0.0.1:{free_port()}/0", "--data-dir", str(workdir / "data")]
    node = start_server(_config(1000, 1000), workdir, workers=2, extra_args=args)
    try:
        assert httpx.get(node.url + "/limited", headers=SHARED).status_code == 200
        assert node.log.count(LOST) == 1, node.log
    finally:
        node.stop()
