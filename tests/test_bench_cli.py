"""`portico bench`: the core's load generator driving real `portico serve` processes (and a closed
port, and a server that never answers). Rates are low and tolerances wide: these check counting
and reporting, never speed."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from conftest import free_port, run_portico
from portico import _core

MOCK = {"type": "MOCK", "statusCode": 200, "headers": {"content-type": "text/plain"}, "body": "ok"}


def throttle(rate: float, burst: int) -> dict:
    return {"throttlingRateLimit": rate, "throttlingBurstLimit": burst}


CONFIG = {
    "apis": [
        {
            "name": "limited",
            "id": "limited01",
            "routes": [
                {"route": "GET /limited", "integration": MOCK},
                {"route": "GET /free", "integration": MOCK},
                {"route": "GET /pets/{id}", "integration": MOCK},
            ],
            "stages": [{"name": "$default", "routeSettings": {"GET /limited": throttle(20, 5)}}],
        },
        {
            "name": "shop",
            "id": "shop01",
            "protocolType": "REST",
            "routes": [{"routeKey": "GET /items/{id}", "integration": MOCK}],
            "stages": [{"stageName": "prod", "defaultRouteSettings": throttle(10, 3)}],
        },
    ],
    "settings": {"accountThrottle": throttle(10000, 5000)},
}

# Every key of `portico bench --json`, with its type (None: may be null).
SCHEMA: dict[str, type | tuple[type, ...]] = {
    "url": str,
    "method": str,
    "offered_rps": float,
    "duration_s": float,
    "warmup_s": float,
    "connections": int,
    "threads": int,
    "requests_per_connection": (int, type(None)),
    "elapsed_s": float,
    "cancelled": bool,
    "scheduled": int,
    "sent": int,
    "missed": int,
    "responses": int,
    "achieved_rps": float,
    "admitted": int,
    "throttled": int,
    "other": int,
    "statuses": dict,
    "errors": dict,
    "errors_total": int,
    "first_errors": dict,
    "warmup": dict,
    "limits": list,
    "limit": (dict, type(None)),
    "latency_ms": dict,
    "service_time_ms": dict,
    "histogram": list,
}
PERCENTILE_KEYS = {"p50", "p90", "p99", "p99.9", "min", "max", "mean"}
LIMIT_KEYS = {
    "rate",
    "burst",
    "tokens_at_start",
    "expected_admitted",
    "admitted_rps",
    "admitted_vs_expected",
    "sustained_rps",
    "sustained_vs_rate",
}


@pytest.fixture
def config_path(tmp_path: Path) -> Path:
    path = tmp_path / "bench.yaml"
    path.write_text(yaml.safe_dump(CONFIG, sort_keys=False))
    return path


def bench_json(*args: str, timeout: float = 60) -> dict:
    done = run_portico("bench", *args, "--json", timeout=timeout)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def check_schema(report: dict) -> None:
    """The JSON object's shape, and that its counts add up."""
    for key, kind in SCHEMA.items():
        assert isinstance(report[key], kind), (key, report[key])
    assert set(report["errors"]) == {"connect", "timeout", "io"}
    assert set(report["latency_ms"]) == PERCENTILE_KEYS
    assert set(report["service_time_ms"]) == PERCENTILE_KEYS
    assert set(report["warmup"]) == {
        "scheduled",
        "sent",
        "responses",
        "admitted",
        "throttled",
        "errors_total",
    }
    assert report["scheduled"] == report["sent"] + report["missed"]
    assert report["sent"] == report["responses"] + report["errors_total"]
    assert report["responses"] == report["admitted"] + report["throttled"] + report["other"]
    assert sum(report["statuses"].values()) == report["responses"]
    assert sum(report["errors"].values()) == report["errors_total"]
    assert sum(bucket["count"] for bucket in report["histogram"]) == report["responses"]
    admitted = sum(n for status, n in report["statuses"].items() if 200 <= int(status) < 300)
    assert admitted == report["admitted"]
    assert report["statuses"].get("429", 0) == report["throttled"]
    if report["limit"] is not None:
        assert set(report["limit"]) == LIMIT_KEYS
    if report["responses"]:
        latency = report["latency_ms"]
        assert latency["min"] <= latency["p50"] <= latency["p90"] <= latency["p99"] <= latency["p99.9"]
        assert latency["p99.9"] <= latency["max"]
        for earlier, later in zip(report["histogram"], report["histogram"][1:], strict=False):
            assert earlier["to_ms"] == later["from_ms"]
        # Latency counts from the scheduled send, so it is never below the service time.
        assert report["latency_ms"]["max"] >= report["service_time_ms"]["max"] * 0.99


