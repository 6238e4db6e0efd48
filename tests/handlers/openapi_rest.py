"""Lambda handlers of the REST OpenAPI tests (tests/test_openapi_rest.py)."""

from __future__ import annotations

import json
from typing import Any


def hello(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """An AWS_PROXY handler answering what its event says of the request."""
    query = event.get("queryStringParameters") or {}
    body = {
        "resource": event["resource"],
        "path": event["path"],
        "stage": event["requestContext"]["stage"],
        "name": query.get("name"),
    }
    return {
        "statusCode": 200,
        "headers": {"content-type": "application/json", "x-handler": "hello"},
        "body": json.dumps(body),
    }
