"""Throttle accuracy on one node, or on several sharing one Redis, measured with `portico bench`
(issue 10's acceptance figures); and what the Redis limiter costs against the local one.

    python benches/throttle_accuracy.py [--rate 500] [--burst 100] [--offered 1500] [--duration 20]
                                        [--warmup 2] [--workers 2] [--connections 16]
                                        [--requests-per-connection 100] [--json PATH] [--keep]
    python benches/throttle_accuracy.py --nodes 3 --redis [the same flags]
    python benches/throttle_accuracy.py --limiter-cost [--duration 10] [--rounds 3] [--connections 32]

Starts `portico serve CONFIG --workers 2` on a free loopback port, CONFIG having one MOCK route
`GET /limited` throttled at --rate requests/s with burst --burst (routeSettings), then drives it
twice with `portico bench` (the core's open-loop load generator, a separate process) at --offered
requests/s for --duration seconds:

  1. from a full bucket:  admitted against burst + rate * duration;
  2. after a --warmup of the same load (which spends the burst): the admitted rate against the
     configured rate.

Each run is `python -m portico bench --config CONFIG --route "GET /limited" --target URL
--rate OFFERED --duration D [--warmup W] --connections C --requests-per-connection N --json`,
printed as it is run. Both workers spend from one bucket in shared memory, so the limit holds for
the server as a whole; connections are renewed every N requests so that both take requests (the
CPU seconds each of the server's processes spent during a run are printed to show it).
Target: within +-1% in both runs (the exit status is 1 otherwise).

With `--nodes N --redis`: a redis-server of its own (free loopback port, no persistence) and N
`portico serve --redis URL` nodes (each with --workers, its own data directory), sharing the route's
bucket; each run drives every node at once, one `portico bench` per node at OFFERED / N requests/s,
and the figures are those of the admitted total against the one bucket (the burst, or what the
warm-ups left of it, plus rate * duration). Then the quota check: a REST API whose key's usage plan
has a daily quota of --quota, driven on every node for --quota-seconds well past it; the admitted
total must equal the quota exactly. Target: within +-3% (the exit status is 1 otherwise).

With `--limiter-cost`: requests/s of a MOCK route throttled high enough to admit everything (so that
every request spends a token), served by one `portico serve` (one worker) with the local limiter and
one with `--redis`, driven in turn by wrk (closed loop), --rounds times in alternating order; the
ratio of the medians. Target: >= 0.8x.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

from run import Processes, descendants, free_port, in_scratch, run_wrk, start_portico

ROUTE = "GET /limited"
TOLERANCE = 0.01
CLUSTER_TOLERANCE = 0.03


def config(rate: float, burst: int) -> dict:
    return {
        "apis": [
            {
                "name": "throttle-accuracy",
                "id": "throttled1",
                "routes": [
                    {"route": ROUTE, "integration": {"type": "MOCK", "statusCode": 200, "body": "ok"}}
                ],
                "stages": [
                    {
                        "name": "$default",
                        "routeSettings": {
                            ROUTE: {"throttlingRateLimit": rate, "throttlingBurstLimit": burst}
                        },
                    }
                ],
            }
        ]
    }


def bench_command(
    args: argparse.Namespace,
    config_path: Path,
    port: int,
    warmup: float,
    offered: float,
    duration: float,
    extra: tuple[str, ...] = (),
) -> list[str]:
    cmd = [sys.executable, "-m", "portico", "bench", "--config", str(config_path), *extra]
    if not extra:
        cmd += ["--route", ROUTE]
    cmd += ["--target", f"http://127.0.0.1:{port}", "--rate", f"{offered:g}"]
    cmd += ["--duration", f"{duration:g}", "--connections", str(args.connections)]
    cmd += ["--requests-per-connection", str(args.requests_per_connection)]
    if warmup:
        cmd += ["--warmup", f"{warmup:g}"]
    return [*cmd, "--json"]


def bench(args: argparse.Namespace, config_path: Path, port: int, warmup: float) -> dict:
    return bench_all(args, [bench_command(args, config_path, port, warmup, args.offered, args.duration)])[0]


def bench_all(args: argparse.Namespace, commands: list[list[str]]) -> list[dict]:
    """Run `portico bench` commands at once (one per node); their JSON reports."""
    for cmd in commands:
        print("$ " + shlex.join(["portico", *cmd[3:]]), flush=True)
    running = [
        subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for cmd in commands
    ]
    reports = []
    for proc in running:
        out, err = proc.communicate(timeout=args.duration + args.warmup + 180)
        if proc.returncode != 0:
            raise RuntimeError(f"portico bench failed ({proc.returncode}):\n{err}")
        reports.append(json.loads(out))
    return reports


def start_redis(tmp: Path, procs: Processes) -> str:
    """A redis-server of this run's own, without persistence; its URL."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise SystemExit("redis-server is not installed (apt-get install redis-server)")
    port = free_port()
    cmd = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    proc = procs.start([*cmd, "--dir", str(tmp)], tmp / "redis-server.log")
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError("redis-server exited: " + (tmp / "redis-server.log").read_text())
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
                sock.sendall(b"PING\r\n")
                if sock.recv(16).startswith(b"+PONG"):
                    return f"redis://127.0.0.1:{port}/0"
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("redis-server did not answer")


