"""The Lambda proxy integration (AWS_PROXY): request -> event -> local function -> response."""

from __future__ import annotations

from typing import TYPE_CHECKING

from portico.dataplane.errors import ErrorType, GatewayError
from portico.integrations.functions import (
    DEFAULT_REGION,
    FunctionRef,
    FunctionRegistry,
    parse_function_uri,
)
from portico.integrations.lambda_events import build_event_v1, build_event_v2
from portico.integrations.lambda_responses import parse_response_v1, parse_response_v2

if TYPE_CHECKING:
    from portico.dataplane.context import RequestContext, Response

__all__ = ["LambdaProxyIntegration"]

_STAGE_VAR = "${stageVariables."


def _substitute_stage_variables(uri: str, variables: dict[str, str]) -> str:
    """Replace every `${stageVariables.NAME}` in `uri`; a variable the stage lacks is an error."""
    out: list[str] = []
    rest = uri
    while True:
        start = rest.find(_STAGE_VAR)
        if start < 0:
            out.append(rest)
            return "".join(out)
        end = rest.find("}", start)
        if end < 0:
            raise ValueError(f"unterminated stage variable in {uri!r}")
        name = rest[start + len(_STAGE_VAR) : end]
        value = variables.get(name)
        if not value:
            raise ValueError(f"stage variable {name!r} of {uri!r} is not set")
        out.append(rest[:start])
        out.append(value)
        rest = rest[end + 1 :]


class LambdaProxyIntegration:
    """AWS_PROXY: builds the event (REST: always 1.0), invokes the function, maps its result."""

    __slots__ = (
        "_binary_media_types",
        "_ref",
        "_timeout_ms",
        "_v2",
        "binary_media_types",
        "function_uri",
        "payload_format_version",
        "registry",
        "timeout_ms",
    )

    def __init__(
        self,
        function_uri: str,
        payload_format_version: str,
        timeout_ms: int,
        registry: FunctionRegistry,
        binary_media_types: list[str] | tuple[str, ...] = (),
    ) -> None:
        if payload_format_version not in ("1.0", "2.0"):
            raise ValueError(f"payloadFormatVersion must be 1.0 or 2.0, not {payload_format_version!r}")
        if timeout_ms <= 0:
            raise ValueError(f"timeoutInMillis must be positive, not {timeout_ms}")
        self.function_uri = function_uri
        self.payload_format_version = payload_format_version
        self.timeout_ms = timeout_ms
        self.registry = registry
        self.binary_media_types = list(binary_media_types)
        self._binary_media_types = tuple(binary_media_types)
        self._timeout_ms = timeout_ms
        self._v2 = payload_format_version == "2.0"
        # A URI without stage variables is parsed once, here (a bad one fails at configuration time).
        self._ref: FunctionRef | None = (
            None if _STAGE_VAR in function_uri else parse_function_uri(function_uri)
        )

    def function_ref(self, ctx: RequestContext) -> FunctionRef:
        """The function this request goes to (stage variables substituted at call time)."""
        ref = self._ref
        if ref is not None:
            return ref
        variables = ctx.stage.variables if ctx.stage is not None else {}
        try:
            return parse_function_uri(_substitute_stage_variables(self.function_uri, variables))
        except ValueError as exc:
            raise GatewayError(ErrorType.FUNCTION_ERROR, f"invalid function URI: {exc}") from None

    async def __call__(self, ctx: RequestContext) -> Response:
        ref = self.function_ref(ctx)
        body = await ctx.body.read()
        api = ctx.api
        rest = api is not None and api.kind == "rest"
        if rest:
            event = build_event_v1(ctx, body, self._binary_media_types)
        elif self._v2:
            event = build_event_v2(ctx, body)
        else:
            event = build_event_v1(ctx, body)
        result = await self.registry.invoke(
            ref,
            event,
            timeout_ms=self._timeout_ms,
            region=ref.region or DEFAULT_REGION,
            account_id=ref.account_id or ctx.account_id,
        )
        if rest:
            return parse_response_v1(result, ctx.header("accept"), self._binary_media_types)
        if self._v2:
            return parse_response_v2(result)
        return parse_response_v1(result, None, (), http_api=True)
