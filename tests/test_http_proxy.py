"""HTTP_PROXY end to end: a real Portico process in front of a real upstream, over loopback sockets.

The upstream is an aiohttp server (plus a raw socket server for byte-exact responses) running in a
thread of the test process, on free ports. Every test runs once per front door (the edge and the
embedded app behind Granian).
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import trustme
from aiohttp import web

MB = 1024 * 1024
BODY_SIZE = 9 * MB
CHUNK = 64 * 1024


# ------------------------------------------------------------------------------------------ upstream


class Upstream:
    """An aiohttp server in a background thread; records what it received."""

    def __init__(self, ssl_context: ssl.SSLContext | None = None) -> None:
        self.ssl_context = ssl_context
        self.uploads: list[dict] = []
        # The path and query of every request `echo` answered, in order.
        self.echoed: list[str] = []
        self.loop = asyncio.new_event_loop()
        self.port = 0
        self._ready = threading.Event()
        self._runner: web.AppRunner | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("upstream did not start")

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_until_complete(self._start())
        self._ready.set()
        self.loop.run_forever()

    async def _start(self) -> None:
        app = web.Application(client_max_size=64 * MB)
        app.router.add_route("*", "/echo/{tail:.*}", self.echo)
        app.router.add_route("*", "/upload", self.upload)
        app.router.add_get("/download", self.download)
        app.router.add_get("/sleep", self.sleep)
        app.router.add_post("/reject", self.reject)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0, ssl_context=self.ssl_context)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    @property
    def url(self) -> str:
        if self.ssl_context is not None:
            return f"https://localhost:{self.port}"
        return f"http://127.0.0.1:{self.port}"

    async def echo(self, request: web.Request) -> web.Response:
        """Echoes the request; `?delay=S` answers S seconds late, `?status=N` with status N,
        `?count=1` with `n`, how many requests it echoed so far."""
        body = await request.read()
        self.echoed.append(request.raw_path)
        await asyncio.sleep(float(request.query.get("delay", "0")))
        data = {
            "method": request.method,
            "path_qs": request.raw_path,
            "headers": [[k.lower(), v] for k, v in request.headers.items()],
            "body": body.decode("latin-1"),
        }
        if "count" in request.query:
            data["n"] = len(self.echoed)
        return web.json_response(data, status=int(request.query.get("status", "200")))

    async def upload(self, request: web.Request) -> web.Response:
        """Counts and hashes the body as it arrives (never holds it)."""
        record = {
            "size": 0,
            "complete": False,
            "chunked": "chunked" in request.headers.get("transfer-encoding", ""),
        }
        record["content_length"] = request.headers.get("content-length")
        self.uploads.append(record)
        digest = hashlib.sha256()
        async for chunk in request.content.iter_any():
            record["size"] += len(chunk)
            digest.update(chunk)
        record["complete"] = True
        return web.json_response({"size": record["size"], "sha256": digest.hexdigest()})

    async def download(self, request: web.Request) -> web.StreamResponse:
        size = int(request.query["n"])
        resp = web.StreamResponse(headers={"content-type": "application/octet-stream"})
        if request.query.get("length") == "1":
            resp.content_length = size
        await resp.prepare(request)
        if request.method == "HEAD":
            # aiohttp would send the body anyway, which breaks the next response on the connection.
            await resp.write_eof()
            return resp
        block = _pattern(CHUNK)
        sent = 0
        while sent < size:
            part = block[: min(CHUNK, size - sent)]
            await resp.write(part)
            sent += len(part)
        await resp.write_eof()
        return resp

    async def reject(self, request: web.Request) -> web.Response:
        """Answers at once, without reading the body (as a server refusing an upload does)."""
        return web.json_response({"rejected": True}, status=413, headers={"connection": "close"})

    async def sleep(self, request: web.Request) -> web.Response:
        await asyncio.sleep(float(request.query.get("s", "3")))
        return web.json_response({"late": True})

    def stop(self) -> None:
        if self._runner is not None:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


class RawUpstream:
    """Answers every request on a connection with the same raw bytes (for exact response headers)."""

    def __init__(self, response: bytes) -> None:
        self.response = response
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _handle(self, conn: socket.socket) -> None:
        with conn:
            buf = b""
            while True:
                try:
                    data = conn.recv(65536)
                except OSError:
                    return
                if not data:
                    return
                buf += data
                while b"\r\n\r\n" in buf:
                    _, buf = buf.split(b"\r\n\r\n", 1)
                    conn.sendall(self.response)

    def stop(self) -> None:
        self.sock.close()


def _pattern(size: int) -> bytes:
    return (b"0123456789abcdef" * (size // 16 + 1))[:size]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def upstream() -> Iterator[Upstream]:
    server = Upstream()
    yield server
    server.stop()


@pytest.fixture(params=["edge", "embedded"])
def transport(request: pytest.FixtureRequest) -> str:
    """Which front door the request comes through: the edge (the default `portico serve`), or the
    embedded ASGI app served by Granian (`--no-edge`). The same expectations hold for both."""
    return request.param


@pytest.fixture
def portico(portico, transport: str):
    """conftest's `portico`, with `--no-edge` unless the edge is the proxy under test."""

    def start(config, *args, extra_args: list[str] | None = None, **kwargs):
        extra = [*(extra_args or []), *([] if transport == "edge" else ["--no-edge"])]
        return portico(config, *args, extra_args=extra, **kwargs)

    return start


