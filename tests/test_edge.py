"""The edge (`portico serve`, unless `--no-edge`): the core's own listener, running the pipeline
for every request and handing Lambda handlers and plugins to the Python side in process.

These tests drive real servers over loopback sockets, beside the embedded app (`--no-edge`) for
the answers both doors must give alike.
"""

from __future__ import annotations

import json
import os
import resource
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

ECHO_ARN = "arn:aws:lambda:us-east-1:123456789012:function:echo"
FUNCTIONS = {"echo": "handlers.basic:echo"}


def lambda_integration() -> dict:
    return {"type": "AWS_PROXY", "uri": ECHO_ARN, "payloadFormatVersion": "2.0"}


def mock(body: str, status: int = 200) -> dict:
    return {"type": "MOCK", "statusCode": status, "headers": {"content-type": "text/plain"}, "body": body}


def one_api(routes: list[tuple[str, dict]], stage: dict | None = None) -> dict:
    return {
        "apis": [
            {
                "name": "edge",
                "id": "edge123456",
                "routes": [{"route": key, "integration": integration} for key, integration in routes],
                "stages": [stage or {"name": "$default"}],
            }
        ]
    }


# ------------------------------------------------------------------------------------------ upstream


class _UpstreamHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        body = json.dumps({"upstream": True, "path": self.path}).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("x-upstream", "yes")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def upstream() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _UpstreamHandler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
    thread.join(10)


# ------------------------------------------------------------------------------------------ 1. forged


