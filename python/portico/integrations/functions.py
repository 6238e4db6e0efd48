"""Local "Lambda functions": a registry of Python handlers, and invoking one like Lambda would.

A function is a name bound to a handler `handler(event, context)`, sync or `async def`. The gateway
runs handlers on the Python side's threads (`portico.serve.user_code`); `FunctionRegistry.invoke`
runs one from async code (sync handlers on a thread pool, async ones on the loop).
The context object carries the attributes of the Python runtime's `LambdaContext` ("Using the
Lambda context object to retrieve Python function information" in the Lambda developer guide).
"""

from __future__ import annotations

import asyncio
import importlib
import inspect
import logging
import os
import random
import re
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from portico.dataplane.errors import ErrorType, GatewayError
from portico.integrations.handler_threads import HandlerThreads

__all__ = [
    "DEFAULT_MAX_WORKERS",
    "CognitoIdentity",
    "FunctionRef",
    "FunctionRegistry",
    "LambdaContext",
    "LambdaFunction",
    "function_name_from_uri",
    "parse_function_uri",
]

log = logging.getLogger("portico.lambda")

DEFAULT_MAX_WORKERS = 64
DEFAULT_REGION = "us-east-1"
DEFAULT_ACCOUNT = "000000000000"
DEFAULT_MEMORY_MB = 128

# --------------------------------------------------------------------------------------------------
# Function URIs

_NAME = r"[A-Za-z0-9_-]{1,140}"
_QUALIFIER = r"\$LATEST|[A-Za-z0-9_-]{1,128}"
_LAMBDA_ARN = re.compile(
    rf"arn:(?P<partition>aws[a-zA-Z-]*):lambda:(?P<region>[a-z0-9-]+):(?P<account>\d{{12}}):function:"
    rf"(?P<name>{_NAME})(?::(?P<qualifier>{_QUALIFIER}))?"
)
# API Gateway's invocation URIs: Invoke's, and InvokeWithResponseStream's (streaming integrations).
_APIGW_INVOCATION = re.compile(
    r"arn:aws[a-zA-Z-]*:apigateway:[a-z0-9-]+:lambda:path/"
    r"(?:2015-03-31/functions/(?P<arn>.+)/invocations"
    r"|2021-11-15/functions/(?P<streaming_arn>.+)/response-streaming-invocations)"
)
_BARE = re.compile(rf"(?P<name>{_NAME})(?::(?P<qualifier>{_QUALIFIER}))?")


@dataclass(frozen=True, slots=True)
class FunctionRef:
    """A function named by an integration URI."""

    name: str
    qualifier: str | None = None  # alias or version (`prod`, `3`, `$LATEST`)
    region: str | None = None
    account_id: str | None = None
    partition: str = "aws"

    def arn(self, default_region: str = DEFAULT_REGION, default_account: str = DEFAULT_ACCOUNT) -> str:
        """The invoked function ARN (with the qualifier when the URI had one)."""
        base = (
            f"arn:{self.partition}:lambda:{self.region or default_region}:"
            f"{self.account_id or default_account}:function:{self.name}"
        )
        return f"{base}:{self.qualifier}" if self.qualifier else base


@lru_cache(maxsize=1024)
def parse_function_uri(uri: str) -> FunctionRef:
    """Parse a bare name (optionally `name:qualifier`), a Lambda ARN (optionally qualified) or an
    API Gateway invocation URI (`arn:aws:apigateway:R:lambda:path/2015-03-31/functions/<arn>/invocations`,
    or `.../2021-11-15/functions/<arn>/response-streaming-invocations` for streaming).

    Raises ValueError for anything else.
    """
    if not isinstance(uri, str):
        raise ValueError(f"not a Lambda function URI: {uri!r}")
    text = uri.strip()
    match = _APIGW_INVOCATION.fullmatch(text)
    if match:
        text = match["arn"] or match["streaming_arn"]
        if not text.startswith("arn:"):
            raise ValueError(f"the invocation URI does not name a Lambda function ARN: {uri!r}")
    if text.startswith("arn:"):
        match = _LAMBDA_ARN.fullmatch(text)
        if not match:
            raise ValueError(f"not a Lambda function ARN: {uri!r}")
        return FunctionRef(
            name=match["name"],
            qualifier=match["qualifier"],
            region=match["region"],
            account_id=match["account"],
            partition=match["partition"],
        )
    match = _BARE.fullmatch(text)
    if not match or len(match["name"]) > 64:
        raise ValueError(f"not a Lambda function name or ARN: {uri!r}")
    return FunctionRef(name=match["name"], qualifier=match["qualifier"])


