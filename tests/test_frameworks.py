"""Lambda apps built with existing frameworks run unchanged behind Portico."""

from __future__ import annotations

import httpx


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
