"""Operation handlers.

    from portico.control.registry import AdminRequest, operation

    @operation("apigatewayv2", "GetApi")
    def get_api(request: AdminRequest, params: dict) -> dict | None:
        with request.store.read() as tx:
            ...

`params` is the operation's input keyed by model member names (see `wire.Service.parse`); the
return value is its output keyed the same way (None for operations without output). Raise
`portico.control.errors.*` for AWS errors. Handlers are plain synchronous functions: the server
runs them on a small thread pool (SQLite is synchronous; each thread has its own connection).
`load_handlers()` imports the packages in HANDLER_MODULES, `apigateway` and `apigatewayv2`, each of
which imports its handler modules: add a new module to its package's `__init__`.
"""

from __future__ import annotations

import base64
import binascii
import importlib
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from portico.control.data_plane import DataPlaneView
from portico.control.errors import BadRequestException
from portico.control.store import Store
from portico.control.wire import get_service

HANDLER_MODULES = (
    "portico.control.apigateway",
    "portico.control.apigatewayv2",
)


@dataclass
class AdminRequest:
    """What a handler knows about the request besides its parsed input."""

    store: Store
    service: str
    operation: str
    account_id: str
    region: str
    request_id: str
    access_key_id: str = ""
    headers: Mapping[str, str] = field(default_factory=dict)
    body: bytes = b""
    # What the admin API sees of the data plane beside it (account throttle, usage counters).
    data_plane: DataPlaneView = field(default_factory=DataPlaneView)


Handler = Callable[[AdminRequest, dict[str, Any]], "dict[str, Any] | None"]
HANDLERS: dict[tuple[str, str], Handler] = {}


def operation(service: str, name: str) -> Callable[[Handler], Handler]:
    """Register the decorated function as the handler of `service`'s operation `name`."""
    if name not in get_service(service).model.operation_names:
        raise ValueError(f"{service} has no operation {name!r}")

    def register(handler: Handler) -> Handler:
        key = (service, name)
        if key in HANDLERS and HANDLERS[key] is not handler:
            raise ValueError(f"{service}:{name} already has a handler ({HANDLERS[key].__qualname__})")
        HANDLERS[key] = handler
        return handler

    return register


def load_handlers(modules: Sequence[str] = HANDLER_MODULES) -> dict[tuple[str, str], Handler]:
    for module in modules:
        importlib.import_module(module)
    return HANDLERS


def not_implemented(operation_name: str) -> BadRequestException:
    return BadRequestException(f"Portico does not implement {operation_name} yet")


# -- building documents from input -------------------------------------------------------------


def copy_given(source: Mapping[str, Any], target: dict[str, Any], names: Iterable[str]) -> None:
    """Copy onto `target` each of `names` that `source` gives (not None), in the order of `names`
    (answers keep insertion order); members not given stay absent, as AWS omits them."""
    for name in names:
        if source.get(name) is not None:
            target[name] = source[name]


# -- pagination shared by list operations ------------------------------------------------------


def paginate(
    items: Sequence[Any], token: str | None, limit: int | str | None, default: int = 25, maximum: int = 500
) -> tuple[list[Any], str | None]:
    """One page of `items` and the token for the next page (None on the last page).

    Tokens are opaque offsets (`nextToken` for v2, `position` for v1); `limit` may arrive as a
    string (v2 declares `maxResults` a string). Bad values are 400 BadRequestException."""
    if limit is None or limit == "":
        size = default
    else:
        try:
            size = int(limit)
        except (TypeError, ValueError):
            raise BadRequestException(f"Invalid page size: {limit}") from None
        if not 1 <= size <= maximum:
            raise BadRequestException(f"The page size must be between 1 and {maximum}")
    start = 0
    if token:
        try:
            start = int(json.loads(base64.urlsafe_b64decode(token.encode() + b"==="))["o"])
        except (ValueError, KeyError, TypeError, binascii.Error):
            raise BadRequestException("Invalid pagination token") from None
        if start < 0:
            raise BadRequestException("Invalid pagination token")
    page = list(items[start : start + size])
    end = start + size
    if end >= len(items):
        return page, None
    return page, base64.urlsafe_b64encode(json.dumps({"o": end}).encode()).decode().rstrip("=")
