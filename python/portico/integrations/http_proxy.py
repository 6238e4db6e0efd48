"""HTTP_PROXY integration for HTTP APIs (apigatewayv2): the request passes through to an HTTP endpoint.

AWS behaviour reproduced (aws-semantics §3.2):

- `integrationMethod` ANY sends the client's verb; any other method is sent as configured.
- `${stageVariables.x}` in the URI is replaced from the stage; `{var}` / `{proxy}` from the route's path
  parameters (raw: percent-encoding as the client sent it).
- For the `$default` route, and for a URI with no path at all, the request path (stage removed) is
  appended to the URI. The client's raw query string is forwarded, after the URI's own query if any.
- Request headers pass through except hop-by-hop ones (and those named by `Connection`), `Host` (the
  backend's), `Content-Length` (set from the body actually sent) and `Expect`. Incoming
  `X-Forwarded-For/-Proto/-Host` are not sent: they are folded, with any `Forwarded`, into one
  RFC 7239 `Forwarded` header to which this hop appends
  `by=<gateway ip>;for=<client ip>;host=<api host>;proto=<scheme>`.
  `Via: HTTP/1.1 AmazonAPIGateway` is added, and `X-Amzn-Trace-Id` when the client sent none.
- Response: status and headers pass through, minus hop-by-hop headers; a `Content-Type` of
  `application/json` is added when the backend sent none (API Gateway always sends one).
- `timeoutInMillis` bounds connect + request upload + response headers -> 503 `Service Unavailable`
  (INTEGRATION_TIMEOUT); refused connection, DNS failure, reset -> 500 `Internal Server Error`
  (INTEGRATION_FAILURE).

Bodies are never held whole unless small: the request body is streamed from the client into the upstream
request, the response body from the upstream to the client (bounded by the client's read-side flow
control). Small bodies (declared length <= `SMALL_BODY`) go in one piece, which saves a round of async
plumbing.

Where AWS's behaviour differs because AWS buffers: AWS's timeout covers the whole integration response;
a streaming proxy cannot answer 503 once the response has started, and a total deadline would cut slow
clients. So after the headers the same `timeoutInMillis` applies to each body read (an idle timeout): a
stalled upstream is cut, a slow client is not.

The HTTP client sits behind `HttpTransport`. The default, `native`, is Portico's own HTTP/1.1 client
(`portico.integrations.upstream.NativeTransport`): asyncio Protocols on the worker's event loop, the
response head parsed by the Rust core in one call. It costs no hand-off to another thread, which is
what bounded the third-party clients (same run, wrk -c32 against nginx on loopback: native 27k req/s,
pyreqwest (Rust, on its own tokio thread; since removed) 15k, aiohttp 10.5k). `aiohttp`
(`AiohttpTransport`) remains as the pure-Python alternative. `default_transport()` picks one per
process (env `PORTICO_HTTP_TRANSPORT=native|aiohttp` overrides the default); each keeps its keep-alive
pool per event loop, created lazily; `await transport.close()` closes it on shutdown.
"""

from __future__ import annotations

import asyncio
import ipaddress
import os
import re
import socket
from collections.abc import AsyncIterator, Callable
from typing import Any, Protocol

from portico._core import RequestIds
from portico.dataplane.context import RequestContext, Response
from portico.dataplane.errors import ErrorType, GatewayError
from portico.integrations.upstream import NativeTransport

__all__ = [
    "AiohttpTransport",
    "HttpProxyIntegration",
    "HttpTransport",
    "NativeTransport",
    "UpstreamResponse",
    "default_transport",
]

# Bodies up to this size (declared by Content-Length) are sent/returned in one piece.
SMALL_BODY = 64 * 1024

# Hop-by-hop headers (RFC 9110 §7.6.1 plus the legacy ones), never forwarded in either direction.
HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-connection",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "trailers",
        "transfer-encoding",
        "upgrade",
    }
)
# Request headers this hop replaces or handles itself.
_X_FORWARDED = frozenset({"x-forwarded-for", "x-forwarded-proto", "x-forwarded-host"})
_REQ_SPECIAL = _X_FORWARDED | {"forwarded", "via", "x-amzn-trace-id", "user-agent"}
_REQ_DROP = HOP_BY_HOP | {"host", "content-length", "expect"}
_REQ_SKIP = _REQ_DROP | _REQ_SPECIAL
# `Connection` values that name no header beyond the hop-by-hop ones (dropped anyway).
_PLAIN_CONNECTION = frozenset({"keep-alive", "close", "upgrade", "te", "keep-alive, te", "te, keep-alive"})
# Response headers looked at (content-type, content-length) or dropped (hop-by-hop).
_RESP_SPECIAL = HOP_BY_HOP | {"content-length", "content-type"}

