"""The REST stage response cache (`cacheClusterEnabled`), end to end with real clients.

A config file's REST API behind `portico serve`, through both front doors (the edge, and the
embedded ASGI app behind Granian with `--no-edge`), in front of a real upstream that counts what
reaches it: cache keys, TTLs, the stage-wide GET-only rule, `Cache-Control: max-age=0` under the
three `unauthorizedCacheControlHeaderStrategy` values and `execute-api:InvalidateCache` (SigV4
signers), concurrent misses that reach the upstream once, every integration type, the access log's
`$context.integrationLatency` (absent for an answer from the cache, as on AWS). Then boto3 against
the admin API: caching enabled with UpdateStage, keys from `cacheKeyParameters`, and
FlushStageCache. In process: the counters, the byte budget under many distinct keys (the cache's
own byte count, and the worker's RSS behind `portico serve`), and hypothesis on the key builder.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import start_server
from portico import _core
from portico.config.loader import ConfigFileError, load_config, parse_config
from portico.dataplane.build import build_dataplane
from portico.integrations.functions import FunctionRegistry
from test_http_proxy import Upstream, _memory_kb, _worker_pid
from test_iam_auth import ACCOUNT, REGION, Key, sign

API_ID = "cacheapi"
_FORMAT = json.dumps(
    {
        "routeKey": "$context.routeKey",
        "status": "$context.status",
        "integrationStatus": "$context.integrationStatus",
        "integrationLatency": "$context.integrationLatency",
    }
)


def _statement(action: str, path: str) -> dict:
    return {
        "Effect": "Allow",
        "Action": action,
        "Resource": f"arn:aws:execute-api:{REGION}:{ACCOUNT}:{API_ID}/prod/GET/{path}",
    }


# May invoke /signed and invalidate its cache entries; the other may only invoke it.
INVALIDATOR = Key(
    "AKIACACHEFLUSHER0001",
    "flusher/Secret+Key0123456789abcdefGHIJK",
    f"arn:aws:iam::{ACCOUNT}:user/flusher",
    {
        "Statement": [
            _statement("execute-api:Invoke", "signed"),
            _statement("execute-api:InvalidateCache", "signed"),
        ]
    },
)
READER = Key(
    "AKIACACHEREADER00001",
    "reader/Secret+Key0123456789abcdefGHIJKL",
    f"arn:aws:iam::{ACCOUNT}:user/reader",
    {"Statement": [_statement("execute-api:Invoke", "signed")]},
)


def _proxy(upstream: Upstream, name: str, *key: str, **extra: Any) -> dict:
    # `count`: the upstream numbers its answers, so that a fresh one tells from a cached one.
    integration = {"type": "HTTP_PROXY", "uri": f"{upstream.url}/echo/{name}?count", "timeoutInMillis": 5000}
    if key:
        integration["cacheKeyParameters"] = list(key)
    return integration | extra


def cache_config(upstream: Upstream, log: Path) -> dict:
    """One REST API, stage `prod` with its cache: stage-wide GET caching (`*/*`, 300 s) and
    per-method settings for some routes."""
    routes = [
        (
            "GET /items/{id}",
            _proxy(
                upstream,
                "items/{id}",
                *(
                    "method.request.path.id",
                    "method.request.querystring.type",
                    "method.request.header.Accept-Language",
                ),
            ),
        ),
        ("POST /items/{id}", _proxy(upstream, "items/{id}")),
        ("POST /orders", _proxy(upstream, "orders")),
        ("GET /plain", _proxy(upstream, "plain")),
        ("GET /short", _proxy(upstream, "short")),
        ("GET /off", _proxy(upstream, "off")),
        ("GET /slow", _proxy(upstream, "slow")),
        ("GET /timeout", _proxy(upstream, "timeout", timeoutInMillis=300)),
        ("GET /fail", _proxy(upstream, "fail")),
        ("GET /warn", _proxy(upstream, "warn")),
        ("GET /quiet", _proxy(upstream, "quiet")),
        ("GET /open", _proxy(upstream, "open")),
        ("GET /lambda", {"type": "AWS_PROXY", "uri": "counted"}),
        ("GET /mock", {"type": "MOCK", "statusCode": 200, "body": "mocked"}),
    ]
    config_routes: list[dict] = [{"routeKey": key, "integration": integration} for key, integration in routes]
    config_routes.append(
        {"routeKey": "GET /signed", "authorizationType": "AWS_IAM", "integration": _proxy(upstream, "signed")}
    )
    return {
        "apis": [
            {
                "name": "cached",
                "id": API_ID,
                "protocolType": "REST",
                "routes": config_routes,
                "stages": [
                    {
                        "stageName": "prod",
                        "cacheClusterEnabled": True,
                        "cacheClusterSize": "0.5",
                        "methodSettings": {
                            "*/*": {"cachingEnabled": True, "cacheTtlInSeconds": 300},
                            "orders/POST": {"cachingEnabled": True},
                            "short/GET": {"cacheTtlInSeconds": 1},
                            "off/GET": {"cachingEnabled": False},
                            "fail/GET": {"unauthorizedCacheControlHeaderStrategy": "FAIL_WITH_403"},
                            "warn/GET": {
                                "unauthorizedCacheControlHeaderStrategy": "SUCCEED_WITH_RESPONSE_HEADER"
                            },
                            "quiet/GET": {
                                "unauthorizedCacheControlHeaderStrategy": "SUCCEED_WITHOUT_RESPONSE_HEADER"
                            },
                            "open/GET": {"requireAuthorizationForCacheControl": False},
                        },
                    }
                ],
            }
        ],
        "principals": [
            {"accessKeyId": k.access_key_id, "secretAccessKey": k.secret, "arn": k.arn, "policy": k.policy}
            for k in (INVALIDATOR, READER)
        ],
        "settings": {"accountId": ACCOUNT, "accessLog": {"destination": str(log), "format": _FORMAT}},
    }


@pytest.fixture(scope="module")
def upstream() -> Iterator[Upstream]:
    server = Upstream()
    yield server
    server.stop()


@pytest.fixture(scope="module", params=["edge", "embedded"])
def served(request: pytest.FixtureRequest, upstream: Upstream, tmp_path_factory: pytest.TempPathFactory):
    """`portico serve` of `cache_config`, one worker (one cache), through either front door."""
    tmp = tmp_path_factory.mktemp(f"cache-{request.param}")
    log = tmp / "access.log"
    server = start_server(
        cache_config(upstream, log),
        tmp,
        functions={"counted": "handlers.counting:counted"},
        extra_args=[] if request.param == "edge" else ["--no-edge"],
    )
    yield server, log
    server.stop()


@pytest.fixture(autouse=True)
def _count_afresh(upstream: Upstream) -> None:
    """Each test counts the upstream's calls from zero (both doors share the upstream)."""
    upstream.echoed.clear()