def _config(
    integrations: dict, routes: list[tuple[str, str]], variables: dict | None = None, **settings
) -> dict:
    api = {
        "name": "proxy",
        "id": "proxy12345",
        "routes": [{"route": key, "integration": name} for key, name in routes],
        "integrations": integrations,
        "stages": [{"name": "$default", "variables": variables or {}}],
    }
    config: dict = {"apis": [api]}
    if settings:
        config["settings"] = settings
    return config


def _proxy(uri: str, **extra) -> dict:
    return {"type": "HTTP_PROXY", "uri": uri, "method": "ANY", "timeoutInMillis": 5000, **extra}


def _headers_of(echo: dict) -> dict[str, str]:
    out: dict[str, str] = {}
    for name, value in echo["headers"]:
        out[name] = f"{out[name]}, {value}" if name in out else value
    return out


# ------------------------------------------------------------------------------------------ request


def test_request_headers_path_and_query(portico, upstream: Upstream, transport: str) -> None:
    server = portico(
        _config({"backend": _proxy(f"{upstream.url}/echo/{{proxy}}")}, [("ANY /proxy/{proxy+}", "backend")])
    )
    headers = {
        "x-forwarded-for": "203.0.113.7, 198.51.100.2",
        "x-forwarded-proto": "https",
        "x-forwarded-host": "orig.example.com",
        "keep-alive": "timeout=5",
        "connection": "keep-alive, x-drop-me",
        "x-drop-me": "1",
        "proxy-authorization": "Basic Zm9vOmJhcg==",
        "x-custom": "kept",
        "user-agent": "test-client/1.0",
    }
    resp = httpx.post(
        server.url + "/proxy/a%2Fb/c d?x=1&y=%20z&x=2", headers=headers, content=b"hello", timeout=10
    )
    assert resp.status_code == 200, resp.text
    echo = resp.json()
    seen = _headers_of(echo)
    assert echo["method"] == "POST"
    # {proxy} substituted raw (percent-encoding preserved), the raw query forwarded as sent.
    assert echo["path_qs"] == "/echo/a%2Fb/c%20d?x=1&y=%20z&x=2"
    assert echo["body"] == "hello"
    assert seen["host"] == f"127.0.0.1:{upstream.port}"
    assert seen["x-custom"] == "kept"
    assert seen["user-agent"] == "test-client/1.0"
    assert seen["content-length"] == "5"
    for name in (
        "keep-alive",
        "x-drop-me",
        "proxy-authorization",
        "x-forwarded-for",
        "x-forwarded-proto",
        "x-forwarded-host",
        "transfer-encoding",
    ):
        assert name not in seen, name
    assert seen["via"] == "HTTP/1.1 AmazonAPIGateway"
    assert seen["forwarded"] == (
        "for=203.0.113.7;host=orig.example.com;proto=https, for=198.51.100.2, "
        f'by=127.0.0.1;for=127.0.0.1;host="127.0.0.1:{server.port}";proto=http'
    )
    assert re.fullmatch(r"Root=1-[0-9a-f]{8}-[0-9a-f]{24}", seen["x-amzn-trace-id"])
    epoch = int(seen["x-amzn-trace-id"][7:15], 16)
    assert abs(epoch - time.time()) < 300

    # A client's own trace id passes through; with no user agent, API Gateway's is sent.
    resp = httpx.get(
        server.url + "/proxy/x",
        headers={"x-amzn-trace-id": "Root=1-5759e988-bd862e3fe1be46a994272793", "user-agent": ""},
        timeout=10,
    )
    seen = _headers_of(resp.json())
    assert seen["x-amzn-trace-id"] == "Root=1-5759e988-bd862e3fe1be46a994272793"
    assert seen["forwarded"] == f'by=127.0.0.1;for=127.0.0.1;host="127.0.0.1:{server.port}";proto=http'
    assert "content-length" not in seen and "transfer-encoding" not in seen  # a GET without a body


