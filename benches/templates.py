"""Mapping-template renders per second: the console's pass-through template on a 1 KB JSON body.

    python benches/templates.py [--seconds S] [--rounds N]

Cases, each timed in this one process, one thread, for `--seconds` per round (best of `--rounds`):
  portico     `MappingTemplate.render` (Portico's engine: airspeed-ext with Velocity semantics and bounds)
  airspeed    the same template rendered by airspeed-ext as it comes (Python objects for $input and $util,
              no bounds, Python semantics), the peer: the ratio is what Portico's adjustments cost
  pets        `MappingTemplate.render` of AWS's pets example over a 100-item array (a #foreach-heavy case)
  core        the pass-through template rendered by the core's engine (`rust/templates/`, which the
              gateway uses for every template it compiles), through `_core.render_template` (the
              input as the JSON the core builds; the call's own Python cost included)
  core-pets   the pets case, by the core's engine
A figure, not an assertion: it prints renders/s and the ratio to the peer.
"""

from __future__ import annotations

import argparse
import base64
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote_plus, unquote_plus

import airspeed

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from portico import _core
from portico.templates import MappingTemplate, TemplateInput
from test_templates import PASSTHROUGH

PETS = """#set($inputRoot = $input.path('$'))
[
#foreach($elem in $inputRoot)
  {
    "description" : "Item $elem.id is a $elem.type.",
    "askingPrice" : $elem.price
  }#if($foreach.hasNext),#end

#end
]"""


def one_kb_body() -> str:
    order = {
        "orderId": "ord-0001",
        "customer": {"id": "c-42", "name": "Ada Lovelace", "email": "ada@example.com", "tier": "gold"},
        "items": [
            {"sku": f"SKU-{n:04d}", "name": f"Item number {n}", "quantity": n % 3 + 1, "price": 9.99 + n}
            for n in range(7)
        ],
        "shipping": {"street": "12 Analytical Way", "city": "London", "zip": "N1 9GU", "express": True},
        "note": 'Leave at the door, it\'s fine "really" / thanks',
    }
    body = json.dumps(order)
    return body + " " * max(0, 1024 - len(body))


REQUEST = TemplateInput(
    kind="request",
    body=one_kb_body(),
    params={
        "path": {"orderId": "ord-0001"},
        "querystring": {"expand": "items", "page": "1"},
        "header": {
            "Host": "api.example.com",
            "User-Agent": "bench/1.0",
            "Accept": "application/json",
            "Content-Type": "application/json",
            "X-Request-Id": "5f2b6a",
        },
    },
    context={
        "apiId": "a1b2c3d4",
        "httpMethod": "POST",
        "stage": "prod",
        "requestId": "c6af9ac6-7b61-11e6-9a41-93e8deadbeef",
        "resourceId": "r3s0urc3",
        "resourcePath": "/orders/{orderId}",
        "identity": {"sourceIp": "198.51.100.7", "userAgent": "bench/1.0", "accountId": "123456789012"},
        "authorizer": {"principalId": "user-1"},
    },
    stage_variables={"env": "prod", "backend": "orders.internal"},
)


class BareInput:
    """$input for bare airspeed: plain Python, as a naive port would write it."""

    def __init__(self, body: str, params: dict[str, dict[str, str]]) -> None:
        self.body = body
        self.parameters = params

    def json(self, path: str) -> str:
        return json.dumps(json.loads(self.body)) if path == "$" else "null"

    def params(self, name: str | None = None) -> Any:
        if name is None:
            return self.parameters
        return next((group[name] for group in self.parameters.values() if name in group), "")


class BareUtil:
    def escapeJavaScript(self, text: str) -> str:
        return json.dumps(text)[1:-1]

    def urlEncode(self, text: str) -> str:
        return quote_plus(text)

    def urlDecode(self, text: str) -> str:
        return unquote_plus(text)

    def base64Encode(self, text: str) -> str:
        return base64.b64encode(text.encode()).decode()


def rate(render: Callable[[], Any], seconds: float, rounds: int) -> float:
    render()  # compile caches, first-use costs
    best = 0.0
    for _ in range(rounds):
        count = 0
        started = time.perf_counter()
        deadline = started + seconds
        while time.perf_counter() < deadline:
            render()
            count += 1
        best = max(best, count / (time.perf_counter() - started))
    return best


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    template = MappingTemplate.compile(PASSTHROUGH)
    output = template.render(REQUEST)["output"]
    json.loads(output.replace("\\'", "'"))  # the case measures a correct render

    bare = airspeed.Template(PASSTHROUGH)

    def bare_render() -> str:
        namespace = {
            "input": BareInput(REQUEST["body"], REQUEST["params"]),
            "util": BareUtil(),
            "context": json.loads(json.dumps(REQUEST["context"])),
            "stageVariables": dict(REQUEST["stage_variables"]),
        }
        return bare.merge(namespace)

    pets_body = json.dumps([{"id": n, "type": "dog", "price": 249.99} for n in range(100)])
    pets = MappingTemplate.compile(PETS)
    pets_request = TemplateInput(kind="response", body=pets_body, params={}, context={}, stage_variables={})
    assert len(json.loads(pets.render(pets_request)["output"])) == 100

    request_json = json.dumps(REQUEST)
    pets_json = json.dumps(pets_request)
    core_output = _core.render_template(PASSTHROUGH, request_json)
    assert core_output is not None and core_output[0] == output  # the same render as the Python engine's

    portico = rate(lambda: template.render(REQUEST), args.seconds, args.rounds)
    peer = rate(bare_render, args.seconds, args.rounds)
    pets_rate = rate(lambda: pets.render(pets_request), args.seconds, args.rounds)
    print(
        f"body: {len(REQUEST['body'])} bytes; best of {args.rounds} rounds of {args.seconds:g} s, one thread"
    )
    print(f"{'case':<10} {'renders/s':>10} {'ratio':>7}")
    print(f"{'portico':<10} {portico:>10.0f} {portico / peer:>6.2f}x")
    print(f"{'airspeed':<10} {peer:>10.0f} {1:>6.2f}x")
    print(f"{'pets':<10} {pets_rate:>10.0f}   (100-item #foreach, response template)")
    core = rate(lambda: _core.render_template(PASSTHROUGH, request_json), args.seconds, args.rounds)
    core_pets = rate(lambda: _core.render_template(PETS, pets_json), args.seconds, args.rounds)
    print(f"{'core':<10} {core:>10.0f} {core / peer:>6.2f}x  ({core / portico:.1f}x portico's)")
    print(f"{'core-pets':<10} {core_pets:>10.0f}   ({core_pets / pets_rate:.1f}x pets')")


if __name__ == "__main__":
    main()
