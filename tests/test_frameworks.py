"""Lambda apps built with existing frameworks run unchanged behind Portico."""

from __future__ import annotations

import base64
from collections.abc import Callable

import httpx

from admin_e2e import invocation_uri, point_at, start_admin_server, wait_for
from handlers.frameworks import PNG


def proxy_api(name: str, route: str, function: str, payload: str) -> dict:
    return {
        "apis": [
            {
                "name": name,
                "routes": [
                    {
                        "route": route,
                        "integration": {
                            "type": "AWS_PROXY",
                            "uri": f"arn:aws:lambda:us-east-1:123456789012:function:{function}",
                            "payloadFormatVersion": payload,
                        },
                    }
                ],
            }
        ]
    }


def test_powertools_http_resolver(portico):
    server = portico(
        proxy_api("powertools", "ANY /{proxy+}", "todos", "2.0"),
        functions={"todos": "handlers.frameworks:powertools_handler"},
    )
    got = httpx.get(server.url + "/todos/7?q=milk")
    assert got.status_code == 200
    assert got.json() == {"id": "7", "query": "milk"}
    created = httpx.post(server.url + "/todos", json={"title": "buy milk"})
    assert created.status_code == 201
    assert created.json() == {"created": {"title": "buy milk"}}
    missing = httpx.get(server.url + "/nothing-here")
    assert missing.status_code == 404


def test_mangum_fastapi_v2_and_v1(portico):
    for payload in ("2.0", "1.0"):
        server = portico(
            proxy_api("fastapi", "ANY /{proxy+}", "items", payload),
            functions={"items": "handlers.frameworks:mangum_handler"},
        )
        got = httpx.get(server.url + "/items/5?q=x")
        assert got.status_code == 200, (payload, got.text)
        assert got.json() == {"item_id": 5, "q": "x"}
        posted = httpx.post(server.url + "/items", json={"a": [1, 2]})
        assert posted.json() == {"received": {"a": [1, 2]}}
        invalid = httpx.get(server.url + "/items/not-a-number")
        assert invalid.status_code == 422
        server.stop()


# ------------------------------------------------------------------ REST APIs: Powertools, Mangum

REST_APP = "handlers.frameworks:powertools_rest_handler"
ORIGIN = "https://app.example"


def rest_proxy_config(apis: dict[str, list[str] | None], function: str) -> dict:
    """REST APIs (`protocolType: REST`, stage `prod`), each `ANY /{proxy+}` AWS_PROXY to
    `function`, by id -> binaryMediaTypes (None: none declared)."""
    out = []
    for api_id, binary_types in apis.items():
        api = {
            "name": api_id,
            "id": api_id,
            "protocolType": "REST",
            "routes": [
                {
                    "routeKey": "ANY /{proxy+}",
                    "integration": {"type": "AWS_PROXY", "uri": invocation_uri(function)},
                }
            ],
            "stages": [{"stageName": "prod"}],
        }
        if binary_types is not None:
            api["binaryMediaTypes"] = binary_types
        out.append(api)
    return {"apis": out}


def check_powertools_rest_app(
    get: Callable[..., httpx.Response], send: Callable[..., httpx.Response]
) -> None:
    """The REST resolver's routes, through a REST API whose binaryMediaTypes has image/png."""
    todo = get("/todos/7?q=milk&tag=a&tag=b")
    assert todo.status_code == 200, todo.text
    assert todo.json() == {
        "id": "7",
        "q": "milk",
        "tags": ["a", "b"],
        "stage": "prod",
        "resource": "/{proxy+}",
    }
    created = send("POST", "/todos", json={"title": "buy milk"}, headers={"origin": ORIGIN})
    assert (created.status_code, created.json()) == (201, {"created": {"title": "buy milk"}})
    assert created.headers["x-todo"] == "buy milk"
    assert created.headers["content-type"] == "application/json"
    # The resolver's CORS: its headers on a request from its origin, and its own preflight answer.
    assert created.headers["access-control-allow-origin"] == ORIGIN
    assert created.headers["access-control-expose-headers"] == "X-Todo"
    preflight = send(
        "OPTIONS",
        "/todos",
        headers={"origin": ORIGIN, "access-control-request-method": "POST"},
    )
    assert preflight.status_code == 204, preflight.text
    assert preflight.headers["access-control-allow-origin"] == ORIGIN
    assert preflight.headers["access-control-max-age"] == "300"
    assert "POST" in preflight.headers["access-control-allow-methods"]
    # The resolver's 404 (the API's route matched: the function answers it).
    missing = get("/nothing-here")
    assert (missing.status_code, missing.json()) == (404, {"statusCode": 404, "message": "Not found"})
    # "Content type conversions": a base64 answer (isBase64Encoded) reaches a client whose Accept
    # names a binary media type as the bytes, any other client as the base64 text.
    image = get("/image.png", headers={"accept": "image/png"})
    assert (image.status_code, image.headers["content-type"]) == (200, "image/png")
    assert image.content == PNG
    text = get("/image.png", headers={"accept": "application/json"})
    assert (text.status_code, text.content) == (200, base64.b64encode(PNG))