def test_method_stage_variables_default_route_and_query_merge(
    portico, upstream: Upstream, transport: str
) -> None:
    integrations = {
        "fixed": _proxy(f"{upstream.url}/echo/fixed", method="PUT"),
        "staged": _proxy("http://127.0.0.1:${stageVariables.backendPort}/echo/${stageVariables.prefix}/{id}"),
        "query": _proxy(f"{upstream.url}/echo/q?fixed=1"),
        "fallback": _proxy(f"{upstream.url}/echo/base"),
    }
    routes = [
        ("GET /fixed", "fixed"),
        ("GET /items/{id}", "staged"),
        ("GET /query", "query"),
        ("$default", "fallback"),
    ]
    server = portico(_config(integrations, routes, {"backendPort": str(upstream.port), "prefix": "v1"}))

    echo = httpx.get(server.url + "/fixed", timeout=10).json()
    assert echo["method"] == "PUT"
    assert echo["path_qs"] == "/echo/fixed"

    echo = httpx.get(server.url + "/items/42%2B?a=b", timeout=10).json()
    assert echo["path_qs"] == "/echo/v1/42%2B?a=b"

    echo = httpx.get(server.url + "/query?c=d", timeout=10).json()
    assert echo["path_qs"] == "/echo/q?fixed=1&c=d"

    # $default: the whole request path is appended to the URI's.
    resp = httpx.delete(server.url + "/some/deep/path?k=v", timeout=10)
    assert resp.status_code == 200
    echo = resp.json()
    assert echo["method"] == "DELETE"
    assert echo["path_qs"] == "/echo/base/some/deep/path?k=v"


# ------------------------------------------------------------------------------------------ response


RAW_RESPONSE = (
    b"HTTP/1.1 201 Created\r\n"
    b"Content-Length: 2\r\n"
    b"Keep-Alive: timeout=5\r\n"
    b"Connection: keep-alive, x-hop\r\n"
    b"X-Hop: dropped\r\n"
    b"Upgrade: h2c\r\n"
    b"Proxy-Authenticate: Basic\r\n"
    b"Set-Cookie: a=1\r\n"
    b"Set-Cookie: b=2\r\n"
    b"X-Kept: yes\r\n"
    b"\r\n"
    b"ok"
)


