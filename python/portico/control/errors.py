"""Errors of the admin API, as AWS's rest-json services send them.

Raise a `ServiceError` (or one of the subclasses below) from anywhere in a handler; the server
answers with `{"message": ...}` plus any extra members, the header `x-amzn-ErrorType: <code>`
and the status: the explicit one, else the model's `error.httpStatusCode` for that code, else
the class default. boto3 turns the response into `client.exceptions.<code>`.
"""

from __future__ import annotations

from typing import Any


class ServiceError(Exception):
    """An error answer. `extra` holds further members of the error shape, by wire name
    (e.g. `resourceType` for apigatewayv2's NotFoundException)."""

    default_code = "BadRequestException"
    default_status = 400

    def __init__(self, code: str | None, message: str | None, status: int | None = None, **extra: Any):
        super().__init__(message)
        self.code = code or self.default_code
        self.message = message
        self.status = status
        self.extra = extra
        self.headers: dict[str, str] = {}

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.code!r}, {self.message!r}, status={self.status!r})"


def _kind(code: str, status: int) -> type[ServiceError]:
    def __init__(self, message: str | None, status: int | None = None, **extra: Any) -> None:
        ServiceError.__init__(self, code, message, status, **extra)

    return type(code, (ServiceError,), {"default_code": code, "default_status": status, "__init__": __init__})


# Model errors of apigateway / apigatewayv2 (statuses as their models declare).
BadRequestException = _kind("BadRequestException", 400)
UnauthorizedException = _kind("UnauthorizedException", 401)
AccessDeniedException = _kind("AccessDeniedException", 403)
NotFoundException = _kind("NotFoundException", 404)
ConflictException = _kind("ConflictException", 409)
TooManyRequestsException = _kind("TooManyRequestsException", 429)
LimitExceededException = _kind("LimitExceededException", 429)
ServiceUnavailableException = _kind("ServiceUnavailableException", 503)

# Front-door errors (authentication, routing): not in the models, same JSON shape.
MissingAuthenticationTokenException = _kind("MissingAuthenticationTokenException", 403)
UnrecognizedClientException = _kind("UnrecognizedClientException", 403)
InvalidSignatureException = _kind("InvalidSignatureException", 403)
IncompleteSignatureException = _kind("IncompleteSignatureException", 403)
UnknownOperationException = _kind("UnknownOperationException", 404)
InternalFailure = _kind("InternalFailure", 500)

# Short aliases for handler code.
BadRequest = BadRequestException
Unauthorized = UnauthorizedException
AccessDenied = AccessDeniedException
NotFound = NotFoundException
Conflict = ConflictException
TooManyRequests = TooManyRequestsException
LimitExceeded = LimitExceededException
