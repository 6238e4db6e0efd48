"""Response streaming (`responseTransferMode: STREAM`), end to end through both front doors.

REST APIs' proxy integrations may stream ("Stream the integration response for your proxy
integrations in API Gateway"): a Lambda handler that is a generator (or an async generator, or
returns one) sends its metadata, then its body chunk by chunk; an `HTTP_PROXY` upstream's body is
passed on as it comes, within the stream's limits. Real HTTP clients read the answers chunk by
chunk: the first chunk arrives while the handler still waits for the test (they synchronise
through files, the server being another process; see `handlers/streaming.py`), a client that goes
away stops the generator, a slow one holds it back, a failure mid-stream aborts the connection.
The same requests go to the edge (`portico serve`) and to the embedded ASGI app (`--no-edge`)."""

from __future__ import annotations

import hashlib
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import yaml
from botocore.exceptions import ClientError

from admin_e2e import REGION, lambda_arn, start_admin_server, wait_for
from conftest import Server, start_server
from portico.config.loader import ConfigFileError, parse_config

API = "streams"
HOST = {"host": f"{API}.execute-api.localhost"}
LOG_FORMAT = (
    "$context.requestId $context.status $context.responseLength $context.integration.responseTransferMode"
)
FUNCTIONS = {
    name: f"handlers.streaming:{name}"
    for name in (
        "gated",
        "async_gated",
        "returns_async_generator",
        "endless",
        "fails_midway",
        "fails_first",
        "no_metadata",
        "bad_chunk",
        "big",
        "invocation",
        "streamed_invocation",
    )
}


class GatedUpstream:
    """An HTTP upstream that streams: on `/gated/KEY` it sends its head and a first chunk, then
    the rest once the test calls `release(KEY)`; on `/trickle` a chunk every 50 ms, forever."""

    def __init__(self) -> None:
        self.gates: dict[str, threading.Event] = {}
        self.lock = threading.Lock()
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        threading.Thread(target=self._serve, daemon=True).start()

    def gate(self, key: str) -> threading.Event:
        with self.lock:
            return self.gates.setdefault(key, threading.Event())

    def release(self, key: str) -> None:
        self.gate(key).set()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _handle(self, conn: socket.socket) -> None:
        with conn:
            request = b""
            while b"\r\n\r\n" not in request:
                data = conn.recv(65536)
                if not data:
                    return
                request += data
            path = request.split(b" ", 2)[1].decode()
            head = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n"
            try:
                conn.sendall(head + _chunk(b"upstream first\n"))
                if path.startswith("/gated/"):
                    self.gate(path.removeprefix("/gated/")).wait(60)
                    conn.sendall(_chunk(b"upstream second\n") + b"0\r\n\r\n")
                else:
                    while True:
                        time.sleep(0.05)
                        conn.sendall(_chunk(b"tick\n"))
            except OSError:
                return

    def stop(self) -> None:
        self.sock.close()


def _chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


