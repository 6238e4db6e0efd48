"""The Python side of the pipeline: threads that run the user's code when the core calls for it.

The core (`rust/invoke.rs`) queues a call whenever a request reaches a Lambda handler
(`AWS_PROXY`) or a plugin hook, and waits for the reply without holding a thread or the GIL. The
threads here block in `Core.next_job` (GIL released), run one call each, and reply. A supervisor
starts another thread whenever a call is queued and no thread is idle (up to the core's
`max_threads`), so a slow handler never delays another; busy threads take the next call without
sleeping. Each thread has an event loop of its own, as a Lambda runtime's main thread does:
`async def` handlers and plugin hooks run on it, and adapters such as Mangum find one.

The event arrives as JSON and the result leaves as JSON, as they cross Lambda's own runtime API:
the core builds events and maps results; Python only runs the handler.

A streaming integration's handler (`responseTransferMode: STREAM`) may return a generator or an
async generator instead: its first item is the response's metadata (a dict of `statusCode`,
`headers`, `multiValueHeaders`, `cookies`), the items after it the body's chunks (bytes or str),
handed to the core as they are produced (as Lambda's response streaming sends a metadata prelude,
then the payload). The core reads the metadata with AWS's rules and passes the chunks on; a slow
client holds the generator back (the hand-off is bounded); a client that goes away, or a stream
past its limits, closes it (`GeneratorExit` at its `yield`).

REST APIs' mapping templates holding VTL come the same way (`render` calls), rendered by
`portico.serve.templates`.
"""

from __future__ import annotations

import asyncio
import contextlib
import decimal
import inspect
import json
import logging
import threading
import traceback
from collections.abc import AsyncGenerator, Generator, Sequence
from typing import Any

import orjson

from portico import _core
from portico.dataplane.context import RequestContext, Response
from portico.dataplane.errors import GatewayError
from portico.dataplane.plugins import Plugin
from portico.integrations.functions import (
    FunctionRef,
    FunctionRegistry,
    log_function_error,
    parse_function_uri,
)
from portico.serve.templates import CompiledTemplates, TemplateFailure

__all__ = ["UserCode"]

log = logging.getLogger("portico.lambda")
plugin_log = logging.getLogger("portico.plugins")


def _decimal_default(value: Any) -> Any:
    if isinstance(value, decimal.Decimal):
        return float(value)
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


def marshal(result: Any) -> bytes:
    """The handler's result as Lambda's Python runtime serializes it (`json.dumps`, non-ASCII as
    is, Decimal as a number); a proxy response dict, the usual case, through orjson (its fields
    are read, not its spacing). Raises TypeError for what JSON cannot carry."""
    if isinstance(result, bytes | bytearray):
        return bytes(result)
    if type(result) is dict and "statusCode" in result:
        with contextlib.suppress(TypeError):
            return orjson.dumps(result)
    return json.dumps(result, ensure_ascii=False, default=_decimal_default).encode()


def lambda_error(exc: BaseException, request_id: str, error_type: str | None = None) -> bytes:
    """A raised exception as Lambda's Python runtime reports it (what Lambda's Invoke returns for a
    function error): `errorMessage`, `errorType`, `requestId` and `stackTrace`, the handler's frames
    formatted by `traceback.format_list` (the gateway's own frame left out)."""
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if f.filename != __file__]
    return json.dumps(
        {
            "errorMessage": str(exc),
            "errorType": error_type or type(exc).__name__,
            "requestId": request_id,
            "stackTrace": traceback.format_list(frames),
        },
        default=str,
    ).encode()


def _overrides(plugin: Plugin, hook: str) -> bool:
    return getattr(type(plugin), hook) is not getattr(Plugin, hook)