def function_name_from_uri(uri: str) -> str:
    """The function name a URI designates (see `parse_function_uri`; the qualifier is its `.qualifier`)."""
    return parse_function_uri(uri).name


# --------------------------------------------------------------------------------------------------
# The context object


class CognitoIdentity:
    __slots__ = ("cognito_identity_id", "cognito_identity_pool_id")

    def __init__(self) -> None:
        self.cognito_identity_id: str | None = None
        self.cognito_identity_pool_id: str | None = None

    def __repr__(self) -> str:
        return (
            f"CognitoIdentity([cognito_identity_id={self.cognito_identity_id},"
            f"cognito_identity_pool_id={self.cognito_identity_pool_id}])"
        )


class LambdaContext:
    """What a Python handler receives as `context`, attribute for attribute like awslambdaric's."""

    __slots__ = (
        "_deadline_ms",
        "aws_request_id",
        "client_context",
        "function_name",
        "function_version",
        "identity",
        "invoked_function_arn",
        "log_group_name",
        "log_stream_name",
        "memory_limit_in_mb",
        "tenant_id",
    )

    def __init__(
        self,
        *,
        aws_request_id: str,
        function_name: str,
        invoked_function_arn: str,
        deadline_ms: float,
        function_version: str = "$LATEST",
        memory_limit_in_mb: str = str(DEFAULT_MEMORY_MB),
        log_stream_name: str = "",
    ) -> None:
        self.aws_request_id = aws_request_id
        self.function_name = function_name
        self.function_version = function_version
        self.invoked_function_arn = invoked_function_arn
        self.memory_limit_in_mb = memory_limit_in_mb
        self.log_group_name = f"/aws/lambda/{function_name}"
        self.log_stream_name = log_stream_name
        self.identity = CognitoIdentity()
        self.client_context = None
        self.tenant_id = None
        self._deadline_ms = deadline_ms

    def get_remaining_time_in_millis(self) -> int:
        remaining = int(self._deadline_ms - time.time() * 1000)
        return remaining if remaining > 0 else 0

    def log(self, msg: Any) -> None:
        log.info(
            "%s", msg, extra={"function_name": self.function_name, "aws_request_id": self.aws_request_id}
        )

    def __repr__(self) -> str:
        return (
            f"LambdaContext([aws_request_id={self.aws_request_id},log_group_name={self.log_group_name},"
            f"log_stream_name={self.log_stream_name},function_name={self.function_name},"
            f"memory_limit_in_mb={self.memory_limit_in_mb},function_version={self.function_version},"
            f"invoked_function_arn={self.invoked_function_arn},client_context={self.client_context},"
            f"identity={self.identity},tenant_id={self.tenant_id}])"
        )


def _new_request_id() -> str:
    return str(uuid.UUID(int=random.getrandbits(128), version=4))


def _new_log_stream_name() -> str:
    # One stream per execution environment: `2024/05/01/[$LATEST]<32 hex>`.
    return time.strftime("%Y/%m/%d/", time.gmtime()) + f"[$LATEST]{random.getrandbits(128):032x}"


# --------------------------------------------------------------------------------------------------
# The registry


def _expire(future: asyncio.Future) -> None:
    if not future.done():
        future.set_exception(TimeoutError())