def _config(upstream: str, log_file: Path) -> dict:
    def stream(uri: str, **more: object) -> dict:
        return {"type": "AWS_PROXY", "uri": uri, "responseTransferMode": "STREAM", **more}

    routes = {
        "GET /gated": stream("gated"),
        "GET /async-gated": stream("async_gated"),
        "GET /returned": stream("returns_async_generator"),
        "GET /endless": stream("endless"),
        "GET /fails-midway": stream("fails_midway"),
        "GET /fails-first": stream("fails_first"),
        "GET /no-metadata": stream("no_metadata"),
        "GET /bad-chunk": stream("bad_chunk"),
        "GET /big": stream("big"),
        "GET /dict": stream("invocation"),
        "GET /timeout": stream("endless", timeoutInMillis=1000),
        "GET /buffered-generator": {"type": "AWS_PROXY", "uri": "gated"},
        "GET /cached": {"type": "AWS_PROXY", "uri": "invocation"},
        "GET /cached-stream": stream("streamed_invocation"),
        "GET /proxy/{key}": {
            "type": "HTTP_PROXY",
            "uri": f"{upstream}/gated/{{key}}",
            "responseTransferMode": "STREAM",
        },
        "GET /trickle": {
            "type": "HTTP_PROXY",
            "uri": f"{upstream}/trickle",
            "responseTransferMode": "STREAM",
            "timeoutInMillis": 1000,
        },
    }
    return {
        "functions": FUNCTIONS,
        "settings": {"accessLog": {"format": LOG_FORMAT, "destination": str(log_file)}},
        "apis": [
            {
                "name": "streaming",
                "id": API,
                "protocolType": "REST",
                "routes": [{"routeKey": key, "integration": value} for key, value in routes.items()],
                "stages": [
                    {
                        "stageName": "prod",
                        "cacheClusterEnabled": True,
                        "methodSettings": {"*/*": {"cachingEnabled": True, "cacheTtlInSeconds": 300}},
                    }
                ],
            }
        ],
    }


@dataclass
class Door:
    server: Server
    log_file: Path
    upstream: GatedUpstream

    def url(self, path: str) -> str:
        return f"{self.server.url}/prod{path}"


@pytest.fixture(scope="module")
def upstream() -> Iterator[GatedUpstream]:
    up = GatedUpstream()
    yield up
    up.stop()


@pytest.fixture(scope="module", params=["edge", "embedded"])
def door(request, upstream: GatedUpstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Door]:
    workdir = tmp_path_factory.mktemp(request.param)
    log_file = workdir / "access.log"
    path = workdir / "streaming.yaml"
    path.write_text(yaml.safe_dump(_config(upstream.url, log_file), sort_keys=False))
    extra = [] if request.param == "edge" else ["--no-edge"]
    server = start_server(path, workdir, extra_args=extra)
    yield Door(server, log_file, upstream)
    server.stop()


@pytest.fixture
def folder(tmp_path: Path) -> dict[str, str]:
    """Where a handler and the test meet (the `x-dir` header), with the API's Host."""
    return {**HOST, "x-dir": str(tmp_path)}


def _wait_file(path: Path, timeout: float = 30) -> str:
    text, _ = wait_for(lambda: path.exists() and path.read_text(), timeout=timeout)
    return text


def _log_line(door: Door, request_id: str) -> list[str] | None:
    for line in door.log_file.read_text().splitlines() if door.log_file.exists() else []:
        if line.startswith(request_id + " "):
            return line.split(" ")[1:]
    return None


@pytest.mark.parametrize("path", ["/gated", "/async-gated"])
def test_the_first_chunk_arrives_while_the_handler_still_runs(door: Door, folder, path: str) -> None:
    tmp = Path(folder["x-dir"])
    with httpx.Client(timeout=30) as client, client.stream("GET", door.url(path), headers=folder) as response:
        assert response.status_code == 200
        assert response.headers["content-type"] == "text/plain"
        assert response.headers["x-streamed"] == "yes"
        assert response.headers.get_list("set-cookie") == ["a=1", "b=2"]
        assert response.headers["transfer-encoding"] == "chunked"
        request_id = response.headers["x-amzn-requestid"]
        chunks = response.iter_raw()
        assert next(chunks) == b"first chunk\n"
        # The handler is still waiting for the test: nothing of its end has happened or been logged.
        assert not (tmp / "finished").exists()
        assert _log_line(door, request_id) is None
        (tmp / "release").write_text("go")
        assert b"".join(chunks) == b"second chunk\n"
    assert _wait_file(tmp / "finished") == "yes"
    # The access log records the stream once it has ended, with what it sent.
    line, _ = wait_for(lambda: _log_line(door, request_id))
    assert line == ["200", str(len("first chunk\nsecond chunk\n")), "STREAMED"]


