"""Throttle accuracy on one node, measured with `portico bench` (issue 10's acceptance figure).

    python benches/throttle_accuracy.py [--rate 500] [--burst 100] [--offered 1500] [--duration 20]
                                        [--warmup 2] [--workers 2] [--connections 16]
                                        [--requests-per-connection 100] [--json PATH] [--keep]

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
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

from run import Processes, descendants, in_scratch, start_portico

ROUTE = "GET /limited"
TOLERANCE = 0.01


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


def bench(args: argparse.Namespace, config_path: Path, port: int, warmup: float) -> dict:
    cmd = [sys.executable, "-m", "portico", "bench", "--config", str(config_path), "--route", ROUTE]
    cmd += ["--target", f"http://127.0.0.1:{port}", "--rate", f"{args.offered:g}"]
    cmd += ["--duration", f"{args.duration:g}", "--connections", str(args.connections)]
    cmd += ["--requests-per-connection", str(args.requests_per_connection)]
    if warmup:
        cmd += ["--warmup", f"{warmup:g}"]
    cmd += ["--json"]
    print("$ " + shlex.join(["portico", *cmd[3:]]), flush=True)
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=args.duration + warmup + 120)
    if done.returncode != 0:
        raise RuntimeError(f"portico bench failed ({done.returncode}):\n{done.stderr}")
    return json.loads(done.stdout)


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
    parser.add_argument("--json", help="also write both reports here")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = parser.parse_args()
    return in_scratch("portico-throttle-", args.keep, lambda tmp, procs: run(args, tmp, procs))


if __name__ == "__main__":
    sys.exit(main())