class UserCode:
    """Runs Lambda handlers and plugin hooks for `core`, on threads of its own."""

    def __init__(self, core: _core.Core, registry: FunctionRegistry, plugins: Sequence[Plugin] = ()) -> None:
        self.core = core
        self.registry = registry
        self.on_request = [p.on_request for p in plugins if _overrides(p, "on_request")]
        self.on_response = [p.on_response for p in plugins if _overrides(p, "on_response")]
        # REST mapping templates, compiled once per deployment (`DataPlane` keeps them current).
        self.templates = CompiledTemplates()
        self._supervisor: threading.Thread | None = None
        self._started = 0

    def start(self) -> None:
        """Start the supervisor (idempotent); threads start as calls arrive."""
        if self._supervisor is None:
            self._supervisor = threading.Thread(target=self._supervise, name="portico-user-code", daemon=True)
            self._supervisor.start()

    def _supervise(self) -> None:
        while self.core.wait_for_growth():
            self._started += 1
            threading.Thread(
                target=self._work, name=f"portico-user-code-{self._started}", daemon=True
            ).start()

    def _work(self) -> None:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        try:
            while (job := self.core.next_job()) is not None:
                try:
                    self._run(job, loop)
                except BaseException:  # a reply that could not be sent: the core fails the call
                    log.exception("calling user code failed")
                del job  # do not keep the last event alive while idle
        finally:
            with contextlib.suppress(Exception):
                loop.close()

    def _run(self, job: _core.Job, loop: asyncio.AbstractEventLoop) -> None:
        kind = job.kind
        if kind == "lambda":
            self._invoke(job, loop)
        elif kind == "render":
            self._render(job)
        else:
            self._plugins(job, loop, kind)

    # ------------------------------------------------------------------------ Lambda handlers

    def _invoke(self, job: _core.Job, loop: asyncio.AbstractEventLoop) -> None:
        uri, event_json, timeout_ms, region, account_id, invocation_id = job.lambda_call()
        try:
            ref = parse_function_uri(uri)
        except ValueError as exc:
            job.reply_lambda_error("FUNCTION_ERROR", f"invalid function URI: {exc}")
            return
        fn = self.registry.find(ref)
        if fn is None:
            log.error(
                "Lambda function %r is not registered in this gateway "
                "(start it with --function %s=module:attribute); answering 500",
                ref.name,
                ref.name,
            )
            job.reply_lambda_error("API_CONFIGURATION_ERROR", f"function {ref.name} is not registered")
            return
        context = self.registry.context_for(
            ref,
            fn,
            timeout_ms=timeout_ms,
            region=ref.region or region,
            account_id=ref.account_id or account_id,
            invocation_id=invocation_id,
        )
        try:
            result = fn.handler(orjson.loads(event_json), context)
            if inspect.isawaitable(result):
                remaining = context.get_remaining_time_in_millis() / 1000
                result = loop.run_until_complete(asyncio.wait_for(result, max(remaining, 0.001)))
        except TimeoutError:
            job.reply_lambda_error("INTEGRATION_TIMEOUT", f"function {ref.name} timed out")
            return
        except Exception as exc:
            log_function_error(ref, context, exc)
            # Lambda's errorMessage is str(exception): a Lambda authorizer answers 401 by raising
            # Exception("Unauthorized").
            job.reply_lambda_error(
                "FUNCTION_ERROR",
                f"function {ref.name} raised {type(exc).__name__}: {exc}",
                str(exc),
                lambda_error(exc, invocation_id),
            )
            return
        if (inspect.isgenerator(result) or inspect.isasyncgen(result)) and job.streams:
            _stream(job, loop, result, context, ref)
            return
        try:
            payload = marshal(result)
        except (TypeError, ValueError) as exc:
            # Lambda's runtime fails such an invocation with Runtime.MarshalError.
            message = f"Unable to marshal response: {exc}"
            job.reply_lambda_error(
                "FUNCTION_ERROR",
                f"Runtime.MarshalError: {message}",
                message,
                lambda_error(ValueError(message), invocation_id, "Runtime.MarshalError"),
            )
            return
        job.reply_lambda(payload)

    # ------------------------------------------------------------------------ mapping templates

    def _render(self, job: _core.Job) -> None:
        source, input_json = job.render_call()
        try:
            output, overrides = self.templates.render(source, orjson.loads(input_json))
            encoded = orjson.dumps(overrides)
        except TemplateFailure as exc:
            job.reply_render_error(str(exc))
            return
        except Exception as exc:  # an engine bug must not take the worker down: this request 500s
            log.exception("rendering a mapping template failed")
            job.reply_render_error(repr(exc))
            return
        job.reply_render(output, encoded)

    # ------------------------------------------------------------------------ plugins

    def _plugins(self, job: _core.Job, loop: asyncio.AbstractEventLoop, kind: str) -> None:
        request, given = job.plugin_call()
        ctx = RequestContext.from_core(request)
        try:
            if kind == "on_request":
                for hook in self.on_request:
                    early = loop.run_until_complete(hook(ctx))
                    if early is not None:
                        self._reply(job, loop, early)
                        return
                job.reply_continue()
                return
            assert given is not None
            status, headers, body = given
            response = Response(status, headers, body)
            for after in self.on_response:
                response = loop.run_until_complete(after(ctx, response))
            self._reply(job, loop, response)
        except GatewayError as exc:
            job.reply_failed(exc.error_type.value, exc.detail)
        except Exception as exc:  # a bug in a plugin must not take the worker down
            plugin_log.exception("plugin %s failed", kind)
            job.reply_failed("INTEGRATION_FAILURE", repr(exc))

    def _reply(self, job: _core.Job, loop: asyncio.AbstractEventLoop, response: Response) -> None:
        headers = [(name.lower(), value) for name, value in response.headers]
        stream = response.stream
        if stream is None:
            job.reply_response(response.status, headers, bytes(response.body))
            return
        sink = job.reply_stream(response.status, headers)

        async def pump() -> None:
            async for chunk in stream:
                if chunk and not sink.send(bytes(chunk)):
                    return  # the client went away

        try:
            loop.run_until_complete(pump())
        except Exception as exc:
            # The status line is gone already: abort rather than end a truncated body normally.
            plugin_log.warning("request %s: response stream failed: %r", job, exc)
            sink.abort(repr(exc))
        else:
            sink.close()
        finally:
            close = getattr(stream, "aclose", None)
            if close is not None:
                with contextlib.suppress(Exception):
                    loop.run_until_complete(close())