def _is_async(handler: Callable[..., Any]) -> bool:
    if inspect.iscoroutinefunction(handler):
        return True
    call = getattr(handler, "__call__", None)  # noqa: B004 - an object with `async def __call__`
    return call is not None and inspect.iscoroutinefunction(call)


@dataclass(slots=True)
class LambdaFunction:
    name: str
    handler: Callable[..., Any]
    is_async: bool
    memory_limit_in_mb: str
    log_stream_name: str


class FunctionRegistry:
    """Function name -> handler, and invocation with Lambda's context, timeout and error semantics."""

    def __init__(self, max_workers: int = DEFAULT_MAX_WORKERS) -> None:
        self._functions: dict[str, LambdaFunction] = {}
        self._max_workers = max_workers
        self._threads: HandlerThreads | None = None

    # -- registration -------------------------------------------------------------------------------

    def register(self, name: str, handler: Callable[..., Any], *, memory_mb: int = DEFAULT_MEMORY_MB) -> None:
        if not callable(handler):
            raise ValueError(f"the handler of function {name!r} is not callable")
        parse_function_uri(name)  # a valid function name (optionally name:qualifier)
        self._functions[name] = LambdaFunction(
            name=name,
            handler=handler,
            is_async=_is_async(handler),
            memory_limit_in_mb=str(memory_mb),
            log_stream_name=_new_log_stream_name(),
        )

    def load(self, name: str, target: str) -> Callable[..., Any]:
        """Import `module.path:attr` (or Lambda's `module.attr`) and register it as `name`."""
        handler = _import_handler(target, f"{name}={target}")
        self.register(name, handler)
        return handler

    def register_spec(self, spec: str) -> str:
        """Register from `NAME=module.path:attr`; returns NAME."""
        name, sep, target = spec.partition("=")
        name, target = name.strip(), target.strip()
        if not sep or not name or not target:
            raise ValueError(f"function spec {spec!r} is not of the form NAME=module.path:attr")
        try:
            parse_function_uri(name)
        except ValueError:
            raise ValueError(f"function spec {spec!r}: {name!r} is not a valid function name") from None
        handler = _import_handler(target, spec)
        self.register(name, handler)
        return name

    def unregister(self, name: str) -> None:
        self._functions.pop(name, None)

    def get(self, name: str) -> LambdaFunction | None:
        return self._functions.get(name)

    def __contains__(self, name: object) -> bool:
        return name in self._functions

    def names(self) -> list[str]:
        return list(self._functions)

    # -- invocation ---------------------------------------------------------------------------------

    @property
    def threads(self) -> HandlerThreads:
        threads = self._threads
        if threads is None:
            threads = self._threads = HandlerThreads(self._max_workers)
        return threads

    def shutdown(self) -> None:
        if self._threads is not None:
            self._threads.shutdown()
            self._threads = None

    def find(self, ref: FunctionRef) -> LambdaFunction | None:
        """The function `ref` names: `name:qualifier` when registered so, else `name`."""
        functions = self._functions
        fn = functions.get(f"{ref.name}:{ref.qualifier}") if ref.qualifier else None
        return fn if fn is not None else functions.get(ref.name)

    def resolve(self, ref: FunctionRef) -> LambdaFunction:
        fn = self.find(ref)
        if fn is None:
            raise GatewayError(ErrorType.FUNCTION_ERROR, f"function {ref.name} is not registered")
        return fn

    def context_for(
        self,
        ref: FunctionRef,
        fn: LambdaFunction,
        *,
        timeout_ms: int,
        region: str,
        account_id: str,
        invocation_id: str | None = None,
    ) -> LambdaContext:
        """The `context` a handler of `fn` gets for one invocation through `ref`."""
        return LambdaContext(
            aws_request_id=invocation_id or _new_request_id(),
            function_name=ref.name,
            invoked_function_arn=ref.arn(region, account_id),
            deadline_ms=time.time() * 1000 + timeout_ms,
            memory_limit_in_mb=fn.memory_limit_in_mb,
            log_stream_name=fn.log_stream_name,
        )

    async def invoke(
        self,
        ref: FunctionRef | str,
        event: Any,
        *,
        timeout_ms: int,
        region: str = DEFAULT_REGION,
        account_id: str = DEFAULT_ACCOUNT,
    ) -> Any:
        """Run the function on `event` from async code; returns what the handler returned.

        (The gateway itself runs handlers on the Python side's threads, `portico.serve.user_code`.)
        Raises GatewayError(INTEGRATION_TIMEOUT) when it does not answer within `timeout_ms` and
        GatewayError(FUNCTION_ERROR) when it raises or is not registered.
        """
        if isinstance(ref, str):
            ref = parse_function_uri(ref)
        fn = self.resolve(ref)
        context = self.context_for(ref, fn, timeout_ms=timeout_ms, region=region, account_id=account_id)
        handler = fn.handler
        try:
            if fn.is_async:
                async with asyncio.timeout(timeout_ms / 1000):
                    result = await handler(event, context)
            else:
                loop = asyncio.get_running_loop()
                future = self.threads.submit(loop, handler, event, context)
                # A timer on the loop rather than asyncio.timeout: one handle, no extra task.
                timer = loop.call_later(timeout_ms / 1000, _expire, future)
                try:
                    result = await future
                finally:
                    timer.cancel()
                if inspect.isawaitable(result):  # a sync wrapper around a coroutine
                    remaining = context.get_remaining_time_in_millis()
                    async with asyncio.timeout(remaining / 1000):
                        result = await result
        except TimeoutError:
            log.warning(
                "function %s (request %s) timed out after %d ms",
                ref.name,
                context.aws_request_id,
                timeout_ms,
            )
            raise GatewayError(
                ErrorType.INTEGRATION_TIMEOUT, f"function {ref.name} timed out after {timeout_ms} ms"
            ) from None
        except GatewayError:
            raise
        except Exception as exc:
            log_function_error(ref, context, exc)
            raise GatewayError(
                ErrorType.FUNCTION_ERROR, f"function {ref.name} raised {type(exc).__name__}: {exc}"
            ) from None
        return result


