"""Lambda apps written with existing frameworks, unchanged: Powertools (HTTP and REST resolvers)
and Mangum (FastAPI, Starlette)."""

import struct
import zlib

from aws_lambda_powertools.event_handler import (
    APIGatewayHttpResolver,
    APIGatewayRestResolver,
    CORSConfig,
    Response,
    content_types,
)
from fastapi import FastAPI
from mangum import Mangum
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.responses import Response as StarletteResponse
from starlette.routing import Route


def _png(width: int, height: int) -> bytes:
    """A real PNG image (8-bit greyscale gradient): bytes that are not UTF-8 text."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    rows = b"".join(b"\x00" + bytes((x * 16 + y) % 256 for x in range(width)) for y in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


PNG = _png(16, 16)

powertools_app = APIGatewayHttpResolver()


@powertools_app.get("/todos/<todo_id>")
def get_todo(todo_id: str):
    return {"id": todo_id, "query": powertools_app.current_event.get_query_string_value("q", "")}


@powertools_app.post("/todos")
def create_todo():
    return {"created": powertools_app.current_event.json_body}, 201


def powertools_handler(event, context):
    return powertools_app.resolve(event, context)


# A REST API app as Powertools documents it ("REST API" of the Event Handler): the resolver's own
# CORS, path parameters, query strings, a JSON body, a custom status and header, and an image.
rest_app = APIGatewayRestResolver(
    cors=CORSConfig(allow_origin="https://app.example", expose_headers=["X-Todo"], max_age=300)
)


@rest_app.get("/todos/<todo_id>")
def rest_get_todo(todo_id: str):
    event = rest_app.current_event
    return {
        "id": todo_id,
        "q": event.get_query_string_value("q", ""),
        "tags": event.multi_value_query_string_parameters.get("tag", [])
        if event.multi_value_query_string_parameters
        else [],
        "stage": event.request_context.stage,
        "resource": event.resource,
    }


@rest_app.post("/todos")
def rest_create_todo():
    body = rest_app.current_event.json_body
    return Response(
        status_code=201,
        content_type=content_types.APPLICATION_JSON,
        body={"created": body},
        headers={"X-Todo": str(body.get("title", ""))},
    )


@rest_app.get("/image.png")
def rest_image():
    # Bytes: Powertools answers them base64-encoded, `isBase64Encoded: true`.
    return Response(status_code=200, content_type="image/png", body=PNG)


def powertools_rest_handler(event, context):
    return rest_app.resolve(event, context)


fastapi_app = FastAPI()


@fastapi_app.get("/items/{item_id}")
def read_item(item_id: int, q: str | None = None):
    return {"item_id": item_id, "q": q}


@fastapi_app.post("/items")
async def create_item(item: dict):
    return {"received": item}


mangum_handler = Mangum(fastapi_app, lifespan="off")


async def starlette_image(request: Request) -> StarletteResponse:
    return StarletteResponse(PNG, media_type="image/png")


async def starlette_hello(request: Request) -> JSONResponse:
    return JSONResponse({"hello": request.path_params["name"], "q": request.query_params.get("q")})


starlette_app = Starlette(
    routes=[Route("/image.png", starlette_image), Route("/hello/{name}", starlette_hello)]
)
mangum_starlette_handler = Mangum(starlette_app, lifespan="off")
