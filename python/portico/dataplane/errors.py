"""Gateway responses a plugin can answer with, by AWS's gateway-response type.

The core holds the one table of what each type looks like on the wire, for HTTP and REST APIs
(`rust/pipeline/responses.rs`); a plugin raises `GatewayError(ErrorType.X)` and the core answers.
"""

from __future__ import annotations

import enum


class ErrorType(enum.Enum):
    """AWS gateway-response types (the ones Portico can produce)."""

    BAD_REQUEST = "BAD_REQUEST"
    RESOURCE_NOT_FOUND = "RESOURCE_NOT_FOUND"
    MISSING_AUTHENTICATION_TOKEN = "MISSING_AUTHENTICATION_TOKEN"
    THROTTLED = "THROTTLED"
    REQUEST_TOO_LARGE = "REQUEST_TOO_LARGE"
    HEADERS_TOO_LARGE = "HEADERS_TOO_LARGE"
    URI_TOO_LONG = "URI_TOO_LONG"
    # The client stopped sending its body.
    REQUEST_TIMEOUT = "REQUEST_TIMEOUT"
    INTEGRATION_FAILURE = "INTEGRATION_FAILURE"
    INTEGRATION_TIMEOUT = "INTEGRATION_TIMEOUT"
    # A Lambda returned output API Gateway cannot turn into a response (malformed proxy response).
    MALFORMED_RESPONSE = "MALFORMED_RESPONSE"
    # A Lambda raised (function error) or could not be invoked.
    FUNCTION_ERROR = "FUNCTION_ERROR"
    # The route's integration cannot be served as configured.
    API_CONFIGURATION_ERROR = "API_CONFIGURATION_ERROR"


class GatewayError(Exception):
    """Raised by a plugin to answer with the gateway response of `error_type`.

    `detail` is for the operator's log only (`$context.integrationErrorMessage`); clients never see it.
    """

    def __init__(self, error_type: ErrorType, detail: str = "") -> None:
        super().__init__(detail or error_type.value)
        self.error_type = error_type
        self.detail = detail
