"""The data plane: the core's pipeline, with an ASGI front door for embedding.

Every request, whichever door it comes through, runs the core's one chain of phases
(`rust/pipeline/mod.rs`): limits, API and stage selection, routing, CORS, throttling, the
integration, gateway responses and the access log. Python runs only the user's code, on the
threads of `portico.serve.user_code`.

- `DataPlane.listen(fd)`: the edge, the core's own HTTP/1.1 server on a listening socket (what
  `portico serve` uses).
- `DataPlane` as an ASGI app: an adapter that hands each request to the same pipeline and streams
  the answer back (what `build_dataplane` gives library users, and `portico serve --no-edge`).
  A `websocket` scope is a WebSocket API's opening handshake: the ASGI server speaks the
  protocol, the core holds the connection (`$connect`, routes, `@connections`, `$disconnect`)
  as it holds the edge's, and this adapter carries messages between the two.

ASGI hands over the raw, still percent-encoded path and raw header bytes, which AWS's event
formats need.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import functools
import itertools
import logging
import os
import threading
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Protocol

from portico import _core
from portico.compile import spec as S
from portico.compile.files import CompiledConfig
from portico.dataplane.plugins import Plugin
from portico.integrations.functions import FunctionRegistry
from portico.serve.templates import template_sources
from portico.serve.user_code import UserCode

logger = logging.getLogger("portico.dataplane")

Send = Callable[[dict[str, Any]], Awaitable[None]]
Receive = Callable[[], Awaitable[dict[str, Any]]]

# How often a live data plane asks its source whether the configuration changed.
RELOAD_POLL_SECONDS = 0.2
# How long shutdown waits for requests in flight.
SHUTDOWN_GRACE_SECONDS = 10.0
_Kind = _core.CompletionKind
# ASGI's close code for a connection lost without a close frame, and for one without a code.
_ABNORMAL_CLOSURE, _NO_STATUS = 1006, 1005


class SourceUnavailable(RuntimeError):
    """The source cannot be read right now (e.g. its disk is failing): unlike a configuration
    that does not build, the same generation is tried again at the next poll."""


class ReloadSource(Protocol):
    """Where a live data plane's configuration comes from (see `portico.compile.store`)."""

    def generation(self) -> int:
        """A number that changes whenever `build()` would return something new."""
        ...

    def build(self) -> CompiledConfig:
        """The configuration to serve now (may raise: the data plane keeps the previous one;
        `SourceUnavailable` to have it tried again)."""
        ...


def _overrides(plugin: Plugin, hook: str) -> bool:
    return getattr(type(plugin), hook) is not getattr(Plugin, hook)


