"""A Lambda function behind a WebSocket route's non-proxy `AWS` integration: its event is the
request template's output, and what it returns (or raises) goes through integration responses."""

from __future__ import annotations

from typing import Any


def shout(event: dict[str, Any], context: Any) -> dict[str, Any]:
    text = event.get("text") or ""
    if not text:
        raise ValueError("bad input: no text")
    return {"upper": text.upper(), "cid": event.get("cid"), "request": context.aws_request_id}
