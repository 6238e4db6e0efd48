"""`benches/run.py --shape validate`: a validated POST of a 10 KB JSON body against the same route
without validation, in the same Portico and the same run.

    python benches/run.py --shape validate [--duration S] [--warmup S] [--connections N]
                          [--threads N] [--rounds N] [--only CASE[,CASE...]] [--keep]

What it starts (one worker each, every port a free one on 127.0.0.1):
  upstream           nginx answering every request with a small fixed JSON body
  portico-validate   a REST API (`protocolType: REST`, stage `bench`) with an `Order` model (its
                     customer, its items and their SKUs, quantities and prices checked, the note's
                     length bounded) and a request validator of bodies and parameters:
                     POST /mock and POST /proxy (MOCK, and HTTP_PROXY -> the upstream), and
                     POST /mock-validated and POST /proxy-validated, the same with the validator:
                     the `x-tenant` header required and the body checked against `Order`.
Cases (keys for --only): mock, mock-validated, proxy, proxy-validated; each POSTs the same 10 KB
JSON document (a wrk Lua script) with `x-tenant`. The check before timing requires 200 of every
case, and 400 `Invalid request body` of the validated routes for a body that breaks the model. The
ratios: each validated route's req/s over the same route's without validation.

What bounds them: the validated route reads the body whole, parses it into a JSON tree and checks
the tree; `cargo bench --bench core -- validate` measures the parse of this 10 KB document at about
15 us and the parse and check at about 23 us (figures: docs/pipeline.md, "Request validation").
An unvalidated MOCK request costs about 35 us all told (it drains the body without parsing it), so
the validated MOCK can reach about 35 / (35 + 23) = 0.6 of it: its target is 0.5. Behind
HTTP_PROXY the same 23 us sit next to the upstream's round trip: its target is 0.8.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from run import (
    NO_ACCOUNT_LIMIT,
    UPSTREAM_HTTP,
    Case,
    Processes,
    fetch,
    json_body,
    measure_and_compare,
    start_nginx,
    start_portico,
)

BODY_BYTES = 10 * 1024
# The least each validated route's req/s may be against the same route's without validation.
MOCK_TARGET = 0.5
PROXY_TARGET = 0.8

ORDER = {
    "$schema": "http://json-schema.org/draft-04/schema#",
    "title": "Order",
    "type": "object",
    "properties": {
        "orderId": {"type": "string", "pattern": "^ord-[0-9]{10}$"},
        "customer": {
            "type": "object",
            "properties": {
                "id": {"type": "string", "minLength": 1},
                "email": {"type": "string", "format": "email"},
                "tier": {"type": "string", "enum": ["bronze", "silver", "gold"]},
            },
            "required": ["id", "email"],
        },
        "items": {
            "type": "array",
            "minItems": 1,
            "maxItems": 100,
            "items": {
                "type": "object",
                "properties": {
                    "sku": {"type": "string", "pattern": "^SKU-[0-9]{4}$"},
                    "qty": {"type": "integer", "minimum": 1, "maximum": 99},
                    "price": {"type": "number", "minimum": 0},
                },
                "required": ["sku", "qty", "price"],
                "additionalProperties": False,
            },
        },
        "note": {"type": "string", "maxLength": 20000},
    },
    "required": ["orderId", "customer", "items"],
}


def validate_config(upstream_port: int) -> dict:
    mock = {"type": "MOCK", "statusCode": 200, "body": '{"ok":true}'}
    upstream = {
        "type": "HTTP_PROXY",
        "uri": f"http://127.0.0.1:{upstream_port}/",
        "method": "POST",
        "timeoutInMillis": 10000,
    }
    validated = {
        "requestValidatorId": "all",
        "requestParameters": {"method.request.header.x-tenant": True},
        "requestModels": {"application/json": "Order"},
    }
    return {
        "settings": NO_ACCOUNT_LIMIT,
        "apis": [
            {
                "name": "validate",
                "id": "validatebench",
                "protocolType": "REST",
                "models": {"Order": {"schema": ORDER}},
                "requestValidators": {
                    "all": {"validateRequestBody": True, "validateRequestParameters": True}
                },
                "routes": [
                    {"routeKey": "POST /mock", "integration": mock},
                    {"routeKey": "POST /mock-validated", "integration": mock, **validated},
                    {"routeKey": "POST /proxy", "integration": upstream},
                    {"routeKey": "POST /proxy-validated", "integration": upstream, **validated},
                ],
                "stages": [{"stageName": "bench"}],
            }
        ],
    }


def validated_post(tmp: Path, port: int) -> dict:
    """Check that the validated routes refuse a body that breaks the model (the validation is
    really on), then write the wrk script POSTing the 10 KB body: the `Case` arguments of a POST."""
    body = json_body(BODY_BYTES)
    headers = {"x-tenant": "acme", "content-type": "application/json"}
    broken = json.loads(body)
    broken["items"][3]["qty"] = 0
    for path in ("/bench/mock-validated", "/bench/proxy-validated"):
        status, _, answer = fetch(port, path, "POST", headers, json.dumps(broken).encode())
        if (status, json.loads(answer)) != (400, {"message": "Invalid request body"}):
            raise RuntimeError(f"{path}: a body that breaks the model got {status} {answer[:200]!r}")
    script = tmp / "post-10k.lua"
    script.write_text(
        f'wrk.method = "POST"\nwrk.body = [==[{body.decode()}]==]\n'
        'wrk.headers["Content-Type"] = "application/json"\n'
    )
    return {"method": "POST", "body": body, "script": script, "headers": {"x-tenant": "acme"}}


def run_validate(args: argparse.Namespace, tmp: Path, procs: Processes) -> int:
    up_port, _ = start_nginx(tmp, procs, "upstream", UPSTREAM_HTTP)
    port, _, _ = start_portico(tmp, procs, "portico-validate", validate_config(up_port), "/bench/mock")
    post = validated_post(tmp, port)
    cases = [
        Case("mock", "MOCK, POST 10 KB", port, "/bench/mock", **post),
        Case("mock-validated", "MOCK, POST 10 KB validated", port, "/bench/mock-validated", **post),
        Case("proxy", "HTTP_PROXY, POST 10 KB", port, "/bench/proxy", **post),
        Case("proxy-validated", "HTTP_PROXY, POST 10 KB validated", port, "/bench/proxy-validated", **post),
    ]
    measure_and_compare(
        args,
        cases,
        (("mock-validated", "mock", MOCK_TARGET), ("proxy-validated", "proxy", PROXY_TARGET)),
        "ratios: each validated route against the same route without validation",
    )
    return 0
