"""Parity of Portico's two front doors: the edge and the embedded ASGI app answer every request alike.

The edge is `portico serve CONFIG` (the core's own listener). The embedded app is
`build_dataplane(CONFIG)` served by an ASGI server; here that is `portico serve --no-edge`, which
serves exactly that app through Granian. Both run every request through the core's one pipeline;
this test is the guard that the two doors never disagree. Both run from the same config file, in
two deployments:

- `fast`: no access log;
- `logged`: the same config plus an access log to a file; there the access-log line of each
  request is compared too.

The one header outside Portico's answer is the host server's own: Granian adds `server: granian`
to what the embedded app sends (any ASGI server may add its own); the edge sends no `server`
header. That header is checked apart from the comparison.

Each request of the corpus is sent byte for byte over a raw socket to both servers, and the
answers are compared: the status line; the response headers as a multiset of (lower-cased name,
value), where only `date`, `apigw-requestid`, `x-amzn-requestid`, `x-amz-apigw-id` and
`x-amzn-trace-id` have their values replaced by a placeholder (their presence still counts); the
body, where JSON documents (Lambda events, the upstream's echo of what it received, in the order
it received it) have the values of per-request id and time keys replaced.
"""

from __future__ import annotations

import http.client
import json
import re
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from admin_e2e import ACCESS_KEY_ID, SECRET, AdminServer, rest_echo_api, wait_for
from conftest import Server, free_port, start_server
from test_http_proxy import Upstream

CORE = "parcore"  # the HTTP API without CORS: the edge serves its MOCK/HTTP_PROXY/404/429 itself
CORS = "parcors"  # the HTTP API with corsConfiguration: every request goes to Python
PAYLOAD_LIMIT = 64 * 1024
HEADER_LIMIT = 4096
ORIGIN = "https://example.com"

# Response headers whose values are per-request ids or times: their presence is compared, not their values.
VOLATILE_HEADERS = frozenset(
    {"date", "apigw-requestid", "x-amzn-requestid", "x-amz-apigw-id", "x-amzn-trace-id"}
)
# Keys of JSON bodies (Lambda events, the upstream's echo) whose values are per-request ids/times.
VOLATILE_KEYS = frozenset(
    {
        "requestid",
        "extendedrequestid",
        "time",
        "timeepoch",
        "requesttime",
        "requesttimeepoch",
        "x-amzn-trace-id",
        "date",
    }
)


# ------------------------------------------------------------------------------------------ corpus


@dataclass(frozen=True)
class Case:
    """One request, sent as written: `{rest}` in the target or the Host is the REST API's id."""

    name: str
    method: str
    target: str
    host: str | None = f"{CORE}.execute-api.localhost"
    headers: tuple[tuple[str, str], ...] = ()
    body: bytes | None = None  # sent with its Content-Length
    chunks: tuple[bytes, ...] | None = None  # sent with Transfer-Encoding: chunked
    version: str = "HTTP/1.1"

    def raw(self, rest_id: str) -> bytes:
        lines = [f"{self.method} {self.target.replace('{rest}', rest_id)} {self.version}"]
        if self.host is not None:
            lines.append(f"Host: {self.host.replace('{rest}', rest_id)}")
        lines += [f"{name}: {value}" for name, value in self.headers]
        payload = b""
        if self.chunks is not None:
            lines.append("Transfer-Encoding: chunked")
            payload = b"".join(b"%x\r\n%s\r\n" % (len(chunk), chunk) for chunk in self.chunks) + b"0\r\n\r\n"
        elif self.body is not None:
            lines.append(f"Content-Length: {len(self.body)}")
            payload = self.body
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + payload


REST_HOST = "{rest}.execute-api.localhost"
CORS_HOST = f"{CORS}.execute-api.localhost"
JSON_1K = json.dumps({"items": [{"id": i, "name": f"item-{i:04d}"} for i in range(40)]}).encode()[:1024]
JSON_1K = JSON_1K[: JSON_1K.rindex(b"}") + 1] + b"]}"
BINARY = bytes(range(256)) * 2
QUERY = "a=1&a=2&b=%20x%2Fy&c=%E2%9C%93&d=&e&a=3"
JSON_TYPE = ("Content-Type", "application/json")
BINARY_TYPE = ("Content-Type", "application/octet-stream")
WITH_ORIGIN = (("Origin", ORIGIN),)

