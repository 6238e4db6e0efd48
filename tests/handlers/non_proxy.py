"""Lambda handlers of the REST non-proxy (`AWS`) integration tests."""

from __future__ import annotations

from typing import Any


def echo_event(event: Any, context: Any) -> Any:
    """Returns its event: what the request template (or passthrough) made of the request."""
    return event


def raises(event: dict[str, Any], context: Any) -> Any:
    """Raises with the message the event asks for (a REST Lambda error, selected by errorMessage),
    or returns the event when it asks for none."""
    message = event.get("raise") if isinstance(event, dict) else None
    if message is None:
        return {"returned": event}
    raise ValueError(message)