def test_response_headers_filtered_and_content_type_added(portico, transport: str) -> None:
    raw = RawUpstream(RAW_RESPONSE)
    try:
        server = portico(_config({"raw": _proxy(f"http://127.0.0.1:{raw.port}/")}, [("GET /raw", "raw")]))
        resp = httpx.get(server.url + "/raw", timeout=10)
        assert resp.status_code == 201
        assert resp.content == b"ok"
        assert resp.headers["x-kept"] == "yes"
        assert resp.headers.get_list("set-cookie") == ["a=1", "b=2"]
        assert resp.headers["content-type"] == "application/json"  # the backend sent none
        assert resp.headers["content-length"] == "2"
        for name in ("keep-alive", "x-hop", "upgrade", "proxy-authenticate"):
            assert name not in resp.headers, name
    finally:
        raw.stop()


def test_head_keeps_content_length(portico, upstream: Upstream, transport: str) -> None:
    server = portico(_config({"dl": _proxy(f"{upstream.url}/download")}, [("ANY /download", "dl")]))
    resp = httpx.head(server.url + "/download?n=5000&length=1", timeout=10)
    assert resp.status_code == 200
    assert resp.headers["content-length"] == "5000"
    assert resp.content == b""


# ------------------------------------------------------------------------------------------ streaming


def _worker_pid(server) -> int:
    """The Granian worker serving requests: the Python child of the `portico serve` process."""
    main = server.process.pid
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == main:
                return int(entry)
    return main


def _memory_kb(pid: int) -> dict[str, int]:
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(("VmHWM", "VmRSS")):
            name, value = line.split(":")
            out[name] = int(value.split()[0])
    return out


def _upload_chunks(total: int) -> Iterator[bytes]:
    block = _pattern(CHUNK)
    sent = 0
    while sent < total:
        part = block[: min(CHUNK, total - sent)]
        sent += len(part)
        yield part


def test_bodies_near_the_limit_stream_both_ways(portico, upstream: Upstream, transport: str) -> None:
    integrations = {"up": _proxy(f"{upstream.url}/upload"), "down": _proxy(f"{upstream.url}/download")}
    server = portico(_config(integrations, [("POST /upload", "up"), ("GET /download", "down")]))
    expected = hashlib.sha256(_pattern_body(BODY_SIZE)).hexdigest()
    with httpx.Client(timeout=30) as client:
        # Chunked upload (a generator: the client never holds it whole either).
        resp = client.post(server.url + "/upload", content=_upload_chunks(BODY_SIZE))
        assert resp.status_code == 200, resp.text
        assert resp.json() == {"size": BODY_SIZE, "sha256": expected}
        assert upstream.uploads[-1]["chunked"]
        # Declared length: forwarded as is (the upstream gets Content-Length, not chunked).
        resp = client.post(server.url + "/upload", content=_pattern_body(BODY_SIZE))
        assert resp.status_code == 200, resp.text
        assert resp.json() == {"size": BODY_SIZE, "sha256": expected}
        assert upstream.uploads[-1]["content_length"] == str(BODY_SIZE)
        assert not upstream.uploads[-1]["chunked"]
        for length in ("1", "0"):
            size, digest = _download(client, server.url + f"/download?n={BODY_SIZE}&length={length}", length)
            assert size == BODY_SIZE
            assert digest == expected


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs /proc")
def test_bodies_are_never_held_whole(portico, upstream: Upstream, transport: str) -> None:
    """The worker's peak RSS grows by far less than one body, in both directions.

    Bodies of 64 MB (the payload limit is raised for this test) make the signal unmistakable: a
    gateway holding one body whole would lift its peak RSS by at least 64 MB, while allocator and
    pool warm-up of a streaming one stays within a few tens of MB whatever the body size.
    """
    big = 64 * MB
    integrations = {"up": _proxy(f"{upstream.url}/upload"), "down": _proxy(f"{upstream.url}/download")}
    server = portico(
        _config(integrations, [("POST /upload", "up"), ("GET /download", "down")], payloadLimitBytes=2 * big)
    )
    pid = _worker_pid(server)
    with httpx.Client(timeout=60) as client:
        # Warm every code path with small bodies first, so that imports and pools are not counted.
        client.post(server.url + "/upload", content=_upload_chunks(200_000))
        client.get(server.url + "/download?n=200000")
        before = _memory_kb(pid)
        resp = client.post(server.url + "/upload", content=_upload_chunks(big))
        assert resp.status_code == 200, resp.text
        assert resp.json()["size"] == big
        after_upload = _memory_kb(pid)
        size, _ = _download(client, server.url + f"/download?n={big}&length=1", "1")
        assert size == big
        after_download = _memory_kb(pid)
    up_kb = after_upload["VmHWM"] - before["VmRSS"]
    down_kb = after_download["VmHWM"] - after_upload["VmRSS"]
    limit_kb = big // 1024 // 2
    assert up_kb < limit_kb, f"upload: worker peak RSS grew by {up_kb} kB ({before} -> {after_upload})"
    assert down_kb < limit_kb, (
        f"download: worker peak RSS grew by {down_kb} kB ({after_upload} -> {after_download})"
    )