CORPUS: list[Case] = [
    # MOCK
    Case("mock_get", "GET", "/mock"),
    Case("mock_head", "HEAD", "/anymock"),
    Case("mock_head_unrouted", "HEAD", "/mock"),
    Case("mock_http10", "GET", "/mock", version="HTTP/1.0"),
    Case("mock_named_stage", "GET", "/beta/mock"),
    Case(
        "mock_query_and_headers", "GET", "/mock?" + QUERY, headers=(("X-Custom", "one"), ("X-Custom", "two"))
    ),
    # HTTP_PROXY
    Case("proxy_get_query", "GET", "/proxy?" + QUERY, headers=(("User-Agent", "parity/1"),)),
    Case("proxy_greedy_encoded", "GET", "/proxy/a%2Fb/c%20d?x=1"),
    Case("proxy_stage_variable", "GET", "/staged/leaf?x=1"),
    Case("proxy_named_stage", "GET", "/beta/staged/leaf"),
    Case("proxy_head", "HEAD", "/proxy/head"),
    Case("proxy_post_json_1k", "POST", "/proxy/items", headers=(JSON_TYPE,), body=JSON_1K),
    Case("proxy_chunked", "POST", "/proxy/chunked", chunks=(b"hello ", b"chunked ", b"world")),
    Case("proxy_binary", "PUT", "/proxy/bin", headers=(BINARY_TYPE,), body=BINARY),
    # AWS_PROXY, payload 2.0 and 1.0
    Case("v2_get_query", "GET", "/v2/x/y?" + QUERY, headers=(("Cookie", "a=1; b=2"),)),
    Case("v2_post_json_1k", "POST", "/v2/items", headers=(JSON_TYPE,), body=JSON_1K),
    Case(
        "v2_chunked", "POST", "/v2/chunked", headers=(("Content-Type", "text/plain"),), chunks=(b"ab", b"cd")
    ),
    Case("v2_binary", "PUT", "/v2/bin", headers=(BINARY_TYPE,), body=BINARY),
    Case("v2_head", "HEAD", "/v2/head"),
    Case("v2_named_stage", "GET", "/beta/v2/x"),
    Case("v2_http10", "GET", "/v2/old", version="HTTP/1.0"),
    Case("v1_get_query", "GET", "/v1/x?" + QUERY, headers=(("X-Multi", "1"), ("X-Multi", "2"))),
    Case("v1_post_json_1k", "POST", "/v1/items", headers=(JSON_TYPE,), body=JSON_1K),
    Case("lambda_binary_response", "GET", "/binary"),
    Case("lambda_raises", "GET", "/raises"),
    Case("lambda_malformed_response", "GET", "/malformed"),
    Case("lambda_timeout", "GET", "/slow?s=0.4"),
    # throttling (rate 0, burst 0)
    Case("throttled_mock", "GET", "/throttled"),
    Case("throttled_lambda", "GET", "/throttled-lambda"),
    # gateway answers
    Case("not_found_path", "GET", "/nope"),
    Case("not_found_method", "DELETE", "/mock"),
    Case("not_found_with_body", "POST", "/nope", body=b"{}"),
    Case("not_found_api_host", "GET", "/mock", host="nope.execute-api.localhost"),
    Case("not_found_plain_host", "GET", "/mock", host="localhost"),
    Case("bad_percent_encoding", "GET", "/a%zz"),
    Case("bad_percent_encoding_lambda", "GET", "/v2/a%zz"),
    Case(
        "payload_too_large",
        "POST",
        "/v2/big",
        headers=(BINARY_TYPE,),
        body=b"x" * (PAYLOAD_LIMIT + 1024),
    ),
    Case("payload_too_large_proxy", "POST", "/proxy/big", body=b"x" * (PAYLOAD_LIMIT + 1024)),
    Case("headers_too_large", "GET", "/mock", headers=(("X-Big", "h" * HEADER_LIMIT),)),
    Case("headers_too_large_lambda", "GET", "/v2/x", headers=(("X-Big", "h" * HEADER_LIMIT),)),
    Case("uri_too_long", "GET", "/mock?q=" + "u" * HEADER_LIMIT),
    Case("no_host_header", "GET", "/mock", host=None),
    Case("empty_host_header", "GET", "/mock", host=""),
    Case("two_host_headers", "GET", "/mock", headers=(("Host", "other.example"),)),
    Case("http10_no_host", "GET", "/mock", host=None, version="HTTP/1.0"),
    Case("no_host_path_style_lambda", "GET", f"/restapis/{CORE}/$default/_user_request_/v2/h", host=None),
    Case(
        "http10_no_host_path_style_lambda",
        "GET",
        f"/restapis/{CORE}/$default/_user_request_/v2/h",
        host=None,
        version="HTTP/1.0",
    ),
    # addressing
    Case("path_style_http_api", "GET", f"/restapis/{CORE}/beta/_user_request_/mock", host="localhost"),
    Case(
        "path_style_http_api_lambda",
        "GET",
        f"/restapis/{CORE}/$default/_user_request_/v2/p",
        host="localhost",
    ),
    # CORS
    Case(
        "cors_preflight_allowed",
        "OPTIONS",
        "/echo",
        host=CORS_HOST,
        headers=(("Origin", ORIGIN), ("Access-Control-Request-Method", "POST")),
    ),
    Case(
        "cors_preflight_disallowed",
        "OPTIONS",
        "/echo",
        host=CORS_HOST,
        headers=(("Origin", "https://evil.example"), ("Access-Control-Request-Method", "POST")),
    ),
    Case("cors_mock_with_origin", "GET", "/mock", host=CORS_HOST, headers=WITH_ORIGIN),
    Case("cors_mock_without_origin", "GET", "/mock", host=CORS_HOST),
    Case(
        "cors_lambda_with_origin",
        "POST",
        "/echo",
        host=CORS_HOST,
        headers=(*WITH_ORIGIN, JSON_TYPE),
        body=b"{}",
    ),
    Case("cors_proxy_with_origin", "GET", "/proxy", host=CORS_HOST, headers=WITH_ORIGIN),
    Case("cors_not_found_with_origin", "GET", "/nope", host=CORS_HOST, headers=WITH_ORIGIN),
    Case("options_without_cors", "OPTIONS", "/mock", headers=WITH_ORIGIN),
    # REST API (created through the admin API)
    Case("rest_proxy_by_host", "GET", "/prod/anything?q=1&q=2", host=REST_HOST),
    Case("rest_path_style", "POST", "/restapis/{rest}/prod/_user_request_/a/b", host="localhost", body=b"{}"),
    Case("rest_mock", "GET", "/prod/health", host=REST_HOST),
    Case("rest_missing_token_root", "GET", "/prod/", host=REST_HOST),
    Case("rest_missing_token_stage", "GET", "/staging/anything", host=REST_HOST),
    Case("rest_missing_token_path_style", "GET", "/restapis/{rest}/nope/_user_request_/x", host="localhost"),
]

