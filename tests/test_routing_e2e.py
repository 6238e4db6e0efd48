"""Routing, stage selection and throttling over a real socket."""

from __future__ import annotations

import concurrent.futures
import time

import httpx
import pytest


def mock(body: str, status: int = 200) -> dict:
    return {"type": "MOCK", "statusCode": status, "headers": {"content-type": "text/plain"}, "body": body}


def api_with_routes(route_keys: list[str], stages: list[dict] | None = None, **extra) -> dict:
    """An API whose every route answers with its own route key."""
    return {
        "apis": [
            {
                "name": "routing",
                "id": "routing1",
                "routes": [{"route": key, "integration": mock(key)} for key in route_keys],
                "stages": stages or [{"name": "$default"}],
                **extra,
            }
        ]
    }


# AWS's documented example ("Working with routes for HTTP APIs") and the recorded back-off cases.
DOC_ROUTES = ["GET /pets/dog/1", "GET /pets/dog/{id}", "GET /pets/{proxy+}", "ANY /{proxy+}", "$default"]


@pytest.mark.parametrize(
    ("method", "path", "expected"),
    [
        ("GET", "/pets/dog/1", "GET /pets/dog/1"),
        ("GET", "/pets/dog/2", "GET /pets/dog/{id}"),
        ("GET", "/pets/cat/1", "GET /pets/{proxy+}"),
        ("POST", "/test/5", "ANY /{proxy+}"),
        ("POST", "/pets/dog/1", "ANY /{proxy+}"),
        ("GET", "/", "$default"),
    ],
)
def test_aws_documented_route_priorities(portico, method, path, expected):
    server = portico(api_with_routes(DOC_ROUTES))
    response = httpx.request(method, server.url + path)
    assert response.status_code == 200
    assert response.text == expected
    assert response.headers["apigw-requestid"]


def test_method_aware_back_off_and_trailing_slash(portico):
    server = portico(
        api_with_routes(
            ["POST /test", "OPTIONS /{proxy+}", "GET /part1", "GET /part1/hardcoded-value", "GET /{param+}"]
        )
    )
    assert httpx.request("OPTIONS", server.url + "/test").text == "OPTIONS /{proxy+}"
    assert httpx.get(server.url + "/part1/random-value").text == "GET /{param+}"
    assert httpx.get(server.url + "/part1/").text == "GET /part1"
    # HEAD is not served by GET.
    assert httpx.head(server.url + "/part1").status_code == 404


def test_no_route_is_aws_404(portico):
    server = portico(api_with_routes(["GET /only"]))
    response = httpx.get(server.url + "/other")
    assert response.status_code == 404
    assert response.content == b'{"message":"Not Found"}'
    assert response.headers["content-type"] == "application/json"
    assert response.headers["apigw-requestid"]
    assert "x-amzn-errortype" not in response.headers


def test_stage_selection(portico):
    config = api_with_routes(
        ["GET /hello", "GET /prod/x"],
        stages=[{"name": "$default"}, {"name": "prod"}],
    )
    server = portico(config)
    assert httpx.get(server.url + "/hello").text == "GET /hello"
    # A first segment naming a stage selects it and is stripped.
    assert httpx.get(server.url + "/prod/hello").text == "GET /hello"
    assert httpx.get(server.url + "/prod/prod/x").text == "GET /prod/x"


def test_named_stage_only_has_no_root(portico):
    server = portico(api_with_routes(["GET /hello"], stages=[{"name": "dev"}]))
    assert httpx.get(server.url + "/dev/hello").text == "GET /hello"
    response = httpx.get(server.url + "/hello")
    assert response.status_code == 404
    assert response.json() == {"message": "Not Found"}


