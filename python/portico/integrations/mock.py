"""MOCK integration: answers with a response fixed at configuration time, without any backend."""

from __future__ import annotations

from portico.dataplane.context import RequestContext, Response

__all__ = ["MockIntegration"]


class MockIntegration:
    """Returns the same prebuilt response to every request.

    Header names are lower-cased once here; a `content-type` of `application/json` is added when the
    configuration gives none (API Gateway always sends a Content-Type).
    """

    __slots__ = ("_body", "_headers", "_status")

    def __init__(
        self, status_code: int = 200, headers: dict[str, str] | None = None, body: str | bytes = b""
    ) -> None:
        if not 100 <= int(status_code) <= 599:
            raise ValueError(f"MOCK statusCode out of range: {status_code!r}")
        self._status = int(status_code)
        merged: list[tuple[str, str]] = []
        for name, value in (headers or {}).items():
            merged.append((name.lower(), str(value)))
        if not any(name == "content-type" for name, _ in merged):
            merged.append(("content-type", "application/json"))
        # Content-Length/Transfer-Encoding are the server's business, never the configuration's.
        self._headers = [(n, v) for n, v in merged if n not in ("content-length", "transfer-encoding")]
        self._body = body.encode() if isinstance(body, str) else bytes(body)

    def edge_route(self, variables: dict[str, str]) -> dict[str, object]:
        """What the edge needs to answer for this integration without Python (the body as latin-1
        text: one character per byte)."""
        return {
            "kind": "mock",
            "status": self._status,
            "headers": [list(pair) for pair in self._headers],
            "body": self._body.decode("latin-1"),
        }

    async def __call__(self, ctx: RequestContext) -> Response:
        # A fresh header list per response: later phases (CORS, response parameters) may append to it.
        return Response(self._status, list(self._headers), self._body)