# ------------------------------------------------------------------------------------------ config


def _config(upstream: str, access_log: Path | None) -> dict:
    up = upstream.removeprefix("http://")

    def mock(body: str, status: int = 200) -> dict:
        return {"type": "MOCK", "statusCode": status, "headers": {"content-type": "text/plain"}, "body": body}

    def proxy(uri: str) -> dict:
        return {"type": "HTTP_PROXY", "uri": uri, "method": "ANY", "timeoutInMillis": 5000}

    def function(name: str, version: str = "2.0", timeout: int = 30000) -> dict:
        arn = f"arn:aws:lambda:us-east-1:123456789012:function:{name}"
        return {"type": "AWS_PROXY", "uri": arn, "payloadFormatVersion": version, "timeoutInMillis": timeout}

    never = {"throttlingRateLimit": 0, "throttlingBurstLimit": 0}
    core = {
        "name": "parity-core",
        "id": CORE,
        "routes": [
            {"route": "GET /mock", "integration": mock("mocked", 201)},
            {"route": "ANY /anymock", "integration": mock("any")},
            {"route": "ANY /proxy", "integration": proxy(f"{upstream}/echo/base")},
            {"route": "ANY /proxy/{proxy+}", "integration": proxy(f"{upstream}/echo/{{proxy}}")},
            {
                "route": "GET /staged/{leaf}",
                "integration": proxy("http://${stageVariables.up}/echo/s/{leaf}"),
            },
            {"route": "ANY /v2/{rest+}", "integration": "echo2"},
            {"route": "ANY /v1/{rest+}", "integration": "echo1"},
            {"route": "GET /binary", "integration": function("binary")},
            {"route": "GET /raises", "integration": function("raises")},
            {"route": "GET /malformed", "integration": function("returns_bytes")},
            {"route": "GET /slow", "integration": function("slow", timeout=100)},
            {"route": "GET /throttled", "integration": mock("never")},
            {"route": "GET /throttled-lambda", "integration": "echo2"},
        ],
        "integrations": {"echo2": function("echo"), "echo1": function("echo", "1.0")},
        "stages": [
            {
                "name": "$default",
                "variables": {"up": up},
                "routeSettings": {"GET /throttled": never, "GET /throttled-lambda": never},
            },
            {"name": "beta", "variables": {"up": up, "color": "blue"}},
        ],
    }
    cors = {
        "name": "parity-cors",
        "id": CORS,
        "routes": [
            {"route": "GET /mock", "integration": mock("cors mocked")},
            {"route": "ANY /echo", "integration": function("echo")},
            {"route": "GET /proxy", "integration": proxy(f"{upstream}/echo/cors")},
        ],
        "corsConfiguration": {
            "allowOrigins": [ORIGIN],
            "allowMethods": ["GET", "POST"],
            "allowHeaders": ["content-type", "x-custom"],
            "exposeHeaders": ["x-upstream"],
            "maxAge": 300,
        },
    }
    settings: dict[str, Any] = {"payloadLimitBytes": PAYLOAD_LIMIT, "headerLimitBytes": HEADER_LIMIT}
    if access_log is not None:
        settings["accessLog"] = {"format": LOG_FORMAT, "destination": str(access_log)}
    return {
        "functions": {
            "echo": "handlers.basic:echo",
            "binary": "handlers.basic:binary",
            "raises": "handlers.basic:raises",
            "returns_bytes": "handlers.basic:returns_bytes",
            "slow": "handlers.basic:slow",
        },
        "apis": [core, cors],
        "settings": settings,
    }


