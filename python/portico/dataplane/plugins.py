"""User plugins: Python hooks on the request pipeline (like Kong's plugin phases).

Subclass `Plugin` and override the hooks you need; hooks you do not override cost nothing per
request. Pass instances to `DataPlane(plugins=[...])` or name them in `portico serve --plugin
module:attr`.
"""

from __future__ import annotations

from portico.dataplane.context import RequestContext, Response


class Plugin:
    """Base class for plugins. All hooks are optional."""

    async def on_request(self, ctx: RequestContext) -> Response | None:
        """After routing and throttling, before the integration (the authorize phase).

        Return a `Response` to answer instead of the integration, or raise `GatewayError`.
        """
        return None

    async def on_response(self, ctx: RequestContext, response: Response) -> Response:
        """After the integration answered; return the response to send (possibly modified)."""
        return response