def describe(report: dict) -> str:
    limit = report["limit"]
    latency = report["latency_ms"]
    return (
        f"  offered {report['offered_rps']:g} req/s, achieved {report['achieved_rps']:.1f} req/s "
        f"({report['scheduled']} scheduled, {report['missed']} missed, {report['errors_total']} errors)\n"
        f"  admitted {report['admitted']} of {limit['expected_admitted']:.1f} expected "
        f"({limit['tokens_at_start']:.1f} tokens at start + {limit['rate']:g} * {report['duration_s']:g} s): "
        f"{limit['admitted_vs_expected']:.4f}; throttled {report['throttled']}\n"
        f"  admitted rate {limit['admitted_rps']:.2f} req/s; less the tokens at start "
        f"{limit['sustained_rps']:.2f} req/s = {limit['sustained_vs_rate']:.4f} x the configured rate\n"
        f"  latency ms p50 {latency['p50']}  p99 {latency['p99']}  p99.9 {latency['p99.9']}  "
        f"max {latency['max']}"
    )


def cpu_seconds(pids: list[int]) -> dict[int, float]:
    """User + system CPU time of each process so far (from /proc)."""
    ticks = os.sysconf("SC_CLK_TCK")
    out = {}
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        out[pid] = (int(fields[11]) + int(fields[12])) / ticks
    return out


def run(args: argparse.Namespace, tmp: Path, procs: Processes) -> int:
    flags = ("--host", "127.0.0.1")
    port, server, config_path = start_portico(
        tmp, procs, "throttled", config(args.rate, args.burst), "/__probe__", flags, workers=args.workers
    )
    print(
        f"portico serve --workers {args.workers}: route {ROUTE} throttled at {args.rate:g} req/s, "
        f"burst {args.burst}; offered {args.offered:g} req/s for {args.duration:g} s"
    )
    problems = []
    figures = {}
    for name, warmup in (("from a full bucket", 0.0), (f"after a {args.warmup:g} s warm-up", args.warmup)):
        # A bucket unused for burst / rate seconds is full again.
        time.sleep(args.burst / args.rate + 0.5)
        workers = descendants(server.pid)
        before = cpu_seconds(workers)
        report = bench(args, config_path, port, warmup)
        after = cpu_seconds(workers)
        # Which processes of the server did the work (both workers take connections).
        busy = sorted((after[pid] - before[pid] for pid in after if pid in before), reverse=True)
        report["server_cpu_s"] = [round(seconds, 2) for seconds in busy if seconds > 0]
        figures[name] = report
        print(name + ":\n" + describe(report), flush=True)
        print(f"  CPU seconds of the server's processes: {report['server_cpu_s']}", flush=True)
        limit = report["limit"]
        figure = limit["admitted_vs_expected"] if warmup == 0 else limit["sustained_vs_rate"]
        if abs(figure - 1) > TOLERANCE:
            problems.append(f"{name}: {figure:.4f}, outside 1 +- {TOLERANCE}")
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2))
    for problem in problems:
        print("MISSED: " + problem)
    print("target met: within +-1%" if not problems else "target missed")
    return 1 if problems else 0