_VIA = "HTTP/1.1 AmazonAPIGateway"
_VIA_HEADER = ("via", _VIA)
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_STAGE_VAR = re.compile(r"\$\{stageVariables\.([A-Za-z0-9_]+)\}")
_PATH_VAR = re.compile(r"\{([A-Za-z0-9_.-]+)\+?\}")
_TRACE_ID = re.compile(r"(?:^|;)\s*Root=")
_ids = RequestIds()


def _reseed() -> None:
    global _ids
    _ids = RequestIds()


# Workers are forked: a fresh generator in each child, so that no two workers make the same trace ids.
os.register_at_fork(after_in_child=_reseed)


class UpstreamResponse(Protocol):
    """The upstream's answer once its headers have arrived."""

    status: int
    # Lower-case names, raw values, in arrival order.
    headers: list[tuple[str, str]]

    async def read(self) -> bytes:
        """The whole remaining body; releases the connection to the pool."""
        ...

    def chunks(self) -> AsyncIterator[bytes]:
        """The body chunk by chunk; releases the connection when exhausted, drops it if closed early."""
        ...

    def abort(self) -> None:
        """Drop the connection without reading the body (it is not reused)."""
        ...


class HttpTransport(Protocol):
    """A pooled HTTP/1.1 client. `body` is None, bytes, or an async iterator of chunks.

    The transport frames the body: bytes go with their Content-Length; an async iterator with the
    `content-length` the caller puts in `headers` when it knows it, else chunked.
    """

    async def send(
        self,
        method: str,
        url: str,
        headers: list[tuple[str, str]],
        body: bytes | AsyncIterator[bytes] | None,
        timeout: float,
    ) -> UpstreamResponse:
        """Send and wait for the response headers.

        `timeout` (seconds) bounds the connect and then every read (the wait for the response headers,
        and each body read after): past it, GatewayError(INTEGRATION_TIMEOUT). An upstream that cannot
        be reached (refused, DNS, reset) raises GatewayError(INTEGRATION_FAILURE).
        """
        ...

    async def close(self) -> None: ...


# --------------------------------------------------------------------------------------------------
# Transports


class _AiohttpResponse:
    __slots__ = ("_resp", "headers", "status")

    def __init__(self, resp: Any) -> None:
        self._resp = resp
        self.status: int = resp.status
        self.headers = [(k.decode("latin-1").lower(), v.decode("latin-1")) for k, v in resp.raw_headers]

    async def read(self) -> bytes:
        resp = self._resp
        try:
            return await resp.read()
        except BaseException:
            resp.close()
            raise
        finally:
            resp.release()

    async def chunks(self) -> AsyncIterator[bytes]:
        resp = self._resp
        done = False
        try:
            async for chunk in resp.content.iter_any():
                yield chunk
            done = True
        finally:
            if done:
                resp.release()
            else:
                resp.close()

    def abort(self) -> None:
        self._resp.close()


