"""What the phases of the request pipeline share: the request context, its body and the response.

These are the types integrations, authorizers and user plugins are written against.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from portico.dataplane.errors import ErrorType, GatewayError

Receive = Callable[[], Awaitable[dict[str, Any]]]


class RequestBody:
    """The request body, read at most once, never beyond `limit` bytes.

    A declared Content-Length over the limit is refused before anything is read; a chunked body is
    counted as it arrives and refused as soon as it passes the limit.
    """

    __slots__ = ("_consumed", "_finished", "_receive", "chunked", "content_length", "limit")

    def __init__(
        self, receive: Receive, content_length: int | None, limit: int, chunked: bool = False
    ) -> None:
        self._receive = receive
        self._consumed = False
        # Whether the last piece of the body has been received (nothing left to drain).
        self._finished = not (content_length or chunked)
        self.content_length = content_length
        self.chunked = chunked
        self.limit = limit

    def _take(self) -> None:
        if self._consumed:
            raise RuntimeError("the request body can be read only once")
        self._consumed = True
        if self.content_length is not None and self.content_length > self.limit:
            raise GatewayError(ErrorType.REQUEST_TOO_LARGE, f"Content-Length {self.content_length}")

    async def read(self) -> bytes:
        """The whole body (for integrations that need it whole, like Lambda)."""
        self._take()
        if self.content_length == 0:
            return b""
        chunks: list[bytes] = []
        receive = self._receive
        size = 0
        more = True
        while more:
            chunk, more = await self._next_chunk(receive)
            if chunk:
                size += len(chunk)
                self._check(size)
                chunks.append(chunk)
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    async def stream(self) -> AsyncIterator[bytes]:
        """The body chunk by chunk, as the client sends it (for streaming proxies)."""
        self._take()
        if self.content_length == 0:
            return
        receive = self._receive
        size = 0
        more = True
        while more:
            chunk, more = await self._next_chunk(receive)
            if chunk:
                size += len(chunk)
                self._check(size)
                yield chunk

    async def _next_chunk(self, receive: Receive) -> tuple[bytes, bool]:
        message = await receive()
        if message["type"] != "http.request":
            self._finished = True
            raise GatewayError(ErrorType.BAD_REQUEST, "client disconnected")
        more = message.get("more_body", False)
        if not more:
            self._finished = True
        return message.get("body", b""), more

    @property
    def finished(self) -> bool:
        """Whether the whole body has been received (or there is none)."""
        return self._finished

    async def drain(self) -> None:
        """Receive and drop what is left of the body. Behind the edge, the server would otherwise
        close a connection the edge is still writing the body to, and the edge would lose the
        answer already given (the edge cuts bodies past the payload limit, which bounds this)."""
        receive = self._receive
        while not self._finished:
            message = await receive()
            if message["type"] != "http.request" or not message.get("more_body", False):
                self._finished = True

    def _check(self, size: int) -> None:
        if size > self.limit:
            raise GatewayError(ErrorType.REQUEST_TOO_LARGE, f"body passed {self.limit} bytes")


@dataclass(slots=True)
class Response:
    """A response on its way to the client.

    Either `body` (bytes, sent at once; the data plane sets Content-Length from it and ignores any
    in `headers`) or `stream` (sent chunk by chunk, without Content-Length unless the headers carry
    one). Header names are lower-case.
    """

    status: int
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""
    stream: AsyncIterator[bytes] | None = None


class Integration(Protocol):
    """What a route calls. Raise `GatewayError` for AWS's gateway responses."""

    async def __call__(self, ctx: RequestContext) -> Response: ...


@dataclass(slots=True)
class RouteRuntime:
    """A route as the data plane needs it."""

    route_key: str  # "GET /pets/{id}" or "$default"
    integration: Integration
    # REST resource path / HTTP route path, e.g. "/pets/{id}" ("$default" for the default route).
    resource_path: str


