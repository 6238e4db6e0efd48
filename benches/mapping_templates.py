"""`benches/run.py --shape templates`: a MOCK method with a non-trivial VTL response template against
the same MOCK method without a template, in one run.

    python benches/run.py --shape templates [--duration S] [--warmup S] [--connections N]
                          [--threads N] [--rounds N] [--only CASE[,CASE...]] [--keep]

What it starts: one Portico (one worker) serving a REST API (`protocolType: REST`, stage `bench`)
of three MOCK methods (AWS's: the request template `{"statusCode": 200}`, static, is read in Rust):
  GET /plain      no response template: the empty body, the core's own work only
  GET /static     a response template without VTL: its text, still without Python
  GET /vtl        a response template with VTL ($context, $input.params(), $util, #foreach): each
                  request is rendered by the core's VTL engine (`rust/templates/`) on the request's
                  thread; a template that engine does not compile would go to the Python side
                  (`Call::Render`, airspeed-ext)
Cases (keys for --only): plain, static, vtl, each requested with `?a=1&b=two`. The table gives
each one's req/s over `plain`'s: `vtl`'s is the cost of a template rendered on the request's path
(its input built as JSON and read back, then the render), `static`'s that of a template without
VTL, which the core answers with itself.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from run import NO_ACCOUNT_LIMIT, Case, Processes, measure_and_compare, start_portico

# A template of the kind API Gateway users write: context, parameters, escaping and a loop.
VTL = """#set($params = $input.params())
{
  "requestId": "$context.requestId",
  "stage": "$context.stage",
  "resource": "$context.resourcePath",
  "sourceIp": "$context.identity.sourceIp",
  "userAgent": "$util.escapeJavaScript($context.identity.userAgent)",
  "query": {
#foreach($name in $params.querystring.keySet())
    "$name": "$util.escapeJavaScript($params.querystring.get($name))"#if($foreach.hasNext),#end
#end
  },
  "items": [#foreach($i in [1..5]){"n": $i}#if($foreach.hasNext), #end#end]
}"""

# A ratio is reported, not held to a target: this shape says what a template costs.
TARGETS = (("static", "plain", 0.0), ("vtl", "plain", 0.0))


def templates_config() -> dict:
    def mock(templates: dict[str, str]) -> dict:
        return {
            "type": "MOCK",
            "requestTemplates": {"application/json": '{"statusCode": 200}'},
            "integrationResponses": {"200": {"responseTemplates": templates}},
        }

    def route(key: str, templates: dict[str, str]) -> dict:
        return {"routeKey": key, "integration": mock(templates), "methodResponses": {"200": {}}}

    return {
        "settings": NO_ACCOUNT_LIMIT,
        "apis": [
            {
                "name": "templates",
                "id": "templatebench",
                "protocolType": "REST",
                "routes": [
                    route("GET /plain", {}),
                    route("GET /static", {"application/json": '{"ok": true, "static": "text"}'}),
                    route("GET /vtl", {"application/json": VTL}),
                ],
                "stages": [{"stageName": "bench"}],
            }
        ],
    }


def run_templates(args: argparse.Namespace, tmp: Path, procs: Processes) -> int:
    port, _, _ = start_portico(tmp, procs, "portico-templates", templates_config(), "/bench/plain")
    query = "?a=1&b=two"
    cases = [
        Case("plain", "MOCK, no response template", port, "/bench/plain" + query),
        Case("static", "MOCK, static response template", port, "/bench/static" + query),
        Case("vtl", "MOCK, VTL response template", port, "/bench/vtl" + query),
    ]
    measure_and_compare(args, cases, TARGETS, "ratios against `plain`, the same MOCK without a template")
    return 0