LOG_FORMAT = (
    "$context.requestId [$context.requestTime] $context.identity.sourceIp $context.domainName "
    '"$context.httpMethod $context.path $context.protocol" $context.status $context.responseLength '
    "$context.apiId $context.stage $context.routeKey ua=$context.identity.userAgent "
    "err=$context.integrationErrorMessage"
)


def _create_rest_api(admin: AdminServer) -> str:
    """A REST API: `{proxy+}` ANY -> the echo Lambda, `/health` GET -> MOCK; deployed to `prod`."""
    apigw = admin.client("apigateway")
    api_id = rest_echo_api(apigw, "parity-rest")
    apigw.create_deployment(restApiId=api_id, stageName="prod", variables={"color": "green"})
    return api_id


# ------------------------------------------------------------------------------------------ servers


@dataclass
class Pair:
    edge: Server
    embedded: Server
    rest_id: str
    access_log: Path | None


@dataclass
class Servers:
    pairs: dict[str, Pair] = field(default_factory=dict)


def _serves_rest(server: Server, rest_id: str) -> bool:
    url = f"{server.url}/restapis/{rest_id}/prod/_user_request_/probe"
    return httpx.get(url, timeout=5).status_code == 200


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Servers]:
    """Both deployments, each as an edge and an embedded server, all four reading one store (so
    they serve the same REST API, with the same id)."""
    workdir = tmp_path_factory.mktemp("parity")
    upstream = Upstream()
    started: list[Server] = []
    data_dir = workdir / "state"

    def start(config_path: Path, edge: bool) -> AdminServer:
        # --admin-port only so that the data plane reads the store (which holds the REST API).
        admin_port = free_port()
        args = ["--admin-port", str(admin_port), "--data-dir", str(data_dir)]
        args += ["--admin-key", f"{ACCESS_KEY_ID}:{SECRET}", *([] if edge else ["--no-edge"])]
        server = start_server(config_path, workdir, extra_args=args)
        started.append(server)
        return AdminServer(server, f"http://127.0.0.1:{admin_port}", data_dir)

    try:
        paths: dict[str, tuple[Path, Path | None]] = {}
        for name, log in (("fast", None), ("logged", workdir / "access.log")):
            path = workdir / f"{name}.yaml"
            path.write_text(yaml.safe_dump(_config(upstream.url, log), sort_keys=False))
            paths[name] = (path, log)

        first = start(paths["fast"][0], edge=True)
        rest_id = _create_rest_api(first)
        result = Servers()
        for name, (path, log) in paths.items():
            edge = first.server if name == "fast" else start(path, edge=True).server
            embedded = start(path, edge=False).server
            for server in (edge, embedded):
                wait_for(lambda server=server: _serves_rest(server, rest_id), timeout=5)
            result.pairs[name] = Pair(edge, embedded, rest_id, log)
        yield result
    finally:
        for server in started:
            server.stop()
        upstream.stop()


# ------------------------------------------------------------------------------------------ compare


@dataclass(frozen=True)
class Answer:
    """What a client sees of one answer, with per-request ids and times replaced by placeholders."""

    status_line: str
    headers: tuple[tuple[str, str], ...]
    body: Any
    access_log: str | None = None


