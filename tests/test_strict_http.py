"""Strict HTTP handling, with one answer whichever front door serves the request.

Every test runs against both doors: the edge (`portico serve`, hyper in the core) and the embedded
ASGI app (`portico serve --no-edge`, Granian parsing the request). Requests are written byte for
byte on raw sockets, since most of them are ones no well-behaved client library would send.

- A malformed chunked request body gets 400 `{"message":"Bad Request"}` from the pipeline (its
  gateway response, with `apigw-requestid`) and the connection closes, on every kind of route, and
  nothing is logged as an error: the fault is the client's.
- Every route's request body is held to `settings.payloadLimitBytes` (10 MB by default), a MOCK's
  too: 413, whether the body declares its length or streams past the limit.
- An HTTP/1.0 request is reported as HTTP/1.0 in Lambda events of both payload formats.
- An HTTP_PROXY upstream whose response head passes the header limit (10 240 bytes by default)
  gets AWS's answer to an integration response it cannot pass on (500
  `{"message":"Internal Server Error"}` on an HTTP API), not the upstream's response.
- Nothing of the gateway's own reaches a handler or an upstream: they see the client's headers
  and the ones AWS documents adding.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import socket
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from conftest import Server, start_server
from test_http_proxy import Upstream

API_ID = "strict1234"
HOST = f"{API_ID}.execute-api.localhost"
MB = 1024 * 1024
PAYLOAD_LIMIT = 10 * MB  # the default settings.payloadLimitBytes
HEADER_LIMIT = 10240  # the default settings.headerLimitBytes
DOORS = ("edge", "embedded")
# A route of each integration kind that reads a body; `/v1` is the Lambda's payload format 1.0.
BODY_ROUTES = ("/mock", "/proxy/upload", "/v2")

# Headers a Lambda event carries beyond the client's own (AWS adds them).
LAMBDA_ADDED = {"x-amzn-trace-id", "x-forwarded-for", "x-forwarded-port", "x-forwarded-proto"}
# Headers an HTTP_PROXY upstream sees beyond the client's own (docs/pipeline.md, "HTTP_PROXY"),
# and the framing ones the upstream client sets.
PROXY_ADDED = {
    "forwarded",
    "via",
    "x-amzn-trace-id",
    "user-agent",
    "host",
    "content-length",
    "transfer-encoding",
}


# ------------------------------------------------------------------------------------------ upstream


class _BigHeadHandler(BaseHTTPRequestHandler):
    """`GET /head/{n}`: 200 with an `x-big` header of n bytes."""

    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        size = int(self.path.rsplit("/", 1)[1])
        self.send_response(200)
        self.send_header("content-type", "text/plain")
        self.send_header("x-big", "b" * size)
        self.send_header("content-length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, format: str, *args: object) -> None:
        pass


@dataclass
class Doors:
    servers: dict[str, Server]


def _config(echo: str, big: str) -> dict:
    def function(version: str) -> dict:
        arn = "arn:aws:lambda:us-east-1:123456789012:function:echo"
        return {"type": "AWS_PROXY", "uri": arn, "payloadFormatVersion": version}

    def proxy(uri: str) -> dict:
        return {"type": "HTTP_PROXY", "uri": uri, "method": "ANY", "timeoutInMillis": 10000}

    return {
        "functions": {"echo": "handlers.basic:echo"},
        "apis": [
            {
                "name": "strict",
                "id": API_ID,
                "routes": [
                    {
                        "route": "ANY /mock",
                        "integration": {"type": "MOCK", "statusCode": 200, "body": "mocked"},
                    },
                    {"route": "ANY /proxy/{p+}", "integration": proxy(f"{echo}/echo/{{p}}")},
                    {"route": "GET /head/{n}", "integration": proxy(f"{big}/head/{{n}}")},
                    {"route": "ANY /v2", "integration": function("2.0")},
                    {"route": "ANY /v1", "integration": function("1.0")},
                ],
            }
        ],
    }


@pytest.fixture(scope="module")
def doors(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Doors]:
    workdir = tmp_path_factory.mktemp("strict")
    echo = Upstream()
    big = ThreadingHTTPServer(("127.0.0.1", 0), _BigHeadHandler)
    big.daemon_threads = True
    big_thread = threading.Thread(target=big.serve_forever, daemon=True)
    big_thread.start()
    config = _config(echo.url, f"http://127.0.0.1:{big.server_address[1]}")
    servers: dict[str, Server] = {}
    try:
        for door in DOORS:
            where = workdir / door
            where.mkdir()
            servers[door] = start_server(config, where, extra_args=[] if door == "edge" else ["--no-edge"])
        yield Doors(servers)
    finally:
        for server in servers.values():
            server.stop()
        big.shutdown()
        big.server_close()
        big_thread.join(10)
        echo.stop()


# ------------------------------------------------------------------------------------------ wire


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes
    closed: bool | None  # whether the server closed the connection after the answer (if asked)


def _head(
    method: str, path: str, headers: Iterable[tuple[str, str]] = (), version: str = "HTTP/1.1"
) -> bytes:
    lines = [f"{method} {path} {version}", f"Host: {HOST}", *(f"{n}: {v}" for n, v in headers)]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def _read_answer(sock: socket.socket, method: str, check_closed: bool = False) -> Answer:
    response = http.client.HTTPResponse(sock, method=method)
    response.begin()
    body = response.read()
    headers = {name.lower(): value for name, value in response.getheaders()}
    if not check_closed:
        return Answer(response.status, headers, body, None)
    # The connection is closed when the next read finds its end (or a reset) rather than waiting.
    sock.settimeout(3)
    try:
        closed = sock.recv(1) == b""
    except ConnectionResetError:
        closed = True
    except TimeoutError:
        closed = False
    return Answer(response.status, headers, body, closed)


def exchange(server: Server, raw: bytes, method: str = "POST", check_closed: bool = False) -> Answer:
    """Send `raw` whole on a new connection; the answer."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=15) as sock:
        sock.sendall(raw)
        return _read_answer(sock, method, check_closed)


