"""The native upstream client (`portico.integrations.upstream`) against real servers on loopback.

Every server here is an asyncio server on a free 127.0.0.1 port in the test's own event loop, scripted
per test to answer byte for byte. Network tests run once on plain asyncio and once on uvloop.
"""

from __future__ import annotations

import asyncio
import datetime
import hashlib
import ipaddress
import socket
import ssl
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

import pytest
import uvloop
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from portico._core import parse_response_head
from portico.dataplane.errors import ErrorType, GatewayError
from portico.integrations import upstream as up
from portico.integrations.upstream import MAX_HEAD, READ_HIGH, ChunkedDecoder, NativeTransport

MB = 1024 * 1024


@pytest.fixture(params=["asyncio", "uvloop"])
def run(request: pytest.FixtureRequest) -> Callable[[Awaitable[None]], None]:
    """Runs a coroutine to completion on a fresh loop of the parametrised kind."""

    async def guarded(coro: Awaitable[None]) -> None:
        await asyncio.wait_for(coro, 60)  # a hang fails the test instead of the run

    def runner(coro: Awaitable[None]) -> None:
        if request.param == "uvloop":
            uvloop.run(guarded(coro))
        else:
            asyncio.run(guarded(coro))

    return runner


# ------------------------------------------------------------------------------------------ servers


@dataclass
class Request:
    method: str
    target: str
    headers: list[tuple[str, str]]
    body: bytes
    chunked: bool

    def header(self, name: str) -> str | None:
        for key, value in self.headers:
            if key == name:
                return value
        return None