def _calls(upstream: Upstream, name: str) -> int:
    return sum(1 for path in upstream.echoed if path.startswith(f"/echo/{name}"))


def _get(server, path: str, **kwargs: Any) -> httpx.Response:
    return httpx.get(f"{server.url}/prod{path}", timeout=10, **kwargs)


def test_cache_keys(served, upstream: Upstream) -> None:
    server, _ = served
    first = _get(server, "/items/1?type=a")
    assert first.status_code == 200
    before = _calls(upstream, "items")
    # Parameters outside the key do not vary it (AWS's `type=admin&department=A` example).
    again = _get(server, "/items/1?type=a&department=B")
    assert again.json() == first.json() and _calls(upstream, "items") == before
    for path, headers in (
        ("/items/2?type=a", {}),
        ("/items/1?type=b", {}),
        ("/items/1?type=a", {"Accept-Language": "fr"}),
    ):
        fresh = _get(server, path, headers=headers)
        assert fresh.json()["n"] != first.json()["n"], path
        assert _get(server, path, headers=headers).json() == fresh.json()
    assert _calls(upstream, "items") == before + 3
    # Without key parameters neither the query string nor anything else varies the key.
    plain = _get(server, "/plain?x=1").json()
    assert _get(server, "/plain?x=2").json() == plain and plain["path_qs"] == "/echo/plain?count&x=1"
    assert _calls(upstream, "plain") == 1
    # The answer is the integration's own, headers included.
    cached = _get(server, "/items/1?type=a")
    assert cached.headers["content-type"].startswith("application/json")
    assert int(cached.headers["content-length"]) == len(cached.content)