def exchange_streaming(
    server: Server, head: bytes, parts: Iterable[bytes], check_closed: bool = True
) -> Answer:
    """Send `head`, then `parts` from another thread while the answer is read: the server may answer
    (and close) before the body is all sent, as it does past the payload limit."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=15) as sock:
        sock.sendall(head)

        def send() -> None:
            try:
                for part in parts:
                    sock.sendall(part)
            except OSError:
                pass  # the server answered and closed: the rest is not wanted

        sender = threading.Thread(target=send, daemon=True)
        sender.start()
        try:
            return _read_answer(sock, "POST", check_closed)
        finally:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sender.join(15)


def _errors_logged(server: Server, since: int) -> list[str]:
    """Lines the server logged as errors (`portico: request ...: TYPE: detail`) after offset `since`."""
    return [line for line in server.log[since:].splitlines() if line.startswith("portico: request ")]


def _gateway_answer(answer: Answer) -> dict:
    assert "apigw-requestid" in answer.headers, "not the pipeline's answer"
    assert answer.headers["content-type"] == "application/json"
    return json.loads(answer.body)


# ------------------------------------------------------------------------------------------ 1. chunked


def _chunked(path: str, body: bytes) -> bytes:
    return _head("POST", path, [("Transfer-Encoding", "chunked")]) + body


MALFORMED_CHUNKS = {
    "size_not_hex": b"zz\r\nhello\r\n0\r\n\r\n",
    "size_negative": b"-5\r\nhello\r\n0\r\n\r\n",
    "size_20_hex_digits": b"FFFFFFFFFFFFFFFFFFFF\r\nhello\r\n0\r\n\r\n",  # past 64 bits
    "size_0x_prefix": b"0x5\r\nhello\r\n0\r\n\r\n",
    "bare_lf_lines": b"5\nhello\n0\n\n",
    "data_past_its_size": b"5\r\nhelloEXTRA\r\n0\r\n\r\n",
}


@pytest.mark.parametrize("case", list(MALFORMED_CHUNKS))
@pytest.mark.parametrize("path", BODY_ROUTES, ids=["mock", "http_proxy", "aws_proxy"])
@pytest.mark.parametrize("door", DOORS)
def test_a_malformed_chunked_body_is_400_and_closes(doors: Doors, door: str, path: str, case: str):
    server = doors.servers[door]
    since = len(server.log)
    answer = exchange(server, _chunked(path, MALFORMED_CHUNKS[case]), check_closed=True)
    assert answer.status == 400, answer
    assert _gateway_answer(answer) == {"message": "Bad Request"}
    assert answer.headers.get("connection") == "close"
    assert answer.closed, "the connection must close: the request's framing is lost"
    time.sleep(0.1)
    assert _errors_logged(server, since) == []


@pytest.mark.parametrize("path", BODY_ROUTES, ids=["mock", "http_proxy", "aws_proxy"])
@pytest.mark.parametrize("door", DOORS)
def test_a_well_formed_chunked_body_is_served(doors: Doors, door: str, path: str):
    """The control: chunk sizes with leading zeros and extensions are well formed (RFC 9112 §7.1)."""
    body = b"0000000000000000005;ext=1\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"
    answer = exchange(doors.servers[door], _chunked(path, body))
    assert answer.status == 200, answer
    if path == "/mock":
        assert answer.body == b"mocked"
    elif path == "/v2":
        assert json.loads(answer.body)["body"] == "aGVsbG8gd29ybGQ="  # base64: no content type
    else:
        echoed = json.loads(answer.body)
        assert echoed["body"] == "hello world"
        received = {name for name, _ in echoed["headers"]}
        assert received <= PROXY_ADDED, received  # the client sent only Host and Transfer-Encoding


# ------------------------------------------------------------------------------------------ 2. limit


def _pieces(size: int, piece: int = 256 * 1024) -> Iterator[bytes]:
    block = b"x" * piece
    sent = 0
    while sent < size:
        yield block[: min(piece, size - sent)]
        sent += piece


def _chunks(size: int) -> Iterator[bytes]:
    for piece in _pieces(size):
        yield b"%x\r\n%s\r\n" % (len(piece), piece)
    yield b"0\r\n\r\n"


@pytest.mark.parametrize("framing", ["content_length", "chunked"])
@pytest.mark.parametrize("path", BODY_ROUTES, ids=["mock", "http_proxy", "aws_proxy"])
@pytest.mark.parametrize("door", DOORS)
def test_a_body_past_the_payload_limit_is_413_on_every_route(
    doors: Doors, door: str, path: str, framing: str
):
    size = 11 * MB
    if framing == "content_length":
        head = _head("POST", path, [("Content-Length", str(size))])
        parts = _pieces(size)
    else:
        head = _head("POST", path, [("Transfer-Encoding", "chunked")])
        parts = _chunks(size)
    answer = exchange_streaming(doors.servers[door], head, parts)
    assert answer.status == 413, answer
    assert _gateway_answer(answer) == {"message": "Request Entity Too Large"}
    assert answer.headers.get("connection") == "close"
    assert answer.closed


@pytest.mark.parametrize("door", DOORS)
def test_a_mock_answers_a_body_at_the_limit(doors: Doors, door: str):
    head = _head("POST", "/mock", [("Transfer-Encoding", "chunked")])
    answer = exchange_streaming(doors.servers[door], head, _chunks(PAYLOAD_LIMIT), check_closed=False)
    assert answer.status == 200, answer
    assert answer.body == b"mocked"


# ------------------------------------------------------------------------------------------ 3. HTTP/1.0


@pytest.mark.parametrize("version", ["HTTP/1.0", "HTTP/1.1"])
@pytest.mark.parametrize("method", ["GET", "POST"])
@pytest.mark.parametrize("path", ["/v2", "/v1"], ids=["payload_2_0", "payload_1_0"])
@pytest.mark.parametrize("door", DOORS)
def test_the_event_names_the_request_s_protocol(
    doors: Doors, door: str, path: str, method: str, version: str
):
    sent = [("X-Client", "kept"), ("Connection", "close")]
    body = b""
    if method == "POST":
        body = b'{"a": 1}'
        sent += [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
    answer = exchange(doors.servers[door], _head(method, path, sent, version) + body, method)
    assert answer.status == 200, answer
    event = json.loads(answer.body)
    context = event["requestContext"]
    protocol = context["http"]["protocol"] if path == "/v2" else context["protocol"]
    assert protocol == version
    # What the handler sees is the client's request: its headers and the ones AWS adds.
    client = {name.lower() for name, _ in sent} | {"host"}
    assert set(event["headers"]) - client <= LAMBDA_ADDED, event["headers"]
    assert event["headers"]["x-client"] == "kept"
    if method == "POST":
        assert event["body"] == body.decode()


@pytest.mark.parametrize("door", DOORS)
def test_an_http_1_0_request_reaches_the_upstream_with_nothing_internal(doors: Doors, door: str):
    sent = [("X-Client", "kept")]
    answer = exchange(doors.servers[door], _head("GET", "/proxy/old", sent, "HTTP/1.0"), "GET")
    assert answer.status == 200, answer
    received = {name for name, _ in json.loads(answer.body)["headers"]}
    assert received - {"x-client"} <= PROXY_ADDED, received


# ------------------------------------------------------------------------------------------ 4. upstream head


@pytest.mark.parametrize("size", [HEADER_LIMIT + 100, 200 * 1024, 600 * 1024], ids=["10k", "200k", "600k"])
@pytest.mark.parametrize("door", DOORS)
def test_an_upstream_head_past_the_header_limit_is_not_passed_on(doors: Doors, door: str, size: int):
    """AWS cannot return an integration response whose headers pass its limit: the HTTP API's
    answer to an integration response it cannot pass on. The 600 KB one is past what the upstream
    client reads of a head at all; the answer is the same."""
    server = doors.servers[door]
    since = len(server.log)
    answer = exchange(server, _head("GET", f"/head/{size}"), "GET")
    assert answer.status == 500, answer.status
    assert _gateway_answer(answer) == {"message": "Internal Server Error"}
    assert "x-big" not in answer.headers
    time.sleep(0.1)
    # The operator is told why: the upstream misbehaved.
    logged = _errors_logged(server, since)
    assert len(logged) == 1 and "the upstream's response head" in logged[0], logged


@pytest.mark.parametrize("door", DOORS)
def test_an_upstream_head_within_the_limit_is_passed_on(doors: Doors, door: str):
    answer = exchange(doors.servers[door], _head("GET", f"/head/{HEADER_LIMIT - 1024}"), "GET")
    assert answer.status == 200, answer.status
    assert answer.headers["x-big"] == "b" * (HEADER_LIMIT - 1024)
    assert answer.body == b"ok"