def test_route_of_a_served_config_admits_burst_plus_rate_times_duration(portico, config_path):
    server = portico(config_path)
    report = bench_json(
        "--config", str(config_path), "--route", "GET /limited", "--target", server.url,
        "--rate", "60", "--duration", "2", "--connections", "4",
    )  # fmt: skip
    check_schema(report)
    assert report["route"] == {"api": "limited01", "stage": "$default", "route": "GET /limited"}
    assert report["url"] == server.url + "/limited"
    assert report["scheduled"] == 120
    assert report["errors_total"] == 0 and report["other"] == 0
    # The route's limit (and the account's, which allows more): as the gateway enforces them.
    assert report["limits"] == [{"rate": 20.0, "burst": 5}, {"rate": 10000.0, "burst": 5000}]
    limit = report["limit"]
    assert (limit["rate"], limit["burst"], limit["tokens_at_start"]) == (20.0, 5, 5.0)
    assert limit["expected_admitted"] == 45.0
    # GCRA never admits more than burst + rate * t (a request or two of slack for the requests'
    # spread in arrival); fewer only if this machine delays requests a lot.
    assert 0.75 * 45 <= report["admitted"] <= 47, report
    assert report["throttled"] == report["responses"] - report["admitted"]
    assert limit["admitted_vs_expected"] == pytest.approx(report["admitted"] / 45, abs=1e-6)


def test_warmup_is_counted_apart_and_spends_the_burst(portico, config_path):
    server = portico(config_path)
    report = bench_json(
        "--config", str(config_path), "--route", "GET /limited", "--target", server.url,
        "--rate", "60", "--duration", "1", "--warmup", "1", "--connections", "4",
    )  # fmt: skip
    check_schema(report)
    warmup = report["warmup"]
    assert (warmup["scheduled"], report["scheduled"]) == (60, 60)
    assert warmup["sent"] == warmup["responses"] == 60
    # The warm-up at 3x the rate spends the burst: few tokens are left when measuring starts.
    assert report["limit"]["tokens_at_start"] <= 5 - 0.5 * 5
    assert warmup["admitted"] + warmup["throttled"] == 60
    assert report["admitted"] <= 20 + report["limit"]["tokens_at_start"] + 2


def test_rest_route_with_a_named_stage_and_a_path(portico, config_path):
    server = portico(config_path)
    report = bench_json(
        "--config", str(config_path), "--route", "GET /items/{id}", "--stage", "prod",
        "--path", "/items/7", "--target", server.url, "--rate", "30", "--duration", "1",
    )  # fmt: skip
    check_schema(report)
    assert report["route"] == {"api": "shop01", "stage": "prod", "route": "GET /items/{id}"}
    assert report["url"] == server.url + "/prod/items/7"
    # The request reached the REST API's route (by its Host): the stage's default limit applies.
    assert report["limit"]["rate"] == 10.0 and report["limit"]["burst"] == 3
    assert report["other"] == 0 and report["errors_total"] == 0
    assert 0.75 * 13 <= report["admitted"] <= 15, report


def test_a_keys_usage_plan_throttle_is_the_limit_it_reports(portico, tmp_path):
    """With the request's `x-api-key` (-H), the limit is the key's usage-plan throttle when that is
    the narrowest of the limits the request spends from, as the gateway enforces them."""
    key = "BenchPlanKey0123456789abcdef"
    config = {
        **CONFIG,
        "apiKeys": [{"name": "bench", "value": key, "enabled": True}],
        "usagePlans": [
            {
                "name": "slow",
                "apiStages": [{"apiId": "shop01", "stage": "prod"}],
                "apiKeys": ["bench"],
                "throttle": {"rateLimit": 4, "burstLimit": 2},
            }
        ],
    }
    config["apis"] = [dict(api) for api in CONFIG["apis"]]
    config["apis"][1]["routes"] = [
        {"routeKey": "GET /items/{id}", "integration": MOCK, "apiKeyRequired": True}
    ]
    path = tmp_path / "plan.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    server = portico(path)
    report = bench_json(
        "--config", str(path), "--route", "GET /items/{id}", "--stage", "prod", "--path", "/items/7",
        "--target", server.url, "--rate", "30", "--duration", "1", "-H", f"x-api-key: {key}",
    )  # fmt: skip
    check_schema(report)
    assert [(limit["rate"], limit["burst"]) for limit in report["limits"]] == [
        (10.0, 3),
        (10000.0, 5000),
        (4.0, 2),
    ]
    assert report["limit"]["rate"] == 4.0 and report["limit"]["burst"] == 2
    assert report["other"] == 0 and report["errors_total"] == 0
    assert 0.75 * 6 <= report["admitted"] <= 7, report


def test_bench_serves_the_config_itself_and_stops_it(config_path):
    report = bench_json(
        "--config", str(config_path), "--route", "GET /limited", "--workers", "2",
        "--rate", "40", "--duration", "1", "--connections", "4", "--requests-per-connection", "5",
    )  # fmt: skip
    check_schema(report)
    assert report["requests_per_connection"] == 5
    assert report["errors_total"] == 0
    assert report["limit"]["expected_admitted"] == 25.0
    assert 0.75 * 25 <= report["admitted"] <= 27, report
    # The server it started is gone.
    with socket.socket() as sock, pytest.raises(ConnectionRefusedError):
        sock.connect(("127.0.0.1", int(report["url"].split(":")[2].split("/")[0])))