def test_only_get_is_cached_stage_wide(served, upstream: Upstream) -> None:
    server, _ = served
    for _ in range(2):
        assert httpx.post(f"{server.url}/prod/items/3", content=b"{}").status_code == 200
    assert _calls(upstream, "items/3") == 2
    # A method's own setting caches its requests, whatever the method.
    answers = {httpx.post(f"{server.url}/prod/orders").json()["n"] for _ in range(3)}
    assert len(answers) == 1 and _calls(upstream, "orders") == 1
    # And turns caching off for a GET.
    assert len({_get(server, "/off").json()["n"] for _ in range(2)}) == 2


def test_ttl_expiry(served, upstream: Upstream) -> None:
    server, _ = served
    first = _get(server, "/short").json()
    assert _get(server, "/short").json() == first
    time.sleep(1.2)
    assert _get(server, "/short").json()["n"] != first["n"]
    assert _calls(upstream, "short") == 2


def test_invalidation_strategies(served, upstream: Upstream) -> None:
    server, _ = served
    fresh = {"Cache-Control": "max-age=0"}
    for name in ("fail", "warn", "quiet", "open"):
        _get(server, f"/{name}")
    # FAIL_WITH_403: refused, the upstream not asked.
    refused = _get(server, "/fail", headers=fresh)
    assert refused.status_code == 403
    assert refused.json() == {"Message": "User is not authorized to access this resource"}
    assert refused.headers["x-amzn-errortype"] == "AccessDeniedException"
    assert _calls(upstream, "fail") == 1
    # SUCCEED_WITH_RESPONSE_HEADER (the default): the cached answer, with a warning.
    warned = _get(server, "/warn", headers=fresh)
    assert warned.status_code == 200 and warned.json() == _get(server, "/warn").json()
    assert "not authorized to invalidate" in warned.headers["warning"]
    assert _calls(upstream, "warn") == 1
    # SUCCEED_WITHOUT_RESPONSE_HEADER: the cached answer, nothing said.
    quiet = _get(server, "/quiet", headers=fresh)
    assert quiet.json() == _get(server, "/quiet").json() and "warning" not in quiet.headers
    assert _calls(upstream, "quiet") == 1
    # requireAuthorizationForCacheControl false: anyone gets a fresh answer, which replaces the entry.
    before = _get(server, "/open").json()
    renewed = _get(server, "/open", headers={"Cache-Control": "no-cache, max-age=0"}).json()
    assert renewed["n"] != before["n"] and _get(server, "/open").json() == renewed
    assert _calls(upstream, "open") == 2


def test_invalidate_cache_permission(served, upstream: Upstream) -> None:
    server, _ = served

    def call(key: Key, headers: dict[str, str] | None = None) -> httpx.Response:
        url, signed = sign("GET", f"{server.url}/prod/signed", key, headers=headers)
        return httpx.get(url, headers=signed, timeout=10)

    first = call(READER).json()
    assert call(INVALIDATOR).json() == first
    # Allowed execute-api:Invoke only: the header is ignored (with the default warning).
    ignored = call(READER, {"Cache-Control": "max-age=0"})
    assert ignored.json() == first and "warning" in ignored.headers
    # Allowed execute-api:InvalidateCache on the method: a fresh answer, now cached for everyone.
    renewed = call(INVALIDATOR, {"Cache-Control": "max-age=0"})
    assert renewed.json()["n"] != first["n"] and "warning" not in renewed.headers
    assert call(READER).json() == renewed.json()
    assert _calls(upstream, "signed") == 2


