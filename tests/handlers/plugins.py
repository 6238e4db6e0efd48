"""A user plugin loaded with `portico serve --plugin handlers.plugins:PoweredBy`."""

from portico.dataplane.context import RequestContext, Response
from portico.dataplane.plugins import Plugin


class PoweredBy(Plugin):
    async def on_response(self, ctx: RequestContext, response: Response) -> Response:
        response.headers.append(("x-powered-by", f"portico/{ctx.route.route_key if ctx.route else '-'}"))
        return response
