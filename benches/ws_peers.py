"""The peers of the WebSocket benchmark (benches/websocket.py), each echoing every text message
and answering the text `broadcast` by sending `broadcast` to every open connection:

    python benches/ws_peers.py websockets PORT [PROCESSES]
                                                    a plain `websockets` server (asyncio), the
                                                    broadcast by `websockets.broadcast`; with
                                                    PROCESSES > 1, that many processes share the
                                                    port (SO_REUSEPORT) so that more connections
                                                    are held than one process's file-descriptor
                                                    limit allows (a broadcast then reaches only
                                                    its own process's connections)
    granian --interface rsgi ws_peers:rsgi_app      the same under Granian's own WebSocket support
                                                    (RSGI), the broadcast a loop of `send_str`

Neither pings (the benchmark's idle clients do not answer pings; Portico does not ping either).
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
from typing import Any

BROADCAST = "broadcast"


async def serve_websockets(port: int, shared: bool, ready: bool) -> None:
    from websockets.asyncio.server import ServerConnection, broadcast, serve

    async def handler(connection: ServerConnection) -> None:
        async for message in connection:
            if message == BROADCAST:
                broadcast(server.connections, BROADCAST)
            else:
                await connection.send(message)

    # No ping (see above), no compression (Portico offers none), a backlog for bursts of handshakes.
    async with serve(
        handler, "127.0.0.1", port, ping_interval=None, compression=None, backlog=4096, reuse_port=shared
    ) as server:
        if ready:  # a helper process: tell the first one it listens
            print("ready", flush=True)
        await asyncio.get_running_loop().create_future()


def serve_processes(port: int, processes: int) -> None:
    """PROCESSES servers on one port: the helpers first, each listening before the next starts, so
    that the benchmark's first successful request means every process takes connections."""
    helpers = []
    for _ in range(processes - 1):
        helper = subprocess.Popen(
            [sys.executable, __file__, "websockets", str(port), "1", "--helper"], stdout=subprocess.PIPE
        )
        if helper.stdout.readline().strip() != b"ready":
            sys.exit(f"a helper server ended (exit {helper.wait()})")
        helpers.append(helper)
    try:
        asyncio.run(serve_websockets(port, shared=processes > 1, ready=False))
    finally:
        for helper in helpers:
            helper.terminate()


# ------------------------------------------------------------------------------------------ Granian

_transports: set[Any] = set()


async def rsgi_app(scope: Any, protocol: Any) -> None:
    from granian.rsgi import WebsocketMessageType

    if scope.proto != "ws":
        protocol.response_str(200, [("content-type", "text/plain")], "ok")
        return
    transport = await protocol.accept()
    _transports.add(transport)
    try:
        while True:
            message = await transport.receive()
            if message.kind == WebsocketMessageType.close:
                break
            if message.kind != WebsocketMessageType.string:
                continue
            if message.data == BROADCAST:
                for other in list(_transports):
                    try:
                        await other.send_str(BROADCAST)
                    except Exception:  # closed meanwhile
                        _transports.discard(other)
            else:
                await transport.send_str(message.data)
    finally:
        _transports.discard(transport)
    protocol.close(None)


if __name__ == "__main__":
    if sys.argv[1:2] != ["websockets"] or len(sys.argv) < 3:
        sys.exit("usage: ws_peers.py websockets PORT [PROCESSES]")
    if sys.argv[4:5] == ["--helper"]:
        asyncio.run(serve_websockets(int(sys.argv[2]), shared=True, ready=True))
    else:
        serve_processes(int(sys.argv[2]), int(sys.argv[3]) if len(sys.argv) > 3 else 1)
