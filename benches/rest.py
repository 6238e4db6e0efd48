"""`benches/run.py --shape rest`: REST APIs' request and response pipeline in one run and one
Portico: a MOCK method with a non-trivial VTL response template, and a validated POST with a 10 KB
body, each against the same route without it, with the access log on (production's shape).

    python benches/run.py --shape rest [--duration S] [--warmup S] [--connections N]
                          [--threads N] [--rounds N] [--only CASE[,CASE...]] [--keep]

What it starts (one worker each, every port a free one on 127.0.0.1):
  upstream       nginx answering every request with a small fixed JSON body
  portico-rest   one REST API (`protocolType: REST`, stage `bench`) and `settings.accessLog` (the
                 production shape's JSON line, to a file), with the routes of
                 benches/mapping_templates.py (GET /plain, /static, /vtl: a MOCK without a response
                 template, with a static one, with the VTL one) and of benches/validate.py (POST
                 /mock, /mock-validated, /proxy, /proxy-validated: MOCK and HTTP_PROXY, without
                 and with the `Order` model and the `x-tenant` header checked)
Cases (keys for --only): plain, static, vtl, mock, mock-validated, proxy, proxy-validated.

Ratios and what bounds them:
  vtl / plain               a template rendered by the core's VTL engine (`rust/templates/`) on
                            the request's thread, without Python: building its input (the request's
                            context and parameters as JSON), reading it back and the render (~12 us
                            for this template); the MOCK without it costs ~11 us. Measured ~0.25x
                            (0.08x when the Python engine rendered it; it still renders the
                            templates the core's engine does not compile)
  static / plain            a template without VTL, which the core answers with itself
  mock-validated / mock     the 10 KB body parsed and checked in Rust (~23 us, `cargo bench
                            --bench core -- validate`) beside a MOCK's ~35 us: target 0.5
  proxy-validated / proxy   the same 23 us beside the upstream's round trip: target 0.8
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from mapping_templates import templates_config
from run import (
    PORTICO_LOG_FORMAT,
    UPSTREAM_HTTP,
    Case,
    Processes,
    fetch,
    measure_and_compare,
    start_nginx,
    start_portico,
)
from validate import MOCK_TARGET, PROXY_TARGET, validate_config, validated_post

TARGETS = (
    ("static", "plain", 0.0),
    ("vtl", "plain", 0.0),  # reported, not held: it says what a rendered template costs
    ("mock-validated", "mock", MOCK_TARGET),
    ("proxy-validated", "proxy", PROXY_TARGET),
)


def rest_config(upstream_port: int, access_log: Path) -> dict:
    """The two shapes' REST APIs as one, with the access log on."""
    templates = templates_config()
    validated = validate_config(upstream_port)
    api = dict(validated["apis"][0], name="rest", id="restbench1")
    api["routes"] = [*templates["apis"][0]["routes"], *api["routes"]]
    settings = {
        **validated["settings"],
        "accessLog": {"format": PORTICO_LOG_FORMAT, "destination": str(access_log)},
    }
    return {"settings": settings, "apis": [api]}


def run_rest(args: argparse.Namespace, tmp: Path, procs: Processes) -> int:
    up_port, _ = start_nginx(tmp, procs, "upstream", UPSTREAM_HTTP)
    config = rest_config(up_port, tmp / "access.log")
    port, _, _ = start_portico(tmp, procs, "portico-rest", config, "/bench/plain")
    post = validated_post(tmp, port)
    status, _, answer = fetch(port, "/bench/vtl?a=1&b=two", "GET", {}, None)
    rendered = json.loads(answer)  # the VTL route really renders: its JSON names the request
    if status != 200 or rendered["query"] != {"a": "1", "b": "two"} or len(rendered["items"]) != 5:
        raise RuntimeError(f"/bench/vtl: unexpected answer {status} {answer[:300]!r}")
    query = "?a=1&b=two"
    cases = [
        Case("plain", "MOCK, no response template", port, "/bench/plain" + query),
        Case("static", "MOCK, static response template", port, "/bench/static" + query),
        Case("vtl", "MOCK, VTL response template", port, "/bench/vtl" + query),
        Case("mock", "MOCK, POST 10 KB", port, "/bench/mock", **post),
        Case("mock-validated", "MOCK, POST 10 KB validated", port, "/bench/mock-validated", **post),
        Case("proxy", "HTTP_PROXY, POST 10 KB", port, "/bench/proxy", **post),
        Case("proxy-validated", "HTTP_PROXY, POST 10 KB validated", port, "/bench/proxy-validated", **post),
    ]
    measure_and_compare(
        args, cases, TARGETS, "ratios against the same route without the template or the validation"
    )
    return 0