def log_function_error(ref: FunctionRef, context: LambdaContext, exc: BaseException) -> None:
    """What Lambda's runtime logs when a handler raises."""
    log.error(
        "[ERROR] %s: %s (function %s, request %s)",
        type(exc).__name__,
        exc,
        ref.name,
        context.aws_request_id,
        exc_info=exc,
    )


def _import_handler(target: str, spec: str) -> Callable[..., Any]:
    """`module.path:attr.sub` or Lambda's `module.attr` -> the callable; ValueError naming `spec`."""
    target = target.strip()
    if ":" in target:
        module_name, _, attr_path = target.partition(":")
    else:
        module_name, _, attr_path = target.rpartition(".")
    if not module_name or not attr_path:
        raise ValueError(f"function spec {spec!r}: handler must be module.path:attr")
    cwd = os.getcwd()
    if cwd not in sys.path:
        sys.path.insert(0, cwd)
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name is not None and (module_name == exc.name or module_name.startswith(exc.name + ".")):
            raise ValueError(f"function spec {spec!r}: module {module_name!r} not found") from exc
        raise ValueError(f"function spec {spec!r}: importing {module_name!r} failed: {exc}") from exc
    except Exception as exc:
        raise ValueError(f"function spec {spec!r}: importing {module_name!r} failed: {exc!r}") from exc
    obj: Any = module
    for part in attr_path.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise ValueError(
                f"function spec {spec!r}: {module_name!r} has no attribute {attr_path!r}"
            ) from None
    if not callable(obj):
        raise ValueError(f"function spec {spec!r}: {module_name}:{attr_path} is not callable")
    return obj