def test_a_handler_that_returns_a_generator_streams(door: Door, folder) -> None:
    response = httpx.get(door.url("/returned"), headers=folder, timeout=30)
    assert (response.status_code, response.text) == (202, "from a returned generator")
    assert response.headers["content-type"] == "application/json"  # API Gateway's default


def test_a_client_that_leaves_stops_the_generator(door: Door, folder) -> None:
    tmp = Path(folder["x-dir"])
    with (
        httpx.Client(timeout=30) as client,
        client.stream("GET", door.url("/endless"), headers=folder) as response,
    ):
        assert response.status_code == 200
        assert next(response.iter_raw()) == b"data: first\n\n"
    # The client has closed its connection; the handler goes on, then finds nobody listening.
    (tmp / "release").write_text("go")
    assert _wait_file(tmp / "closed").startswith("GeneratorExit after ")


def test_a_slow_client_holds_the_handler_back(door: Door, folder) -> None:
    """The handler yields 64 KiB chunks forever; a client that stops reading stops it, with a
    bounded amount in between (the hand-off's 1 MiB, the server's and the kernel's socket
    buffers: about 6 MB measured through either door), where an unbounded hand-off would take
    all the handler produces."""
    tmp = Path(folder["x-dir"])
    with socket.socket() as sock:
        # A small receive window: the client's side holds little.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
        sock.settimeout(30)
        sock.connect(("127.0.0.1", door.server.port))
        headers = "".join(f"{k}: {v}\r\n" for k, v in folder.items())
        sock.sendall(f"GET /prod/big?n={1 << 40} HTTP/1.1\r\n{headers}\r\n".encode())
        assert sock.recv(1024).startswith(b"HTTP/1.1 200")
        # The client reads no more: the handler's progress stops.
        produced = _settled(lambda: _produced(tmp))
        assert 0 < produced < 24 * 1024 * 1024, produced


def _produced(tmp: Path) -> int:
    path = tmp / "produced"
    return int(path.read_text() or 0) if path.exists() else 0


def _settled(read, quiet: float = 1.0, timeout: float = 60) -> int:
    """The value `read` stops changing at (unchanged for `quiet` seconds)."""
    deadline = time.monotonic() + timeout
    last, since = read(), time.monotonic()
    while time.monotonic() < deadline:
        time.sleep(0.05)
        now = read()
        if now != last:
            last, since = now, time.monotonic()
        elif time.monotonic() - since >= quiet and now:
            return now
    raise AssertionError(f"still changing after {timeout} s: {last}")


def test_a_large_stream_arrives_whole(door: Door, folder) -> None:
    size = 3 * 1024 * 1024 + 5
    expected = hashlib.sha256((bytes(range(256)) * 256 * 49)[:size]).hexdigest()
    digest, received = hashlib.sha256(), 0
    with httpx.stream("GET", door.url(f"/big?n={size}"), headers=folder, timeout=30) as response:
        assert response.headers["content-type"] == "application/octet-stream"
        for chunk in response.iter_raw():
            digest.update(chunk)
            received += len(chunk)
    assert (received, digest.hexdigest()) == (size, expected)


@pytest.mark.parametrize("path", ["/fails-midway", "/bad-chunk"])
def test_a_failure_mid_stream_aborts_the_connection(door: Door, folder, path: str) -> None:
    """The status line is gone: the client sees the body cut short (an incomplete chunked
    encoding), never a whole one, and the gateway keeps serving."""
    received = b""
    with (
        pytest.raises(httpx.RemoteProtocolError),
        httpx.stream("GET", door.url(path), headers=folder, timeout=30) as r,
    ):
        assert r.status_code == 200
        for chunk in r.iter_raw():
            received += chunk
    assert received in (b"", b"part of the body\n")
    assert httpx.get(door.url("/dict"), headers=folder, timeout=30).status_code == 200