def _pattern_body(size: int) -> bytes:
    return b"".join(_upload_chunks(size))


def _download(client: httpx.Client, url: str, length: str) -> tuple[int, str]:
    digest = hashlib.sha256()
    size = 0
    with client.stream("GET", url) as resp:
        assert resp.status_code == 200
        if length == "1":
            assert resp.headers["content-length"] == url.split("n=")[1].split("&")[0]
        else:
            assert "content-length" not in resp.headers
        for chunk in resp.iter_raw():
            size += len(chunk)
            digest.update(chunk)
    return size, digest.hexdigest()


def test_upload_over_the_limit_is_413_and_never_completes_upstream(
    portico, upstream: Upstream, transport: str
) -> None:
    server = portico(
        _config({"up": _proxy(f"{upstream.url}/upload")}, [("POST /upload", "up")], payloadLimitBytes=MB)
    )
    known = len(upstream.uploads)
    with httpx.Client(timeout=30) as client:
        # Declared too large: refused before anything is sent upstream.
        resp = client.post(server.url + "/upload", content=b"x" * (2 * MB))
        assert resp.status_code == 413
        assert resp.json() == {"message": "Request Entity Too Large"}
        assert len(upstream.uploads) == known
        # Chunked: refused once the limit is passed; the upstream request is aborted mid-body.
        resp = client.post(server.url + "/upload", content=_upload_chunks(3 * MB))
        assert resp.status_code == 413
        assert resp.json() == {"message": "Request Entity Too Large"}
    time.sleep(0.3)
    for record in upstream.uploads[known:]:
        assert not record["complete"], record
        assert record["size"] <= MB
    # Just under the limit still passes.
    resp = httpx.post(server.url + "/upload", content=_upload_chunks(MB), timeout=30)
    assert resp.status_code == 200
    assert resp.json()["size"] == MB


def test_upstream_refusing_an_upload_early_is_passed_on(portico, upstream: Upstream, transport: str) -> None:
    server = portico(_config({"rej": _proxy(f"{upstream.url}/reject")}, [("POST /reject", "rej")]))
    with httpx.Client(timeout=30) as client:
        for content in (_upload_chunks(BODY_SIZE), _pattern_body(BODY_SIZE)):
            resp = client.post(server.url + "/reject", content=content)
            assert resp.status_code == 413, resp.text
            assert resp.json() == {"rejected": True}


# ------------------------------------------------------------------------------------------ failures