@dataclass(slots=True)
class StageRuntime:
    """A stage as one request sees it: the deployment it serves, with its variables.

    `routes` are the routes of the stage's deployment, in the order of the core spec's stage
    "routes" (a verdict's `route_index` indexes them); stages of a file-declared API all share the
    API's list. `canary`, when the stage has one, is the StageRuntime of the canary deployment
    (its routes, the stage variables overlaid with the canary's overrides, `is_canary` True); the
    data plane puts the one that serves a request in `ctx.stage`.
    """

    name: str
    variables: dict[str, str]
    deployment_id: str
    routes: list[RouteRuntime] = field(default_factory=list)
    canary: StageRuntime | None = None
    is_canary: bool = False
    # The deployment's CORS policy (HTTP APIs keep CORS in the API, so it is deployed with it).
    cors: Any = None


@dataclass(slots=True)
class ApiRuntime:
    api_id: str
    name: str
    kind: str  # "http" | "rest"
    # The API's routes as declared (file APIs) or as its first deployed stage serves them (admin
    # APIs); requests are served from `StageRuntime.routes`.
    routes: list[RouteRuntime]
    stages: list[StageRuntime]
    # A compiled `portico.dataplane.cors.CorsPolicy`, when the API configures CORS.
    cors: Any = None


class RequestContext:
    """Everything known about one request; created by the data plane, read by every phase."""

    __slots__ = (
        "_headers",
        "account_id",
        "api",
        "body",
        "client_ip",
        "extra",
        "host",
        "method",
        "path",
        "path_params",
        "protocol",
        "raw_headers",
        "raw_path",
        "raw_query",
        "request_id",
        "route",
        "scheme",
        "stage",
        "start_ns",
        "time_epoch_ms",
    )

    def __init__(
        self,
        *,
        request_id: str,
        method: str,
        raw_path: str,
        raw_query: str,
        raw_headers: list[tuple[bytes, bytes]],
        host: str,
        scheme: str,
        protocol: str,
        client_ip: str,
        body: RequestBody,
        start_ns: int,
        time_epoch_ms: int,
        account_id: str,
    ) -> None:
        self.request_id = request_id
        self.method = method
        # The path as the client sent it (percent-encoding preserved, stage segment included).
        self.raw_path = raw_path
        # The path the API sees (stage segment removed), from the core's verdict.
        self.path = raw_path
        self.raw_query = raw_query
        # As the server handed them over: lower-case names, arrival order, repeats repeated. Decoded
        # on first use of `headers`, so that requests that never look at them (a proxy forwarding
        # them as they are, a mock) do not pay for it.
        self.raw_headers = raw_headers
        self._headers: list[tuple[str, str]] | None = None
        self.host = host
        self.scheme = scheme
        self.protocol = protocol  # "HTTP/1.1"
        self.client_ip = client_ip
        self.body = body
        self.start_ns = start_ns
        self.time_epoch_ms = time_epoch_ms
        self.account_id = account_id
        self.api: ApiRuntime | None = None
        self.stage: StageRuntime | None = None
        self.route: RouteRuntime | None = None
        self.path_params: dict[str, str] | None = None
        # Free-form values phases and plugins hand to each other (authorizer context, log fields, ...).
        self.extra: dict[str, Any] = {}

    @property
    def headers(self) -> list[tuple[str, str]]:
        """The request headers as text (values UTF-8, undecodable bytes replaced)."""
        headers = self._headers
        if headers is None:
            raw = self.raw_headers
            try:
                headers = [(name.decode(), value.decode()) for name, value in raw]
            except UnicodeDecodeError:
                headers = [(name.decode("latin-1"), value.decode("utf-8", "replace")) for name, value in raw]
            self._headers = headers
        return headers

    def header(self, name: str) -> str | None:
        """The first value of header `name` (lower-case), or None."""
        wanted = name.encode("latin-1")
        for key, value in self.raw_headers:
            if key == wanted:
                return value.decode("utf-8", "replace")
        return None
