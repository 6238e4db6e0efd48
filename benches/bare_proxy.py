"""The least an ASGI proxy on Granian can do: the benchmark's `ceiling` case.

A keep-alive pool of asyncio connections to one upstream, GET only, no header rules, no routing,
no ids, no limits. It runs on the same Granian settings as Portico (one worker, uvloop, ASGI), so
its req/s is the bound any Python-per-request design reaches on this machine, and Portico's gap to
it is what the gateway's own work costs. Not a product: it serves the benchmark only.

    BARE_UPSTREAM=127.0.0.1:8081 granian --interface asgi --loop uvloop bare_proxy:app

`BARE_SPIN_US=N` adds N microseconds of busy work on the event loop per request: how much each
microsecond of per-request Python costs in req/s (`benches/run.py --ceiling-spin N`).
"""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

_HOST, _, _PORT = os.environ.get("BARE_UPSTREAM", "127.0.0.1:80").rpartition(":")
_SPIN = float(os.environ.get("BARE_SPIN_US", "0")) / 1e6
_idle: list[_Upstream] = []


class _Upstream(asyncio.Protocol):
    """One upstream connection; responses must carry Content-Length (the bench's nginx does)."""

    def __init__(self) -> None:
        self.transport: Any = None
        self.buffer = b""
        self.waiter: asyncio.Future[tuple[int, bytes]] | None = None

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0:
            return
        length = 0
        for line in self.buffer[:end].split(b"\r\n")[1:]:
            if line[:15].lower() == b"content-length:":
                length = int(line[15:])
        if len(self.buffer) < end + 4 + length:
            return
        status, body = int(self.buffer[9:12]), self.buffer[end + 4 : end + 4 + length]
        self.buffer = b""
        waiter, self.waiter = self.waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result((status, body))

    def connection_lost(self, exc: Exception | None) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(ConnectionError("upstream closed"))


async def _fetch(target: bytes) -> tuple[int, bytes]:
    loop = asyncio.get_running_loop()
    conn = _idle.pop() if _idle else (await loop.create_connection(_Upstream, _HOST, int(_PORT)))[1]
    conn.waiter = loop.create_future()
    conn.transport.write(b"GET " + target + b" HTTP/1.1\r\nhost: " + _HOST.encode() + b"\r\n\r\n")
    result = await conn.waiter
    _idle.append(conn)
    return result


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        while (await receive())["type"] != "lifespan.shutdown":
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})
        return
    if _SPIN:
        until = time.perf_counter() + _SPIN
        while time.perf_counter() < until:
            pass
    status, body = await _fetch(scope["raw_path"])
    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