class AiohttpTransport:
    """aiohttp `ClientSession`, one per event loop: no cookies, no redirects, no decompression."""

    name = "aiohttp"

    def __init__(self, limit: int = 1024) -> None:
        self._limit = limit
        self._session: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._urls: dict[str, Any] = {}
        import aiohttp

        self._aiohttp = aiohttp
        self._timeouts: dict[float, Any] = {}

    def _new_session(self) -> Any:
        aiohttp = self._aiohttp
        connector = aiohttp.TCPConnector(limit=self._limit, limit_per_host=0, ttl_dns_cache=10)
        return aiohttp.ClientSession(
            connector=connector,
            cookie_jar=aiohttp.DummyCookieJar(),
            auto_decompress=False,
            # Send what the client sent: no Accept/Accept-Encoding/User-Agent/Content-Type of our own.
            skip_auto_headers=("Accept", "Accept-Encoding", "User-Agent", "Content-Type"),
            timeout=aiohttp.ClientTimeout(total=None),
            trust_env=False,
            raise_for_status=False,
        )

    def _url(self, url: str) -> Any:
        cached = self._urls.get(url)
        if cached is None:
            if len(self._urls) >= 4096:
                self._urls.clear()
            from yarl import URL

            # encoded=True: keep the client's percent-encoding byte for byte.
            cached = self._urls[url] = URL(url, encoded=True)
        return cached

    async def send(
        self,
        method: str,
        url: str,
        headers: list[tuple[str, str]],
        body: bytes | AsyncIterator[bytes] | None,
        timeout: float,
    ) -> UpstreamResponse:
        session = self._session
        if session is None or self._loop is not asyncio.get_running_loop():
            session = self._session = self._new_session()
            self._loop = asyncio.get_running_loop()
        client_timeout = self._timeouts.get(timeout)
        if client_timeout is None:
            client_timeout = self._timeouts[timeout] = self._aiohttp.ClientTimeout(
                total=None, sock_connect=timeout, sock_read=timeout
            )
        try:
            resp = await session.request(
                method,
                self._url(url),
                headers=headers,
                data=body,
                allow_redirects=False,
                timeout=client_timeout,
            )
        except TimeoutError:
            raise GatewayError(ErrorType.INTEGRATION_TIMEOUT, f"upstream timed out: {url}") from None
        except (self._aiohttp.ClientError, OSError) as exc:
            raise GatewayError(ErrorType.INTEGRATION_FAILURE, f"{type(exc).__name__}: {exc}") from exc
        return _AiohttpResponse(resp)

    async def close(self) -> None:
        session, self._session = self._session, None
        if session is not None and not session.closed:
            await session.close()


_TRANSPORTS: dict[str, Callable[[], HttpTransport]] = {"native": NativeTransport, "aiohttp": AiohttpTransport}
_DEFAULT_KIND = "native"
_default: HttpTransport | None = None


def make_transport(kind: str | None = None) -> HttpTransport:
    """A new transport of `kind` (`native` or `aiohttp`; env PORTICO_HTTP_TRANSPORT, else `native`)."""
    kind = (kind or os.environ.get("PORTICO_HTTP_TRANSPORT") or _DEFAULT_KIND).strip().lower()
    try:
        factory = _TRANSPORTS[kind]
    except KeyError:
        raise ValueError(f"unknown HTTP transport {kind!r} (expected one of {sorted(_TRANSPORTS)})") from None
    return factory()


def default_transport() -> HttpTransport:
    """The process-wide transport shared by HTTP_PROXY integrations (close it on shutdown)."""
    global _default
    if _default is None:
        _default = make_transport()
    return _default


# --------------------------------------------------------------------------------------------------
# Helpers


def _forwarded_value(value: str) -> str:
    """An RFC 7239 value: a token as is, anything else quoted (IPv6 as "[addr]")."""
    if _TOKEN.fullmatch(value):
        return value
    if ":" in value and not value.startswith("["):
        try:
            ipaddress.IPv6Address(value)
            value = f"[{value}]"
        except ValueError:
            pass
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


_egress: dict[str, str] = {}


def _egress_ip(host: str) -> str:
    """The gateway's own address toward `host` (routing lookup only; nothing is sent)."""
    ip = _egress.get(host)
    if ip is None:
        try:
            addr = ipaddress.ip_address(host.strip("[]"))
            family = socket.AF_INET6 if addr.version == 6 else socket.AF_INET
            with socket.socket(family, socket.SOCK_DGRAM) as sock:
                sock.connect((str(addr), 9))
                ip = sock.getsockname()[0]
        except (ValueError, OSError):
            # A host name: resolving it here would block the loop; the pooled client resolves it.
            ip = "unknown"
        if len(_egress) > 1024:
            _egress.clear()
        _egress[host] = ip
    return ip


def _trace_id() -> str:
    """An X-Ray trace header value: Root=1-<epoch seconds, 8 hex>-<96 random bits, 24 hex>."""
    return _ids.trace_id()


def _split_url(url: str) -> tuple[str, str, str]:
    """(origin "scheme://authority", path, query) of an absolute http(s) URL."""
    scheme_end = url.find("://")
    if scheme_end < 0:
        raise ValueError(f"HTTP_PROXY uri must be an absolute http(s) URL: {url!r}")
    rest_start = scheme_end + 3
    ends = [i for i in (url.find("/", rest_start), url.find("?", rest_start)) if i >= 0]
    path_start = min(ends) if ends else len(url)
    origin = url[:path_start]
    tail = url[path_start:]
    path, _, query = tail.partition("?")
    return origin, path, query