# ---------------------------------------------------------------------------- streaming handlers


def _stream(
    job: _core.Job,
    loop: asyncio.AbstractEventLoop,
    stream: Generator[Any, None, None] | AsyncGenerator[Any, None],
    context: Any,
    ref: FunctionRef,
) -> None:
    """Hand a streaming handler's metadata, then its chunks, to the core as they come; close the
    generator whatever ends the stream."""
    sink: _core.StreamSink | None = None

    def advance() -> Any:
        if isinstance(stream, AsyncGenerator):
            remaining = max(context.get_remaining_time_in_millis() / 1000, 0.001)
            return loop.run_until_complete(asyncio.wait_for(anext(stream), remaining))
        return next(stream)

    try:
        try:
            metadata = advance()
        except (StopIteration, StopAsyncIteration):
            job.reply_lambda_error(
                "MALFORMED_RESPONSE", f"{_MALFORMED} function {ref.name}'s stream ended before its metadata"
            )
            return
        except TimeoutError:
            job.reply_lambda_error("INTEGRATION_TIMEOUT", f"function {ref.name} timed out")
            return
        except Exception as exc:
            log_function_error(ref, context, exc)
            job.reply_lambda_error(
                "FUNCTION_ERROR", f"function {ref.name} raised {type(exc).__name__}: {exc}", str(exc)
            )
            return
        if not isinstance(metadata, dict):
            job.reply_lambda_error(
                "MALFORMED_RESPONSE",
                f"{_MALFORMED} a streaming handler's first item is its metadata (a dict of statusCode, "
                f"headers, multiValueHeaders, cookies), not {type(metadata).__name__}",
            )
            return
        try:
            head = marshal(metadata)
        except (TypeError, ValueError) as exc:
            job.reply_lambda_error(
                "FUNCTION_ERROR", f"Runtime.MarshalError: unable to marshal response: {exc}"
            )
            return
        sink = job.reply_lambda_stream(head)
        while True:
            try:
                chunk = advance()
            except (StopIteration, StopAsyncIteration):
                return
            except TimeoutError:
                log.error("function %s timed out while streaming its response", ref.name)
                sink.abort(f"function {ref.name} timed out")
                return
            except Exception as exc:
                # The status line is gone already: the client's connection is aborted.
                log_function_error(ref, context, exc)
                sink.abort(f"function {ref.name} raised {type(exc).__name__}: {exc}")
                return
            data = _chunk_bytes(chunk)
            if data is None:
                log.error(
                    "function %s streamed a %s: a streamed body's chunks are bytes or str",
                    ref.name,
                    type(chunk).__name__,
                )
                sink.abort(f"function {ref.name} streamed a {type(chunk).__name__}")
                return
            if data and not sink.send(data):
                return  # the client went away, or the stream passed its limits
    finally:
        if sink is not None:
            sink.close()
        _close(stream, loop)


_MALFORMED = "Malformed Lambda proxy response:"


def _chunk_bytes(chunk: Any) -> bytes | None:
    if isinstance(chunk, bytes | bytearray | memoryview):
        return bytes(chunk)
    if isinstance(chunk, str):
        return chunk.encode()
    return None


def _close(
    stream: Generator[Any, None, None] | AsyncGenerator[Any, None], loop: asyncio.AbstractEventLoop
) -> None:
    """Close a handler's generator: one stopped mid-way gets `GeneratorExit` at its `yield`."""
    with contextlib.suppress(Exception):
        if isinstance(stream, AsyncGenerator):
            loop.run_until_complete(stream.aclose())
        else:
            stream.close()