class _Completions:
    """Resolves, on the ASGI server's loop, what the core posts for embedded requests.

    The core makes a descriptor readable whenever completions wait; the loop that serves requests
    watches it and resolves its futures itself (no thread in between). A request from another
    loop moves the watch to that loop when the watching one no longer runs (tests start a loop per
    test); while both run, the watching loop hands the other's results over thread-safely.
    """

    def __init__(self, core: _core.Core) -> None:
        self._core = core
        self._fd = core.completion_fd()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._waiting: dict[int, tuple[asyncio.AbstractEventLoop, asyncio.Future[Any]]] = {}
        # WebSocket connections: every completion of theirs, in order.
        self._streams: dict[int, tuple[asyncio.AbstractEventLoop, asyncio.Queue[Any]]] = {}
        self._lock = threading.Lock()
        self.tokens = itertools.count(1)

    def expect(self, token: int) -> asyncio.Future[Any]:
        loop = asyncio.get_running_loop()
        if loop is not self._loop:
            self._watch_from(loop)
        future = loop.create_future()
        self._waiting[token] = (loop, future)
        return future

    def forget(self, token: int) -> None:
        self._waiting.pop(token, None)
        self._streams.pop(token, None)

    def stream(self, token: int) -> asyncio.Queue[Any]:
        """Every completion of `token` from now on (a WebSocket connection's), in order."""
        loop = asyncio.get_running_loop()
        if loop is not self._loop:
            self._watch_from(loop)
        queue: asyncio.Queue[Any] = asyncio.Queue()
        self._streams[token] = (loop, queue)
        return queue

    async def next(self, queue: asyncio.Queue[Any]) -> Any:
        """The next item of a `stream`, taking the watch over as `wait` does."""
        loop = asyncio.get_running_loop()
        while loop is not self._loop:
            try:
                return await asyncio.wait_for(queue.get(), timeout=0.05)
            except TimeoutError:
                self._watch_from(loop)
        return await queue.get()

    async def wait(self, future: asyncio.Future[Any]) -> Any:
        """The result of `future`. On a loop other than the watching one, the watch is taken over
        should the watching loop stop meanwhile."""
        loop = asyncio.get_running_loop()
        while loop is not self._loop:
            done, _ = await asyncio.wait({future}, timeout=0.05)
            if done:
                return future.result()
            self._watch_from(loop)
        return await future

    def _watch_from(self, loop: asyncio.AbstractEventLoop) -> None:
        with self._lock:
            old = self._loop
            if old is loop or (old is not None and not old.is_closed() and old.is_running()):
                return
            if old is not None and not old.is_closed():
                with contextlib.suppress(Exception):
                    old.remove_reader(self._fd)
            loop.add_reader(self._fd, self._drain)
            self._loop = loop
        # What was posted before the move.
        loop.call_soon(self._drain)

    def _drain(self) -> None:
        here = self._loop
        waiting = self._waiting
        elsewhere: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future[Any], Any]]] = {}
        streams = self._streams
        for item in self._core.take_completions():
            stream = streams.get(item[0])
            if stream is not None:
                if stream[0] is here:
                    stream[1].put_nowait(item)
                else:
                    with contextlib.suppress(RuntimeError):  # that loop is closed
                        stream[0].call_soon_threadsafe(stream[1].put_nowait, item)
                continue
            found = waiting.pop(item[0], None)
            if found is None:
                continue
            loop, future = found
            if loop is here:
                if not future.done():
                    future.set_result(item)
            else:
                elsewhere.setdefault(loop, []).append((future, item))
        for loop, results in elsewhere.items():
            with contextlib.suppress(RuntimeError):  # that loop is closed
                loop.call_soon_threadsafe(_resolve, results)


def _resolve(results: list[tuple[asyncio.Future[Any], Any]]) -> None:
    for future, value in results:
        if not future.done():
            future.set_result(value)


