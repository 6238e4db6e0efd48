"""Access logs in AWS's `$context.*` format language (`accessLogSettings.format`)."""

from __future__ import annotations

import re
import sys
import time
from collections.abc import Callable
from typing import TextIO

from portico.config.models import AccessLog
from portico.dataplane.context import RequestContext, Response

_VARIABLE = re.compile(r"\$context\.([A-Za-z0-9_.]+)")


def _request_time(ctx: RequestContext) -> str:
    return time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(ctx.time_epoch_ms / 1000))


def _error_message(ctx: RequestContext) -> str:
    error = ctx.extra.get("error")
    return error.detail if error is not None else "-"


# The `$context` variables an access log can name; unknown ones print as "-" like AWS does.
_FIELDS: dict[str, Callable[[RequestContext, Response, int], object]] = {
    "requestId": lambda c, r, n: c.request_id,
    "extendedRequestId": lambda c, r, n: c.request_id,
    "apiId": lambda c, r, n: c.api.api_id if c.api else "-",
    "stage": lambda c, r, n: c.stage.name if c.stage else "-",
    "routeKey": lambda c, r, n: c.route.route_key if c.route else "-",
    "httpMethod": lambda c, r, n: c.method,
    "path": lambda c, r, n: c.raw_path,
    "protocol": lambda c, r, n: c.protocol,
    "status": lambda c, r, n: r.status,
    "responseLength": lambda c, r, n: n,
    "responseLatency": lambda c, r, n: (time.perf_counter_ns() - c.start_ns) // 1_000_000,
    "requestTime": lambda c, r, n: _request_time(c),
    "requestTimeEpoch": lambda c, r, n: c.time_epoch_ms,
    "identity.sourceIp": lambda c, r, n: c.client_ip,
    "identity.userAgent": lambda c, r, n: c.header("user-agent") or "-",
    "domainName": lambda c, r, n: c.host,
    "integrationErrorMessage": lambda c, r, n: _error_message(c),
    "error.messageString": lambda c, r, n: _error_message(c),
}


class AccessLogger:
    """Formats one line per request; compiled once from the format string."""

    def __init__(self, settings: AccessLog) -> None:
        self._parts: list[str | Callable[[RequestContext, Response, int], object]] = []
        position = 0
        for match in _VARIABLE.finditer(settings.format):
            self._parts.append(settings.format[position : match.start()])
            self._parts.append(_FIELDS.get(match.group(1), lambda c, r, n: "-"))
            position = match.end()
        self._parts.append(settings.format[position:])
        self._stream: TextIO
        if settings.destination == "stdout":
            self._stream = sys.stdout
        elif settings.destination == "stderr":
            self._stream = sys.stderr
        else:
            self._stream = open(settings.destination, "a", buffering=1, encoding="utf-8")  # noqa: SIM115

    def format(self, ctx: RequestContext, response: Response, sent: int) -> str:
        return "".join(
            part if isinstance(part, str) else str(part(ctx, response, sent)) for part in self._parts
        )

    def log(self, ctx: RequestContext, response: Response, sent: int) -> None:
        self._stream.write(self.format(ctx, response, sent) + "\n")