def test_text_report(portico, config_path):
    server = portico(config_path)
    done = run_portico(
        "bench", server.url + "/free", "-H", "Host: limited01.execute-api.localhost",
        "--rate", "40", "--duration", "1", "--limit", "1000:10",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "offered   40.0 req/s" in out
    assert "40 scheduled, 40 sent, 0 missed" in out
    assert "40 admitted (2xx), 0 throttled (429), 0 other, 0 errors" in out
    assert "limit     1000 req/s, burst 10: 40 admitted of 40.0 expected" in out
    assert "offered at or below the limit" in out
    for word in ("p50", "p90", "p99", "p99.9", "max", "latency histogram", "service"):
        assert word in out
    assert "|" in out.split("latency histogram")[1]


def test_refused_connections_are_counted_not_fatal():
    port = free_port()  # nothing listens there
    report = bench_json(f"http://127.0.0.1:{port}/x", "--rate", "20", "--duration", "1")
    check_schema(report)
    assert report["scheduled"] == report["sent"] == 20
    assert report["errors"]["connect"] == 20 and report["responses"] == 0
    assert "refused" in report["first_errors"]["connect"].lower()
    assert report["latency_ms"]["p50"] is None and report["histogram"] == []


@pytest.fixture
def silent_server() -> Iterator[int]:
    """A port that accepts connections and reads requests but never answers."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.1)
        while not stop.is_set():
            try:
                held.append(listener.accept()[0])
            except TimeoutError:
                continue
            except OSError:
                return

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield listener.getsockname()[1]
    stop.set()
    thread.join(5)
    for conn in held:
        conn.close()
    listener.close()


def test_timeouts_are_counted(silent_server):
    report = bench_json(
        f"http://127.0.0.1:{silent_server}/", "--rate", "10", "--duration", "1",
        "--connections", "4", "--timeout", "0.3",
    )  # fmt: skip
    check_schema(report)
    assert report["responses"] == 0
    assert report["errors"]["timeout"] >= 4
    assert report["errors_total"] == report["sent"]


def test_python_api_is_typed_and_agrees_with_its_json(portico, config_path):
    server = portico(config_path)
    report = _core.bench(
        server.url + "/free",
        rate=30,
        duration=1,
        connections=2,
        method="POST",
        headers=[("Host", "limited01.execute-api.localhost"), ("X-Anything", "1")],
        body=b'{"x": 1}',
        limits=[(5.0, 2)],
    )
    as_json = json.loads(report.json())
    # POST has no route: the HTTP API answers 404 (counted as other, not an error).
    assert (report.scheduled, report.sent, report.missed) == (30, 30, 0)
    assert report.other == report.responses == 30 and report.admitted == 0 and report.errors == 0
    assert as_json["statuses"] == {"404": 30} and as_json["method"] == "POST"
    assert as_json["limit"]["expected_admitted"] == 7.0
    assert report.achieved_rps == pytest.approx(as_json["achieved_rps"], abs=1e-5)
    assert "404: 30" in report.text()
    with pytest.raises(ValueError, match="only http://"):
        _core.bench("https://127.0.0.1:1/", rate=1, duration=1)
    with pytest.raises(ValueError, match="rate"):
        _core.bench(server.url, rate=0, duration=1)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--route", "GET /limited", "--rate", "1"], "give a URL"),
        (["--config", "{config}", "--rate", "1"], "--config needs --route"),
        (["--config", "{config}", "--route", "GET /nope", "--rate", "1"], "no route 'GET /nope'"),
        (["--config", "{config}", "--route", "GET /pets/{id}", "--rate", "1"], "--path"),
        (["--config", "{config}", "--route", "GET /items/{id}", "--stage", "dev", "--rate", "1"], "no stage"),
        (["--config", "{config}", "--route", "pets", "--rate", "1"], "METHOD /path"),
        (["http://127.0.0.1:1/", "--route", "GET /x", "--rate", "1"], "go with --config"),
        (["https://127.0.0.1:1/", "--rate", "1"], "only http://"),
        (["http://127.0.0.1:1/", "--rate", "1", "--limit", "fast"], "RATE:BURST"),
        (["http://127.0.0.1:1/", "--rate", "1", "-H", "no-colon"], "NAME: VALUE"),
        (["--config", "{tls_config}", "--route", "GET /limited", "--rate", "1"], "speaks http:// only"),
    ],
)
def test_usage_errors(config_path, args, message):
    tls_config = config_path.with_name("tls.yaml")
    tls_config.write_text(
        yaml.safe_dump(
            {**CONFIG, "settings": {"tls": {"certificateFile": "a.pem", "privateKeyFile": "a.key"}}}
        )
    )
    given = [a.replace("{config}", str(config_path)).replace("{tls_config}", str(tls_config)) for a in args]
    done = run_portico("bench", *given)
    assert done.returncode == 2
    assert message in done.stderr