def _normalise(value: Any) -> Any:
    if isinstance(value, dict):
        return {
            key: "<volatile>" if key.lower() in VOLATILE_KEYS and item is not None else _normalise(item)
            for key, item in value.items()
        }
    if isinstance(value, list):
        # The upstream's echo lists headers as [name, value] pairs.
        if len(value) == 2 and isinstance(value[0], str) and value[0].lower() in VOLATILE_KEYS:
            return [value[0], "<volatile>"]
        return [_normalise(item) for item in value]
    return value


def _body(raw: bytes) -> Any:
    try:
        document = json.loads(raw)
    except ValueError:
        return raw
    return _normalise(document)


def exchange(port: int, raw: bytes, method: str) -> tuple[Answer, str | None]:
    """Send `raw` on a new connection; the answer and its request id (`apigw-requestid`, or a
    REST API's `x-amzn-RequestId`)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        try:
            sock.sendall(raw)
        except (BrokenPipeError, ConnectionResetError) as exc:
            sent_error = f"<send failed: {type(exc).__name__}>"
        else:
            sent_error = ""
        response = http.client.HTTPResponse(sock, method=method)
        try:
            response.begin()
            body = response.read()
        except (http.client.HTTPException, ConnectionError, TimeoutError) as exc:
            return Answer(f"<no answer: {type(exc).__name__}>{sent_error}", (), b""), None
    # Compared as a multiset by name: sorted by name only (stable), so same-name headers keep their order.
    headers = tuple(
        sorted(((name.lower(), value) for name, value in response.getheaders()), key=lambda h: h[0])
    )
    request_id = response.getheader("apigw-requestid") or response.getheader("x-amzn-requestid")
    # Per-request ids and times: their presence is compared, their values are not.
    kept = tuple((name, "<volatile>" if name in VOLATILE_HEADERS else value) for name, value in headers)
    version = {10: "HTTP/1.0", 11: "HTTP/1.1"}.get(response.version, str(response.version))
    status_line = f"{version} {response.status} {response.reason}{sent_error}"
    return Answer(status_line, kept, _body(body)), request_id


def _log_line(path: Path, request_id: str | None) -> str:
    """The access-log line of `request_id`, ids and times replaced; waits for it briefly."""
    if request_id is None:
        return "<no request id to look up>"
    deadline = time.monotonic() + 2.5
    while True:
        for line in path.read_text().splitlines() if path.exists() else []:
            if line.startswith(request_id + " "):
                return re.sub(r"\[[^]]*\]", "[<time>]", line.replace(request_id, "<id>", 1))
        if time.monotonic() > deadline:
            return "<no access-log line>"
        time.sleep(0.02)


def _answer(pair: Pair, server: Server, case: Case) -> Answer:
    answer, request_id = exchange(server.port, case.raw(pair.rest_id), case.method)
    if pair.access_log is None:
        return answer
    return Answer(answer.status_line, answer.headers, answer.body, _log_line(pair.access_log, request_id))


def _params() -> list:
    return [
        pytest.param(deployment, case, id=f"{deployment}-{case.name}")
        for deployment in ("fast", "logged")
        for case in CORPUS
    ]


def _without_host_server(answer: Answer) -> Answer:
    """The embedded app's answer without its host server's own `server: granian` header."""
    headers = tuple(h for h in answer.headers if h != ("server", "granian"))
    return Answer(answer.status_line, headers, answer.body, answer.access_log)


@pytest.mark.parametrize(("deployment", "case"), _params())
def test_edge_and_embedded_answer_alike(servers: Servers, deployment: str, case: Case) -> None:
    pair = servers.pairs[deployment]
    edge = _answer(pair, pair.edge, case)
    embedded = _answer(pair, pair.embedded, case)
    assert ("server", "granian") not in edge.headers
    embedded = _without_host_server(embedded)
    assert edge == embedded, _differences(edge, embedded)


def _differences(a: Any, b: Any, at: str = "") -> list[str]:
    """Where two answers differ, as `path: edge != embedded` lines (for the failure message)."""
    if isinstance(a, Answer) and isinstance(b, Answer):
        return [
            line
            for name in ("status_line", "headers", "body", "access_log")
            for line in _differences(getattr(a, name), getattr(b, name), name)
        ]
    if isinstance(a, dict) and isinstance(b, dict):
        return [
            line
            for key in sorted(set(a) | set(b))
            for line in _differences(a.get(key), b.get(key), f"{at}.{key}")
        ]
    return [] if a == b else [f"{at}: {a!r} != {b!r}"]