class DataPlane:
    """Serves one compiled configuration, replaceable at run time by `reload`."""

    def __init__(
        self,
        compiled: CompiledConfig,
        *,
        registry: FunctionRegistry | None = None,
        shared_buckets_path: str | None = None,
        shared_usage_path: str | None = None,
        plugins: Sequence[Plugin] = (),
        on_shutdown: Sequence[Callable[[], Awaitable[None]]] = (),
        source: ReloadSource | None = None,
        generation: int | None = None,
        max_threads: int = 256,
        redis: dict[str, Any] | None = None,
    ) -> None:
        """`redis` (cluster mode: `url`, `fail`, `timeout_ms`): the Redis the node shares its
        buckets and usage counts through (`Gateway`'s `redis`, `redis_fail`, `redis_timeout_ms`)."""
        self.plugins = list(plugins)
        self._hooks = {
            "on_request": any(_overrides(p, "on_request") for p in self.plugins),
            "on_response": any(_overrides(p, "on_response") for p in self.plugins),
        }
        self.compiled = compiled
        cluster: dict[str, Any] = {}
        if redis is not None:
            cluster = {
                "redis": redis["url"],
                "redis_fail": redis["fail"],
                "redis_timeout_ms": redis["timeout_ms"],
                "redis_lease_ms": redis.get("lease_ms", 20.0),
            }
        self.gateway = _core.Gateway(
            self._spec_json(compiled), shared_buckets_path, shared_usage_path=shared_usage_path, **cluster
        )
        self.core = _core.Core(self.gateway, max_threads)
        self.registry = registry if registry is not None else FunctionRegistry()
        self.user_code = UserCode(self.core, self.registry, self.plugins)
        self.user_code.templates.retain(template_sources(compiled.spec))  # type: ignore[arg-type]
        self.user_code.start()
        self._completions = _Completions(self.core)
        self._on_shutdown = list(on_shutdown)
        self.source = source
        # The source generation last built (or last failed to build: not retried until it moves).
        self._generation = generation
        self._watcher: asyncio.Task[None] | None = None
        self._stopped = False

    def _spec_json(self, compiled: CompiledConfig) -> str:
        spec: S.Spec = {**compiled.spec, "settings": {**compiled.spec["settings"], "plugins": self._hooks}}  # type: ignore[typeddict-item]
        return S.dumps(spec)

    @property
    def generation(self) -> int | None:
        return self._generation

    # ---------------------------------------------------------------- reload

    def reload(self, compiled: CompiledConfig, generation: int | None = None) -> None:
        """Serve `compiled` from now on. Atomic: each request uses the old or the new snapshot,
        whole; requests in flight finish on the one they started with; throttle state carries
        over. Raises ConfigError (and keeps serving the old one) for a spec the core refuses."""
        # The new deployment's templates are compiled before it serves its first request.
        self.user_code.templates.retain(template_sources(compiled.spec))  # type: ignore[arg-type]
        self.gateway.swap(self._spec_json(compiled))
        self.compiled = compiled
        if generation is not None:
            self._generation = generation

    async def refresh(self) -> bool:
        """Reload from `source` if its generation moved; True when a new snapshot was published.
        The build runs in a thread, off the event loop; a failed build is logged and the current
        snapshot stays (`SourceUnavailable` propagates instead, and is tried again next time)."""
        source = self.source
        if source is None:
            return False
        generation = await asyncio.to_thread(source.generation)
        if generation == self._generation:
            return False
        previous, self._generation = self._generation, generation

        def build() -> CompiledConfig:
            compiled = source.build()
            self.reload(compiled)
            return compiled

        started = time.perf_counter()
        try:
            compiled = await asyncio.to_thread(build)
        except SourceUnavailable:
            self._generation = previous  # not this generation's fault: build it again next poll
            raise
        except Exception:
            logger.exception(
                "reload of generation %s failed; still serving generation %s", generation, previous
            )
            return False
        logger.info(
            "serving generation %s (%d APIs), built in %.1f ms",
            generation,
            len(compiled.apis),
            (time.perf_counter() - started) * 1000,
        )
        return True

    async def _watch(self) -> None:
        failing = False
        while True:
            try:
                await self.refresh()
            except asyncio.CancelledError:
                raise
            except Exception:  # the source itself failed (e.g. its disk is failing)
                if not failing:  # once per outage, not at every poll
                    logger.exception(
                        "checking for a new configuration failed; still serving generation %s",
                        self._generation,
                    )
                failing = True
            else:
                if failing:
                    logger.info("the configuration source can be read again")
                failing = False
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

    # ---------------------------------------------------------------- serving

    def listen(
        self, listener_fd: int, tls: dict[str, str] | None = None, relay_dir: str | None = None
    ) -> None:
        """Serve the listening socket `listener_fd` with the core's edge (it takes the descriptor
        over); with TLS when `tls` names the files (`certificate_file`, `private_key_file`, and for
        mTLS `truststore_file`). `relay_dir`: the node's directory of its workers' WebSocket relay
        sockets, through which `@connections` reaches another worker's connections."""
        self.core.listen(listener_fd, **(tls or {}), relay_dir=relay_dir)

    def start_relay(self, relay_dir: str | None = None) -> None:
        """Without the edge: let `@connections` reach the WebSocket connections that other workers
        (their relay sockets in `relay_dir`) and, in cluster mode, other nodes hold."""
        self.core.start_relay(relay_dir)

    def stop(self, grace: float = SHUTDOWN_GRACE_SECONDS) -> None:
        """Stop accepting, let requests in flight finish (within `grace` seconds), then write out
        every access-log line. Idempotent."""
        if self._stopped:
            return
        self._stopped = True
        self.core.stop(grace)
        self.gateway.flush_logs()
        self.registry.shutdown()

    # ---------------------------------------------------------------- ASGI entry

    async def __call__(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            await self.handle(scope, receive, send)
        elif kind == "websocket":
            await self.hold(scope, receive, send)
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
                await asyncio.to_thread(self.stop)
                for hook in self._on_shutdown:
                    try:
                        await hook()
                    except Exception:  # shutdown must finish even if one hook fails
                        logger.exception("shutdown hook failed")
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def handle(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        """One request through the core's pipeline, its answer streamed back."""
        headers = scope["headers"]
        has_body = False
        for name, value in headers:
            if name == b"transfer-encoding" or (name == b"content-length" and value.strip() != b"0"):
                has_body = True
            elif name == b"host" and not value:
                # Some ASGI servers make up an empty Host for a request that sent none.
                headers = [h for h in headers if h != (b"host", b"")]
        target = _request_target(scope)
        client = scope.get("client")
        completions = self._completions
        token = next(completions.tokens)
        answer = completions.expect(token)
        feed = self.core.submit(
            token,
            scope["method"],
            target,
            headers,
            client[0] if client else "127.0.0.1",
            scope.get("scheme", "http"),
            scope.get("http_version", "1.1"),
            has_body,
        )
        loop = asyncio.get_running_loop()
        feeder = loop.create_task(_feed(feed, receive)) if feed is not None else None
        del feed  # the feeder closes it: the pipeline sees the body end
        watcher: asyncio.Task[None] | None = None
        try:
            item = await completions.wait(answer)
            if item[1] == _Kind.Abort:
                raise ConnectionError(item[2])
            _, _, status, response_headers, whole = item
            await send({"type": "http.response.start", "status": status, "headers": response_headers})
            if whole is not None:
                await send({"type": "http.response.body", "body": whole, "more_body": False})
                return
            # A body sent chunk by chunk (a large one, or a stream): the head goes out now (ASGI
            # servers hold it until a body message), as the edge sends it; a client that goes
            # away stops the body at once, and the core drops it (a streaming handler is then
            # stopped).
            await send({"type": "http.response.body", "body": b"", "more_body": True})
            watcher = loop.create_task(_client_gone(feeder, receive))
            watcher.add_done_callback(functools.partial(_stop_answering, asyncio.current_task()))
            while True:
                chunk = completions.expect(token)
                self.core.pull(token)
                item = await completions.wait(chunk)
                if item[1] == _Kind.Abort:
                    # The status line is gone already: the server aborts the connection rather
                    # than end a truncated body as if it were whole.
                    raise ConnectionError(item[2])
                _, _, data, more = item
                await send({"type": "http.response.body", "body": data, "more_body": more})
                if not more:
                    return
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if watcher is not None and watcher.done() and not watcher.cancelled() and task is not None:
                task.uncancel()  # the client went away: nothing is left to answer
                return
            raise
        finally:
            completions.forget(token)
            self.core.discard(token)
            if watcher is not None and not watcher.done():
                watcher.cancel()
            if feeder is not None and not feeder.done():
                feeder.cancel()

    async def hold(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        """A WebSocket scope: its handshake through the core's pipeline (`$connect`), then the
        connection the core holds, its messages carried between the ASGI server and the core."""
        if (await receive())["type"] != "websocket.connect":
            return
        target = _request_target(scope)
        client = scope.get("client")
        completions = self._completions
        token = next(completions.tokens)
        items = completions.stream(token)
        feed = self.core.submit_socket(
            token,
            target,
            _handshake_headers(scope),
            client[0] if client else "127.0.0.1",
            scope.get("scheme", "ws"),
            scope.get("http_version", "1.1"),
        )
        reader: asyncio.Task[None] | None = None
        try:
            item = await completions.next(items)
            if item[1] != _Kind.Head or item[2] != 101:
                await _refuse(scope, send, item)
                return
            protocol = next((v for n, v in item[3] if n.lower() == b"sec-websocket-protocol"), None)
            await send({"type": "websocket.accept", "subprotocol": protocol.decode() if protocol else None})
            feed.accepted()
            reader = asyncio.get_running_loop().create_task(_read_messages(feed, receive))
            while True:
                item = await completions.next(items)
                kind = item[1]
                if kind == _Kind.SocketEnd:
                    return
                # The client may be gone meanwhile: its disconnect reaches the core through
                # the reader, and the core ends the connection.
                with contextlib.suppress(Exception):
                    if kind == _Kind.Frame:
                        data = item[2]
                        key = "text" if isinstance(data, str) else "bytes"
                        try:
                            await send({"type": "websocket.send", key: data})
                        finally:
                            feed.sent()  # room for the next frame
                    elif kind == _Kind.Close:
                        await send({"type": "websocket.close", "code": item[2], "reason": item[3]})
        finally:
            completions.forget(token)
            if reader is not None and not reader.done():
                reader.cancel()
            # However this ends (the server cancelled it, a send failed), the core learns the
            # connection is gone; after a disconnect this does nothing.
            feed.closed(None, "", abnormal=True)


def _request_target(scope: dict[str, Any]) -> str:
    """The request target as the client sent it: the raw, still percent-encoded path (AWS's event
    formats need it) and the query string."""
    raw_path = scope.get("raw_path") or scope["path"].encode()
    query = scope.get("query_string") or b""
    return (raw_path + b"?" + query if query else raw_path).decode("latin-1")


def _handshake_headers(scope: dict[str, Any]) -> list[tuple[bytes, bytes]]:
    """The scope's headers, with the opening handshake's own made whole: ASGI servers need not
    pass them on (they answered the handshake themselves), and the core's WebSocket phase
    recognises a handshake by them."""
    headers = [(n.lower(), v) for n, v in scope["headers"]]
    present = {n for n, _ in headers}
    needed = [(b"upgrade", b"websocket"), (b"connection", b"Upgrade"), (b"sec-websocket-version", b"13")]
    if b"sec-websocket-key" not in present:
        needed.append((b"sec-websocket-key", base64.b64encode(os.urandom(16))))
    protocols = scope.get("subprotocols") or []
    if protocols and b"sec-websocket-protocol" not in present:
        needed.append((b"sec-websocket-protocol", ", ".join(protocols).encode()))
    headers += [(n, v) for n, v in needed if n not in present]
    return headers


async def _refuse(scope: dict[str, Any], send: Send, head: tuple[Any, ...]) -> None:
    """A refused handshake: its status and body where the server can send them (ASGI's
    "Websocket Denial Response" extension), else a close before accepting (the server's 403)."""
    if head[1] == _Kind.Head and "websocket.http.response" in (scope.get("extensions") or {}):
        _, _, status, headers, whole = head
        await send({"type": "websocket.http.response.start", "status": status, "headers": headers})
        await send({"type": "websocket.http.response.body", "body": whole or b"", "more_body": False})
    else:
        await send({"type": "websocket.close", "code": 1000})


async def _read_messages(feed: _core.SocketFeed, receive: Receive) -> None:
    """Hand the client's messages to the connection the core holds, until it disconnects."""
    while True:
        message = await receive()
        kind = message["type"]
        if kind == "websocket.receive":
            text = message.get("text")
            while True:
                handed = feed.text(text) if text is not None else feed.binary(message.get("bytes") or b"")
                if handed != _core.Handoff.Full:  # queued, or the core holds the connection no more
                    break
                await asyncio.sleep(0.001)  # full: the core reads on
        elif kind == "websocket.disconnect":
            code = message.get("code", _NO_STATUS)
            reason = message.get("reason") or ""
            feed.closed(None if code == _NO_STATUS else code, reason, abnormal=code == _ABNORMAL_CLOSURE)
            return


async def _feed(feed: _core.BodyFeed, receive: Receive) -> bool:
    """Hand the request body to the pipeline as the ASGI server delivers it; True when the client
    went away meanwhile."""
    try:
        return await _feed_all(feed, receive)
    finally:
        feed.close()


async def _feed_all(feed: _core.BodyFeed, receive: Receive) -> bool:
    while True:
        message = await receive()
        if message["type"] != "http.request":
            feed.fail("the client went away")
            return True
        body = message.get("body", b"")
        if body:
            while (handed := feed.send(body)) == _core.Handoff.Full:  # the pipeline reads on
                await asyncio.sleep(0.001)
            if handed == _core.Handoff.Closed:  # the pipeline answered without reading the rest
                return False
        if not message.get("more_body", False):
            return False


async def _client_gone(feeder: asyncio.Task[bool] | None, receive: Receive) -> None:
    """Returns once the client has gone (ASGI's `http.disconnect`), reading past the request body."""
    if feeder is not None and await asyncio.shield(feeder):
        return
    while (await receive())["type"] != "http.disconnect":
        pass


def _stop_answering(answering: asyncio.Task[Any] | None, watcher: asyncio.Task[None]) -> None:
    """The client went away while its answer was being sent: stop sending it."""
    if answering is not None and not watcher.cancelled() and watcher.exception() is None:
        answering.cancel()
