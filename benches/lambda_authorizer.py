"""A route behind a cached Lambda authorizer against the same route without authorization.

    python benches/lambda_authorizer.py [--duration S] [--warmup S] [--connections N] [--threads N]
                                        [--rounds N] [--only CASE[,CASE...]] [--keep]

One Portico (`python -m portico serve`, one worker, served by its edge) with an HTTP API whose routes
come in pairs, open and guarded by a Lambda authorizer (payload 2.0 returning an IAM policy,
`authorizerResultTtlInSeconds` 300, identity source the Authorization header):
  GET /proxy, GET /auth/proxy   HTTP_PROXY -> an nginx upstream (1 worker, a fixed JSON body)
  GET /mock,  GET /auth/mock    MOCK 200 {"ok":true} (the authorizer's cost against the least work)
wrk sends the same Authorization header on every request, so after the first request each guarded
one is decided from the cache (the authorizer runs once per run: the table shows its call count);
the cached policy is still evaluated against each request's route ARN, and its context reaches the
integration's event as it would the Lambda's. The target is a guarded route at >= 0.8x its open
twin's requests/s.

The measuring (wrk, rounds in alternating order, medians) is benches/run.py's. On a loaded machine
requests/s swing from round to round; the CPU time Portico's processes spend per request (from
/proc, around each wrk run) is steadier, so the table also shows it, and the ratio of the open
route's CPU per request to the guarded one's: the throughput ratio on a core of its own.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import statistics
import sys
import tempfile
from pathlib import Path

from run import (
    CHECKS,
    UPSTREAM_HTTP,
    Case,
    Processes,
    descendants,
    fetch,
    machine,
    print_table,
    run_wrk,
    start_nginx,
    start_portico,
)

TOKEN = "Bearer bench-token-0123456789"
TARGET = 0.8


def config(upstream_port: int) -> dict:
    auth = {"authorizationType": "CUSTOM", "authorizerId": "bench"}
    return {
        # No account limit: a benchmark measures the gateway, not AWS's default 10,000 requests/s.
        "settings": {"accountThrottle": {}},
        "functions": {"authorizer": "handlers:authorizer", "calls": "handlers:authorizer_calls"},
        "apis": [
            {
                "name": "auth-bench",
                "id": "authbench1",
                "routes": [
                    {"route": "GET /proxy", "integration": "upstream"},
                    {"route": "GET /auth/proxy", "integration": "upstream", **auth},
                    {"route": "GET /mock", "integration": "canned"},
                    {"route": "GET /auth/mock", "integration": "canned", **auth},
                    {"route": "GET /calls", "integration": "calls"},
                ],
                "integrations": {
                    "upstream": {
                        "type": "HTTP_PROXY",
                        "uri": f"http://127.0.0.1:{upstream_port}/",
                        "method": "GET",
                        "timeoutInMillis": 10000,
                    },
                    "canned": {
                        "type": "MOCK",
                        "statusCode": 200,
                        "headers": {"content-type": "application/json"},
                        "body": '{"ok":true}',
                    },
                    "calls": {"type": "AWS_PROXY", "uri": "calls", "payloadFormatVersion": "2.0"},
                },
                "authorizers": {
                    "bench": {
                        "authorizerType": "REQUEST",
                        "authorizerUri": "arn:aws:lambda:us-east-1:123456789012:function:authorizer",
                        "authorizerPayloadFormatVersion": "2.0",
                        "identitySource": ["$request.header.Authorization"],
                        "authorizerResultTtlInSeconds": 300,
                    }
                },
            }
        ],
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--duration", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--only", default="")
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args()
    for tool in ("wrk", "nginx"):
        if shutil.which(tool) is None:
            print(f"{tool} not found: apt-get install -y wrk nginx-light", file=sys.stderr)
            return 2

    def stop(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    tmp = Path(tempfile.mkdtemp(prefix="portico-auth-bench-"))
    procs = Processes()
    try:
        return run(args, tmp, procs)
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return 130
    finally:
        procs.stop_all()
        if args.keep:
            print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of `pid` and its descendants (all their threads), in seconds."""
    ticks = 0
    for p in (pid, *descendants(pid)):
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        ticks += int(fields[11]) + int(fields[12])  # utime, stime
    return ticks / os.sysconf("SC_CLK_TCK")