QUOTA_KEY = "ThrottleBenchQuotaKey0123456789ab"


def cluster_config(rate: float, burst: int, quota: int) -> dict:
    """The throttled route, and a REST API whose key's usage plan has a daily quota."""
    out = config(rate, burst)
    out["apis"].append(
        {
            "name": "quota",
            "id": "quota1",
            "protocolType": "REST",
            "routes": [
                {
                    "routeKey": "GET /items",
                    "integration": {"type": "MOCK", "statusCode": 200, "body": "ok"},
                    "apiKeyRequired": True,
                }
            ],
            "stages": [{"stageName": "prod"}],
        }
    )
    out["apiKeys"] = [{"name": "bench", "value": QUOTA_KEY, "enabled": True}]
    out["usagePlans"] = [
        {
            "name": "bench",
            "apiKeys": ["bench"],
            "quota": {"limit": quota, "period": "DAY", "offset": 0},
            "apiStages": [{"apiId": "quota1", "stage": "prod"}],
        }
    ]
    return out


def combined(reports: list[dict], rate: float, burst: int, duration: float, warmup: float) -> dict:
    """The nodes' admitted total against one bucket (`LimitCheck` in rust/bench.rs, summed)."""
    admitted = sum(r["admitted"] for r in reports)
    warmup_admitted = sum(r.get("warmup", {}).get("admitted", 0) for r in reports)
    tokens = min(max(burst + rate * warmup - warmup_admitted, 0.0), burst) if warmup else float(burst)
    expected = tokens + rate * duration
    return {
        "admitted": admitted,
        "throttled": sum(r["throttled"] for r in reports),
        "other": sum(r["other"] for r in reports),
        "errors": sum(r["errors_total"] for r in reports),
        "offered_rps": sum(r["offered_rps"] for r in reports),
        "achieved_rps": sum(r["achieved_rps"] for r in reports),
        "tokens_at_start": tokens,
        "expected_admitted": expected,
        "admitted_vs_expected": admitted / expected,
        "sustained_rps": (admitted - tokens) / duration,
        "sustained_vs_rate": (admitted - tokens) / duration / rate,
        "p99_ms": max(r["latency_ms"]["p99"] for r in reports),
    }