def test_timeout_is_503(portico, upstream: Upstream, transport: str) -> None:
    server = portico(
        _config({"slow": _proxy(f"{upstream.url}/sleep?s=3", timeoutInMillis=500)}, [("GET /slow", "slow")])
    )
    started = time.monotonic()
    resp = httpx.get(server.url + "/slow", timeout=10)
    elapsed = time.monotonic() - started
    assert resp.status_code == 503
    assert resp.json() == {"message": "Service Unavailable"}
    assert resp.headers["content-type"] == "application/json"
    assert 0.4 < elapsed < 2.5


def test_refused_connection_is_500(portico, transport: str) -> None:
    dead = _free_port()  # nothing listens there
    server = portico(
        _config(
            {"dead": _proxy(f"http://127.0.0.1:{dead}/x"), "dns": _proxy("http://no-such-host.invalid/x")},
            [("GET /dead", "dead"), ("GET /dns", "dns")],
        )
    )
    for path in ("/dead", "/dns"):
        resp = httpx.get(server.url + path, timeout=20)
        assert resp.status_code == 500, path
        assert resp.json() == {"message": "Internal Server Error"}


# ------------------------------------------------------------------------------------------ https and hosts


@pytest.fixture
def tls_upstream(tmp_path: Path) -> Iterator[tuple[Upstream, Path]]:
    """An upstream serving https with a certificate of a CA of the test's own (its PEM beside)."""
    ca = trustme.CA()
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost").configure_cert(context)
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    server = Upstream(ssl_context=context)
    yield server, ca_file
    server.stop()


def test_https_upstream_trusted_through_the_configured_ca(portico, tls_upstream, transport: str) -> None:
    upstream, ca_file = tls_upstream
    routes = [("ANY /tls/{proxy+}", "backend")]
    integrations = {"backend": _proxy(f"{upstream.url}/echo/{{proxy}}")}
    server = portico(_config(integrations, routes, upstreamCaFile=str(ca_file)))
    response = httpx.get(server.url + "/tls/over?q=1", timeout=10)
    assert response.status_code == 200, response.text
    assert response.json()["path_qs"] == "/echo/over?q=1"
    # Without that CA the system's roots apply: the upstream's certificate is refused (AWS's 500).
    untrusted = portico(_config(integrations, routes))
    refused = httpx.get(untrusted.url + "/tls/over", timeout=10)
    assert (refused.status_code, refused.json()) == (500, {"message": "Internal Server Error"})


def test_host_taken_from_a_path_parameter(portico, upstream: Upstream, transport: str) -> None:
    server = portico(
        _config({"any": _proxy("http://{host}/echo/{proxy}")}, [("ANY /to/{host}/{proxy+}", "any")])
    )
    response = httpx.get(f"{server.url}/to/127.0.0.1:{upstream.port}/a%2Fb/c?x=1", timeout=10)
    assert response.status_code == 200, response.text
    assert response.json()["path_qs"] == "/echo/a%2Fb/c?x=1"


def test_an_upstream_that_stalls_mid_body_is_cut(portico, upstream: Upstream, transport: str) -> None:
    """The integration timeout also bounds each read of the upstream's body: once the head is sent
    the status cannot change, so the client's connection is closed short of the declared length,
    and the gateway keeps serving."""
    stalling = RawUpstream(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n" + b"x" * 10)
    try:
        server = portico(
            _config(
                {
                    "stall": _proxy(f"http://127.0.0.1:{stalling.port}/", timeoutInMillis=500),
                    "echo": _proxy(f"{upstream.url}/echo/"),
                },
                [("GET /stall", "stall"), ("GET /echo", "echo")],
            )
        )
        started = time.monotonic()
        with (
            pytest.raises(httpx.RemoteProtocolError),
            httpx.stream("GET", server.url + "/stall", timeout=10) as resp,
        ):
            assert resp.status_code == 200
            resp.read()
        assert time.monotonic() - started < 5
        assert httpx.get(server.url + "/echo", timeout=10).status_code == 200
    finally:
        stalling.stop()
