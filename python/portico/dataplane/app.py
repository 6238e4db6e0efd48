"""The data plane: an ASGI application that passes every request through one chain of phases.

    parse  ->  decide (Rust: select API and stage -> route -> throttle)  ->  authorize (plugins)
           ->  integrate  ->  respond  ->  log

`decide` is the single crossing into the Rust core per request. Everything after it indexes the
compiled runtimes with the verdict's indices. ASGI (rather than RSGI) is used because it hands us
the raw, still percent-encoded path and raw header bytes, which AWS's event formats need; it also
lets Portico embed in any ASGI server or framework.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Protocol

from portico import _core
from portico.config.compile import CompiledConfig
from portico.dataplane.context import ApiRuntime, RequestBody, RequestContext, Response, StageRuntime
from portico.dataplane.cors import is_preflight
from portico.dataplane.edge import EDGE_HEADER, edge_table
from portico.dataplane.errors import ErrorType, GatewayError, error_status_and_body
from portico.dataplane.plugins import Plugin
from portico.observability.access_log import AccessLogger

logger = logging.getLogger("portico.dataplane")

Send = Callable[[dict[str, Any]], Awaitable[None]]
Receive = Callable[[], Awaitable[dict[str, Any]]]

_ROUTE = _core.ROUTE
_THROTTLED = _core.THROTTLED
_BAD_REQUEST = _core.BAD_REQUEST
_STREAM_END = {"type": "http.response.body", "body": b"", "more_body": False}

# How often a live data plane asks its source whether the configuration changed.
RELOAD_POLL_SECONDS = 0.2


class ReloadSource(Protocol):
    """Where a live data plane's configuration comes from (see `portico.control.deployed`)."""

    def generation(self) -> int:
        """A number that changes whenever `build()` would return something new."""
        ...

    def build(self) -> CompiledConfig:
        """The configuration to serve now (may raise: the data plane keeps the previous one)."""
        ...


class ServingState:
    """What serves requests: a core gateway and the runtimes its verdicts index.

    Immutable once built. The data plane reads its current state once per request, so a request
    finishes on the state (gateway, routes, integrations, stage variables) it started with, even
    when a reload publishes a new one meanwhile.
    """

    __slots__ = ("apis", "compiled", "gateway", "generation")

    def __init__(
        self, compiled: CompiledConfig, gateway: _core.Gateway, generation: int | None = None
    ) -> None:
        self.compiled = compiled
        self.gateway = gateway
        self.apis = compiled.apis
        self.generation = generation