def run_cluster(args: argparse.Namespace, tmp: Path, procs: Processes) -> int:
    url = start_redis(tmp, procs)
    cfg = cluster_config(args.rate, args.burst, args.quota)
    nodes = []
    for n in range(args.nodes):
        flags = ("--host", "127.0.0.1", "--redis", url, "--data-dir", str(tmp / f"node{n}"))
        flags += ("--redis-lease-ms", f"{args.redis_lease_ms:g}")
        nodes.append(start_portico(tmp, procs, f"node{n}", cfg, "/__probe__", flags, workers=args.workers))
    config_path = nodes[0][2]
    print(
        f"{args.nodes} x portico serve --workers {args.workers} --redis {url} "
        f"--redis-lease-ms {args.redis_lease_ms:g}: route {ROUTE} throttled at "
        f"{args.rate:g} req/s, burst {args.burst}; offered {args.offered:g} req/s in all "
        f"({args.offered / args.nodes:g} per node) for {args.duration:g} s"
    )
    problems = []
    figures: dict = {}
    api = ("--api", "throttled1", "--route", ROUTE)
    for name, warmup in (("from a full bucket", 0.0), (f"after a {args.warmup:g} s warm-up", args.warmup)):
        time.sleep(args.burst / args.rate + 0.5)
        per_node = args.offered / args.nodes
        commands = [
            bench_command(args, config_path, port, warmup, per_node, args.duration, api)
            for port, _, _ in nodes
        ]
        reports = bench_all(args, commands)
        figure = combined(reports, args.rate, args.burst, args.duration, warmup)
        figures[name] = {"nodes": reports, "combined": figure}
        print(
            f"{name}:\n  offered {figure['offered_rps']:g} req/s, achieved {figure['achieved_rps']:.1f}; "
            f"admitted {figure['admitted']} of {figure['expected_admitted']:.1f} expected "
            f"({figure['tokens_at_start']:.1f} tokens at start + {args.rate:g} * {args.duration:g} s): "
            f"{figure['admitted_vs_expected']:.4f}; throttled {figure['throttled']}, "
            f"other {figure['other']}, "
            f"errors {figure['errors']}\n  admitted rate less the tokens at start "
            f"{figure['sustained_rps']:.2f} req/s = {figure['sustained_vs_rate']:.4f} x the configured rate; "
            f"p99 (worst node) {figure['p99_ms']} ms; per node admitted "
            f"{[r['admitted'] for r in reports]}",
            flush=True,
        )
        value = figure["admitted_vs_expected"] if warmup == 0 else figure["sustained_vs_rate"]
        if abs(value - 1) > CLUSTER_TOLERANCE:
            problems.append(f"{name}: {value:.4f}, outside 1 +- {CLUSTER_TOLERANCE}")
    # The quota: driven well past it on every node at once.
    quota_route = (
        "--api",
        "quota1",
        "--route",
        "GET /items",
        "--stage",
        "prod",
        "-H",
        f"x-api-key: {QUOTA_KEY}",
    )
    per_node = max(args.quota * 3 / args.quota_seconds / args.nodes, 1.0)
    commands = [
        bench_command(args, config_path, port, 0.0, per_node, args.quota_seconds, quota_route)
        for port, _, _ in nodes
    ]
    reports = bench_all(args, commands)
    admitted = sum(r["admitted"] for r in reports)
    refused = sum(r["throttled"] for r in reports)
    figures["quota"] = {"quota": args.quota, "admitted": admitted, "refused": refused, "nodes": reports}
    print(
        f"quota of {args.quota}/day, offered {sum(r['offered_rps'] for r in reports):g} req/s for "
        f"{args.quota_seconds:g} s on {args.nodes} nodes: admitted {admitted} (per node "
        f"{[r['admitted'] for r in reports]}), refused {refused} with 429 Limit Exceeded",
        flush=True,
    )
    if admitted != args.quota:
        problems.append(f"quota: admitted {admitted}, not {args.quota}")
    lost = [
        n for n in range(args.nodes) if "unreachable (" in (tmp / f"node{n}.log").read_text(errors="replace")
    ]
    if lost:
        problems.append(f"nodes {lost} lost Redis during the run")
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2))
    for problem in problems:
        print("MISSED: " + problem)
    print(f"target met: within +-{CLUSTER_TOLERANCE:.0%}, quota exact" if not problems else "target missed")
    return 1 if problems else 0


def cost_config() -> dict:
    """A MOCK route whose throttle (and the account's) admits everything: every request spends."""
    return {
        "apis": [
            {
                "name": "limiter-cost",
                "id": "cost1",
                "routes": [
                    {"route": ROUTE, "integration": {"type": "MOCK", "statusCode": 200, "body": "ok"}}
                ],
                "stages": [
                    {
                        "name": "$default",
                        "routeSettings": {
                            ROUTE: {"throttlingRateLimit": 1e9, "throttlingBurstLimit": 1000000000}
                        },
                    }
                ],
            }
        ],
        "settings": {"accountThrottle": {"throttlingRateLimit": 1e9, "throttlingBurstLimit": 1000000000}},
    }


