"""Lambda handlers of the REST non-proxy (`AWS`) integration tests."""

from __future__ import annotations

from typing import Any


def echo_event(event: Any, context: Any) -> Any:
    """Returns its event: what the request template (or passthrough) made of the request."""
    return event


def raises(event: dict[str, Any], context: Any) -> Any:
    """Raises with the message the event asks for (a REST Lambda error, selected by errorMessage),
    or returns the event when it asks for none (or an empty one)."""
    message = event.get("raise") if isinstance(event, dict) else None
    if not message:
        return {"returned": event}
    raise ValueError(message)


PNG = b"\x89PNG\r\n\x1a\n\x00\xff"


def binary_proxy(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """An AWS_PROXY handler answering PNG bytes (base64, isBase64Encoded), and saying in a header
    whether its request's body came base64-encoded."""
    import base64

    return {
        "statusCode": 200,
        "headers": {"content-type": "image/png", "x-request-base64": str(event["isBase64Encoded"]).lower()},
        "body": base64.b64encode(PNG).decode(),
        "isBase64Encoded": True,
    }