def test_concurrent_misses_reach_the_integration_once(served, upstream: Upstream) -> None:
    server, _ = served

    async def burst() -> list[httpx.Response]:
        async with httpx.AsyncClient(timeout=10, limits=httpx.Limits(max_connections=32)) as client:
            return await asyncio.gather(*(client.get(f"{server.url}/prod/slow?delay=0.5") for _ in range(24)))

    answers = asyncio.run(burst())
    assert {r.status_code for r in answers} == {200}
    assert len({r.content for r in answers}) == 1
    assert _calls(upstream, "slow") == 1


def test_what_is_cached(served, upstream: Upstream) -> None:
    server, log = served
    # Whatever the integration answers is cached, its status included (AWS has no setting to
    # leave statuses out): the second request never reaches the upstream.
    missing = _get(server, "/items/404?status=404")
    assert missing.status_code == 404
    assert _get(server, "/items/404?status=200").status_code == 404
    assert _calls(upstream, "items/404") == 1
    # The gateway's own answers are not: an integration timeout asks the upstream again.
    for _ in range(2):
        assert _get(server, "/timeout?delay=0.6").status_code == 504
    assert _calls(upstream, "timeout") == 2
    # Lambda and MOCK integrations: the function runs once.
    calls = {_get(server, "/lambda").json()["calls"] for _ in range(3)}
    assert len(calls) == 1
    assert [_get(server, "/mock").text for _ in range(2)] == ["mocked", "mocked"]
    # The access log: integrationLatency and integrationStatus only when the integration answered.
    from admin_e2e import wait_for

    def logged(route: str) -> list[tuple[str, str]]:
        lines = [json.loads(line) for line in log.read_text().splitlines()]
        return [
            (line["integrationStatus"], line["integrationLatency"])
            for line in lines
            if line["routeKey"] == route
        ]

    for route, count in (("GET /lambda", 3), ("GET /mock", 2)):
        seen, _ = wait_for(lambda route=route, count=count: len(logged(route)) == count and logged(route))
        assert seen[0][0] == "200" and seen[0][1].isdigit(), seen
        assert all(entry == ("-", "-") for entry in seen[1:]), seen


# ----------------------------------------------------------------------------- the admin API