def test_powertools_rest_resolver_on_a_rest_api_from_a_config_file(portico):
    server = portico(
        rest_proxy_config({"binrest": ["image/png"], "textrest": None}, "todos"),
        functions={"todos": REST_APP},
    )

    def send(method: str, path: str, api: str = "binrest", **kwargs) -> httpx.Response:
        headers = {"host": f"{api}.execute-api.localhost:{server.port}", **kwargs.pop("headers", {})}
        return httpx.request(method, server.url + "/prod" + path, headers=headers, **kwargs)

    check_powertools_rest_app(lambda path, **kw: send("GET", path, **kw), send)
    # Without binaryMediaTypes, whatever Accept says, the client gets the base64 text.
    for accept in ("image/png", "*/*"):
        text = send("GET", "/image.png", api="textrest", headers={"accept": accept})
        assert (text.status_code, text.content) == (200, base64.b64encode(PNG)), accept


def test_powertools_rest_resolver_on_a_rest_api_built_with_boto3(portico, tmp_path):
    admin = start_admin_server(portico, tmp_path, functions={"todos": REST_APP})
    apigw = admin.client("apigateway")
    ids = {}
    for name, create in (("binary", {"binaryMediaTypes": ["image/png"]}), ("text", {})):
        api = apigw.create_rest_api(name=name, **create)
        api_id, root = api["id"], api["rootResourceId"]
        proxy = apigw.create_resource(restApiId=api_id, parentId=root, pathPart="{proxy+}")["id"]
        apigw.put_method(restApiId=api_id, resourceId=proxy, httpMethod="ANY", authorizationType="NONE")
        point_at(apigw, api_id, proxy, "todos")
        apigw.create_deployment(restApiId=api_id, stageName="prod")
        ids[name] = api_id

    def send(method: str, path: str, api: str = "binary", **kwargs) -> httpx.Response:
        headers = {"host": admin.host(ids[api]), **kwargs.pop("headers", {})}
        return httpx.request(method, admin.url + "/prod" + path, headers=headers, **kwargs)

    wait_for(lambda: send("GET", "/todos/1").status_code == 200)
    check_powertools_rest_app(lambda path, **kw: send("GET", path, **kw), send)
    text = send("GET", "/image.png", api="text", headers={"accept": "image/png"})
    assert (text.status_code, text.content) == (200, base64.b64encode(PNG))
    # binaryMediaTypes added later (UpdateRestApi), applied once redeployed.
    apigw.update_rest_api(
        restApiId=ids["text"], patchOperations=[{"op": "add", "path": "/binaryMediaTypes/image~1png"}]
    )
    apigw.create_deployment(restApiId=ids["text"], stageName="prod")
    image, _ = wait_for(
        lambda: (
            (r := send("GET", "/image.png", api="text", headers={"accept": "image/png"})).content == PNG and r
        )
    )
    assert image.headers["content-type"] == "image/png"


def test_mangum_starlette_on_a_rest_api_with_a_binary_response(portico):
    server = portico(
        rest_proxy_config({"starrest": ["image/png"]}, "star"),
        functions={"star": "handlers.frameworks:mangum_starlette_handler"},
    )
    host = {"host": f"starrest.execute-api.localhost:{server.port}"}
    hello = httpx.get(server.url + "/prod/hello/ann?q=1", headers=host)
    assert (hello.status_code, hello.json()) == (200, {"hello": "ann", "q": "1"})
    image = httpx.get(server.url + "/prod/image.png", headers={**host, "accept": "image/png"})
    assert (image.status_code, image.headers["content-type"], image.content) == (200, "image/png", PNG)
    text = httpx.get(server.url + "/prod/image.png", headers={**host, "accept": "text/plain"})
    assert text.content == base64.b64encode(PNG)