def test_api_selected_by_host_and_path_style(portico):
    config = {
        "apis": [
            {"name": "one", "id": "apione", "routes": [{"route": "GET /who", "integration": mock("one")}]},
            {"name": "two", "id": "apitwo", "routes": [{"route": "GET /who", "integration": mock("two")}]},
        ]
    }
    server = portico(config)
    url = server.url + "/who"
    assert httpx.get(url, headers={"host": f"apione.execute-api.localhost:{server.port}"}).text == "one"
    assert httpx.get(url, headers={"host": "apitwo.execute-api.example.com"}).text == "two"
    # Two APIs: a Host that names none reaches none.
    assert httpx.get(url).status_code == 404
    # Clients that cannot set Host use the path style.
    assert httpx.get(server.url + "/restapis/apitwo/$default/_user_request_/who").text == "two"
    assert httpx.get(server.url + "/restapis/apione/%24default/_user_request_/who").text == "one"


def test_throttle_429_after_burst_then_recovery(portico):
    config = api_with_routes(
        ["GET /limited", "GET /free"],
        stages=[
            {
                "name": "$default",
                "routeSettings": {"GET /limited": {"throttlingRateLimit": 4, "throttlingBurstLimit": 3}},
            }
        ],
    )
    server = portico(config)
    with httpx.Client(base_url=server.url) as client:
        statuses = [client.get("/limited").status_code for _ in range(8)]
        # The burst is admitted at once; a few more may trickle in at 4/s while we loop.
        assert statuses[:3] == [200, 200, 200]
        assert 429 in statuses
        refused = client.get("/limited")
        if refused.status_code == 429:
            assert refused.content == b'{"message":"Too Many Requests"}'
        # Other routes have their own buckets.
        assert client.get("/free").status_code == 200
        # Recovery at the configured rate: after 0.5 s at 4/s, about 2 tokens are back.
        time.sleep(0.55)
        assert client.get("/limited").status_code == 200


def test_limit_holds_across_workers(portico):
    """A limit of burst 20 (rate 1/s) admits about 20 in total, not 20 per worker."""
    config = api_with_routes(
        ["GET /limited"],
        stages=[
            {
                "name": "$default",
                "defaultRouteSettings": {"throttlingRateLimit": 1, "throttlingBurstLimit": 20},
            }
        ],
    )
    server = portico(config, workers=2)

    def hit(_: int) -> int:
        # A fresh connection each time, so that the kernel spreads requests over both workers.
        return httpx.get(server.url + "/limited", headers={"connection": "close"}).status_code

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        statuses = list(pool.map(hit, range(80)))
    admitted = statuses.count(200)
    assert statuses.count(429) == len(statuses) - admitted
    # 20 burst + at most a few seconds of 1/s refill while the requests run.
    assert 20 <= admitted <= 26, statuses


def test_malformed_requests_get_defined_responses(portico):
    server = portico(api_with_routes(["GET /{proxy+}"]))
    with httpx.Client(base_url=server.url) as client:
        bad = client.get("/a%zzb")
        assert bad.status_code == 400
        assert bad.json() == {"message": "Bad Request"}
        long_path = client.get("/a" * 10_000)
        assert long_path.status_code == 414
        many_segments = client.get("/" + "x/" * 3000)
        assert many_segments.status_code == 200
        big_headers = client.get("/x", headers={f"x-h{i}": "v" * 100 for i in range(120)})
        assert big_headers.status_code == 431
        # The server is still serving after all of that.
        assert client.get("/fine").status_code == 200


def test_percent_encoding_reaches_route_params(portico):
    config = {
        "apis": [
            {
                "name": "enc",
                "routes": [{"route": "GET /users/{email}", "integration": "echo"}],
                "integrations": {"echo": {"type": "AWS_PROXY", "uri": "echo", "payloadFormatVersion": "2.0"}},
            }
        ]
    }
    server = portico(config, functions={"echo": "handlers.basic:echo"})
    event = httpx.get(server.url + "/users/test%2Balias@gmail.com").json()
    assert event["rawPath"] == "/users/test%2Balias@gmail.com"
    assert event["pathParameters"] == {"email": "test%2Balias@gmail.com"}