async def read_request(reader: asyncio.StreamReader) -> Request | None:
    """One request off the connection (None at EOF)."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except (asyncio.IncompleteReadError, ConnectionError):
        return None
    lines = head[:-4].decode("latin-1").split("\r\n")
    method, target, version = lines[0].split(" ")
    assert version == "HTTP/1.1"
    headers = []
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers.append((name.lower(), value.strip()))
    names = dict(headers)
    body = b""
    chunked = False
    if names.get("transfer-encoding") == "chunked":
        chunked = True
        parts = []
        while True:
            size = int((await reader.readline()).split(b";")[0], 16)
            data = await reader.readexactly(size + 2)
            if size == 0:
                break
            parts.append(data[:-2])
        body = b"".join(parts)
    elif "content-length" in names:
        body = await reader.readexactly(int(names["content-length"]))
    return Request(method, target, headers, body, chunked)


def response(status: int = 200, body: bytes = b"", headers: list[tuple[str, str]] | None = None) -> bytes:
    head = [f"HTTP/1.1 {status} X"]
    head += [f"{name}: {value}" for name, value in headers or []]
    if headers is None or not any(n.lower() in ("content-length", "transfer-encoding") for n, _ in headers):
        head.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body


Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter, "Server"], Awaitable[None]]


@dataclass
class Server:
    """A scripted upstream: `handler(reader, writer, server)` runs once per connection."""

    handler: Handler
    tls: ssl.SSLContext | None = None
    connections: int = 0
    requests: list[Request] = field(default_factory=list)
    port: int = 0
    server: asyncio.Server | None = None
    stalled_at: int = 0

    async def __aenter__(self) -> Server:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0, ssl=self.tls)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.close()
        # Connections the client still pools would keep wait_closed() waiting on Python >= 3.12.
        await asyncio.sleep(0)

    def url(self, path: str = "/") -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}{path}"

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            await self.handler(reader, writer, self)
        except (ConnectionError, asyncio.IncompleteReadError, ssl.SSLError):
            pass
        finally:
            writer.close()


def serve_each(answer: Callable[[Request, int], bytes | None]) -> Handler:
    """A keep-alive handler: `answer(request, index on this connection)` gives the response bytes;
    None closes the connection without answering."""

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, server: Server) -> None:
        index = 0
        while True:
            request = await read_request(reader)
            if request is None:
                return
            server.requests.append(request)
            data = answer(request, index)
            index += 1
            if data is None:
                return
            writer.write(data)
            await writer.drain()

    return handler


def ok(body: bytes = b"ok", headers: list[tuple[str, str]] | None = None) -> Handler:
    return serve_each(lambda request, index: response(200, body, headers))


def pool_of(transport: NativeTransport, port: int) -> up._Pool:
    return transport._pools[("http", "127.0.0.1", port)]


async def fails(coro: Awaitable[object], kind: ErrorType) -> GatewayError:
    with pytest.raises(GatewayError) as info:
        await coro
    assert info.value.error_type is kind, info.value
    return info.value


# ------------------------------------------------------------------------------------------ keep-alive


def test_keep_alive_reuses_one_connection(run) -> None:
    async def main() -> None:
        async with Server(ok(b"hello", [("Content-Length", "5"), ("X-Up", "1")])) as server:
            transport = NativeTransport()
            for _ in range(5):
                resp = await transport.send("GET", server.url("/a?b=1"), [("x-req", "v")], None, 5)
                assert resp.status == 200
                assert resp.headers == [("content-length", "5"), ("x-up", "1")]
                assert await resp.read() == b"hello"
            assert server.connections == 1
            request = server.requests[0]
            assert (request.method, request.target) == ("GET", "/a?b=1")
            assert request.headers == [("host", f"127.0.0.1:{server.port}"), ("x-req", "v")]
            assert len(pool_of(transport, server.port).idle) == 1
            await transport.close()

    run(main())


def test_concurrent_requests_and_bounded_idle_list(run) -> None:
    async def slow(reader, writer, server) -> None:
        while (request := await read_request(reader)) is not None:
            await asyncio.sleep(0.05)
            writer.write(response(200, request.target.encode()))

    async def main() -> None:
        async with Server(slow) as server:
            transport = NativeTransport(max_idle=3)

            async def one(i: int) -> bytes:
                resp = await transport.send("GET", server.url(f"/{i}"), [], None, 5)
                return await resp.read()

            bodies = await asyncio.gather(*(one(i) for i in range(8)))
            assert bodies == [f"/{i}".encode() for i in range(8)]
            assert server.connections == 8
            idle = pool_of(transport, server.port).idle
            assert len(idle) == 3
            # LIFO: the most recently released connection goes out first.
            last = idle[-1]
            resp = await transport.send("GET", server.url("/x"), [], None, 5)
            await resp.read()
            assert idle[-1] is last
            assert server.connections == 8
            await transport.close()

    run(main())


def test_connection_close_and_http10_are_not_reused(run) -> None:
    answers = [
        response(200, b"a", [("Connection", "close"), ("Content-Length", "1")]),
        b"HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\nb",
        b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 1\r\n\r\nc",
        b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nd",
    ]

    async def main() -> None:
        async with Server(serve_each(lambda r, i: answers[int(r.target[1:])])) as server:
            transport = NativeTransport()
            pool = None
            for i, expected in enumerate([b"a", b"b", b"c", b"d"]):
                resp = await transport.send("GET", server.url(f"/{i}"), [], None, 5)
                assert await resp.read() == expected
                pool = pool_of(transport, server.port)
                assert len(pool.idle) == (1 if i >= 2 else 0), i
            await asyncio.sleep(0.05)
            assert server.connections == 3  # HTTP/1.0 with keep-alive was reused once
            await transport.close()

    run(main())


def test_idle_connections_closed_by_the_server_leave_the_pool(run) -> None:
    async def once_then_close(reader, writer, server) -> None:
        request = await read_request(reader)
        assert request is not None
        writer.write(response(200, b"x"))
        await writer.drain()
        await asyncio.sleep(0.02)  # the upstream's keep-alive timeout

    async def main() -> None:
        async with Server(once_then_close) as server:
            transport = NativeTransport()
            resp = await transport.send("GET", server.url(), [], None, 5)
            await resp.read()
            assert len(pool_of(transport, server.port).idle) == 1
            await asyncio.sleep(0.2)
            assert pool_of(transport, server.port).idle == []
            resp = await transport.send("POST", server.url(), [], b"body", 5)
            assert await resp.read() == b"x"
            assert server.connections == 2
            await transport.close()

    run(main())


def test_idle_timeout_expires_pooled_connections(run) -> None:
    async def main() -> None:
        async with Server(ok()) as server:
            transport = NativeTransport(idle_timeout=0.05)
            await (await transport.send("GET", server.url(), [], None, 5)).read()
            await asyncio.sleep(0.15)
            await (await transport.send("GET", server.url(), [], None, 5)).read()
            assert server.connections == 2
            await transport.close()

    run(main())


# ------------------------------------------------------------------------------------------ stale retry


def _stale_after_first(request: Request, index: int) -> bytes | None:
    """Answers the first request of each connection; later ones meet a closed connection."""
    return response(200, b"fresh") if index == 0 else None


@pytest.mark.parametrize(
    ("method", "headers", "retried"),
    [
        ("GET", [], True),
        ("PUT", [], True),
        ("DELETE", [], True),
        ("POST", [("idempotency-key", "k1")], True),
        ("POST", [], False),
        ("PATCH", [], False),
    ],
)
def test_stale_pooled_connection_is_retried_once_when_safe(run, method, headers, retried) -> None:
    async def main() -> None:
        async with Server(serve_each(_stale_after_first)) as server:
            transport = NativeTransport()
            await (await transport.send("GET", server.url(), [], None, 5)).read()
            # The pooled connection is closed by the server when the next request arrives.
            send = transport.send(method, server.url(), headers, b"payload", 5)
            if retried:
                resp = await send
                assert await resp.read() == b"fresh"
                assert server.connections == 2
                assert server.requests[-1].body == b"payload"
                assert server.requests[-1].method == method
            else:
                error = await fails(send, ErrorType.INTEGRATION_FAILURE)
                assert "reused upstream connection closed" in str(error)
                assert server.connections == 1
            await transport.close()

    run(main())


def test_stale_retry_happens_once_only(run) -> None:
    seen = []

    def first_ever_only(request: Request, index: int) -> bytes | None:
        seen.append(request)
        return response(200, b"first") if len(seen) == 1 else None

    async def main() -> None:
        async with Server(serve_each(first_ever_only)) as server:
            transport = NativeTransport()
            await (await transport.send("GET", server.url(), [], None, 5)).read()
            await fails(transport.send("GET", server.url(), [], None, 5), ErrorType.INTEGRATION_FAILURE)
            # The reused connection, then one fresh one: no third attempt.
            assert server.connections == 2
            assert len(seen) == 3
            await transport.close()

    run(main())


def test_no_stale_retry_once_a_streamed_body_started(run) -> None:
    pulled = []

    async def body() -> AsyncIterator[bytes]:
        pulled.append(1)
        yield b"streamed"

    async def main() -> None:
        async with Server(serve_each(_stale_after_first)) as server:
            transport = NativeTransport()
            await (await transport.send("GET", server.url(), [], None, 5)).read()
            # A PUT whose body has already started streaming cannot be replayed.
            await fails(transport.send("PUT", server.url(), [], body(), 5), ErrorType.INTEGRATION_FAILURE)
            assert pulled == [1]
            await transport.close()

    run(main())


# ------------------------------------------------------------------------------------------ bodies


def test_chunked_response_split_across_reads(run) -> None:
    pieces = [
        b"HTTP/1.1 200 OK\r\nTransfer-",
        b"Encoding: chunked\r\n\r",
        b"\n5\r\nhel",
        b"lo\r",
        b"\n1;ext=1\r\n \r\n",
        b"A\r\n0123456789\r\n0\r",
        b"\nTrailer-One: x\r\n",
        b"\r\n",
    ]

    async def dribble(reader, writer, server) -> None:
        while (request := await read_request(reader)) is not None:
            server.requests.append(request)
            for piece in pieces:
                writer.write(piece)
                await writer.drain()
                await asyncio.sleep(0.005)

    async def main() -> None:
        async with Server(dribble) as server:
            transport = NativeTransport()
            resp = await transport.send("GET", server.url(), [], None, 5)
            assert resp.headers == [("transfer-encoding", "chunked")]
            assert await resp.read() == b"hello 0123456789"
            resp = await transport.send("GET", server.url(), [], None, 5)
            assert b"".join([c async for c in resp.chunks()]) == b"hello 0123456789"
            assert server.connections == 1  # reused after a chunked body
            await transport.close()

    run(main())


def test_close_delimited_body(run) -> None:
    async def until_close(reader, writer, server) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nX: 1\r\n\r\npart one, ")
        await writer.drain()
        await asyncio.sleep(0.02)
        writer.write(b"part two")
        await writer.drain()

    async def main() -> None:
        async with Server(until_close) as server:
            transport = NativeTransport()
            resp = await transport.send("GET", server.url(), [], None, 5)
            assert await resp.read() == b"part one, part two"
            resp = await transport.send("GET", server.url(), [], None, 5)
            assert b"".join([c async for c in resp.chunks()]) == b"part one, part two"
            assert server.connections == 2
            await transport.close()

    run(main())


def test_no_body_for_head_204_304_and_reuse(run) -> None:
    def answer(request: Request, index: int) -> bytes:
        if request.method == "HEAD":
            return b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n"
        if request.target == "/204":
            return b"HTTP/1.1 204 No Content\r\n\r\n"
        if request.target == "/304":
            return b"HTTP/1.1 304 Not Modified\r\nContent-Length: 50\r\nETag: x\r\n\r\n"
        return response(200, b"after")

    async def main() -> None:
        async with Server(serve_each(answer)) as server:
            transport = NativeTransport()
            resp = await transport.send("HEAD", server.url(), [], None, 5)
            assert (resp.status, await resp.read()) == (200, b"")
            assert ("content-length", "1000") in resp.headers
            for status in (204, 304):
                resp = await transport.send("GET", server.url(f"/{status}"), [], None, 5)
                assert (resp.status, await resp.read()) == (status, b"")
            resp = await transport.send("GET", server.url(), [], None, 5)
            assert await resp.read() == b"after"
            assert server.connections == 1
            await transport.close()

    run(main())


def test_interim_responses_are_skipped(run) -> None:
    answer = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n" + response(
        201, b"made"
    )

    async def main() -> None:
        async with Server(serve_each(lambda r, i: answer)) as server:
            transport = NativeTransport()
            resp = await transport.send("POST", server.url(), [], b"x", 5)
            assert resp.status == 201
            assert await resp.read() == b"made"
            await transport.close()

    run(main())


def test_bytes_beyond_the_response_prevent_reuse(run) -> None:
    async def main() -> None:
        async with Server(serve_each(lambda r, i: response(200, b"ok") + b"garbage")) as server:
            transport = NativeTransport()
            assert await (await transport.send("GET", server.url(), [], None, 5)).read() == b"ok"
            assert await (await transport.send("GET", server.url(), [], None, 5)).read() == b"ok"
            assert server.connections == 2
            await transport.close()

    run(main())


def test_abort_and_early_close_drop_the_connection(run) -> None:
    big = b"x" * (4 * MB)

    async def main() -> None:
        async with Server(ok(big)) as server:
            transport = NativeTransport()
            resp = await transport.send("GET", server.url(), [], None, 5)
            resp.abort()
            stream = resp.chunks()
            with pytest.raises(GatewayError):
                await anext(stream)
            resp = await transport.send("GET", server.url(), [], None, 5)
            stream = resp.chunks()
            assert await anext(stream)
            await stream.aclose()  # the consumer went away mid-body
            # Closed before the first chunk (a client gone before the body started), or dropped.
            resp = await transport.send("GET", server.url(), [], None, 5)
            await resp.chunks().aclose()  # type: ignore[attr-defined]
            resp = await transport.send("GET", server.url(), [], None, 5)
            stream = resp.chunks()
            del stream
            resp = await transport.send("GET", server.url(), [], None, 5)
            assert await resp.read() == big
            assert server.connections == 5
            assert len(pool_of(transport, server.port).idle) == 1
            await transport.close()

    run(main())


# ------------------------------------------------------------------------------------------ uploads


def test_uploads_bytes_content_length_and_chunked(run) -> None:
    async def chunks(*parts: bytes) -> AsyncIterator[bytes]:
        for part in parts:
            await asyncio.sleep(0)
            yield part

    async def main() -> None:
        async with Server(serve_each(lambda r, i: response(200, hashlib.sha256(r.body).digest()))) as server:
            transport = NativeTransport()
            url = server.url("/up")
            await (await transport.send("POST", url, [("content-length", "999")], b"abc", 5)).read()
            assert server.requests[-1].header("content-length") == "3"  # the body's, not the caller's
            assert server.requests[-1].body == b"abc"
            await (await transport.send("POST", url, [], chunks(b"ab", b"", b"cd"), 5)).read()
            assert server.requests[-1].chunked
            assert server.requests[-1].body == b"abcd"
            assert server.requests[-1].header("content-length") is None
            await (
                await transport.send("PUT", url, [("content-length", "4")], chunks(b"ab", b"cd"), 5)
            ).read()
            assert not server.requests[-1].chunked
            assert server.requests[-1].body == b"abcd"
            await (await transport.send("POST", url, [], None, 5)).read()
            assert server.requests[-1].header("content-length") == "0"
            await (await transport.send("GET", url, [], None, 5)).read()
            assert server.requests[-1].header("content-length") is None
            assert server.connections == 1
            # A streamed body that does not match its declared length never completes.
            await fails(
                transport.send("PUT", url, [("content-length", "10")], chunks(b"short"), 5),
                ErrorType.INTEGRATION_FAILURE,
            )
            await fails(
                transport.send("PUT", url, [("content-length", "2")], chunks(b"toolong"), 5),
                ErrorType.INTEGRATION_FAILURE,
            )
            await transport.close()

    run(main())


def test_request_head_is_validated_and_framed(run) -> None:
    async def main() -> None:
        async with Server(ok()) as server:
            transport = NativeTransport()
            await fails(
                transport.send("GET", server.url(), [("x-evil", "a\r\nx-injected: 1")], None, 5),
                ErrorType.INTEGRATION_FAILURE,
            )
            await fails(transport.send("GET", "ftp://127.0.0.1/", [], None, 5), ErrorType.INTEGRATION_FAILURE)
            await fails(
                transport.send("GET", f"http://127.0.0.1:{server.port}/a b", [], None, 5),
                ErrorType.INTEGRATION_FAILURE,
            )
            await (
                await transport.send(
                    "GET",
                    f"http://user:p%40ss@127.0.0.1:{server.port}?q=1#frag",
                    [
                        ("host", "api.example.com"),
                        ("transfer-encoding", "chunked"),
                        ("x-caf", "\u00e9t\u00e9"),
                    ],
                    None,
                    5,
                )
            ).read()
            request = server.requests[-1]
            assert request.target == "/?q=1"
            assert request.header("host") == "api.example.com"
            assert request.header("authorization") == "Basic dXNlcjpwQHNz"  # user:p@ss
            assert request.header("transfer-encoding") is None
            assert request.header("x-caf") == "\u00c3\u00a9t\u00c3\u00a9"  # UTF-8 on the wire
            await transport.close()

    run(main())


def test_upload_respects_write_flow_control(run) -> None:
    """A 64 MB upload to an upstream that stops reading pulls only what the buffers hold."""
    pulled = 0
    total = 64 * MB
    block = b"u" * (256 * 1024)

    async def body() -> AsyncIterator[bytes]:
        nonlocal pulled
        while pulled < total:
            pulled += len(block)
            yield block

    async def stall_then_read(reader, writer, server) -> None:
        await reader.readuntil(b"\r\n\r\n")
        await asyncio.sleep(0.5)  # not reading: the client must stop sending
        server.stalled_at = pulled
        size = 0
        while size < total:
            size += len(await reader.read(MB))
        writer.write(response(200, str(size).encode()))
        await writer.drain()

    async def main() -> None:
        async with Server(stall_then_read) as server:
            transport = NativeTransport()
            url = server.url("/upload")
            resp = await transport.send("PUT", url, [("content-length", str(total))], body(), 5)
            assert await resp.read() == str(total).encode()
            assert server.stalled_at < 24 * MB, server.stalled_at  # socket buffers, not the body
            await transport.close()

    run(main())


def test_upload_to_a_stalled_upstream_times_out(run) -> None:
    async def body() -> AsyncIterator[bytes]:
        while True:
            yield b"s" * (256 * 1024)

    async def never_reads(reader, writer, server) -> None:
        await asyncio.sleep(5)

    async def main() -> None:
        async with Server(never_reads) as server:
            transport = NativeTransport()
            started = time.monotonic()
            await fails(transport.send("POST", server.url(), [], body(), 0.3), ErrorType.INTEGRATION_TIMEOUT)
            assert time.monotonic() - started < 3
            await transport.close()

    run(main())


@pytest.mark.parametrize("blocked", [False, True], ids=["sending", "blocked-on-upstream"])
@pytest.mark.parametrize("close", [False, True], ids=["keep-alive", "close"])
def test_early_response_stops_the_upload(run, blocked: bool, close: bool) -> None:
    sent = 0
    block = b"e" * (MB if blocked else 64 * 1024)

    async def body() -> AsyncIterator[bytes]:
        nonlocal sent
        for _ in range(1024):
            sent += len(block)
            yield block
            if not blocked:
                await asyncio.sleep(0.001)

    async def refuse(reader, writer, server) -> None:
        await reader.readuntil(b"\r\n\r\n")
        if blocked:
            await asyncio.sleep(0.2)  # the client is waiting for us to read by now
        writer.write(response(413, b"too big", [("Connection", "close")] if close else None))
        await writer.drain()
        if not close:
            await asyncio.sleep(1)

    async def main() -> None:
        async with Server(refuse) as server:
            transport = NativeTransport()
            resp = await transport.send("POST", server.url(), [], body(), 5)
            assert resp.status == 413
            assert await resp.read() == b"too big"
            assert sent < 64 * MB
            assert pool_of(transport, server.port).idle == []  # the body was cut: not reusable
            await transport.close()

    run(main())


# ------------------------------------------------------------------------------------------ flow control


def test_slow_consumer_of_a_64mb_response_keeps_memory_bounded(run) -> None:
    total = 64 * MB
    block = b"d" * MB

    async def firehose(reader, writer, server) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % total)
        for _ in range(total // len(block)):
            writer.write(block)
            await writer.drain()

    async def main() -> None:
        async with Server(firehose) as server:
            transport = NativeTransport()
            resp = await transport.send("GET", server.url(), [], None, 5)
            most = 0
            size = 0
            async for chunk in resp.chunks():
                size += len(chunk)
                most = max(most, len(chunk), resp._queued)
                await asyncio.sleep(0.002)  # a slow client
            assert size == total
            # What waits unconsumed stays near the pause threshold (plus one read), never the body.
            assert most <= READ_HIGH + MB, most
            await transport.close()

    run(main())


# ------------------------------------------------------------------------------------------ errors


def test_malformed_and_oversized_heads_fail(run) -> None:
    cases = {
        "/fold": b"HTTP/1.1 200 OK\r\nX-A: 1\r\n folded\r\nContent-Length: 0\r\n\r\n",
        "/status": b"HTTP/1.1 2000 OK\r\nContent-Length: 0\r\n\r\n",
        "/version": b"HTTP/2.0 200 OK\r\nContent-Length: 0\r\n\r\n",
        "/length": b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nxx",
        "/ctl": b"HTTP/1.1 200 OK\r\nX-A: a\x00b\r\nContent-Length: 0\r\n\r\n",
        "/big": b"HTTP/1.1 200 OK\r\n" + b"X-Pad: " + b"p" * (MAX_HEAD + 10) + b"\r\n\r\n",
        "/chunks": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        "/upgrade": b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\n\r\n",
    }

    async def main() -> None:
        async with Server(serve_each(lambda r, i: cases[r.target])) as server:
            transport = NativeTransport()
            for path in cases:
                send = transport.send("GET", server.url(path), [], None, 5)
                if path == "/chunks":
                    resp = await send
                    await fails(resp.read(), ErrorType.INTEGRATION_FAILURE)
                else:
                    error = await fails(send, ErrorType.INTEGRATION_FAILURE)
                    if path == "/big":
                        assert "larger than" in str(error)
            await transport.close()

    run(main())


def test_large_head_under_the_limit_is_accepted(run) -> None:
    headers = [(f"X-{i}", "v" * 100) for i in range(500)]

    async def main() -> None:
        async with Server(ok(b"ok", headers)) as server:
            transport = NativeTransport()
            resp = await transport.send("GET", server.url(), [], None, 5)
            assert len(resp.headers) == 501
            assert await resp.read() == b"ok"
            await transport.close()

    run(main())


def test_timeouts_on_head_and_body_reads(run) -> None:
    async def stall(reader, writer, server) -> None:
        while (request := await read_request(reader)) is not None:
            if request.target == "/head":
                await asyncio.sleep(5)
            elif request.target == "/body":
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc")
                await writer.drain()
                await asyncio.sleep(5)
            else:  # a fast upstream behind a slow client
                writer.write(response(200, b"z" * (2 * MB)))
                await writer.drain()

    async def main() -> None:
        async with Server(stall) as server:
            transport = NativeTransport()
            started = time.monotonic()
            error = await fails(
                transport.send("GET", server.url("/head"), [], None, 0.2), ErrorType.INTEGRATION_TIMEOUT
            )
            assert 0.15 < time.monotonic() - started < 2, error
            for how in ("read", "chunks"):
                resp = await transport.send("GET", server.url("/body"), [], None, 0.2)
                started = time.monotonic()
                if how == "read":
                    await fails(resp.read(), ErrorType.INTEGRATION_TIMEOUT)
                else:
                    stream = resp.chunks()
                    assert await anext(stream) == b"abc"
                    await fails(anext(stream), ErrorType.INTEGRATION_TIMEOUT)
                assert 0.15 < time.monotonic() - started < 2
            # The timeout bounds waits on the upstream, not a slow consumer.
            resp = await transport.send("GET", server.url("/fast"), [], None, 0.1)
            size = 0
            async for chunk in resp.chunks():
                size += len(chunk)
                await asyncio.sleep(0.15)
            assert size == 2 * MB
            # A timed-out connection is never reused; the pool still works.
            resp = await transport.send("GET", server.url("/fast"), [], None, 5)
            assert len(await resp.read()) == 2 * MB
            await transport.close()

    run(main())


def test_connect_timeout_and_refused(run) -> None:
    async def main() -> None:
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        address = listener.getsockname()
        fillers = []
        try:
            # Fill the accept queue: further SYNs are dropped, so connect() hangs.
            for _ in range(6):
                filler = socket.socket()
                filler.setblocking(False)
                filler.connect_ex(address)
                fillers.append(filler)
            await asyncio.sleep(0.05)
            transport = NativeTransport()
            started = time.monotonic()
            try:
                await transport.send("GET", f"http://127.0.0.1:{address[1]}/", [], None, 0.3)
            except GatewayError as exc:
                if exc.error_type is not ErrorType.INTEGRATION_TIMEOUT:
                    pytest.skip(f"the kernel did not leave connect() pending: {exc}")
            else:
                pytest.skip("the kernel accepted the connection despite a full backlog")
            assert 0.25 < time.monotonic() - started < 2
        finally:
            for filler in fillers:
                filler.close()
            listener.close()
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            dead = probe.getsockname()[1]  # nothing listens there once closed
        error = await fails(
            transport.send("GET", f"http://127.0.0.1:{dead}/", [], None, 5), ErrorType.INTEGRATION_FAILURE
        )
        assert "connecting to" in str(error)
        await transport.close()

    run(main())


def test_upstream_closing_mid_body_fails_the_read(run) -> None:
    async def cut(reader, writer, server) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly this")
        await writer.drain()

    async def main() -> None:
        async with Server(cut) as server:
            transport = NativeTransport()
            resp = await transport.send("GET", server.url(), [], None, 5)
            await fails(resp.read(), ErrorType.INTEGRATION_FAILURE)
            resp = await transport.send("GET", server.url(), [], None, 5)
            stream = resp.chunks()
            assert await anext(stream) == b"only this"
            await fails(anext(stream), ErrorType.INTEGRATION_FAILURE)
            await transport.close()

    run(main())


# ------------------------------------------------------------------------------------------ https


def _self_signed() -> tuple[bytes, bytes]:
    crypto = pytest.importorskip("cryptography")
    del crypto
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "portico-test")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(key.public_key()), False)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return cert.public_bytes(serialization.Encoding.PEM), key_pem


def test_https_verifies_certificates(run, tmp_path) -> None:
    cert_pem, key_pem = _self_signed()
    (tmp_path / "cert.pem").write_bytes(cert_pem)
    (tmp_path / "key.pem").write_bytes(key_pem)
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(tmp_path / "cert.pem", tmp_path / "key.pem")

    async def main() -> None:
        async with Server(ok(b"secure"), tls=server_ctx) as server:
            # Default verification: a self-signed certificate is refused.
            transport = NativeTransport()
            error = await fails(
                transport.send("GET", server.url(), [], None, 5), ErrorType.INTEGRATION_FAILURE
            )
            assert "certificate" in str(error).lower(), error
            await transport.close()
            # Trusting it: served, and kept alive.
            trusting = NativeTransport(ssl_context=ssl.create_default_context(cadata=cert_pem.decode()))
            for _ in range(3):
                resp = await trusting.send("GET", server.url(), [], None, 5)
                assert await resp.read() == b"secure"
            assert server.connections == 1  # (the refused handshake never reached the handler)
            assert len(trusting._pools[("https", "127.0.0.1", server.port)].idle) == 1
            await trusting.close()

    run(main())


# ------------------------------------------------------------------------------------------ loops


def test_pools_are_per_event_loop() -> None:
    transport = NativeTransport()

    async def one() -> tuple[int, int]:
        async with Server(ok()) as server:
            await (await transport.send("GET", server.url(), [], None, 5)).read()
            return server.port, len(transport._pools)

    _, pools1 = asyncio.run(one())
    port2, pools2 = uvloop.run(one())
    assert (pools1, pools2) == (1, 1)  # the first loop's pool was dropped
    assert ("http", "127.0.0.1", port2) in transport._pools


# ------------------------------------------------------------------------------------------ properties


def _encode_chunked(body: bytes, sizes: list[int], ext: bool, trailers: list[str], upper: bool) -> bytes:
    out = []
    pos = 0
    i = 0
    while pos < len(body):
        size = max(1, sizes[i % len(sizes)]) if sizes else len(body)
        piece = body[pos : pos + size]
        pos += len(piece)
        i += 1
        size_text = f"{len(piece):X}" if upper else f"{len(piece):x}"
        out.append(f"{size_text}{';a=b' if ext else ''}\r\n".encode() + piece + b"\r\n")
    out.append(b"0\r\n" + "".join(f"{t}\r\n" for t in trailers).encode() + b"\r\n")
    return b"".join(out)


def _split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    pieces = []
    prev = 0
    for point in [*points, len(data)]:
        if point > prev:  # transports never deliver empty reads
            pieces.append(data[prev:point])
        prev = point
    return pieces


@settings(max_examples=300, deadline=None)
@given(
    body=st.binary(max_size=3000),
    sizes=st.lists(st.integers(1, 700), max_size=8),
    ext=st.booleans(),
    upper=st.booleans(),
    trailers=st.lists(st.sampled_from(["X-T: 1", "Digest: sha=abc", "Y:"]), max_size=3),
    cuts=st.lists(st.integers(0, 10_000), max_size=12),
    after=st.binary(max_size=20),
)
def test_chunked_decoder_roundtrip(body, sizes, ext, upper, trailers, cuts, after) -> None:
    encoded = _encode_chunked(body, sizes, ext, trailers, upper)
    decoder = ChunkedDecoder()
    out: list[bytes] = []
    rest = None
    pieces = _split(encoded + after, cuts)
    for i, piece in enumerate(pieces):
        rest = decoder.feed(piece, out)
        if rest is not None:
            rest += b"".join(pieces[i + 1 :])
            break
    assert b"".join(out) == body
    assert rest == after


@pytest.mark.parametrize(
    "bad",
    [b"g\r\n", b"-1\r\n", b"0x5\r\n", b"1_0\r\n", b"\r\n", b"5\r\nhelloXX", b"1" * 20 + b"\r\n", b" " * 5000],
)
def test_chunked_decoder_refuses_bad_framing(bad) -> None:
    with pytest.raises(ValueError):
        ChunkedDecoder().feed(bad, [])


class _FakeTransport:
    def __init__(self) -> None:
        self.closed = False
        self.paused = False

    def write(self, data: bytes) -> None: ...
    def is_closing(self) -> bool:
        return self.closed

    def abort(self) -> None:
        self.closed = True

    def pause_reading(self) -> None:
        self.paused = True

    def resume_reading(self) -> None:
        self.paused = False


_response_parts = st.fixed_dictionaries(
    {
        "status": st.sampled_from([200, 201, 204, 301, 404, 500, 599]),
        "reason": st.sampled_from(["OK", "", "Some Reason"]),
        "headers": st.lists(
            st.tuples(
                st.from_regex(r"X-[A-Za-z0-9-]{1,12}", fullmatch=True),
                st.from_regex(r"[ -~\x80-\xff]{0,30}", fullmatch=True).map(str.strip),
            ),
            max_size=8,
        ),
        "body": st.binary(max_size=2000),
        "chunked": st.booleans(),
        "sizes": st.lists(st.integers(1, 500), max_size=5),
    }
)


def _feed(
    loop: asyncio.AbstractEventLoop, pieces: list[bytes]
) -> tuple[int, list[tuple[str, str]], bytes, bool]:
    pool = up._Pool("http://test", "test", 80, None, 4, 60.0)
    conn = up._Conn(pool, loop)
    conn.connection_made(_FakeTransport())
    conn.uses = 1
    conn._state = up._HEAD
    conn._keep_alive = True
    conn._timeout = 5.0
    waiter = loop.create_future()
    conn._head_waiter = waiter
    for piece in pieces:
        conn.data_received(piece)
    resp = waiter.result()
    assert resp._done
    return resp.status, resp.headers, b"".join(resp._chunks), conn in pool.idle


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(parts=_response_parts, cuts=st.lists(st.integers(0, 10_000), max_size=10))
def test_response_parse_is_independent_of_split_points(parts, cuts) -> None:
    status = parts["status"]
    body = b"" if status == 204 else parts["body"]
    head = [f"HTTP/1.1 {status} {parts['reason']}".rstrip()]
    head += [f"{name}: {value}" for name, value in parts["headers"]]
    if parts["chunked"] and status != 204:
        head.append("Transfer-Encoding: chunked")
        payload = _encode_chunked(body, parts["sizes"], False, [], False)
    else:
        head.append(f"Content-Length: {len(body)}")
        payload = body
    raw = ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + payload
    loop = asyncio.new_event_loop()
    try:
        whole = _feed(loop, [raw])
        split = _feed(loop, _split(raw, cuts))
    finally:
        loop.close()
    assert whole == split
    assert whole[0] == status
    assert whole[2] == body
    assert whole[3]  # complete and reusable
    expected = [(name.lower(), value) for name, value in parts["headers"]]
    assert whole[1][: len(expected)] == expected


def test_parse_response_head_contract() -> None:
    assert parse_response_head(b"HTTP/1.1 200 OK\r\nContent-Le") is None
    raw = b"HTTP/1.0 404 Nope\r\nContent-Length: 3\r\nConnection: Keep-Alive\r\nX-V: caf\xe9\r\n\r\nabc"
    consumed, status, minor, headers, length, flags = parse_response_head(raw)  # type: ignore[misc]
    assert (consumed, status, minor, length) == (len(raw) - 3, 404, 0, 3)
    assert headers == [("content-length", "3"), ("connection", "Keep-Alive"), ("x-v", "caf\u00e9")]
    assert flags == 8
    with pytest.raises(ValueError):
        parse_response_head(b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n")
