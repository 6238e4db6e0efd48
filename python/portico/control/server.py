"""The admin HTTP server: apigateway and apigatewayv2 on one port (aiohttp).

Pipeline per request: request id -> SigV4 verification -> model match -> parse -> handler (on a
thread pool) -> serialise. `GET /metrics` is the exception: the data plane's counters of refused
requests in Prometheus' text format, unsigned (scrapers do not sign), like Kong's and APISIX's.
`/v2/...` is apigatewayv2, everything else apigateway. Any failure is
answered as AWS answers it (`wire.Service.serialise_error`); unexpected exceptions are logged and
answered 500 InternalFailure without details. The access log holds the request id, method, path
(no query string), status, latency and the access key id: never headers, bodies or secrets.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sqlite3
import time
import uuid
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from aiohttp import web

from portico.control import sigv4
from portico.control.data_plane import DataPlaneView, metrics_text
from portico.control.errors import BadRequestException, InternalFailure, ServiceError
from portico.control.keys import load_or_create_admin_key
from portico.control.registry import HANDLERS, AdminRequest, load_handlers, not_implemented
from portico.control.store import Store
from portico.control.wire import NESTED_TOO_DEEPLY, get_service, parse_query, service_for_path

log = logging.getLogger("portico.admin")
DEFAULT_ACCOUNT_ID = "000000000000"
MAX_BODY = 16 * 1024 * 1024
# API Gateway counts the request line and the headers against 10,240 bytes and refuses more: the
# URI alone over it is 414, else 431, with the JSON body and `x-amzn-ErrorType` of its other errors
# (as the data plane does, rust/pipeline/limits.rs; "API Gateway quotas",
# https://docs.aws.amazon.com/apigateway/latest/developerguide/limits.html).
HEAD_LIMIT_BYTES = 10_240
# aiohttp's own parser limits (8,190 by default, answered with a plain-text 400), raised above
# AWS's so that the check above answers; they still bound what one request head may buffer.
PARSER_LIMIT_BYTES = 64 * 1024
# An access-log line shows this much of a path (a 414's path would make it 10 KB and more).
LOGGED_PATH_CHARS = 1024
HANDLER_THREADS = 4

_STORE = web.AppKey("store", Store)
_KEYS = web.AppKey("keys", dict)
_ACCOUNT = web.AppKey("account_id", str)
_EXECUTOR = web.AppKey("executor", ThreadPoolExecutor)
_DATA_PLANE = web.AppKey("data_plane", DataPlaneView)


async def create_admin_app(
    store: Store,
    keys: Mapping[str, str],
    account_id: str = DEFAULT_ACCOUNT_ID,
    data_plane: DataPlaneView | None = None,
) -> web.Application:
    """The admin application. `keys` maps access key ids to their secrets; `data_plane`: what it
    sees of the data plane it runs beside."""
    load_handlers()
    for name in ("apigateway", "apigatewayv2"):
        get_service(name)  # load the models now, not on the first request
    app = web.Application(client_max_size=MAX_BODY)
    app[_STORE] = store
    app[_KEYS] = dict(keys)
    app[_ACCOUNT] = account_id
    app[_EXECUTOR] = ThreadPoolExecutor(HANDLER_THREADS, thread_name_prefix="portico-admin")
    app[_DATA_PLANE] = data_plane or DataPlaneView()

    async def shutdown(app: web.Application) -> None:
        app[_EXECUTOR].shutdown(wait=True, cancel_futures=True)

    app.on_cleanup.append(shutdown)
    app.router.add_get("/metrics", _metrics)
    app.router.add_route("*", "/{tail:.*}", _handle)
    return app


async def _metrics(request: web.Request) -> web.Response:
    view = request.app[_DATA_PLANE]
    entries = await asyncio.get_running_loop().run_in_executor(request.app[_EXECUTOR], view.entries)
    return web.Response(
        text=metrics_text(entries), content_type="text/plain", headers={"Cache-Control": "no-store"}
    )


async def _handle(request: web.Request) -> web.Response:
    started = time.perf_counter()
    request_id = str(uuid.uuid4())
    raw_path, _, raw_query = request.raw_path.partition("?")
    service = get_service(service_for_path(raw_path))
    app = request.app
    access_key_id = "-"
    try:
        _check_head(request)
        try:
            body = await request.read()
        except web.HTTPRequestEntityTooLarge:
            raise BadRequestException("Request body too large") from None
        keys = app[_KEYS]
        identity = sigv4.verify(request.method, raw_path, raw_query, request.headers, body, keys.get)
        access_key_id = identity.access_key_id
        query = parse_query(raw_query)
        if "Authorization" not in request.headers:  # presigned: the auth parameters are no input
            query = [(k, v) for k, v in query if not k.startswith("X-Amz-")]
        match = service.match(request.method, raw_path, query)
        params = service.parse(match, query, request.headers, body)
        handler = HANDLERS.get((service.name, match.name))
        if handler is None:
            raise not_implemented(match.name)
        admin_request = AdminRequest(
            store=app[_STORE],
            service=service.name,
            operation=match.name,
            account_id=app[_ACCOUNT],
            region=identity.region,
            request_id=request_id,
            access_key_id=identity.access_key_id,
            headers=request.headers,
            body=body,
            data_plane=app[_DATA_PLANE],
        )
        loop = asyncio.get_running_loop()
        result = await loop.run_in_executor(app[_EXECUTOR], handler, admin_request, params)
        status, headers, payload = service.serialise(match.operation, result)
    except ServiceError as error:
        status, headers, payload = service.serialise_error(error)
    except RecursionError:
        # Input nested deeper than a handler's parser or walker follows (an OpenAPI document, a
        # model schema): the request's fault, refused like a body nested too deeply to parse.
        log.warning("request %s: input nested too deeply to process", request_id)
        status, headers, payload = service.serialise_error(BadRequestException(NESTED_TOO_DEEPLY))
    except sqlite3.Error as exc:
        # The store's disk is full or failing: every request fails alike until it is back, so one
        # line each, not a traceback each; the client gets AWS's 500 and may retry.
        log.error("request %s failed: the store is unavailable: %s", request_id, exc)
        status, headers, payload = service.serialise_error(InternalFailure("An internal error occurred"))
    except Exception:
        log.exception("request %s failed", request_id)
        status, headers, payload = service.serialise_error(InternalFailure("An internal error occurred"))
    headers["x-amzn-RequestId"] = request_id
    log.info(
        "%s %s %s %d %.1fms key=%s",
        request_id,
        request.method,
        raw_path if len(raw_path) <= LOGGED_PATH_CHARS else raw_path[:LOGGED_PATH_CHARS] + "...",
        status,
        (time.perf_counter() - started) * 1000,
        access_key_id,
    )
    return web.Response(status=status, body=payload, headers=headers)


def _check_head(request: web.Request) -> None:
    """AWS's limit on the request head, checked before anything else (authentication too)."""
    uri = len(request.raw_path)
    size = len(request.method) + uri + 12  # the request line's spaces, version and CRLF
    size += sum(len(name) + len(value) + 4 for name, value in request.raw_headers)  # ": ", CRLF
    if size <= HEAD_LIMIT_BYTES:
        return
    if uri > HEAD_LIMIT_BYTES:
        raise BadRequestException("Request-URI Too Long", status=414)
    raise BadRequestException("Request Header Fields Too Large", status=431)


