"""Portico's own HTTP/1.1 upstream client: asyncio Protocols on the worker's event loop, no threads.

`NativeTransport` implements `HttpTransport` (see `http_proxy`) for the HTTP_PROXY integration. It runs
entirely in callbacks of the event loop that serves the client (uvloop under Granian, or plain asyncio):
a request costs no hand-off to another thread, which is what bounded the third-party clients.

Connections
    One pool per (scheme, host, port) per event loop. Idle connections wait in a LIFO list (the most
    recently used goes out first: the warmest, and the least likely to have been closed by the upstream),
    at most `max_idle` of them; one unused for `idle_timeout` seconds is closed (4 s by default: under
    the 5 s keep-alive of Node and uvicorn, so that the upstream rarely closes one under our feet). A
    connection goes back to the pool as soon as its response has been received whole (the body is then
    held by the response object, never by the connection) and only if the upstream did not say
    `Connection: close`, answered HTTP/1.0 without `keep-alive`, delimited the body by closing, sent bytes
    beyond the response, or answered before the request body was sent whole. Any error closes it. An
    idle connection the upstream closes, or speaks on, is dropped from the pool at once.

Retry of a stale pooled connection
    An upstream may close an idle keep-alive connection while we reuse it; the request then meets a
    closed connection (EOF or reset with not one byte of response). Such a request is retried ONCE on a
    fresh connection when its body can be sent again (None, bytes, or an async iterator not yet pulled
    from) and when retrying cannot apply it twice: its method is idempotent (RFC 9110 §9.2.2: GET, HEAD,
    OPTIONS, TRACE, PUT, DELETE) or it carries an `Idempotency-Key`. A POST or PATCH is not retried once
    written: the same closed-without-answer signal also follows an upstream that applied the request and
    then died, which no client can tell apart. This is nginx's rule (a cached connection that fails is
    retried, except for POST/LOCK/PATCH once the request was sent, unless `proxy_next_upstream
    non_idempotent`) and Go's net/http's. A connection seen closed before anything is written to it is
    never used, whatever the method (that needs no retry).

Request
    The head is built as one string and written with the body in one `write` when the body is small.
    A body is None (no body; `Content-Length: 0` for POST/PUT/PATCH, as clients do), bytes (sent with
    its `Content-Length`), or an async iterator of chunks: sent with the caller's `content-length` header
    when it gives one (the total is checked), else with `Transfer-Encoding: chunked`. Uploads respect
    the transport's write flow control (pause_writing/resume_writing), so a slow upstream holds back the
    client instead of the whole body piling up in memory. The transport owns `host` (from the URL unless
    the caller gives one), `content-length`, `transfer-encoding` and `connection`; other caller headers
    (lower-case names) are sent as given, UTF-8 encoded; a CR or LF in one is refused.

Response
    The head (at most `MAX_HEAD` bytes, else INTEGRATION_FAILURE) is parsed by the Rust core in one
    call (`portico._core.parse_response_head`, httparse: strict status line, token names, no obs-fold,
    no control characters). Interim 1xx responses are skipped. Body framing per RFC 9112 §6.3: none for
    HEAD, 204 and 304; `Transfer-Encoding` with chunked last (decoded incrementally, trailers
    discarded) — with `Content-Length` too, the length is ignored and the connection not reused; else
    `Content-Length` (repeated identical values accepted, differing ones refused); else until close.
    `read()` returns the whole body; `chunks()` yields it as it arrives, with read-side flow control:
    the socket stops being read while more than `READ_HIGH` bytes wait unconsumed, and resumes when
    the consumer has taken them, so a slow client behind a fast upstream does not grow memory.

Timeouts and errors
    `timeout` bounds the connect, and each wait on the upstream: the response head, each body read, and
    each wait for the upstream to accept more of an upload; past it, GatewayError(INTEGRATION_TIMEOUT)
    and the connection is closed. Waits on the client (the next upload chunk, a slow reader) are not
    bounded here. Each connection owns at most one `loop.call_at` timer that is re-armed lazily: a wait
    only stores its deadline, and the timer, when it fires early, moves itself to the current deadline —
    no timer handle is created or cancelled per request. The connect uses `asyncio.timeout` (once per new
    connection, not per request). Refused, reset, DNS failure, TLS failure, malformed response:
    GatewayError(INTEGRATION_FAILURE). Host names are resolved by the loop's resolver (getaddrinfo in
    the default executor) when a connection is opened; addresses are used as they are.

HTTPS uses `ssl.create_default_context()` (certificate and host name verified) with ALPN `http/1.1`.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import ssl
from collections.abc import AsyncIterator
from functools import partial
from typing import Any

from portico._core import parse_response_head
from portico.dataplane.errors import ErrorType, GatewayError

__all__ = ["MAX_HEAD", "READ_HIGH", "ChunkedDecoder", "NativeTransport", "parse_response_head"]

# A response head (status line and headers; each interim 1xx head counts apart) longer than this is refused.
MAX_HEAD = 64 * 1024
# Streaming: the socket is paused while more than this many body bytes wait for the consumer.
READ_HIGH = 256 * 1024
# Bodies up to this size are written together with the head (one write, one syscall).
_COALESCE = 16 * 1024
_MAX_CHUNK_LINE = 4096

_IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"})
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})
_MANAGED = frozenset({"host", "content-length", "transfer-encoding", "connection"})
_SPECIAL = _MANAGED | {"idempotency-key", "x-idempotency-key"}
_DEFAULT_PORT = {"http": 80, "https": 443}

# Connection states
_IDLE, _HEAD, _BODY, _CLOSED = 0, 1, 2, 3
# Body framings
_LENGTH, _CHUNKED, _UNTIL_CLOSE = 1, 2, 3
# Framing flags from parse_response_head (rust/http1.rs)
_TRANSFER_ENCODING, _CHUNKED_LAST, _CLOSE, _KEEP_ALIVE = 1, 2, 4, 8


def _failure(detail: str) -> GatewayError:
    return GatewayError(ErrorType.INTEGRATION_FAILURE, detail)


def _timed_out(detail: str) -> GatewayError:
    return GatewayError(ErrorType.INTEGRATION_TIMEOUT, detail)


class _StaleConnection(GatewayError):
    """A reused connection closed before one byte of response: the request may be retried."""

    def __init__(self, detail: str) -> None:
        super().__init__(ErrorType.INTEGRATION_FAILURE, detail)


# --------------------------------------------------------------------------------------------------
# Chunked transfer coding


class ChunkedDecoder:
    """Incremental decoder of a chunked body (RFC 9112 §7.1).

    `feed(data, out)` appends the body bytes found in `data` to `out` and returns None while the body
    goes on; once the last chunk and the trailer section are complete it returns the bytes of `data`
    that follow the body (b"" from a well-behaved server). Chunk extensions and trailers are skipped.
    Malformed framing raises ValueError.
    """

    __slots__ = ("_buf", "_remaining", "_state", "_trailer")

    _SIZE, _DATA, _DATA_END, _TRAILER, _DONE = range(5)

    def __init__(self) -> None:
        self._buf = b""
        self._remaining = 0
        self._state = self._SIZE
        self._trailer = 0

    def feed(self, data: bytes, out: list[bytes]) -> bytes | None:
        if self._buf:
            data = self._buf + data
            self._buf = b""
        pos = 0
        end = len(data)
        while True:
            state = self._state
            if state == 1:  # _DATA
                left = end - pos
                if left <= 0:
                    return None
                need = self._remaining
                if left < need:
                    out.append(data[pos:] if pos else data)
                    self._remaining = need - left
                    return None
                out.append(data[pos : pos + need])
                pos += need
                self._remaining = 0
                self._state = 2
            elif state == 0 or state == 3:  # _SIZE, _TRAILER: one line
                nl = data.find(b"\n", pos)
                if nl < 0:
                    if end - pos > _MAX_CHUNK_LINE:
                        raise ValueError("chunk size line too long")
                    self._buf = data[pos:]
                    return None
                line = data[pos:nl]
                pos = nl + 1
                if line[-1:] == b"\r":
                    line = line[:-1]
                if state == 0:
                    size_text = line.split(b";", 1)[0].strip(b" \t")
                    if not size_text or len(size_text) > 15 or size_text.strip(b"0123456789abcdefABCDEF"):
                        raise ValueError(f"bad chunk size line {line[:40]!r}")
                    size = int(size_text, 16)
                    if size:
                        self._remaining = size
                        self._state = 1
                    else:
                        self._state = 3
                else:
                    if not line:
                        self._state = 4
                        return data[pos:]
                    self._trailer += len(line) + 2
                    if self._trailer > MAX_HEAD:
                        raise ValueError("trailer section too large")
                    if b"\r" in line:
                        raise ValueError("bare CR in trailer section")
            elif state == 2:  # _DATA_END: the CRLF after the chunk's data
                left = end - pos
                if left >= 2 and data[pos : pos + 2] == b"\r\n":
                    pos += 2
                elif left >= 1 and data[pos] == 10:  # bare LF
                    pos += 1
                elif left == 0 or (left == 1 and data[pos] == 13):
                    self._buf = data[pos:]
                    return None
                else:
                    raise ValueError("missing CRLF after chunk data")
                self._state = 0
            else:
                raise ValueError("data after the end of a chunked body")


# --------------------------------------------------------------------------------------------------
# The response


class _Response:
    """`UpstreamResponse`: status, headers, and the body as the connection delivers it."""

    __slots__ = (
        "_chunks",
        "_conn",
        "_done",
        "_error",
        "_queued",
        "_streaming",
        "_timeout",
        "headers",
        "status",
    )

    def __init__(
        self, status: int, headers: list[tuple[str, str]], conn: _Conn | None, timeout: float
    ) -> None:
        self.status = status
        self.headers = headers
        self._conn = conn
        self._timeout = timeout
        self._chunks: list[bytes] = []
        self._queued = 0
        self._done = False
        self._error: BaseException | None = None
        # Pause the socket past READ_HIGH queued bytes until read() says the caller wants it all.
        self._streaming = True

    async def read(self) -> bytes:
        if not self._done:
            self._streaming = False
            conn = self._conn
            if conn is not None and conn._read_paused:
                conn._resume_reading()
            while not self._done:
                if self._error is not None:
                    raise self._error
                await self._wait()
        chunks = self._chunks
        if not chunks:
            return b""
        self._chunks = []
        self._queued = 0
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    def chunks(self) -> AsyncIterator[bytes]:
        return _BodyChunks(self)

    def _take(self) -> bytes:
        """Everything queued, as one piece (the socket resumes if it was paused)."""
        chunks = self._chunks
        self._chunks = []
        self._queued = 0
        conn = self._conn
        if conn is not None and conn._read_paused:
            conn._resume_reading()
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    def abort(self) -> None:
        self._chunks = []
        self._queued = 0
        if self._done:
            return  # the connection is back in the pool (or closed) already: nothing to drop
        if self._error is None:
            self._error = _failure("response aborted")
        conn, self._conn = self._conn, None
        if conn is not None:
            conn._close()

    async def _wait(self) -> None:
        conn = self._conn
        if conn is None or conn._state == _CLOSED:
            raise self._error or _failure("upstream connection closed mid-body")
        fut = conn._loop.create_future()
        conn._waiter = fut
        conn._arm(self._timeout)
        try:
            await fut
        finally:
            if conn._resp is self:  # else: done, and the connection may serve another request already
                conn._deadline = 0.0
                conn._waiter = None


class _BodyChunks:
    """`_Response.chunks()`: the body as it arrives, each step everything queued so far.

    Exhausted, it leaves the connection to the pool; closed (or dropped) before the end, even before
    the first step, it closes the connection.
    """

    __slots__ = ("_resp",)

    def __init__(self, resp: _Response) -> None:
        self._resp = resp

    def __aiter__(self) -> _BodyChunks:
        return self

    async def __anext__(self) -> bytes:
        resp = self._resp
        try:
            while True:
                if resp._chunks:
                    return resp._take()
                if resp._done:
                    raise StopAsyncIteration
                if resp._error is not None:
                    raise resp._error
                await resp._wait()
        except StopAsyncIteration:
            raise
        except BaseException:
            resp.abort()
            raise

    async def aclose(self) -> None:
        if not self._resp._done:
            self._resp.abort()

    def __del__(self) -> None:
        if not self._resp._done:
            with contextlib.suppress(RuntimeError):  # collected after its loop closed
                self._resp.abort()


# --------------------------------------------------------------------------------------------------
# The connection


class _Conn(asyncio.Protocol):
    """One upstream connection: writes requests, parses responses in data_received."""

    __slots__ = (
        "_buf",
        "_chunked",
        "_deadline",
        "_got_bytes",
        "_head_only",
        "_head_waiter",
        "_keep_alive",
        "_loop",
        "_mode",
        "_pool",
        "_read_paused",
        "_remaining",
        "_resp",
        "_state",
        "_timeout",
        "_timer",
        "_timer_at",
        "_uploading",
        "_waiter",
        "_write_paused",
        "idle_since",
        "transport",
        "uses",
    )

    def __init__(self, pool: _Pool, loop: asyncio.AbstractEventLoop) -> None:
        self._pool = pool
        self._loop = loop
        self.transport: Any = None
        self._state = _IDLE
        self._buf = b""
        self._resp: _Response | None = None
        self._head_waiter: asyncio.Future[_Response] | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._deadline = 0.0
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = 0.0
        self._timeout = 0.0
        self._read_paused = False
        self._write_paused = False
        self._uploading = False
        self._head_only = False
        self._keep_alive = True
        self._got_bytes = False
        self._mode = 0
        self._remaining = 0
        self._chunked: ChunkedDecoder | None = None
        self.idle_since = 0.0
        self.uses = 0

    # ---- asyncio callbacks

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        state = self._state
        if state == _HEAD:
            self._got_bytes = True
            self._head_data(data)
        elif state == _BODY:
            self._body_data(data)
        elif state == _IDLE:
            # An upstream must not speak unasked (nor answer twice): the connection is unusable.
            self._close()

    def eof_received(self) -> bool | None:
        return None  # close our side too; connection_lost() follows

    def connection_lost(self, exc: Exception | None) -> None:
        state = self._state
        self._state = _CLOSED
        self._cancel_timer()
        if state == _IDLE:
            self._pool.discard(self)
            return
        if state == _CLOSED:
            return  # closed by us: whoever closed it has told the waiters
        why = f": {exc}" if exc else ""
        if state == _HEAD:
            if self.uses > 1 and not self._got_bytes:
                error: GatewayError = _StaleConnection("reused upstream connection closed" + why)
            else:
                error = _failure("upstream closed the connection before answering" + why)
        else:
            resp = self._resp
            if self._mode == _UNTIL_CLOSE and exc is None and resp is not None:
                self._keep_alive = False
                self._finish(resp)
                return
            error = _failure("upstream closed the connection mid-body" + why)
        self._wake_with(error)

    def pause_writing(self) -> None:
        self._write_paused = True

    def resume_writing(self) -> None:
        self._write_paused = False
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    # ---- response parsing

    def _head_data(self, data: bytes) -> None:
        buf = self._buf + data if self._buf else data
        while True:
            try:
                parsed = parse_response_head(buf)
            except ValueError as exc:
                self._fail(_failure(f"malformed response head from the upstream: {exc}"))
                return
            if parsed is None:
                if len(buf) > MAX_HEAD:
                    self._fail(_failure(f"response head larger than {MAX_HEAD} bytes"))
                    return
                self._buf = buf
                return
            consumed, status, minor, headers, size, flags = parsed
            if consumed > MAX_HEAD:
                self._fail(_failure(f"response head larger than {MAX_HEAD} bytes"))
                return
            if status >= 200:
                break
            if status == 101:
                self._fail(_failure("upstream switched protocols (101) unasked"))
                return
            buf = buf[consumed:]  # an interim response (100 Continue, 103 Early Hints): skipped
        self._buf = b""

        # Framing (RFC 9112 §6.3). HTTP/1.1 keeps the connection unless told to close; 1.0 closes it
        # unless told to keep it.
        keep_alive = not flags & _CLOSE and (minor >= 1 or bool(flags & _KEEP_ALIVE))
        resp = _Response(status, headers, self, self._timeout)
        self._resp = resp
        self._deadline = 0.0
        rest = buf[consumed:] if consumed < len(buf) else b""
        if self._head_only or status == 204 or status == 304:
            self._keep_alive = keep_alive and not rest
            self._deliver_head(resp)
            self._finish(resp)
            return
        if flags & _TRANSFER_ENCODING:
            # A Content-Length beside Transfer-Encoding is ignored, and the connection not reused.
            if size >= 0 or minor == 0:
                keep_alive = False
            if flags & _CHUNKED_LAST and minor >= 1:
                self._mode = _CHUNKED
                self._chunked = ChunkedDecoder()
            else:
                self._mode = _UNTIL_CLOSE
                keep_alive = False
        elif size >= 0:
            if len(rest) >= size:
                # The whole body is here already (the common case for small responses).
                if len(rest) > size:
                    keep_alive = False  # bytes beyond the response: the framing is off
                    rest = rest[:size]
                if rest:
                    resp._chunks.append(rest)
                    resp._queued = size
                # Done at once (what _deliver_head and _finish do, inlined for the common case).
                resp._done = True
                resp._conn = None
                self._resp = None
                waiter = self._head_waiter
                self._head_waiter = None
                if waiter is not None and not waiter.done():
                    waiter.set_result(resp)
                drain = self._waiter  # an upload waiting for the upstream to read: it answered instead
                if drain is not None:
                    self._waiter = None
                    if not drain.done():
                        drain.set_result(None)
                if keep_alive and not self._uploading:
                    self._state = _IDLE
                    self._pool.release(self)
                else:
                    self._close()
                return
            self._mode = _LENGTH
            self._remaining = size
        else:
            self._mode = _UNTIL_CLOSE
            keep_alive = False
        self._keep_alive = keep_alive
        self._state = _BODY
        self._deliver_head(resp)
        if rest:
            self._body_data(rest)

    def _deliver_head(self, resp: _Response) -> None:
        waiter = self._head_waiter
        self._head_waiter = None
        if waiter is not None and not waiter.done():
            waiter.set_result(resp)
        # else: the request was abandoned; whoever abandoned it closed the connection

    def _body_data(self, data: bytes) -> None:
        resp = self._resp
        assert resp is not None
        mode = self._mode
        if mode == _LENGTH:
            need = self._remaining
            if len(data) < need:
                self._remaining = need - len(data)
                self._push(resp, data)
                return
            if len(data) > need:
                self._keep_alive = False
                data = data[:need]
            self._remaining = 0
            self._push(resp, data)
            self._finish(resp)
        elif mode == _CHUNKED:
            out: list[bytes] = []
            try:
                rest = self._chunked.feed(data, out)  # type: ignore[union-attr]
            except ValueError as exc:
                for piece in out:
                    self._push(resp, piece)
                self._fail(_failure(f"malformed chunked body from the upstream: {exc}"))
                return
            for piece in out:
                self._push(resp, piece)
            if rest is not None:
                if rest:
                    self._keep_alive = False
                self._chunked = None
                self._finish(resp)
        else:
            self._push(resp, data)

    def _push(self, resp: _Response, data: bytes) -> None:
        if not data:
            return
        resp._chunks.append(data)
        resp._queued += len(data)
        if resp._streaming and resp._queued > READ_HIGH and not self._read_paused:
            self._read_paused = True
            self.transport.pause_reading()
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            if not waiter.done():
                waiter.set_result(None)

    def _finish(self, resp: _Response) -> None:
        """The response has been received whole: hand the body over and release or close."""
        resp._done = True
        resp._conn = None
        self._resp = None
        self._deadline = 0.0
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            if not waiter.done():
                waiter.set_result(None)
        if self._read_paused:
            self._resume_reading()
        if self._keep_alive and not self._uploading and self._state != _CLOSED:
            self._state = _IDLE
            self._pool.release(self)
        else:
            self._close()

    def _resume_reading(self) -> None:
        self._read_paused = False
        if self._state != _CLOSED:
            self.transport.resume_reading()

    # ---- failure and closing

    def _fail(self, exc: GatewayError) -> None:
        """The connection is broken: tell whoever waits on it, and close it."""
        self._wake_with(exc)
        self._close()

    def _wake_with(self, exc: GatewayError) -> None:
        waiter = self._head_waiter
        self._head_waiter = None
        if waiter is not None and not waiter.done():
            waiter.set_exception(exc)
        resp = self._resp
        if resp is not None and not resp._done and resp._error is None:
            resp._error = exc
        waiter2 = self._waiter
        self._waiter = None
        if waiter2 is not None and not waiter2.done():
            waiter2.set_exception(exc)

    def _close(self) -> None:
        if self._state == _CLOSED:
            return
        if self._state == _IDLE:
            self._pool.discard(self)
        self._state = _CLOSED
        self._cancel_timer()
        transport = self.transport
        if transport is not None:
            transport.abort()
        # Nothing may wait on a closed connection (its timer is gone too).
        head = self._head_waiter
        if head is not None and not head.done():
            self._head_waiter = None
            head.set_exception(_failure(f"connection to {self._pool.origin} closed"))
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            self._waiter = None
            waiter.set_result(None)  # the waiting code looks at the state again

    def _cancel_timer(self) -> None:
        timer = self._timer
        if timer is not None:
            self._timer = None
            timer.cancel()

    # ---- timeouts: one lazily re-armed timer per connection

    def _arm(self, timeout: float) -> None:
        deadline = self._loop.time() + timeout
        self._deadline = deadline
        if self._timer is None or deadline < self._timer_at:
            self._schedule(deadline)

    def _schedule(self, deadline: float) -> None:
        """(Re)start the timer for `deadline` (it may fire early: _on_timer then moves it on)."""
        if self._timer is not None:
            self._timer.cancel()
        self._timer = self._loop.call_at(deadline, self._on_timer)
        self._timer_at = deadline

    def _on_timer(self) -> None:
        self._timer = None
        deadline = self._deadline
        if not deadline or self._state == _CLOSED:
            return
        if self._loop.time() + 0.001 >= deadline:
            self._fail(_timed_out(f"upstream {self._pool.origin} did not answer within {self._timeout:g} s"))
        else:
            self._schedule(deadline)

    # ---- request side

    async def _drain(self, waiter: asyncio.Future[_Response]) -> None:
        """Wait until the transport accepts more (the upstream reads), or the response arrives."""
        while self._write_paused and not waiter.done() and self._state != _CLOSED:
            fut = self._loop.create_future()
            self._waiter = fut
            self._arm(self._timeout)
            try:
                await fut
            finally:
                self._deadline = 0.0
                self._waiter = None


# --------------------------------------------------------------------------------------------------
# Pools


class _Pool:
    """Idle keep-alive connections to one origin (LIFO, bounded, expiring)."""

    __slots__ = ("host", "idle", "idle_timeout", "max_idle", "origin", "port", "server_hostname", "ssl")

    def __init__(
        self,
        origin: str,
        host: str,
        port: int,
        ssl_context: ssl.SSLContext | None,
        max_idle: int,
        idle_timeout: float,
    ) -> None:
        self.origin = origin
        self.host = host
        self.port = port
        self.ssl = ssl_context
        self.server_hostname = host if ssl_context is not None else None
        self.max_idle = max_idle
        self.idle_timeout = idle_timeout
        self.idle: list[_Conn] = []

    def acquire(self, now: float) -> _Conn | None:
        idle = self.idle
        while idle:
            conn = idle.pop()
            if now - conn.idle_since > self.idle_timeout:
                # The most recent one is expired, so are all below it.
                _drop(conn)
                self.close()
                return None
            if conn._state == _IDLE and not conn.transport.is_closing():
                return conn
            _drop(conn)
        return None

    def release(self, conn: _Conn) -> None:
        idle = self.idle
        now = conn._loop.time()
        conn.idle_since = now
        if idle and now - idle[0].idle_since > self.idle_timeout:
            _drop(idle.pop(0))
        if len(idle) >= self.max_idle:
            _drop(idle.pop(0))
        idle.append(conn)

    def discard(self, conn: _Conn) -> None:
        if conn in self.idle:
            self.idle.remove(conn)

    def close(self) -> None:
        idle, self.idle = self.idle, []
        for conn in idle:
            with contextlib.suppress(RuntimeError):  # its loop is closed already
                _drop(conn)


def _drop(conn: _Conn) -> None:
    """Close a connection that is out of the idle list already (nothing waits on an idle one)."""
    conn._state = _CLOSED
    conn._cancel_timer()
    conn.transport.abort()


# --------------------------------------------------------------------------------------------------
# The transport


class NativeTransport:
    """Portico's own HTTP/1.1 client on the running event loop (see the module docstring)."""

    name = "native"

    def __init__(
        self,
        *,
        max_idle: int = 256,
        idle_timeout: float = 4.0,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.max_idle = max_idle
        self.idle_timeout = idle_timeout
        self._ssl = ssl_context
        self._loop: asyncio.AbstractEventLoop | None = None
        self._pools: dict[tuple[str, str, int], _Pool] = {}
        # url -> (pool, request-target, host line, extra header line or "")
        self._targets: dict[str, tuple[_Pool, str, str, str]] = {}

    # ---- URLs

    def _target(self, url: str) -> tuple[_Pool, str, str, str]:
        scheme, sep, rest = url.partition("://")
        scheme = scheme.lower()
        if not sep or scheme not in _DEFAULT_PORT:
            raise _failure(f"not an http(s) URL: {url!r}")
        end = len(rest)
        for ch in "/?#":
            i = rest.find(ch)
            if 0 <= i < end:
                end = i
        authority = rest[:end]
        target = rest[end:].partition("#")[0]
        if not target.startswith("/"):
            target = "/" + target
        if any(c <= " " or c == "\x7f" for c in target):
            raise _failure(f"invalid character in the request target: {target!r}")
        userinfo, _, hostport = authority.rpartition("@")
        if hostport.startswith("["):
            close = hostport.find("]")
            host = hostport[1:close] if close > 0 else ""
            port_text = hostport[close + 1 :] if close > 0 else ""
            if port_text and not port_text.startswith(":"):
                host = ""
            port_text = port_text[1:]
        else:
            host, _, port_text = hostport.partition(":")
        default = _DEFAULT_PORT[scheme]
        if not host or any(c <= " " or c in "/\\?#@" for c in host):
            raise _failure(f"invalid host in URL {url!r}")
        if port_text:
            if not (port_text.isdigit() and port_text.isascii()) or not 0 < int(port_text) < 65536:
                raise _failure(f"invalid port in URL {url!r}")
            port = int(port_text)
        else:
            port = default
        host = host.lower()
        host_value = f"[{host}]" if ":" in host else host
        if port != default:
            host_value = f"{host_value}:{port}"
        extra = ""
        if userinfo:
            from urllib.parse import unquote

            user, _, password = userinfo.partition(":")
            token = base64.b64encode(f"{unquote(user)}:{unquote(password)}".encode()).decode()
            extra = f"authorization: Basic {token}"
        key = (scheme, host, port)
        pool = self._pools.get(key)
        if pool is None:
            ctx = None
            if scheme == "https":
                ctx = self._ssl
                if ctx is None:
                    ctx = self._ssl = ssl.create_default_context()
                    ctx.set_alpn_protocols(["http/1.1"])
            origin = f"{scheme}://{host_value}"
            pool = self._pools[key] = _Pool(origin, host, port, ctx, self.max_idle, self.idle_timeout)
        entry = (pool, target, "host: " + host_value, extra)
        if len(self._targets) >= 4096:
            self._targets.clear()
        self._targets[url] = entry
        return entry

    def _switch_loop(self, loop: asyncio.AbstractEventLoop) -> None:
        # The previous loop's connections belong to it (and may be closed with it): dropped, not touched.
        self._pools = {}
        self._targets = {}
        self._loop = loop

    # ---- sending

    async def send(
        self,
        method: str,
        url: str,
        headers: list[tuple[str, str]],
        body: bytes | AsyncIterator[bytes] | None,
        timeout: float,
    ) -> _Response:
        loop = asyncio.get_running_loop()
        if loop is not self._loop:
            self._switch_loop(loop)
        entry = self._targets.get(url)
        if entry is None:
            entry = self._target(url)
        pool, target, host_line, extra = entry

        lines = [f"{method} {target} HTTP/1.1", host_line]
        declared: str | None = None
        has_key = False
        for name, value in headers:
            if name in _SPECIAL:
                if name == "host":
                    lines[1] = "host: " + value
                    continue
                if name == "content-length":
                    declared = value
                    continue
                if name in _MANAGED:
                    continue
                has_key = True  # an idempotency key: the request may be retried
            lines.append(f"{name}: {value}")
        if extra:
            lines.append(extra)
        stream: AsyncIterator[bytes] | None = None
        data = b""
        length = -1
        if body is None:
            if method in _BODY_METHODS:
                lines.append("content-length: 0")
        elif isinstance(body, bytes | bytearray | memoryview):
            data = bytes(body)
            lines.append(f"content-length: {len(data)}")
        else:
            stream = body
            if declared is not None:
                if not (declared.isdigit() and declared.isascii()):
                    raise _failure(f"invalid content-length {declared!r} for the request body")
                length = int(declared)
                lines.append("content-length: " + declared)
            else:
                lines.append("transfer-encoding: chunked")
        lines.append("\r\n")
        text = "\r\n".join(lines)
        count = len(lines)
        if text.count("\n") != count or text.count("\r") != count:
            raise _failure("CR or LF in a request header")
        head = text.encode()
        payload, tail = head, None
        if data:
            if len(data) <= _COALESCE:
                payload = head + data
            else:
                tail = data
        replay = method in _IDEMPOTENT or has_key

        retried = False
        while True:
            conn = None
            idle = pool.idle
            if idle and not retried:  # (a retry goes to a fresh connection)
                now = loop.time()
                conn = idle.pop()  # the most recently used
                if (
                    now - conn.idle_since > pool.idle_timeout
                    or conn._state != _IDLE
                    or conn.transport.is_closing()
                ):
                    idle.append(conn)
                    conn = pool.acquire(now)
            if conn is None:
                conn = await self._connect(pool, loop, timeout)
            conn.uses += 1
            conn._state = _HEAD
            conn._got_bytes = False
            conn._head_only = method == "HEAD"
            conn._keep_alive = True
            conn._timeout = timeout
            waiter: asyncio.Future[_Response] = loop.create_future()
            conn._head_waiter = waiter
            transport = conn.transport
            try:
                transport.write(payload)
                if tail is not None:
                    transport.write(tail)
                if stream is not None and await self._upload(conn, stream, length, waiter):
                    replay = False  # pulled from: the body cannot be sent again
                if not waiter.done():
                    deadline = loop.time() + timeout
                    conn._deadline = deadline
                    if conn._timer is None or deadline < conn._timer_at:
                        conn._schedule(deadline)
                return await waiter
            except _StaleConnection as exc:
                conn._close()
                if retried or not replay:
                    if stream is not None:
                        await _aclose(stream)
                    raise _failure(str(exc)) from None
                retried = True
            except BaseException:
                # Timeout, failure, cancellation, a failing request body: the connection is unusable.
                conn._head_waiter = None
                if not waiter.done():
                    waiter.cancel()
                elif not waiter.cancelled():
                    waiter.exception()  # retrieved: no "never retrieved" warning
                conn._close()
                raise

    async def _connect(self, pool: _Pool, loop: asyncio.AbstractEventLoop, timeout: float) -> _Conn:
        try:
            async with asyncio.timeout(timeout):
                _, conn = await loop.create_connection(
                    partial(_Conn, pool, loop),
                    pool.host,
                    pool.port,
                    ssl=pool.ssl,
                    server_hostname=pool.server_hostname,
                )
        except TimeoutError:
            raise _timed_out(f"connecting to {pool.origin} took over {timeout:g} s") from None
        except OSError as exc:  # refused, unreachable, DNS, TLS (ssl.SSLError is an OSError)
            raise _failure(f"connecting to {pool.origin}: {type(exc).__name__}: {exc}") from exc
        return conn  # type: ignore[return-value]

    async def _upload(
        self, conn: _Conn, body: AsyncIterator[bytes], length: int, waiter: asyncio.Future[_Response]
    ) -> bool:
        """Send a streamed body; returns whether anything was pulled from it (then it cannot be replayed)."""
        conn._uploading = True
        transport = conn.transport
        chunked = length < 0
        sent = 0
        pulled = False
        try:
            while not waiter.done():  # done: the upstream answered or failed early; stop sending
                try:
                    chunk = await anext(body)
                except StopAsyncIteration:
                    if chunked:
                        transport.write(b"0\r\n\r\n")
                    elif sent != length:
                        raise _failure("the request body is shorter than its Content-Length") from None
                    conn._uploading = False
                    break
                pulled = True
                if not chunk or waiter.done():
                    continue
                if chunked:
                    transport.writelines((b"%x\r\n" % len(chunk), chunk, b"\r\n"))
                else:
                    sent += len(chunk)
                    if sent > length:
                        raise _failure("the request body is longer than its Content-Length")
                    transport.write(chunk)
                if conn._write_paused:
                    await conn._drain(waiter)
        except _StaleConnection as exc:
            # Lost while sending a body already pulled from: it cannot be sent again.
            await _aclose(body)
            raise _failure(str(exc)) from None
        except BaseException:
            await _aclose(body)
            raise
        if pulled:
            await _aclose(body)
        # else: kept open, the request may be retried with it
        return pulled

    async def close(self) -> None:
        """Close the idle connections (those in use close when their responses end)."""
        pools, self._pools = self._pools, {}
        self._targets = {}
        for pool in pools.values():
            pool.close()


async def _aclose(body: AsyncIterator[bytes]) -> None:
    aclose = getattr(body, "aclose", None)
    if aclose is not None:
        await aclose()