def test_boto3_caching_and_flush(portico, upstream: Upstream, tmp_path: Path) -> None:
    from admin_e2e import start_admin_server, wait_for

    admin = start_admin_server(portico, tmp_path)
    apigw = admin.client("apigateway")
    api = apigw.create_rest_api(name="cached")
    api_id = api["id"]
    items = apigw.create_resource(restApiId=api_id, parentId=api["rootResourceId"], pathPart="items")
    apigw.put_method(
        restApiId=api_id,
        resourceId=items["id"],
        httpMethod="GET",
        authorizationType="NONE",
        requestParameters={"method.request.querystring.type": False},
    )
    apigw.put_integration(
        restApiId=api_id,
        resourceId=items["id"],
        httpMethod="GET",
        type="HTTP_PROXY",
        integrationHttpMethod="GET",
        uri=f"{upstream.url}/echo/admin?count",
        cacheKeyParameters=["method.request.querystring.type"],
    )
    apigw.create_deployment(
        restApiId=api_id, stageName="prod", cacheClusterEnabled=True, cacheClusterSize="0.5"
    )
    stage = apigw.update_stage(
        restApiId=api_id,
        stageName="prod",
        patchOperations=[
            {"op": "replace", "path": "/*/*/caching/enabled", "value": "true"},
            {"op": "replace", "path": "/*/*/caching/ttlInSeconds", "value": "600"},
        ],
    )
    assert stage["cacheClusterEnabled"] is True and stage["cacheClusterStatus"] == "AVAILABLE"
    assert stage["methodSettings"]["*/*"]["cachingEnabled"] is True
    host = {"Host": admin.host(api_id)}

    def fetch(query: str) -> httpx.Response:
        return httpx.get(f"{admin.url}/prod/items?{query}", headers=host, timeout=10)

    def answer(query: str = "type=a&x=1") -> dict:
        response = fetch(query)
        assert response.status_code == 200, response.text
        return response.json()

    # Served once the workers reload the store, and cached once they serve the stage's settings.
    wait_for(lambda: fetch("type=a").status_code == 200)
    first, _ = wait_for(lambda: (a := answer()) == answer() and a)
    assert answer("type=a&x=2") == first
    assert answer("type=b")["n"] != first["n"]
    # Hits and misses per stage, summed over the node's workers, on the admin port's /metrics.
    series = f'{{api_id="{api_id}",stage="prod"}}'
    before = admin.metrics()
    for _ in range(5):
        assert answer() == first
    answer("type=c")
    after = admin.metrics()
    assert after[f"portico_cache_hits_total{series}"] - before[f"portico_cache_hits_total{series}"] == 5
    assert after[f"portico_cache_misses_total{series}"] - before[f"portico_cache_misses_total{series}"] == 1
    seen = _calls(upstream, "admin")
    apigw.flush_stage_cache(restApiId=api_id, stageName="prod")
    flushed, _ = wait_for(lambda: (a := answer()) and a["n"] != first["n"] and a)
    assert answer() == flushed and _calls(upstream, "admin") == seen + 1
    # A size AWS does not offer is refused; turning the cache off serves every request afresh.
    with pytest.raises(apigw.exceptions.BadRequestException):
        apigw.update_stage(
            restApiId=api_id,
            stageName="prod",
            patchOperations=[{"op": "replace", "path": "/cacheClusterSize", "value": "2"}],
        )
    apigw.update_stage(
        restApiId=api_id,
        stageName="prod",
        patchOperations=[{"op": "replace", "path": "/cacheClusterEnabled", "value": "false"}],
    )
    assert apigw.get_stage(restApiId=api_id, stageName="prod")["cacheClusterStatus"] == "NOT_AVAILABLE"
    wait_for(lambda: answer()["n"] != flushed["n"])
    count = _calls(upstream, "admin")
    answer()
    assert _calls(upstream, "admin") == count + 1


# ------------------------------------------------------------------------------------ in process

EMBEDDED = """
settings: {stageCacheBytes: 200000}
apis:
  - name: embedded
    protocolType: REST
    routes:
      - routeKey: GET /things/{id}
        integration: {type: AWS_PROXY, uri: thing, cacheKeyParameters: [method.request.path.id]}
      - {routeKey: GET /mock, integration: {type: MOCK, statusCode: 201, body: made}}
    stages:
      - stageName: prod
        cacheClusterEnabled: true
        methodSettings: {"*/*": {cachingEnabled: true}}
"""


async def test_counters_and_the_byte_budget_in_process() -> None:
    calls: list[str] = []
    registry = FunctionRegistry()

    def thing(event: dict, context: Any) -> dict:
        calls.append(event["pathParameters"]["id"])
        return {"statusCode": 200, "body": "x" * 1000}

    registry.register("thing", thing)
    app = build_dataplane(parse_config(EMBEDDED), registry=registry)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as client:
        assert [(await client.get("/prod/mock")).status_code for _ in range(3)] == [201] * 3
        for i in range(600):
            assert (await client.get(f"/prod/things/{i}")).status_code == 200
        [stats] = app.gateway.cache_stats()
        assert (stats["api_id"], stats["stage"], stats["capacity"]) == (
            parse_config(EMBEDDED).apis[0].api_id,
            "prod",
            200000,
        )
        assert stats["hits"] == 2 and stats["misses"] == 601
        # 600 answers of ~1.3 KB each offered to a 200 KB budget: it holds, and is used.
        assert stats["bytes"] <= stats["capacity"] and stats["bytes"] > stats["capacity"] // 2
        assert 100 < stats["entries"] < 600
        # The latest keys are there: asked again, they are hits.
        await client.get("/prod/things/599")
        assert app.gateway.cache_stats()[0]["hits"] == 3 and len(calls) == 600
    app.stop()