def run_limiter_cost(args: argparse.Namespace, tmp: Path, procs: Processes) -> int:
    url = start_redis(tmp, procs)
    cfg = cost_config()
    lease = ("--redis-lease-ms", f"{args.redis_lease_ms:g}")
    local, _, _ = start_portico(tmp, procs, "local", cfg, "/__probe__", ("--host", "127.0.0.1"))
    shared, _, _ = start_portico(
        tmp,
        procs,
        "shared",
        cfg,
        "/__probe__",
        ("--host", "127.0.0.1", "--redis", url, "--data-dir", str(tmp / "d"), *lease),
    )
    cases = {"local limiter": local, "redis limiter": shared}
    print(
        f"one worker each (--redis-lease-ms {args.redis_lease_ms:g}); "
        f"wrk -t{args.threads} -c{args.connections} -d{args.duration:g}s on {ROUTE} "
        f"(throttled, every request admitted: route and account buckets spent), {args.rounds} rounds"
    )
    samples: dict[str, list] = {name: [] for name in cases}
    for port in cases.values():  # warm-up
        run_wrk(f"http://127.0.0.1:{port}/limited", 2, args.connections, args.threads)
    for round_ in range(args.rounds):
        order = list(cases.items()) if round_ % 2 == 0 else list(reversed(cases.items()))
        for name, port in order:
            sample = run_wrk(
                f"http://127.0.0.1:{port}/limited", args.duration, args.connections, args.threads
            )
            if sample.non_2xx or sample.errors:
                raise RuntimeError(f"{name}: {sample.non_2xx} non-2xx, {sample.errors} socket errors")
            samples[name].append(sample)
            print(
                f"  round {round_ + 1} {name}: {sample.rps:,.0f} req/s, "
                f"p50 {sample.p50_ms} ms, p99 {sample.p99_ms} ms",
                flush=True,
            )
    medians = {name: statistics.median(s.rps for s in runs) for name, runs in samples.items()}
    ratio = medians["redis limiter"] / medians["local limiter"]
    print(
        f"median: local {medians['local limiter']:,.0f} req/s, redis {medians['redis limiter']:,.0f} req/s: "
        f"{ratio:.2f}x (target >= 0.8x)"
    )
    lost = "unreachable (" in (tmp / "shared.log").read_text(errors="replace")
    if lost:
        print("MISSED: the --redis node lost Redis during the run")
    if args.json:
        Path(args.json).write_text(json.dumps({"medians": medians, "ratio": ratio}, indent=2))
    return 0 if ratio >= 0.8 and not lost else 1


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rate", type=float, default=500.0, help="the route's throttlingRateLimit")
    parser.add_argument("--burst", type=int, default=100, help="the route's throttlingBurstLimit")
    parser.add_argument(
        "--offered", type=float, default=1500.0, help="offered requests/s (default 3x the rate)"
    )
    parser.add_argument("--duration", type=float, default=20.0)
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument(
        "--requests-per-connection",
        type=int,
        default=100,
        help="new connections keep both workers taking requests (default 100)",
    )
    parser.add_argument("--nodes", type=int, default=1, help="nodes sharing one Redis (with --redis)")
    parser.add_argument("--redis", action="store_true", help="start a redis-server and run the nodes on it")
    parser.add_argument(
        "--quota", type=int, default=2000, help="the cluster run's daily quota (default 2000)"
    )
    parser.add_argument("--quota-seconds", type=float, default=4.0, help="how long the quota is driven")
    parser.add_argument(
        "--limiter-cost", action="store_true", help="requests/s: the Redis limiter vs the local one"
    )
    parser.add_argument("--rounds", type=int, default=3, help="--limiter-cost rounds (default 3)")
    parser.add_argument(
        "--redis-lease-ms", type=float, default=20.0, help="the nodes' --redis-lease-ms (default 20; 0: none)"
    )
    parser.add_argument("--threads", type=int, default=1, help="--limiter-cost: wrk threads (default 1)")
    parser.add_argument("--json", help="also write both reports here")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = parser.parse_args()
    if args.limiter_cost:
        body = run_limiter_cost
    elif args.redis:
        body = run_cluster
    elif args.nodes != 1:
        parser.error("--nodes needs --redis: separate nodes share a limit only through Redis")
    else:
        body = run
    return in_scratch("portico-throttle-", args.keep, lambda tmp, procs: body(args, tmp, procs))


if __name__ == "__main__":
    sys.exit(main())
