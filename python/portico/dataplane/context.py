"""What plugins see: the request context and the response.

The core runs every built-in phase; a plugin's hooks (`portico.dataplane.plugins`) get the
request as the pipeline knows it after routing and throttling, and may answer instead of the
integration (`on_request`) or change its response (`on_response`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any


@dataclass(slots=True)
class Response:
    """A response on its way to the client.

    Either `body` (bytes, sent at once; Content-Length is set from it) or `stream` (sent chunk by
    chunk). Header names are lower-case.
    """

    status: int
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""
    stream: AsyncIterator[bytes] | None = None


@dataclass(frozen=True, slots=True)
class ApiInfo:
    api_id: str
    name: str
    kind: str  # "http" | "rest"


@dataclass(frozen=True, slots=True)
class StageInfo:
    name: str
    variables: dict[str, str]
    deployment_id: str
    is_canary: bool = False


@dataclass(frozen=True, slots=True)
class RouteInfo:
    route_key: str  # "GET /pets/{id}" or "$default"
    resource_path: str  # "/pets/{id}" ("$default" for the default route)


class RequestContext:
    """Everything known about one request when a plugin runs. The request body is not available
    to plugins (it streams to the integration)."""

    __slots__ = (
        "_headers",
        "account_id",
        "api",
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
        "time_epoch_ms",
    )

    def __init__(
        self,
        *,
        request_id: str,
        method: str,
        raw_path: str,
        path: str,
        raw_query: str,
        raw_headers: list[tuple[bytes, bytes]],
        host: str,
        scheme: str,
        protocol: str,
        client_ip: str,
        time_epoch_ms: int,
        account_id: str,
        api: ApiInfo | None = None,
        stage: StageInfo | None = None,
        route: RouteInfo | None = None,
        path_params: dict[str, str] | None = None,
    ) -> None:
        self.request_id = request_id
        self.method = method
        # The path as the client sent it (percent-encoding preserved, stage segment included).
        self.raw_path = raw_path
        # The path the API sees (stage segment removed).
        self.path = path
        self.raw_query = raw_query
        # Lower-case names, arrival order, repeats repeated.
        self.raw_headers = raw_headers
        self._headers: list[tuple[str, str]] | None = None
        self.host = host
        self.scheme = scheme
        self.protocol = protocol  # "HTTP/1.1"
        self.client_ip = client_ip
        self.time_epoch_ms = time_epoch_ms
        self.account_id = account_id
        self.api = api
        self.stage = stage
        self.route = route
        self.path_params = path_params
        # Free-form values plugin hooks hand to each other.
        self.extra: dict[str, Any] = {}

    @classmethod
    def from_core(cls, r: dict[str, Any]) -> RequestContext:
        """The context from the core's description of a request (`Job.plugin_call`)."""
        return cls(
            request_id=r["request_id"],
            method=r["method"],
            raw_path=r["raw_path"],
            path=r["path"],
            raw_query=r["raw_query"],
            raw_headers=r["raw_headers"],
            host=r["host"],
            scheme=r["scheme"],
            protocol=r["protocol"],
            client_ip=r["client_ip"],
            time_epoch_ms=r["time_epoch_ms"],
            account_id=r["account_id"],
            api=ApiInfo(r["api_id"], r["api_name"], r["api_kind"]) if r["api_id"] else None,
            stage=StageInfo(r["stage"], r["stage_variables"], r["deployment_id"], r["is_canary"])
            if r["stage"]
            else None,
            route=RouteInfo(r["route_key"], r["resource_path"]) if r["route_key"] else None,
            path_params=r["path_params"],
        )

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