def _rss_growth_mb(portico, upstream: Upstream, budget: int) -> float:
    """A worker's RSS growth over 2,000 distinct keys of 16 KB answers (32 MB in all) through a
    stage cache bounded at `budget` bytes."""
    config = {
        "apis": [
            {
                "name": "blobs",
                "protocolType": "REST",
                "routes": [
                    {
                        "routeKey": "GET /blob",
                        "integration": {
                            "type": "HTTP_PROXY",
                            "uri": f"{upstream.url}/download",
                            "cacheKeyParameters": ["method.request.querystring.k"],
                        },
                    }
                ],
                "stages": [
                    {
                        "stageName": "prod",
                        "cacheClusterEnabled": True,
                        "methodSettings": {"*/*": {"cachingEnabled": True}},
                    }
                ],
            }
        ],
        "settings": {"stageCacheBytes": budget},
    }
    server = portico(config)
    worker = _worker_pid(server)
    size = 16 * 1024
    with httpx.Client(timeout=10) as client:

        def fetch(k: int) -> None:
            response = client.get(f"{server.url}/prod/blob?n={size}&length=1&k={k}")
            assert response.status_code == 200 and len(response.content) == size

        for _ in range(200):  # warm (connections, buffers) with one key: one entry
            fetch(0)
        before = _memory_kb(worker)["VmRSS"]
        for k in range(1, 2001):
            fetch(k)
        after = _memory_kb(worker)["VmRSS"]
    server.stop()
    grown = (after - before) / 1024
    print(f"stageCacheBytes {budget >> 20} MiB: worker RSS {before / 1024:.1f} -> {after / 1024:.1f} MB")
    return grown


def test_the_byte_budget_holds_in_a_worker(portico, upstream: Upstream) -> None:
    """Behind `portico serve`, 32 MB of distinct answers through a 4 MiB cache: the worker grows by
    about the budget; through a 64 MiB cache (the same measure, for contrast), by what it holds."""
    small = _rss_growth_mb(portico, upstream, 4 << 20)
    large = _rss_growth_mb(portico, upstream, 64 << 20)
    assert small < 4 + 8, f"grew {small:.1f} MB through a 4 MiB cache"
    assert large > 28, f"grew {large:.1f} MB through a 64 MiB cache"


# ------------------------------------------------------------------------------- the key builder

_NAMES = st.sampled_from(["a", "b", "type", "x"])
_VALUES = st.text(alphabet="abc %+=&", max_size=4)
_QUERY = st.lists(st.tuples(_NAMES, _VALUES), max_size=6)


def _query_text(pairs: list[tuple[str, str]]) -> str:
    from urllib.parse import quote_plus

    return "&".join(f"{quote_plus(n)}={quote_plus(v)}" for n, v in pairs)


def _key(
    parameters: list[tuple[str, str]], query: list[tuple[str, str]], headers=(), path=(), method="GET"
) -> bytes:
    return _core.cache_key(parameters, method, "/things/{id}", _query_text(query), list(headers), list(path))


@settings(max_examples=300, deadline=None)
@given(_QUERY, _QUERY)
def test_keys_follow_the_key_parameters_only(
    first: list[tuple[str, str]], second: list[tuple[str, str]]
) -> None:
    parameters = [("querystring", "type"), ("multivaluequerystring", "x")]

    def seen(pairs: list[tuple[str, str]]) -> tuple:
        types = [v for n, v in pairs if n == "type"]
        return (types[-1] if types else None, [v for n, v in pairs if n == "x"])

    assert (_key(parameters, first) == _key(parameters, second)) == (seen(first) == seen(second))
    # Without key parameters, no query string changes the key.
    assert _key([], first) == _key([], second)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.sampled_from([("header", "X-Tenant"), ("path", "id"), ("querystring", "a")]), max_size=3),
    st.text(alphabet="ab/", max_size=3),
    st.text(alphabet="ab", max_size=3),
    st.sampled_from(["GET", "POST"]),
)
def test_keys_ignore_the_parameters_order(parameters, tenant: str, path_value: str, method: str) -> None:
    headers = [(b"x-tenant", tenant.encode())]
    path = [("id", path_value)]
    key = _key(parameters, [("a", "1")], headers, path, method)
    assert key == _key(list(reversed(parameters)) * 2, [("a", "1")], headers, path, method)
    assert (key == _key(parameters, [("a", "1")], headers, path, "GET")) == (method == "GET")
    if ("header", "X-Tenant") in parameters:
        assert key != _key(parameters, [("a", "1")], [(b"x-tenant", b"other")], path, method)