@pytest.mark.parametrize(
    ("path", "why"),
    [
        ("/fails-first", "raised RuntimeError: failed before its metadata"),
        ("/no-metadata", "a streaming handler's first item is its metadata"),
        ("/buffered-generator", "Runtime.MarshalError"),
    ],
)
def test_a_stream_that_fails_before_its_metadata_is_a_502(door: Door, folder, path: str, why: str) -> None:
    """Before the metadata nothing is sent: API Gateway's 502 for a failed or malformed Lambda
    proxy answer. A BUFFERED integration cannot stream: a generator is a result Lambda's Python
    runtime cannot serialize."""
    response = httpx.get(door.url(path), headers=folder, timeout=30)
    assert response.status_code == 502
    assert response.json() == {"message": "Internal server error"}
    assert response.headers["x-amzn-requestid"]
    wait_for(lambda: why in door.server.log)


def test_a_handler_that_returns_a_dict_answers_as_buffered(door: Door, folder) -> None:
    first = httpx.get(door.url("/dict"), headers=folder, timeout=30)
    assert first.status_code == 200
    assert first.headers["content-length"] == str(len(first.text))


def test_a_streamed_answer_is_never_cached(door: Door, folder) -> None:
    cached = [httpx.get(door.url("/cached"), headers=folder, timeout=30) for _ in range(2)]
    assert cached[0].text == cached[1].text  # the stage caches GET answers...
    streamed = [httpx.get(door.url("/cached-stream"), headers=folder, timeout=30) for _ in range(2)]
    assert streamed[0].text != streamed[1].text  # ...but not a streaming integration's
    # `$context.integration.responseTransferMode` tells them apart.
    line, _ = wait_for(lambda: _log_line(door, cached[0].headers["x-amzn-requestid"]))
    assert line[-1] == "BUFFERED"
    line, _ = wait_for(lambda: _log_line(door, streamed[0].headers["x-amzn-requestid"]))
    assert line[-1] == "STREAMED"


def test_plugins_on_response_hooks_leave_streamed_answers_alone(
    upstream: GatedUpstream, tmp_path: Path, folder
) -> None:
    """An `on_response` hook needs the whole answer: a streamed one is passed on without it (as
    API Gateway applies no feature that buffers the response to a streamed one)."""
    path = tmp_path / "plugged.yaml"
    path.write_text(yaml.safe_dump(_config(upstream.url, tmp_path / "access.log"), sort_keys=False))
    server = start_server(path, tmp_path, extra_args=["--plugin", "handlers.plugins:PoweredBy"])
    try:
        buffered = httpx.get(f"{server.url}/prod/cached", headers=folder, timeout=30)
        assert buffered.headers["x-powered-by"] == "portico/GET /cached"
        with httpx.stream("GET", f"{server.url}/prod/gated", headers=folder, timeout=30) as response:
            assert "x-powered-by" not in response.headers
            chunks = response.iter_raw()
            assert next(chunks) == b"first chunk\n"
            (tmp_path / "release").write_text("go")
            assert b"".join(chunks) == b"second chunk\n"
    finally:
        server.stop()


def test_a_stream_is_cut_at_its_integration_timeout(door: Door, folder) -> None:
    tmp = Path(folder["x-dir"])
    with (
        pytest.raises(httpx.RemoteProtocolError),
        httpx.stream("GET", door.url("/timeout"), headers=folder, timeout=30) as r,
    ):
        assert r.status_code == 200
        chunks = r.iter_raw()
        assert next(chunks) == b"data: first\n\n"
        for _ in chunks:
            pass
    # Cut by the gateway: the handler, once it goes on, finds its stream gone.
    (tmp / "release").write_text("go")
    assert _wait_file(tmp / "closed").startswith("GeneratorExit")


def test_an_http_proxy_streams_the_upstream_as_it_comes(door: Door, folder) -> None:
    key = f"{door.server.port}-gated"
    with httpx.stream("GET", door.url(f"/proxy/{key}"), headers=folder, timeout=30) as response:
        assert response.status_code == 200
        chunks = response.iter_raw()
        assert next(chunks) == b"upstream first\n"
        door.upstream.release(key)
        assert b"".join(chunks) == b"upstream second\n"