def test_the_event_carries_the_client_and_nothing_internal(portico):
    """What a handler sees is the client's request: its address, its headers, no header of the
    gateway's own, even for a request without Host addressed path-style."""
    import socket

    server = portico(one_api([("GET /echo", lambda_integration())]), functions=FUNCTIONS)
    response = httpx.get(server.url + "/echo", headers=[("x-custom", "kept")], timeout=10)
    assert response.status_code == 200, response.text
    event = response.json()
    assert event["requestContext"]["http"]["sourceIp"] == "127.0.0.1"
    assert event["requestContext"]["http"]["protocol"] == "HTTP/1.1"
    assert event["headers"]["x-custom"] == "kept"
    assert sorted(event["headers"]) == sorted(
        [
            "x-custom",
            "host",
            "accept",
            "accept-encoding",
            "user-agent",
            "x-amzn-trace-id",
            "x-forwarded-for",
            "x-forwarded-port",
            "x-forwarded-proto",
        ]
    )

    port = int(server.url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        # HTTP/1.0 may leave Host out (HTTP/1.1 may not: `test_host_is_required_in_http_1_1`).
        sock.sendall(
            b"GET /restapis/edge123456/$default/_user_request_/echo HTTP/1.0\r\nx-custom: kept\r\n\r\n"
        )
        raw = b""
        while b"\r\n\r\n" not in raw:
            raw += sock.recv(65536)
        head, _, body = raw.partition(b"\r\n\r\n")
        length = int(
            next(
                line.split(b":")[1]
                for line in head.split(b"\r\n")
                if line.lower().startswith(b"content-length")
            )
        )
        while len(body) < length:
            body += sock.recv(65536)
    assert head.startswith(b"HTTP/1.0 200") or head.startswith(b"HTTP/1.1 200"), head
    event = json.loads(body)
    assert event["rawPath"] == "/echo"  # the path the API sees, not the path-style address
    assert event["requestContext"]["http"]["sourceIp"] == "127.0.0.1"
    assert "host" not in event["headers"] and event["headers"]["x-custom"] == "kept"


@pytest.mark.parametrize(
    "head",
    [b"", b"Host: \r\n", b"Host: edge123456.execute-api.localhost\r\nHost: other.example\r\n"],
    ids=["none", "empty", "two"],
)
def test_host_is_required_in_http_1_1(portico, head: bytes):
    """AWS and nginx answer an HTTP/1.1 request without exactly one Host with 400; it never reaches
    a handler."""
    import socket

    server = portico(one_api([("GET /echo", lambda_integration())]), functions=FUNCTIONS)
    port = int(server.url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(b"GET /restapis/edge123456/$default/_user_request_/echo HTTP/1.1\r\n" + head + b"\r\n")
        answer = sock.recv(65536)
    assert answer.startswith(b"HTTP/1.1 400"), answer
    assert answer.endswith(b'{"message":"Bad Request"}'), answer


# ------------------------------------------------------------------------------------------ 2. throttle


LIMITED = {"throttlingBurstLimit": 5, "throttlingRateLimit": 0.001}


@pytest.mark.parametrize("args", [[], ["--no-edge"]], ids=["edge", "no-edge"])
@pytest.mark.parametrize("kind", ["lambda", "mock"])
def test_throttle_is_counted_once(portico, kind: str, args: list[str]):
    integration = lambda_integration() if kind == "lambda" else mock("ok")
    config = one_api(
        [("GET /limited", integration), ("GET /free", mock("free"))],
        stage={"name": "$default", "routeSettings": {"GET /limited": LIMITED}},
    )
    server = portico(config, functions=FUNCTIONS, extra_args=args)
    with httpx.Client(base_url=server.url, timeout=10) as client:
        responses = [client.get("/limited") for _ in range(10)]
        statuses = [r.status_code for r in responses]
        # Burst 5 and (practically) no refill: the first five pass, the rest are refused.
        assert statuses == [200] * 5 + [429] * 5, statuses
        for refused in responses[5:]:
            assert refused.content == b'{"message":"Too Many Requests"}'
            assert refused.headers["apigw-requestid"]
        # Another route has its own bucket.
        assert client.get("/free").status_code == 200


# ------------------------------------------------------------------------------------------ 3. parity


def _snapshot(response: httpx.Response) -> tuple:
    return (
        response.status_code,
        response.content,
        "apigw-requestid" in response.headers,
        response.headers.get("content-type"),
    )


def test_edge_and_no_edge_answer_alike(portico, upstream: str):
    config = one_api(
        [
            ("GET /mock", mock("mocked", status=201)),
            ("GET /proxy", {"type": "HTTP_PROXY", "uri": f"{upstream}/up/base", "method": "ANY"}),
        ]
    )
    edge = portico(config)
    plain = portico(config, extra_args=["--no-edge"])
    answers: dict[str, dict[str, httpx.Response]] = {}
    for name, server in (("edge", edge), ("plain", plain)):
        with httpx.Client(base_url=server.url, timeout=10) as client:
            answers[name] = {
                "mock": client.get("/mock"),
                "proxy": client.get("/proxy?x=1"),
                "nope": client.get("/nope"),
            }

    for path in ("mock", "proxy", "nope"):
        assert _snapshot(answers["edge"][path]) == _snapshot(answers["plain"][path]), path
        for mode in ("edge", "plain"):
            request_id = answers[mode][path].headers["apigw-requestid"]
            assert len(request_id) == 16 and request_id.endswith("="), (mode, path, request_id)

    mocked = answers["edge"]["mock"]
    assert (mocked.status_code, mocked.text, mocked.headers["content-type"]) == (201, "mocked", "text/plain")
    proxied = answers["edge"]["proxy"]
    assert proxied.status_code == 200
    assert proxied.json() == {"upstream": True, "path": "/up/base?x=1"}
    assert proxied.headers["content-type"] == "application/json"
    for mode in ("edge", "plain"):
        assert answers[mode]["proxy"].headers["x-upstream"] == "yes"
    missing = answers["edge"]["nope"]
    assert missing.status_code == 404
    assert missing.content == b'{"message":"Not Found"}'
    assert missing.headers["content-type"] == "application/json"


# ------------------------------------------------------------------------------------------ 4. plugins


def test_plugins_still_see_mock_routes_with_the_edge_on(portico):
    server = portico(
        one_api([("GET /mock", mock("mocked"))]), extra_args=["--plugin", "handlers.plugins:PoweredBy"]
    )
    with httpx.Client(base_url=server.url, timeout=10) as client:
        for _ in range(3):  # every time, not only the first
            response = client.get("/mock")
            assert response.status_code == 200
            assert response.text == "mocked"
            assert response.headers["x-powered-by"] == "portico/GET /mock"


def test_a_port_in_use_is_refused_not_shared(tmp_path):
    """The public socket is bound once, without SO_REUSEPORT: a second server cannot quietly
    split a port's connections with whoever holds it."""
    import socket

    import yaml

    from conftest import run_portico

    config = tmp_path / "portico.yaml"
    config.write_text(yaml.safe_dump(one_api([("GET /mock", mock("hi"))])))
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen(1)
        port = holder.getsockname()[1]
        result = run_portico("serve", str(config), "--port", str(port), timeout=30)
    assert result.returncode != 0
    assert f"cannot listen on 127.0.0.1:{port}" in result.stderr


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_early_answers_to_uploads_survive_the_hop(portico, chunked: bool):
    """The pipeline may answer before reading a body (here: an unknown route). Passed on by the
    edge, that answer must reach the client, not a 500 from a connection the pipeline's server
    closed mid-upload: the pipeline drains what it did not read."""
    server = portico(one_api([("POST /lambda", lambda_integration())]), functions=FUNCTIONS)
    payload = b"x" * (512 * 1024)

    def content():
        if not chunked:
            return payload
        return (payload[start : start + 16 * 1024] for start in range(0, len(payload), 16 * 1024))

    with httpx.Client(timeout=30) as client:
        for _ in range(5):
            resp = client.post(server.url + "/nope", content=content())
            assert resp.status_code == 404, resp.text
            assert resp.json() == {"message": "Not Found"}
            resp = client.post(server.url + "/lambda", content=content())
            assert resp.status_code == 200, resp.text
            assert resp.json()["isBase64Encoded"] is True


def test_an_early_answer_reads_the_upload_and_keeps_the_connection(portico):
    """An answer given without reading the body (an unknown route, a throttled or refused request)
    waits for the rest of the upload and keeps the connection open, as nginx's lingering close and
    AWS's buffering front end do: hyper would otherwise close it with the body unread, and a client
    still sending gets a reset instead of the answer. Past the payload limit it closes instead."""
    import socket

    server = portico(one_api([("POST /lambda", lambda_integration())]), functions=FUNCTIONS)
    port = int(server.url.rsplit(":", 1)[1])
    payload = b"x" * (256 * 1024)

    def read_answer(sock: socket.socket) -> bytes:
        raw = b""
        while b"\r\n\r\n" not in raw:
            chunk = sock.recv(65536)
            assert chunk, f"closed after {raw!r}"
            raw += chunk
        head, _, body = raw.partition(b"\r\n\r\n")
        length = next(
            int(line.split(b":")[1])
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"content-length")
        )
        while len(body) < length:
            body += sock.recv(65536)
        return head

    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        for target in (b"/nope", b"/nope", b"/lambda"):
            sock.sendall(
                b"POST " + target + b" HTTP/1.1\r\nHost: x\r\ncontent-length: %d\r\n\r\n" % len(payload)
            )
            sock.sendall(payload)
            head = read_answer(sock)
            expected = b"HTTP/1.1 200" if target == b"/lambda" else b"HTTP/1.1 404"
            assert head.startswith(expected), head
            assert b"connection: close" not in head.lower(), head


def test_requests_at_startup_wait_for_the_pipeline(tmp_path):
    """The public port accepts before Granian serves the pipeline's socket: a request passed on
    in that window waits for it instead of getting a 500."""
    import contextlib
    import os
    import signal
    import subprocess
    import sys
    import time

    import yaml

    from conftest import TESTS_DIR, free_port

    config = tmp_path / "portico.yaml"
    config.write_text(yaml.safe_dump(one_api([("GET /echo", lambda_integration())])))
    port = free_port()
    env = dict(
        os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(TESTS_DIR), os.environ.get("PYTHONPATH")]))
    )
    command = [sys.executable, "-m", "portico", "serve", str(config), "--port", str(port)]
    command += ["--function", "echo=handlers.basic:echo"]
    process = subprocess.Popen(
        command,
        cwd=TESTS_DIR,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    statuses: list[int] = []
    try:
        for _attempt in range(2000):  # refused connections until the port listens, then answers
            assert process.poll() is None, "the server exited"
            with contextlib.suppress(httpx.TransportError):
                statuses.append(httpx.get(f"http://127.0.0.1:{port}/echo", timeout=30).status_code)
            if statuses and statuses[-1] == 200:
                break
            time.sleep(0.005)
    finally:
        os.killpg(process.pid, signal.SIGINT)
        # A graceful stop may take the shutdown grace (10 s) and more on a loaded machine; a stop
        # that hangs still fails here.
        process.wait(40)
    assert set(statuses) == {200}, statuses


# ------------------------------------------------------------------------------------------ descriptors


def _worker_pids(server) -> list[int]:
    """The Granian workers of a `portico serve` process: its Python children."""
    workers = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == server.process.pid:
                workers.append(int(entry))
    return workers


def _open_files_limit(pid: int) -> int:
    for line in Path(f"/proc/{pid}/limits").read_text().splitlines():
        if line.startswith("Max open files"):
            return int(line.split()[3])
    raise AssertionError(f"no open-files limit for {pid}")


@pytest.mark.skipif(not Path("/proc/self/limits").exists(), reason="needs /proc")
def test_the_open_files_limit_is_raised_and_said(portico):
    """Every connection a worker holds (a WebSocket client is one) is a descriptor. A soft
    RLIMIT_NOFILE of 1,024 (a common default) below the hard one is raised (Granian does it when
    it loads) and the start says the limit the workers have."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard <= 1024:
        pytest.skip(f"the hard limit ({hard}) leaves nothing to raise")
    resource.setrlimit(resource.RLIMIT_NOFILE, (1024, hard))
    try:
        server = portico(one_api([("GET /mock", mock("hi"))]))
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    workers = _worker_pids(server)
    assert workers
    for worker in workers:
        assert _open_files_limit(worker) == hard
    assert f"up to {hard:,} open files each" in server.log


@pytest.mark.skipif(not Path("/proc/self/fd").exists(), reason="needs /proc")
def test_a_worker_out_of_descriptors_says_so_and_serves_again(portico):
    """When accept() fails for want of descriptors, clients wait in the listen queue with nothing
    to show why: the edge says it once (with the limit), keeps serving what it holds, and accepts
    again (and says so) once connections close."""

    server = portico(one_api([("GET /mock", mock("hi"))]))
    [worker] = _worker_pids(server)
    assert httpx.get(server.url + "/mock", timeout=10).text == "hi"
    # A few descriptors to spare, then none: the held connections below take them.
    limit = len(os.listdir(f"/proc/{worker}/fd")) + 8
    hard = resource.prlimit(worker, resource.RLIMIT_NOFILE)[1]
    resource.prlimit(worker, resource.RLIMIT_NOFILE, (limit, hard))
    held = [socket.create_connection(("127.0.0.1", server.port), timeout=10) for _ in range(24)]
    try:
        deadline = time.monotonic() + 20
        while "cannot accept connections" not in server.log and time.monotonic() < deadline:
            time.sleep(0.05)
        log = server.log
        assert "cannot accept connections: Too many open files" in log, log
        assert f"this process's limit: {limit} open files" in log
        assert log.count("cannot accept connections") == 1  # once, not every 10 ms of retrying
    finally:
        for sock in held:
            sock.close()
    assert httpx.get(server.url + "/mock", timeout=20).text == "hi"
    deadline = time.monotonic() + 10
    while "accepting connections again" not in server.log and time.monotonic() < deadline:
        time.sleep(0.05)
    assert "accepting connections again after" in server.log
