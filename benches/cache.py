"""`benches/run.py --shape cache`: warm stage-cache hits against nginx's `proxy_cache` hits.

    python benches/run.py --shape cache [--duration S] [--warmup S] [--connections N] [--threads N]
                          [--rounds N] [--only CASE[,CASE...]] [--keep]

What it starts (one worker each, every port a free one on 127.0.0.1):
  upstream       nginx answering every request with a small fixed JSON body, logging each request
                 it answers (the proof that the cached cases do not reach it)
  nginx-cache    nginx reverse-proxying to the upstream through `proxy_cache` (a keys zone, files
                 under the run's directory, `proxy_cache_valid 200 300s`, `proxy_cache_lock on`)
  portico-cache  a REST API (`protocolType: REST`), stage `bench` with `cacheClusterEnabled` and
                 stage-wide caching (`*/*` `cachingEnabled`, 300 s): GET /cached HTTP_PROXY -> the
                 upstream; and GET /proxied, the same route uncached (for scale)
Cases (keys for --only): nginx-cache (hits: the check before timing requires
`X-Cache-Status: HIT`), cache (Portico's hits), proxy (the uncached route: every request reaches
the upstream). The target: Portico's hits at >= 1.0x nginx's. After the rounds the upstream's log
shows how many requests of each cached case reached it (one each: the first).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from run import UPSTREAM_BODY, Case, Processes, measure_and_compare, start_nginx, start_portico

TARGET = 1.0

UPSTREAM_LOGGED = """
    keepalive_requests 1000000;
    log_format path '$request_uri';
    server {{
        listen 127.0.0.1:{port} reuseport backlog=4096;
        access_log LOG path;
        location / {{
            default_type application/json;
            return 200 'BODY';
        }}
    }}
""".replace("BODY", UPSTREAM_BODY.replace("{", "{{").replace("}", "}}"))

NGINX_CACHE = """
    keepalive_requests 1000000;
    proxy_cache_path CACHE_DIR levels=1:2 keys_zone=bench:10m max_size=100m inactive=10m use_temp_path=off;
    upstream backend {{
        server 127.0.0.1:UPSTREAM_PORT;
        keepalive 64;
        keepalive_requests 1000000;
    }}
    server {{
        listen 127.0.0.1:{port} backlog=4096;
        location / {{
            proxy_pass http://backend;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_cache bench;
            proxy_cache_valid 200 300s;
            proxy_cache_lock on;
            add_header X-Cache-Status $upstream_cache_status;
        }}
    }}
"""


def cache_config(upstream_port: int) -> dict:
    def upstream(path: str) -> dict:
        return {
            "type": "HTTP_PROXY",
            "uri": f"http://127.0.0.1:{upstream_port}{path}",
            "method": "GET",
            "timeoutInMillis": 10000,
        }

    return {
        "apis": [
            {
                "name": "cache",
                "id": "cachebench",
                "protocolType": "REST",
                "routes": [
                    {"routeKey": "GET /cached", "integration": upstream("/portico-cached")},
                    {"routeKey": "GET /proxied", "integration": upstream("/portico-proxied")},
                ],
                "stages": [
                    {
                        "stageName": "bench",
                        "cacheClusterEnabled": True,
                        "cacheClusterSize": "0.5",
                        "methodSettings": {
                            "*/*": {"cachingEnabled": True, "cacheTtlInSeconds": 300},
                            "proxied/GET": {"cachingEnabled": False},
                        },
                    }
                ],
            }
        ],
    }


def run_cache(args: argparse.Namespace, tmp: Path, procs: Processes) -> int:
    upstream_log = tmp / "upstream-requests.log"
    up_port, _ = start_nginx(tmp, procs, "upstream", UPSTREAM_LOGGED.replace("LOG", str(upstream_log)))
    # nginx's workers (another user) must reach their cache files under the run's directory.
    tmp.chmod(0o711)
    nginx_body = NGINX_CACHE.replace("UPSTREAM_PORT", str(up_port)).replace(
        "CACHE_DIR", str(tmp / "nginx-cache-files")
    )
    nginx_port, _ = start_nginx(tmp, procs, "nginx-cache", nginx_body)
    port, _, _ = start_portico(tmp, procs, "portico-cache", cache_config(up_port), "/bench/cached")
    cases = [
        Case(
            "nginx-cache",
            "nginx proxy_cache (hits)",
            nginx_port,
            "/nginx-cached",
            expect_headers={"x-cache-status": "HIT"},
        ),
        Case("cache", "Portico stage cache (hits)", port, "/bench/cached"),
        Case("proxy", "Portico, the same route uncached", port, "/bench/proxied"),
    ]
    cases = measure_and_compare(
        args, cases, (("cache", "nginx-cache", TARGET),), "the ratio: Portico's hits against nginx's"
    )
    # nginx writes its access log as it goes: what reached the upstream of each case.
    reached = upstream_log.read_text().splitlines() if upstream_log.exists() else []
    answered = {case.key: case.requests for case in cases}
    paths = {"nginx-cache": "/nginx-cached", "cache": "/portico-cached", "proxy": "/portico-proxied"}
    for key, path in paths.items():
        if key in answered:
            print(f"upstream requests from {key}: {reached.count(path)} of {answered[key]:,} answered")
    return 0