def test_an_http_proxy_stream_is_cut_at_its_timeout_though_never_idle(door: Door, folder) -> None:
    """Streaming holds the whole response to `timeoutInMillis` (each read of a buffered one
    only): an upstream that trickles forever is cut."""
    received = b""
    with (
        pytest.raises(httpx.RemoteProtocolError),
        httpx.stream("GET", door.url("/trickle"), headers=folder, timeout=30) as r,
    ):
        assert r.status_code == 200
        for chunk in r.iter_raw():
            received += chunk
    assert received.startswith(b"upstream first\ntick\n")


# ------------------------------------------------------------------------------------------ boto3


def _streaming_uri(name: str) -> str:
    return (
        f"arn:aws:apigateway:{REGION}:lambda:path/2021-11-15/functions/{lambda_arn(name)}"
        "/response-streaming-invocations"
    )


def test_response_transfer_mode_through_boto3(portico, tmp_path: Path) -> None:
    admin = start_admin_server(portico, tmp_path, functions={"gated": FUNCTIONS["gated"]})
    apigw = admin.client("apigateway")
    api = apigw.create_rest_api(name="streaming")
    api_id = api["id"]
    resource = apigw.create_resource(restApiId=api_id, parentId=api["rootResourceId"], pathPart="stream")
    where = {"restApiId": api_id, "resourceId": resource["id"], "httpMethod": "GET"}
    apigw.put_method(**where, authorizationType="NONE")

    def put(**integration) -> dict:
        return apigw.put_integration(**where, integrationHttpMethod="POST", **integration)

    # Only proxy integrations stream; a buffered one keeps the 29 s ceiling (300 s raised).
    for refused in (
        {"type": "MOCK", "responseTransferMode": "STREAM"},
        {"type": "AWS_PROXY", "uri": _streaming_uri("gated"), "timeoutInMillis": 900_000},
        {
            "type": "AWS_PROXY",
            "uri": _streaming_uri("gated"),
            "responseTransferMode": "STREAM",
            "timeoutInMillis": 900_001,
        },
    ):
        with pytest.raises(ClientError) as refusal:
            put(**refused)
        assert refusal.value.response["Error"]["Code"] == "BadRequestException", refused

    made = put(
        type="AWS_PROXY", uri=_streaming_uri("gated"), responseTransferMode="STREAM", timeoutInMillis=900_000
    )
    assert (made["responseTransferMode"], made["timeoutInMillis"]) == ("STREAM", 900_000)
    got = apigw.get_integration(**where)
    assert (got["responseTransferMode"], got["timeoutInMillis"], got["uri"]) == (
        "STREAM",
        900_000,
        _streaming_uri("gated"),
    )

    # Back to buffered needs a buffered timeout; then streaming again.
    to_buffered = [{"op": "replace", "path": "/responseTransferMode", "value": "BUFFERED"}]
    with pytest.raises(ClientError):
        apigw.update_integration(**where, patchOperations=to_buffered)
    timeout = [{"op": "replace", "path": "/timeoutInMillis", "value": "29000"}]
    updated = apigw.update_integration(**where, patchOperations=timeout + to_buffered)
    assert updated["responseTransferMode"] == "BUFFERED"
    to_stream = [{"op": "replace", "path": "/responseTransferMode", "value": "STREAM"}]
    assert apigw.update_integration(**where, patchOperations=to_stream)["responseTransferMode"] == "STREAM"

    ping = apigw.create_resource(restApiId=api_id, parentId=api["rootResourceId"], pathPart="ping")
    apigw.put_method(restApiId=api_id, resourceId=ping["id"], httpMethod="GET", authorizationType="NONE")
    apigw.put_integration(
        restApiId=api_id,
        resourceId=ping["id"],
        httpMethod="GET",
        type="MOCK",
        requestTemplates={"application/json": '{"statusCode": 200}'},
    )
    apigw.put_method_response(restApiId=api_id, resourceId=ping["id"], httpMethod="GET", statusCode="200")
    apigw.put_integration_response(
        restApiId=api_id, resourceId=ping["id"], httpMethod="GET", statusCode="200"
    )
    apigw.create_deployment(restApiId=api_id, stageName="prod")
    headers = {"host": admin.host(api_id), "x-dir": str(tmp_path)}
    url = admin.url + "/prod/stream"
    wait_for(lambda: httpx.get(admin.url + "/prod/ping", headers=headers).status_code == 200)
    with httpx.stream("GET", url, headers=headers, timeout=30) as response:
        assert response.status_code == 200, response.read()
        chunks = response.iter_raw()
        assert next(chunks) == b"first chunk\n"
        assert not (tmp_path / "finished").exists()
        (tmp_path / "release").write_text("go")
        assert b"".join(chunks) == b"second chunk\n"

    # An OpenAPI import carries it too (x-amazon-apigateway-integration.responseTransferMode).
    document = {
        "openapi": "3.0.1",
        "info": {"title": "imported", "version": "1"},
        "paths": {
            "/stream": {
                "get": {
                    "x-amazon-apigateway-integration": {
                        "type": "http_proxy",
                        "httpMethod": "GET",
                        "uri": "https://example.com",
                        "responseTransferMode": "STREAM",
                    }
                }
            }
        },
    }
    imported = apigw.import_rest_api(body=yaml.safe_dump(document).encode())
    resources = apigw.get_resources(restApiId=imported["id"])["items"]
    stream_id = next(r["id"] for r in resources if r["path"] == "/stream")
    integration = apigw.get_integration(restApiId=imported["id"], resourceId=stream_id, httpMethod="GET")
    assert integration["responseTransferMode"] == "STREAM"
    apigw.create_deployment(restApiId=imported["id"], stageName="prod")
    exported = apigw.get_export(
        restApiId=imported["id"],
        stageName="prod",
        exportType="oas30",
        parameters={"extensions": "apigateway"},
    )
    assert b"responseTransferMode" in exported["body"].read()


