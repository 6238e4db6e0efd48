"""The edge's side of the data plane: which requests the Rust edge serves without Python.

With `portico serve` (unless `--no-edge`), the core's edge (`portico._core.Edge`, `rust/edge.rs`)
owns the public listener. It serves plugin-free MOCK routes and HTTP_PROXY routes to http://
upstreams, and the 404 and 429 answers of HTTP APIs, start to finish in Rust. Every other
request goes, unchanged, to this Python pipeline behind Granian on a private Unix socket, with
the client's address in `x-portico-edge: <secret> <client ip> <HTTP version>`. The secret is made
per server: the
pipeline believes the header only when the secret matches (compared in constant time), so a
client cannot pose as another address.

What the edge may serve is published as a table built from the serving state. It is empty
whenever Python must see every request: plugins, or an access log.
"""

from __future__ import annotations

import json
import socket
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from portico.dataplane.app import ServingState

__all__ = ["EDGE_HEADER", "edge_table", "listen"]

EDGE_HEADER = b"x-portico-edge"


def edge_table(state: ServingState, *, python_only: bool, header_limit: int, payload_limit: int) -> str:
    """The table (JSON) the edge serves `state` from: per verdict (API, stage, canary, route) the
    HTTP_PROXY routes it proxies itself, and per API whether it answers 404/429 itself."""
    routes: list[dict[str, Any]] = []
    answers: list[bool] = []
    for api_index, api in enumerate(state.apis):
        runtimes = [(index, False, stage) for index, stage in enumerate(api.stages)]
        runtimes += [(index, True, stage.canary) for index, stage in enumerate(api.stages) if stage.canary]
        # CORS answers preflights and decorates every answer, errors included: Python's job.
        cors_free = api.cors is None and all(runtime.cors is None for _, _, runtime in runtimes)
        served = not python_only and api.kind == "http" and cors_free
        answers.append(served)
        if not served:
            continue
        for stage_index, canary, runtime in runtimes:
            for route_index, route in enumerate(runtime.routes):
                describe = getattr(route.integration, "edge_route", None)
                spec = describe(runtime.variables) if describe is not None else None
                if spec is None:
                    continue
                spec.update(
                    api=api_index, stage=stage_index, canary=canary, route=route_index, api_id=api.api_id
                )
                routes.append(spec)
    return json.dumps(
        {
            "routes": routes,
            "answers": answers,
            "answer_unmatched": not python_only,
            "header_limit": header_limit,
            "payload_limit": payload_limit,
        }
    )


def listen(host: str, port: int, backlog: int = 1024) -> socket.socket:
    """The public listening socket, bound once by the server process before its workers start:
    they inherit it, and each worker's edge accepts from it (as nginx's workers share theirs). A
    port already in use fails here, with OSError, instead of being shared with another server."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(backlog)
    except OSError:
        sock.close()
        raise
    sock.set_inheritable(True)
    return sock