class DataPlane:
    """The ASGI app serving one compiled configuration, replaceable at run time by `reload`."""

    def __init__(
        self,
        compiled: CompiledConfig,
        *,
        shared_buckets_path: str | None = None,
        plugins: Sequence[Plugin] = (),
        on_shutdown: Sequence[Callable[[], Awaitable[None]]] = (),
        source: ReloadSource | None = None,
        generation: int | None = None,
    ) -> None:
        self._state = ServingState(
            compiled, _core.Gateway(compiled.core_spec, shared_buckets_path), generation
        )
        settings = compiled.config.settings
        self.payload_limit = settings.payloadLimitBytes
        self.header_limit = settings.headerLimitBytes
        self.account_id = settings.accountId
        self.plugins = list(plugins)
        # Bound hooks, gathered once, so that a request pays only for the hooks that exist.
        self._on_request = [p.on_request for p in self.plugins if _overrides(p, "on_request")]
        self._on_response = [p.on_response for p in self.plugins if _overrides(p, "on_response")]
        self._access_log = AccessLogger(settings.accessLog) if settings.accessLog else None
        self._on_shutdown = list(on_shutdown)
        # apigw-requestid values (and X-Ray trace ids for HTTP_PROXY): made by the core.
        self.ids = _core.RequestIds()
        self.source = source
        # The source generation last built (or last failed to build: not retried until it moves).
        self._generation = generation
        self._watcher: asyncio.Task[None] | None = None
        # The Rust edge in front, when `attach_edge` started one; its requests carry this secret.
        self._edge: _core.Edge | None = None
        self._edge_secret: bytes | None = None

    @property
    def state(self) -> ServingState:
        return self._state

    @property
    def compiled(self) -> CompiledConfig:
        return self._state.compiled

    @property
    def gateway(self) -> _core.Gateway:
        return self._state.gateway

    # ---------------------------------------------------------------- reload

    def prepare(self, compiled: CompiledConfig, generation: int | None = None) -> ServingState:
        """A state serving `compiled` whose gateway spends from the current token buckets, so a
        reload never resets throttling. Raises ConfigError for a spec the core refuses."""
        return ServingState(
            compiled, _core.Gateway(compiled.core_spec, buckets=self._state.gateway.buckets), generation
        )

    def reload(self, compiled: CompiledConfig | ServingState, generation: int | None = None) -> None:
        """Serve `compiled` from now on. Atomic: each request uses the old or the new state, whole;
        requests in flight finish on the state they started with."""
        state = compiled if isinstance(compiled, ServingState) else self.prepare(compiled, generation)
        self._state = state
        if self._edge is not None:
            self._edge.publish(state.gateway, self._edge_table(state))

    # ---------------------------------------------------------------- the edge

    def attach_edge(self, listener_fd: int, backend: str, secret: str) -> None:
        """Start the core's edge on `listener_fd` (a listening socket it takes over), in front of
        this app served on the Unix socket `backend`; see `portico.dataplane.edge`."""
        self._edge_secret = secret.encode()
        state = self._state
        self._edge = _core.Edge(listener_fd, backend, secret, state.gateway, self._edge_table(state))

    def _edge_table(self, state: ServingState) -> str:
        return edge_table(
            state,
            python_only=bool(self._on_request or self._on_response or self._access_log is not None),
            header_limit=self.header_limit,
            payload_limit=self.payload_limit,
        )

    async def refresh(self) -> bool:
        """Reload from `source` if its generation moved; True when a new state was published.
        The build runs in a thread, off the event loop; a failed build is logged and the current
        state stays."""
        source = self.source
        if source is None:
            return False
        generation = await asyncio.to_thread(source.generation)
        if generation == self._generation:
            return False
        self._generation = generation

        def build() -> ServingState:
            return self.prepare(source.build(), generation)

        started = time.perf_counter()
        try:
            state = await asyncio.to_thread(build)
        except Exception:
            logger.exception(
                "reload of generation %s failed; still serving generation %s",
                generation,
                self._state.generation,
            )
            return False
        self.reload(state)
        logger.info(
            "serving generation %s (%d APIs), built in %.1f ms",
            generation,
            len(state.apis),
            (time.perf_counter() - started) * 1000,
        )
        return True

    async def _watch(self) -> None:
        while True:
            try:
                await self.refresh()
            except asyncio.CancelledError:
                raise
            except Exception:  # the source itself failed (e.g. the database is locked for long)
                logger.exception("checking for a new configuration failed")
            await asyncio.sleep(RELOAD_POLL_SECONDS)

    def start_watching(self) -> None:
        """Start polling `source` (done at ASGI lifespan startup; idempotent)."""
        if self.source is not None and self._watcher is None:
            self._watcher = asyncio.get_running_loop().create_task(self._watch(), name="portico-reload")

    async def stop_watching(self) -> None:
        watcher, self._watcher = self._watcher, None
        if watcher is not None:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher

    # ---------------------------------------------------------------- ASGI entry

    async def __call__(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            await self.handle(scope, receive, send)
        elif kind == "lifespan":
            await self._lifespan(receive, send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                self.start_watching()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.stop_watching()
                for hook in self._on_shutdown:
                    try:
                        await hook()
                    except Exception:  # shutdown must finish even if one hook fails
                        logger.exception("shutdown hook failed")
                await send({"type": "lifespan.shutdown.complete"})
                return

    # ---------------------------------------------------------------- the phases

    async def handle(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        ctx = self._parse(scope, receive)
        try:
            response = await self._process(ctx)
        except GatewayError as exc:
            response = self._error(ctx, exc)
        except Exception as exc:  # a bug in a phase or plugin must not take the worker down
            logger.exception("unhandled error in the request pipeline")
            response = self._error(ctx, GatewayError(ErrorType.INTEGRATION_FAILURE, repr(exc)))
        sent = -1
        try:
            sent = await self._respond(ctx, response, send)
        finally:
            if self._access_log is not None:
                self._access_log.log(ctx, response, max(sent, 0))
        if self._edge_secret is not None and not ctx.body.finished:
            await ctx.body.drain()

    def _parse(self, scope: dict[str, Any], receive: Receive) -> RequestContext:
        raw_headers = scope["headers"]
        client = scope.get("client")
        client_ip = client[0] if client else "127.0.0.1"
        protocol = "HTTP/" + scope.get("http_version", "1.1")
        if self._edge_secret is not None and raw_headers and raw_headers[-1][0] == EDGE_HEADER:
            # Passed on by the edge, which appends this header last: "<secret> <client ip> <version>".
            secret, _, rest = raw_headers[-1][1].partition(b" ")
            raw_headers = raw_headers[:-1]
            if hmac.compare_digest(secret, self._edge_secret):
                ip, _, version = rest.partition(b" ")
                client_ip = ip.decode("latin-1")
                protocol = "HTTP/" + version.decode("latin-1")
        host = ""
        chunked = False
        content_length: int | None = None
        # The request head counts against AWS's header limit: request line plus every header.
        head_size = 0
        for name, value in raw_headers:
            head_size += len(name) + len(value) + 4
            if name == b"host":
                host = value.decode("latin-1")
            elif name == b"content-length":
                content_length = int(value) if value.isdigit() else None
            elif name == b"transfer-encoding":
                chunked = True
        raw_path = scope.get("raw_path")
        path = raw_path.decode("latin-1") if raw_path else scope["path"]
        ctx = RequestContext(
            request_id=self.ids.next(),
            method=scope["method"],
            raw_path=path,
            raw_query=scope["query_string"].decode("latin-1"),
            raw_headers=raw_headers,
            host=host,
            scheme=scope.get("scheme", "http"),
            protocol=protocol,
            client_ip=client_ip,
            body=RequestBody(receive, content_length, self.payload_limit, chunked),
            start_ns=time.perf_counter_ns(),
            time_epoch_ms=time.time_ns() // 1_000_000,
            account_id=self.account_id,
        )
        ctx.extra["head_size"] = head_size
        return ctx

    async def _process(self, ctx: RequestContext) -> Response:
        # Limits on the request line and headers come before any work on their content.
        head_size = ctx.extra["head_size"] + len(ctx.method) + len(ctx.raw_path) + len(ctx.raw_query) + 12
        if head_size > self.header_limit:
            if len(ctx.raw_path) + len(ctx.raw_query) > self.header_limit:
                raise GatewayError(ErrorType.URI_TOO_LONG, f"request line of {head_size} bytes")
            raise GatewayError(ErrorType.HEADERS_TOO_LARGE, f"request head of {head_size} bytes")

        # decide: one call selects API and stage, matches the route and spends throttle tokens.
        # The state is read once: this request finishes on it whatever reloads happen meanwhile.
        state = self._state
        verdict = state.gateway.decide(ctx.host, ctx.method, ctx.raw_path)
        api_index = verdict.api_index
        api = state.apis[api_index] if api_index >= 0 else None
        ctx.api = api
        stage: StageRuntime | None = None
        if api is not None and verdict.stage_index >= 0:
            stage = api.stages[verdict.stage_index]
            if verdict.canary and stage.canary is not None:
                stage = stage.canary
            ctx.stage = stage
        ctx.path = verdict.path
        cors = _cors_of(api, stage)
        if cors is not None:
            origin = ctx.header("origin")
            if is_preflight(ctx.method, origin, ctx.header("access-control-request-method")):
                return Response(204, cors.preflight_headers(origin))
        kind = verdict.kind
        if kind != _ROUTE:
            if kind == _THROTTLED:
                ctx.route = stage.routes[verdict.route_index] if stage is not None else None
                raise GatewayError(ErrorType.THROTTLED, f"retry after {verdict.retry_after_ms} ms")
            if kind == _BAD_REQUEST:
                raise GatewayError(ErrorType.BAD_REQUEST, "malformed request path")
            if api is not None and api.kind == "rest":
                # REST APIs answer an unknown path, method or stage with 403 Missing Authentication Token.
                raise GatewayError(ErrorType.MISSING_AUTHENTICATION_TOKEN, "no route matched")
            raise GatewayError(ErrorType.RESOURCE_NOT_FOUND, "no route matched")
        assert api is not None and stage is not None
        route = stage.routes[verdict.route_index]
        ctx.route = route
        ctx.path_params = verdict.path_params

        # authorize: plugins (and, later, authorizers) may answer instead of the integration.
        for hook in self._on_request:
            early = await hook(ctx)
            if early is not None:
                return early

        # integrate
        response = await route.integration(ctx)

        if cors is not None:
            response.headers = cors.apply(response.headers, ctx.header("origin"))
        for after in self._on_response:
            response = await after(ctx, response)
        return response

    def _error(self, ctx: RequestContext, exc: GatewayError) -> Response:
        kind = ctx.api.kind if ctx.api is not None else "http"
        status, body, extra = error_status_and_body(exc.error_type, kind)
        ctx.extra["error"] = exc
        if exc.error_type is ErrorType.FUNCTION_ERROR or exc.error_type is ErrorType.INTEGRATION_FAILURE:
            logger.warning("request %s: %s: %s", ctx.request_id, exc.error_type.value, exc.detail)
        headers = [("content-type", "application/json"), *extra]
        cors = _cors_of(ctx.api, ctx.stage)
        if cors is not None:
            headers = cors.apply(headers, ctx.header("origin"))
        return Response(status, headers, body)

    async def _respond(self, ctx: RequestContext, response: Response, send: Send) -> int:
        """Send `response`; returns the number of body bytes sent."""
        headers = [
            (name.encode("latin-1"), value.encode("latin-1", "replace")) for name, value in response.headers
        ]
        headers.append((b"apigw-requestid", ctx.request_id.encode()))
        stream = response.stream
        if stream is None:
            body = response.body
            headers.append((b"content-length", str(len(body)).encode()))
            await send({"type": "http.response.start", "status": response.status, "headers": headers})
            await send({"type": "http.response.body", "body": body, "more_body": False})
            return len(body)
        await send({"type": "http.response.start", "status": response.status, "headers": headers})
        sent = 0
        try:
            async for chunk in stream:
                if chunk:
                    sent += len(chunk)
                    await send({"type": "http.response.body", "body": chunk, "more_body": True})
        except (asyncio.CancelledError, GeneratorExit):
            raise
        except Exception as exc:
            # The status line is gone already. Ending the body normally would hand the client a
            # truncated body that looks complete, so the error propagates and the server aborts
            # the connection instead.
            logger.warning("request %s: response stream failed after %d bytes: %r", ctx.request_id, sent, exc)
            raise
        finally:
            close = getattr(stream, "aclose", None)
            if close is not None:
                await close()
        await send(_STREAM_END)
        return sent


def _cors_of(api: ApiRuntime | None, stage: StageRuntime | None) -> Any:
    """The CORS policy of the deployment serving a request (the API's before a stage is known)."""
    if stage is not None:
        return stage.cors
    return api.cors if api is not None else None


def _overrides(plugin: Plugin, hook: str) -> bool:
    return getattr(type(plugin), hook) is not getattr(Plugin, hook)
