"""Gateway-generated responses, by AWS's gateway-response type.

HTTP APIs and REST APIs word the same failure differently (`Internal Server Error` vs
`Internal server error`, 404 vs 403 for an unknown route); the tables below hold both so that
every phase raises a `GatewayError` by type and the API kind picks the wire form.
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
    INTEGRATION_FAILURE = "INTEGRATION_FAILURE"
    INTEGRATION_TIMEOUT = "INTEGRATION_TIMEOUT"
    # A Lambda returned output API Gateway cannot turn into a response (malformed proxy response).
    MALFORMED_RESPONSE = "MALFORMED_RESPONSE"
    # A Lambda raised (function error) or could not be invoked.
    FUNCTION_ERROR = "FUNCTION_ERROR"


# (status, message, x-amzn-ErrorType) as HTTP APIs send them; HTTP APIs send no error type header.
_HTTP_API: dict[ErrorType, tuple[int, str]] = {
    ErrorType.BAD_REQUEST: (400, "Bad Request"),
    ErrorType.RESOURCE_NOT_FOUND: (404, "Not Found"),
    ErrorType.MISSING_AUTHENTICATION_TOKEN: (404, "Not Found"),
    ErrorType.THROTTLED: (429, "Too Many Requests"),
    ErrorType.REQUEST_TOO_LARGE: (413, "Request Entity Too Large"),
    ErrorType.HEADERS_TOO_LARGE: (431, "Request Header Fields Too Large"),
    ErrorType.URI_TOO_LONG: (414, "Request-URI Too Long"),
    ErrorType.INTEGRATION_FAILURE: (500, "Internal Server Error"),
    ErrorType.INTEGRATION_TIMEOUT: (503, "Service Unavailable"),
    ErrorType.MALFORMED_RESPONSE: (500, "Internal Server Error"),
    ErrorType.FUNCTION_ERROR: (500, "Internal Server Error"),
}

# REST APIs (v1) add `x-amzn-ErrorType`.
_REST_API: dict[ErrorType, tuple[int, str, str]] = {
    ErrorType.BAD_REQUEST: (400, "Bad Request", "BadRequestException"),
    ErrorType.RESOURCE_NOT_FOUND: (404, "Not Found", "NotFoundException"),
    ErrorType.MISSING_AUTHENTICATION_TOKEN: (
        403,
        "Missing Authentication Token",
        "MissingAuthenticationTokenException",
    ),
    ErrorType.THROTTLED: (429, "Too Many Requests", "TooManyRequestsException"),
    ErrorType.REQUEST_TOO_LARGE: (413, "Request Too Long", "RequestTooLargeException"),
    ErrorType.HEADERS_TOO_LARGE: (431, "Request Header Fields Too Large", "BadRequestException"),
    ErrorType.URI_TOO_LONG: (414, "Request-URI Too Long", "BadRequestException"),
    ErrorType.INTEGRATION_FAILURE: (504, "Endpoint request timed out", "InternalServerErrorException"),
    ErrorType.INTEGRATION_TIMEOUT: (504, "Endpoint request timed out", "InternalServerErrorException"),
    ErrorType.MALFORMED_RESPONSE: (502, "Internal server error", "InternalServerErrorException"),
    ErrorType.FUNCTION_ERROR: (502, "Internal server error", "InternalServerErrorException"),
}


class GatewayError(Exception):
    """Raised by any phase to answer with a gateway response of `error_type`.

    `detail` is for the operator's log only (`$context.integrationErrorMessage`); clients never see it.
    """

    def __init__(self, error_type: ErrorType, detail: str = "") -> None:
        super().__init__(detail or error_type.value)
        self.error_type = error_type
        self.detail = detail


def error_status_and_body(error_type: ErrorType, api_kind: str) -> tuple[int, bytes, list[tuple[str, str]]]:
    """Status, body and the extra headers of the gateway response for an API of `api_kind`."""
    if api_kind == "rest":
        status, message, amzn_type = _REST_API[error_type]
        extra = [("x-amzn-errortype", amzn_type)]
    else:
        status, message = _HTTP_API[error_type]
        extra = []
    return status, b'{"message":"' + message.encode() + b'"}', extra