# ------------------------------------------------------------------------------------------ config


@pytest.mark.parametrize(
    ("integration", "protocol", "why"),
    [
        (
            {"type": "MOCK", "statusCode": 200, "responseTransferMode": "STREAM"},
            "REST",
            "only AWS_PROXY and HTTP_PROXY",
        ),
        ({"type": "AWS_PROXY", "uri": "gated", "responseTransferMode": "STREAM"}, "HTTP", "REST APIs'"),
        ({"type": "AWS_PROXY", "uri": "gated", "timeoutInMillis": 60000}, "REST", "at most 30000"),
        (
            {
                "type": "AWS_PROXY",
                "uri": "gated",
                "responseTransferMode": "STREAM",
                "timeoutInMillis": 900001,
            },
            "REST",
            "less than or equal to 900000",
        ),
    ],
)
def test_the_config_file_allows_streaming_where_aws_does(integration: dict, protocol: str, why: str) -> None:
    api = {
        "name": "a",
        "protocolType": protocol,
        "routes": [{"routeKey": "GET /s", "integration": integration}],
    }
    if protocol == "REST":
        api["stages"] = [{"stageName": "prod"}]
    with pytest.raises(ConfigFileError, match=why):
        parse_config(yaml.safe_dump({"apis": [api]}))
    fine = {**integration, "responseTransferMode": "STREAM", "timeoutInMillis": 900000}
    if fine["type"] != "MOCK" and protocol == "REST":
        parse_config(
            yaml.safe_dump({"apis": [{**api, "routes": [{"routeKey": "GET /s", "integration": fine}]}]})
        )
