"""Hand-built request contexts for unit tests of the integrations (no server needed)."""

from __future__ import annotations

from typing import Any

from portico.dataplane.context import (
    ApiRuntime,
    RequestBody,
    RequestContext,
    RouteRuntime,
    StageRuntime,
)

# 2020-03-12T19:03:58.390Z, the instant of AWS's documented 2.0 sample event.
EPOCH_MS = 1584039838390


def make_body(
    data: bytes = b"", chunks: list[bytes] | None = None, limit: int = 10 * 1024 * 1024
) -> RequestBody:
    parts = list(chunks) if chunks is not None else [data]

    async def receive() -> dict[str, Any]:
        if not parts:
            return {"type": "http.request", "body": b"", "more_body": False}
        chunk = parts.pop(0)
        return {"type": "http.request", "body": chunk, "more_body": bool(parts)}

    total = sum(len(p) for p in parts)
    return RequestBody(receive, total, limit)


def make_ctx(
    *,
    method: str = "GET",
    path: str = "/my/path",
    raw_path: str | None = None,
    raw_query: str = "",
    headers: list[tuple[str, str]] | None = None,
    host: str = "abc123.execute-api.us-east-1.amazonaws.com",
    scheme: str = "https",
    protocol: str = "HTTP/1.1",
    client_ip: str = "192.0.2.1",
    body: bytes = b"",
    kind: str = "http",
    api_id: str = "abc123",
    stage: str = "$default",
    stage_variables: dict[str, str] | None = None,
    deployment_id: str = "dep123",
    route_key: str = "$default",
    resource_path: str | None = None,
    path_params: dict[str, str] | None = None,
    request_id: str = "JKJaXmPLvHcESHA=",
    time_epoch_ms: int = EPOCH_MS,
    account_id: str = "123456789012",
) -> RequestContext:
    """A request context as the data plane would hand it to an integration after routing."""
    if raw_path is None:
        raw_path = path if stage == "$default" else f"/{stage}{path}"
    if headers is None:
        headers = [("host", host), ("user-agent", "curl/8.5.0"), ("accept", "*/*")]
    if resource_path is None:
        resource_path = route_key.split(" ", 1)[1] if " " in route_key else route_key
    ctx = RequestContext(
        request_id=request_id,
        method=method,
        raw_path=raw_path,
        raw_query=raw_query,
        raw_headers=[(name.encode("latin-1"), value.encode()) for name, value in headers],
        host=host,
        scheme=scheme,
        protocol=protocol,
        client_ip=client_ip,
        body=make_body(body),
        start_ns=0,
        time_epoch_ms=time_epoch_ms,
        account_id=account_id,
    )
    ctx.path = path
    route = RouteRuntime(route_key=route_key, integration=None, resource_path=resource_path)  # type: ignore[arg-type]
    stage_rt = StageRuntime(name=stage, variables=dict(stage_variables or {}), deployment_id=deployment_id)
    ctx.api = ApiRuntime(api_id=api_id, name="test", kind=kind, routes=[route], stages=[stage_rt])
    ctx.stage = stage_rt
    ctx.route = route
    ctx.path_params = path_params
    return ctx