# ---------------------------------------------------------------------------------- the config


@pytest.mark.parametrize(
    ("api", "message"),
    [
        ({"stages": [{"stageName": "$default", "cacheClusterEnabled": True}]}, "REST APIs'"),
        (
            {"protocolType": "REST", "stages": [{"stageName": "prod", "cacheClusterSize": "2"}]},
            "cacheClusterSize",
        ),
        (
            {"protocolType": "REST", "stages": [{"stageName": "prod", "methodSettings": {"nope/GET": {}}}]},
            "names no route",
        ),
        (
            {
                "protocolType": "REST",
                "stages": [{"stageName": "prod", "methodSettings": {"*/*": {"cacheTtlInSeconds": 3601}}}],
            },
            "cacheTtlInSeconds",
        ),
        (
            {
                "protocolType": "REST",
                "routes": [
                    {
                        "routeKey": "GET /m",
                        "integration": {
                            "type": "MOCK",
                            "statusCode": 200,
                            "cacheKeyParameters": ["querystring.x"],
                        },
                    }
                ],
                "stages": [{"stageName": "prod"}],
            },
            "method.request.querystring.NAME",
        ),
    ],
)
def test_config_checks(tmp_path: Path, api: dict, message: str) -> None:
    routes = [{"routeKey": "GET /m", "integration": {"type": "MOCK", "statusCode": 200}}]
    path = tmp_path / "portico.yaml"
    path.write_text(json.dumps({"apis": [{"name": "c", "routes": routes} | api]}))
    with pytest.raises(ConfigFileError, match=message.replace(".", r"\.")):
        load_config(path)


def test_config_compiles_caching_per_route() -> None:
    from portico.compile.files import compile_config

    config = parse_config(
        """
settings: {stageCacheBytes: 1000}
apis:
  - name: c
    protocolType: REST
    routes:
      - {routeKey: GET /a, integration: {type: MOCK, statusCode: 200}}
      - {routeKey: POST /a, integration: {type: MOCK, statusCode: 200}}
      - {routeKey: ANY /b, integration: {type: MOCK, statusCode: 200}}
      - {routeKey: PUT /c, integration: {type: MOCK, statusCode: 200}}
    stages:
      - stageName: prod
        cacheClusterEnabled: true
        cacheClusterSize: 1.6
        methodSettings:
          "*/*":
            {cachingEnabled: true, cacheTtlInSeconds: 60, throttlingRateLimit: 5, throttlingBurstLimit: 2}
          c/PUT: {cachingEnabled: true, requireAuthorizationForCacheControl: false}
          a/GET: {unauthorizedCacheControlHeaderStrategy: FAIL_WITH_403}
"""
    )
    [stage] = compile_config(config, FunctionRegistry()).apis[0]["stages"]
    assert stage["default_throttle"] == {"rate": 5.0, "burst": 2}
    cache = stage["cache"]
    assert cache["capacity_bytes"] == 1000
    assert cache["routes"] == {
        "GET /a": {
            "ttl_s": 60,
            "methods": "GET",
            "require_authorization": True,
            "unauthorized": "FAIL_WITH_403",
        },
        "ANY /b": {
            "ttl_s": 60,
            "methods": "GET",
            "require_authorization": True,
            "unauthorized": "SUCCEED_WITH_RESPONSE_HEADER",
        },
        "PUT /c": {
            "ttl_s": 60,
            "methods": "ALL",
            "require_authorization": False,
            "unauthorized": "SUCCEED_WITH_RESPONSE_HEADER",
        },
    }