async def serve_admin(
    store: Store,
    keys: Mapping[str, str],
    host: str,
    port: int,
    account_id: str = DEFAULT_ACCOUNT_ID,
    ready: Any = None,
    stop: asyncio.Event | None = None,
    data_plane: DataPlaneView | None = None,
) -> None:
    """Serve until `stop` is set (or forever). `ready.set()` is called once listening."""
    app = await create_admin_app(store, keys, account_id, data_plane)
    runner = web.AppRunner(
        app,
        access_log=None,
        handle_signals=False,
        max_line_size=PARSER_LIMIT_BYTES,
        max_field_size=PARSER_LIMIT_BYTES,
    )
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port).start()
        if ready is not None:
            ready.set()
        await (stop or asyncio.Event()).wait()
    finally:
        await runner.cleanup()


def run_admin_server(
    host: str,
    port: int,
    data_dir: str,
    admin_key: str | tuple[str, str] | None = None,
    account_id: str = DEFAULT_ACCOUNT_ID,
    ready: Any = None,
    exit_with_parent: bool = False,
    account_throttle: dict[str, float] | None = None,
    usage_path: str | None = None,
    journal: bool = False,
) -> None:
    """Blocking entry point (e.g. a multiprocessing `spawn` child); stops on SIGINT/SIGTERM, and
    with `exit_with_parent` also when the parent process goes away (even by kill -9).
    `admin_key` is `(id, secret)`, `"ID:SECRET"`, or None for env/`<data-dir>/admin-key`.
    `account_throttle` ({"rate", "burst"}) and `usage_path`: the data plane's (`DataPlaneView`).
    `journal` (cluster mode): every change is journaled for the other nodes (`Store`'s `journal`)."""
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="portico-admin: %(message)s")
    if isinstance(admin_key, tuple):
        access_key_id, secret = admin_key
    else:
        access_key_id, secret, _ = load_or_create_admin_key(data_dir, admin_key)
    store = Store(data_dir, journal=journal)

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        watcher = loop.create_task(_watch_parent(os.getppid(), stop)) if exit_with_parent else None
        try:
            view = DataPlaneView(account_throttle, usage_path)
            await serve_admin(store, {access_key_id: secret}, host, port, account_id, ready, stop, view)
        finally:
            if watcher is not None:
                watcher.cancel()

    log.info("admin API on http://%s:%d (pid %d)", host, port, os.getpid())
    asyncio.run(main())


async def _watch_parent(parent_pid: int, stop: asyncio.Event) -> None:
    while os.getppid() == parent_pid:
        await asyncio.sleep(1)
    log.info("parent process %d is gone; stopping", parent_pid)
    stop.set()