def measure_cpu(args: argparse.Namespace, cases: list[Case], pid: int) -> dict[str, list[float]]:
    """benches/run.py's measuring (checks, warm-up, rounds in alternating order), with the CPU
    microseconds Portico spent per request in each run."""
    for case in cases:
        for _ in range(CHECKS):
            status, _, body = fetch(case.port, case.path, headers=case.headers)
            if status != case.expect_status:
                raise RuntimeError(
                    f"{case.label}: expected {case.expect_status}, got {status}: {body[:200]!r}"
                )
    if args.warmup > 0:
        for case in cases:
            run_wrk(case.url, args.warmup, args.connections, args.threads, case.wrk_args())
    cpu: dict[str, list[float]] = {case.key: [] for case in cases}
    for round_no in range(args.rounds):
        order = cases if round_no % 2 == 0 else list(reversed(cases))
        for case in order:
            before = cpu_seconds(pid)
            sample = run_wrk(case.url, args.duration, args.connections, args.threads, case.wrk_args())
            spent = cpu_seconds(pid) - before
            case.samples.append(sample)
            cpu[case.key].append(spent / max(sample.requests, 1) * 1e6)
        print(f"round {round_no + 1}/{args.rounds} done", file=sys.stderr)
    return cpu


def run(args: argparse.Namespace, tmp: Path, procs: Processes) -> int:
    for line in machine():
        print(line)
    print(
        f"load    : wrk -t{args.threads} -c{args.connections} -d{args.duration:g}s --latency, "
        f"{args.rounds} rounds (order alternating), median shown"
    )
    up_port, _ = start_nginx(tmp, procs, "upstream", UPSTREAM_HTTP)
    port, proc, _ = start_portico(tmp, procs, "portico", config(up_port), "/mock")
    auth = {"Authorization": TOKEN}
    cases = [
        Case("proxy", "HTTP_PROXY, open", port, "/proxy"),
        Case("auth-proxy", "HTTP_PROXY, Lambda authorizer", port, "/auth/proxy", headers=auth),
        Case("mock", "MOCK, open", port, "/mock"),
        Case("auth-mock", "MOCK, Lambda authorizer", port, "/auth/mock", headers=auth),
    ]
    if args.only:
        wanted = {w.strip() for w in args.only.split(",")}
        cases = [c for c in cases if c.key in wanted]
    # Without the header the guarded routes refuse (401): what is measured is authorization.
    status, _, _ = fetch(port, "/auth/mock")
    if status != 401:
        raise RuntimeError(f"a guarded route without a token answered {status}, not 401")

    cpu = measure_cpu(args, cases, proc.pid)
    print_table(cases, "proxy", [])
    medians = {c.key: statistics.median(s.rps for s in c.samples) for c in cases if c.samples}
    cpu_medians = {key: statistics.median(values) for key, values in cpu.items() if values}
    print(f"{'CPU per request (Portico)':<34} {'us':>10}   rounds (us)")
    for case in cases:
        rounds = " ".join(f"{v:.1f}" for v in cpu[case.key])
        print(f"{case.label:<34} {cpu_medians[case.key]:>10.1f}   {rounds}")
    print()
    for open_key, guarded_key in (("proxy", "auth-proxy"), ("mock", "auth-mock")):
        if open_key in medians and guarded_key in medians:
            ratio = medians[guarded_key] / medians[open_key]
            capacity = cpu_medians[open_key] / cpu_medians[guarded_key]
            verdict = "ok" if min(ratio, capacity) >= TARGET else "NO"
            print(
                f"{guarded_key} / {open_key}: req/s ratio {ratio:.2f}, CPU-per-request ratio {capacity:.2f}"
                f"   (target >= {TARGET:g}: {verdict})"
            )
    _, _, body = fetch(port, "/calls")
    print(f"authorizer calls during the run: {body.decode()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
