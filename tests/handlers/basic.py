"""Real Lambda handlers used by the end-to-end tests."""

import asyncio
import base64
import json
import time


def echo(event, context):
    """Returns the event it got, so tests can check its exact shape."""
    return {"statusCode": 200, "headers": {"content-type": "application/json"}, "body": json.dumps(event)}


def echo_context(event, context):
    return {
        "aws_request_id": context.aws_request_id,
        "function_name": context.function_name,
        "function_version": context.function_version,
        "invoked_function_arn": context.invoked_function_arn,
        "memory_limit_in_mb": context.memory_limit_in_mb,
        "log_group_name": context.log_group_name,
        "log_stream_name": context.log_stream_name,
        "remaining": context.get_remaining_time_in_millis(),
    }


def returns(event, context):
    """Returns whatever the request body (JSON) says to return: drives the malformed-response tests."""
    body = event["body"]
    if event.get("isBase64Encoded"):
        body = base64.b64decode(body)
    return json.loads(body)


def returns_bytes(event, context):
    return b"raw bytes are not JSON"


def returns_none(event, context):
    return None


def raises(event, context):
    raise RuntimeError("handler failed on purpose")


def slow(event, context):
    time.sleep(float((event.get("queryStringParameters") or {}).get("s", "0.5")))
    return {"slept": True}


async def async_hello(event, context):
    await asyncio.sleep(0)
    return {"hello": "async"}


def binary(event, context):
    return {
        "statusCode": 200,
        "headers": {"content-type": "application/octet-stream"},
        "isBase64Encoded": True,
        "body": base64.b64encode(bytes(range(256))).decode(),
    }


def hello(event, context):
    return {"message": "hello"}


def big(event, context):
    """A proxy response of `mb` megabytes."""
    megabytes = float((event.get("queryStringParameters") or {}).get("mb", "1"))
    return {"statusCode": 200, "body": "x" * int(megabytes * 1024 * 1024)}