def _host_of(origin: str) -> str:
    authority = origin[origin.find("://") + 3 :]
    authority = authority.rpartition("@")[2]
    if authority.startswith("["):
        return authority[1 : authority.find("]")]
    return authority.partition(":")[0]


# --------------------------------------------------------------------------------------------------
# The integration


class HttpProxyIntegration:
    """HTTP_PROXY (HTTP APIs): forwards the request to `uri` and streams the response back."""

    __slots__ = (
        "_agent",
        "_append_path",
        "_by",
        "_hops",
        "_method",
        "_parts",
        "_static",
        "_timeout",
        "_transport",
        "method",
        "timeout_ms",
        "uri",
    )

    def __init__(
        self,
        uri: str,
        method: str = "ANY",
        timeout_ms: int = 30000,
        route_is_default: bool = False,
        transport: HttpTransport | None = None,
    ) -> None:
        if not uri.lower().startswith(("http://", "https://")):
            raise ValueError(f"HTTP_PROXY uri must be an absolute http(s) URL: {uri!r}")
        self.uri = uri
        self.method = (method or "ANY").upper()
        self._method = None if self.method == "ANY" else self.method
        self.timeout_ms = int(timeout_ms)
        self._timeout = max(self.timeout_ms, 50) / 1000.0
        self._transport = transport
        self._hops: dict[tuple[str, str, str, str], str] = {}
        # (api id, its user-agent header) for the last API seen (an integration usually serves one).
        self._agent: tuple[str, tuple[str, str]] = ("", ("user-agent", ""))
        # Template: literal strings and ("s"|"p", name) placeholders, in order.
        parts: list[str | tuple[str, str]] = []
        pos = 0
        for match in re.finditer(r"\$\{stageVariables\.([A-Za-z0-9_]+)\}|\{([A-Za-z0-9_.-]+)\+?\}", uri):
            if match.start() > pos:
                parts.append(uri[pos : match.start()])
            if match.group(1) is not None:
                parts.append(("s", match.group(1)))
            else:
                parts.append(("p", match.group(2)))
            pos = match.end()
        if pos < len(uri):
            parts.append(uri[pos:])
        if all(isinstance(p, str) for p in parts):
            origin, path, query = _split_url(uri)
            self._static: tuple[str, str, str] | None = (origin, path, query)
            self._parts: list[str | tuple[str, str]] | None = None
            self._append_path = route_is_default or path in ("", "/")
            self._by: str | None = _egress_ip(_host_of(origin))
        else:
            self._static = None
            self._parts = parts
            # Whether the URI has a path is known only after substitution when the authority is templated.
            self._append_path = route_is_default
            self._by = None

    def edge_route(self, variables: dict[str, str]) -> dict[str, Any] | None:
        """What the edge needs to serve this integration for a stage with `variables` without
        Python (`portico.dataplane.edge`), or None when it cannot: a TLS upstream, or an authority
        that depends on a path parameter. Stage variables are substituted here; `{name}` path
        parameters stay in the path and query for the edge to fill in, raw, as `_url` does."""
        if self._static is not None:
            origin, path, query = self._static
            append = self._append_path
        else:
            pieces: list[str] = []
            for part in self._parts or ():
                if isinstance(part, str):
                    pieces.append(part)
                elif part[0] == "s":
                    value = variables.get(part[1], "")
                    if "{" in value or "}" in value:
                        return None  # would read as a path-parameter marker
                    pieces.append(value)
                else:
                    pieces.append("{" + part[1] + "}")
            try:
                origin, path, query = _split_url("".join(pieces))
            except ValueError:
                return None
            if "{" in origin:
                return None
            append = self._append_path or path in ("", "/")
        if not origin.lower().startswith("http://"):
            return None
        by = self._by if self._by is not None else _egress_ip(_host_of(origin))
        return {
            "kind": "proxy",
            "origin": origin,
            "path": path,
            "query": query,
            "append_path": append,
            "method": self._method,
            "timeout_ms": self.timeout_ms,
            "by": by,
        }

    def transport(self) -> HttpTransport:
        if self._transport is None:
            self._transport = default_transport()
        return self._transport

    # ---- request line

    def _url(self, ctx: RequestContext) -> tuple[str, str]:
        """The upstream URL and its origin."""
        static = self._static
        if static is not None:
            origin, path, query = static
            append = self._append_path
        else:
            variables = ctx.stage.variables if ctx.stage is not None else {}
            params = ctx.path_params or {}
            out: list[str] = []
            for part in self._parts or ():
                if isinstance(part, str):
                    out.append(part)
                elif part[0] == "s":
                    out.append(variables.get(part[1], ""))
                else:
                    out.append(params.get(part[1], ""))
            origin, path, query = _split_url("".join(out))
            append = self._append_path or path in ("", "/")
        if append:
            path = path.rstrip("/") + (ctx.path or "/")
        elif not path:
            path = "/"
        raw_query = ctx.raw_query
        if raw_query:
            query = f"{query}&{raw_query}" if query else raw_query
        if query:
            return f"{origin}{path}?{query}", origin
        return origin + path, origin

    # ---- headers

    def _headers(self, ctx: RequestContext, origin: str) -> tuple[list[tuple[str, str]], bool]:
        """The upstream request's headers, and whether the client announced a chunked body."""
        out: list[tuple[str, str]] = []
        special: dict[str, str] | None = None
        connection: str | None = None
        chunked = False
        skip = _REQ_SKIP
        for item in ctx.headers:
            name = item[0]
            if name in skip:
                if name in _REQ_SPECIAL:
                    if special is None:
                        special = {}
                    prev = special.get(name)
                    special[name] = item[1] if prev is None else f"{prev}, {item[1]}"
                elif name == "connection":
                    connection = item[1] if connection is None else f"{connection}, {item[1]}"
                elif name == "transfer-encoding":
                    chunked = True
                continue
            out.append(item)
        if connection and connection.lower() not in _PLAIN_CONNECTION:
            named = {t.strip().lower() for t in connection.split(",")}
            out = [(n, v) for n, v in out if n not in named]
        # Forwarded: the client's own, then its X-Forwarded-* translated, then this hop.
        hop = self._hops.get((ctx.client_ip, ctx.host, ctx.scheme, origin))
        if hop is None:
            hop = self._hop_element(ctx, origin)
        api = ctx.api
        if special is None:
            out.append(("forwarded", hop))
            out.append(_VIA_HEADER)
            out.append(("x-amzn-trace-id", _trace_id()))
            if api is not None:
                # What API Gateway sends when the client sent none (else the client library adds its own).
                agent = self._agent
                if agent[0] != api.api_id:
                    agent = self._agent = (api.api_id, ("user-agent", "AmazonAPIGateway_" + api.api_id))
                out.append(agent[1])
            return out, chunked
        elements: list[str] = []
        if "forwarded" in special:
            elements.append(special["forwarded"])
        xff = special.get("x-forwarded-for")
        xfh = special.get("x-forwarded-host")
        xfp = special.get("x-forwarded-proto")
        if xff or xfh or xfp:
            hops = [h.strip() for h in xff.split(",") if h.strip()] if xff else []
            extra = ""
            if xfh:
                extra += ";host=" + _forwarded_value(xfh.split(",")[0].strip())
            if xfp:
                extra += ";proto=" + _forwarded_value(xfp.split(",")[0].strip())
            if hops:
                elements.append("for=" + _forwarded_value(hops[0]) + extra)
                elements.extend("for=" + _forwarded_value(h) for h in hops[1:])
            elif extra:
                elements.append(extra[1:])
        elements.append(hop)
        out.append(("forwarded", ", ".join(elements)))
        via = special.get("via")
        out.append(("via", f"{via}, {_VIA}" if via else _VIA))
        trace = special.get("x-amzn-trace-id")
        if trace is None or not _TRACE_ID.search(trace):
            trace = _trace_id()
        out.append(("x-amzn-trace-id", trace))
        agent_value = special.get("user-agent")
        if agent_value is None and api is not None:
            agent_value = "AmazonAPIGateway_" + api.api_id
        if agent_value is not None:
            out.append(("user-agent", agent_value))
        return out, chunked

    def _hop_element(self, ctx: RequestContext, origin: str) -> str:
        """`by=..;for=..;host=..;proto=..` for this hop (memoized per client address and API host)."""
        key = (ctx.client_ip, ctx.host, ctx.scheme, origin)
        element = self._hops.get(key)
        if element is None:
            by = self._by if self._by is not None else _egress_ip(_host_of(origin))
            element = (
                f"by={_forwarded_value(by)};for={_forwarded_value(ctx.client_ip)};"
                f"host={_forwarded_value(ctx.host)};proto={ctx.scheme}"
            )
            if len(self._hops) >= 1024:
                self._hops.clear()
            self._hops[key] = element
        return element

    # ---- the call

    async def __call__(self, ctx: RequestContext) -> Response:
        url, origin = self._url(ctx)
        headers, chunked = self._headers(ctx, origin)
        method = self._method or ctx.method
        body_error: list[BaseException] | None = None
        body: bytes | AsyncIterator[bytes] | None = None
        # HTTP/1.x: no Content-Length and no Transfer-Encoding means no body (RFC 9112 §6.3).
        if ctx.body.content_length is not None or chunked or not ctx.protocol.startswith("HTTP/1"):
            body_error = []
            body = await self._request_body(ctx, headers, body_error)
        transport = self._transport or self.transport()
        try:
            upstream = await transport.send(method, url, headers, body, self._timeout)
        except TimeoutError:
            if body_error:
                raise body_error[0] from None
            raise GatewayError(
                ErrorType.INTEGRATION_TIMEOUT, f"no response within {self.timeout_ms} ms"
            ) from None
        except GatewayError:
            if body_error:
                raise body_error[0] from None
            raise
        except Exception as exc:
            if body_error:
                raise body_error[0] from None
            raise GatewayError(ErrorType.INTEGRATION_FAILURE, f"{type(exc).__name__}: {exc}") from exc
        if body_error:
            # The upstream answered before the client's body failed (e.g. passed the payload limit).
            upstream.abort()
            raise body_error[0]
        return await self._response(upstream, method)

    async def _request_body(
        self, ctx: RequestContext, headers: list[tuple[str, str]], errors: list[BaseException]
    ) -> bytes | AsyncIterator[bytes] | None:
        body = ctx.body
        length = body.content_length
        if length is not None and length <= SMALL_BODY:
            data = await body.read()
            # The transport frames a bytes body itself (Content-Length).
            return data if data or length else None
        # Unknown or large: peek the first chunk (a body-less request answers at once), then stream.
        stream = body.stream()
        try:
            first = await anext(stream, None)
        except BaseException:
            await stream.aclose()
            raise
        if first is None:
            return None
        if length is not None:
            # Granian enforces the declared length, so forwarding it is exact (no chunked upload).
            headers.append(("content-length", str(length)))

        async def relay() -> AsyncIterator[bytes]:
            try:
                yield first
                async for chunk in stream:
                    yield chunk
            except GeneratorExit:
                raise  # closed by the transport (e.g. the upstream answered early): not a body failure
            except BaseException as exc:
                # Remember why the upload stopped: the client library reports only a broken request.
                errors.append(exc)
                raise
            finally:
                await stream.aclose()

        return relay()

    async def _response(self, upstream: UpstreamResponse, method: str) -> Response:
        headers: list[tuple[str, str]] = []
        length: str | None = None
        has_type = False
        connection: str | None = None
        for item in upstream.headers:
            name = item[0]
            if name in _RESP_SPECIAL:
                if name == "content-type":
                    has_type = True
                    headers.append(item)
                elif name == "content-length":
                    # Set again below only where the bytes sent are exactly that many.
                    length = item[1]
                elif name == "connection":
                    connection = item[1]
                continue  # hop-by-hop
            headers.append(item)
        if connection and connection.lower() not in _PLAIN_CONNECTION:
            named = {t.strip().lower() for t in connection.split(",")}
            headers = [(n, v) for n, v in headers if n not in named]
        if not has_type:
            headers.append(("content-type", "application/json"))
        status = upstream.status
        size = int(length) if length is not None and length.isdigit() else None
        if method == "HEAD" or status in (204, 304) or status < 200:
            await upstream.read()
            if method == "HEAD" and size is not None:
                # The length of what a GET would return: sent as is, with no body.
                headers.append(("content-length", length))  # type: ignore[arg-type]
                return Response(status, headers, stream=_no_body())
            return Response(status, headers)
        if size is not None and size <= SMALL_BODY:
            try:
                return Response(status, headers, await upstream.read())
            except Exception as exc:
                raise GatewayError(ErrorType.INTEGRATION_FAILURE, f"reading the response: {exc}") from exc
        # Streamed. A declared Content-Length is kept: the client library stops at exactly that many
        # bytes and a short body ends in an aborted connection, never in a longer one. Without it the
        # server sends chunked.
        if size is not None:
            headers.append(("content-length", str(size)))
        return Response(status, headers, stream=upstream.chunks())


async def _no_body() -> AsyncIterator[bytes]:
    return
    yield b""  # pragma: no cover - makes this an async generator
