"""A user plugin loaded with `portico serve --plugin handlers.plugins:PoweredBy`."""

from portico.dataplane.context import RequestContext, Response
from portico.dataplane.plugins import Plugin


class PoweredBy(Plugin):
    async def on_response(self, ctx: RequestContext, response: Response) -> Response:
        response.headers.append(("x-powered-by", f"portico/{ctx.route.route_key if ctx.route else '-'}"))
        return response


class BrokenStream(Plugin):
    """Answers /broken with a streamed body that fails half way, as a reset upstream would."""

    async def on_request(self, ctx: RequestContext) -> Response | None:
        if ctx.path != "/broken":
            return None

        async def chunks():
            yield b"first part, "
            raise ConnectionResetError("upstream went away")

        return Response(200, [("content-type", "text/plain")], stream=chunks())
