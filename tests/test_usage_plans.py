"""The throttling hierarchy, usage plans' quotas and usage, as AWS applies them ("Throttle requests
to your REST APIs", "Usage plans" in the developer guide), driven with boto3 against a real
`portico serve --admin-port` and real HTTP through its edge: account, stage, method, plan and
per-method plan throttles; quotas per DAY, WEEK and MONTH with offsets (time moved with the
core's test clock, PORTICO_CLOCK_OFFSET_FILE); GetUsage/UpdateUsage; counts that survive kill -9
within the flush interval; two workers that never pass a quota together; `/metrics`. Property
tests hold the core's period arithmetic to Python's calendar and its counters to their limits.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from admin_e2e import point_at, start_admin_server, wait_for
from conftest import run_portico
from portico import _core

FUNCTIONS = {"counted": "handlers.counting:counted"}
KEY = "UsagePlanKeyValue0123456789abcdef"
KEY2 = "SecondPlanKeyValue0123456789abcde"
PROBE_KEY = "ProbeKeyValue0123456789abcdefghij"
DAY_MS = 86_400_000
EPOCH = dt.date(1970, 1, 1)
SLOW = 0.001  # a rate that never refills within a test: a bucket holds exactly its burst


# The usage writer's interval in the tests that move the clock: the day counts the cores keep for
# two days are written before the clock jumps days ahead (in real time days pass between them).
FAST_FLUSH = {"usageFlushIntervalMs": 50}


class Clock:
    """The served core's wall clock, moved by writing its offset file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.write_text("0")

    def set(self, when: dt.datetime) -> None:
        offset = int(when.timestamp() * 1000) - int(time.time() * 1000)
        time.sleep(0.2)  # what was counted is written first (FAST_FLUSH)
        self.path.write_text(str(offset))
        time.sleep(0.1)  # the core reads the file again at most 20 ms later


def utc(*args: int) -> dt.datetime:
    return dt.datetime(*args, tzinfo=dt.UTC)


@pytest.fixture
def clock(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Clock:
    path = tmp_path / "clock-offset"
    monkeypatch.setenv("PORTICO_CLOCK_OFFSET_FILE", str(path))
    return Clock(path)


def _rest_api(apigw, name: str, methods: dict[str, bool]) -> str:
    """A REST API of GET methods (`path -> apiKeyRequired`), each AWS_PROXY -> counted."""
    api = apigw.create_rest_api(name=name)
    api_id, root = api["id"], api["rootResourceId"]
    for path, key_required in methods.items():
        resource = apigw.create_resource(restApiId=api_id, parentId=root, pathPart=path)["id"]
        apigw.put_method(
            restApiId=api_id,
            resourceId=resource,
            httpMethod="GET",
            authorizationType="NONE",
            apiKeyRequired=key_required,
        )
        point_at(apigw, api_id, resource, "counted", method="GET")
    return api_id


def _key(apigw, value: str, *plans: str) -> str:
    key_id = apigw.create_api_key(name=value[:12], value=value, enabled=True)["id"]
    for plan_id in plans:
        apigw.create_usage_plan_key(usagePlanId=plan_id, keyId=key_id, keyType="API_KEY")
    return key_id


class Caller:
    def __init__(self, admin, api_id: str, stage: str = "prod") -> None:
        self.admin, self.api_id, self.stage = admin, api_id, stage

    def get(self, path: str, key: str | None = None, stage: str | None = None) -> httpx.Response:
        headers = {"host": self.admin.host(self.api_id)}
        if key is not None:
            headers["x-api-key"] = key
        return httpx.get(f"{self.admin.url}/{stage or self.stage}/{path}", headers=headers, timeout=10)

    def until_served(self, path: str, key: str | None = None, stage: str | None = None) -> httpx.Response:
        """Wait for a change to be served (one request passes, spending its tokens)."""
        response, _ = wait_for(lambda: (r := self.get(path, key, stage)).status_code == 200 and r, timeout=5)
        return response

    def statuses(self, path: str, n: int, key: str | None = None, stage: str | None = None) -> list[int]:
        return [self.get(path, key, stage).status_code for _ in range(n)]


def _too_many(response: httpx.Response) -> None:
    assert response.status_code == 429, (response.status_code, response.text)
    assert response.json() == {"message": "Too Many Requests"}
    assert response.headers["x-amzn-errortype"] == "TooManyRequestsException"


def _limit_exceeded(response: httpx.Response) -> None:
    assert response.status_code == 429, (response.status_code, response.text)
    assert response.json() == {"message": "Limit Exceeded"}
    assert response.headers["x-amzn-errortype"] == "LimitExceededException"


def _day(when: dt.datetime) -> str:
    return when.date().isoformat()


# -- the throttling hierarchy ----------------------------------------------------------------------


def test_the_throttling_hierarchy_stage_method_plan_and_per_method_plan(portico, tmp_path):
    admin = start_admin_server(portico, tmp_path, functions=FUNCTIONS, config={})
    apigw = admin.client("apigateway")
    api_id = _rest_api(apigw, "tiers", {"open": False, "items": True, "limited": True, "probe": True})
    apigw.create_deployment(restApiId=api_id, stageName="prod")
    # Stage: every method 30; method: GET /items 20 (both refill too slowly to matter).
    apigw.update_stage(
        restApiId=api_id,
        stageName="prod",
        patchOperations=[
            {"op": "replace", "path": "/*/*/throttling/rateLimit", "value": str(SLOW)},
            {"op": "replace", "path": "/*/*/throttling/burstLimit", "value": "30"},
            {"op": "replace", "path": "/~1items/GET/throttling/burstLimit", "value": "20"},
            # The probe (polled until the changes are served) is left room.
            {"op": "replace", "path": "/~1probe/GET/throttling/rateLimit", "value": "10000"},
            {"op": "replace", "path": "/~1probe/GET/throttling/burstLimit", "value": "5000"},
        ],
    )
    # Plan: each key 10 across the plan, GET /limited 3 (the plan's per-method throttle).
    tiered = apigw.create_usage_plan(
        name="tiered",
        throttle={"rateLimit": SLOW, "burstLimit": 10},
        apiStages=[
            {
                "apiId": api_id,
                "stage": "prod",
                "throttle": {"/limited/GET": {"rateLimit": SLOW, "burstLimit": 3}},
            }
        ],
    )
    open_plan = apigw.create_usage_plan(name="open", apiStages=[{"apiId": api_id, "stage": "prod"}])
    key_id = _key(apigw, KEY, tiered["id"])
    key2_id = _key(apigw, KEY2, open_plan["id"])
    _key(apigw, PROBE_KEY, open_plan["id"])  # created last: once it passes, everything is served
    call = Caller(admin, api_id)
    call.until_served("probe", PROBE_KEY)

    # The stage's default: each method has its own bucket of 30.
    assert call.statuses("open", 30) == [200] * 30
    _too_many(call.get("open"))
    # The plan's 10 is narrower than the method's 20: it wins.
    assert call.statuses("items", 10, KEY) == [200] * 10
    refused = call.get("items", KEY)
    _too_many(refused)
    assert "ratelimit-limit" not in refused.headers and "retry-after" not in refused.headers
    # The plan's per-method throttle replaces the plan's for its method: 3 pass although the
    # key's plan bucket is empty.
    assert call.statuses("limited", 3, KEY) == [200] * 3
    _too_many(call.get("limited", KEY))
    # Another key, in a plan without throttle: the method's bucket (20) has 11 spent by the
    # first key (the throttle phase spends it before the key is known).
    assert call.statuses("items", 9, KEY2) == [200] * 9
    _too_many(call.get("items", KEY2))

    # Every refusal is counted, by stage and by key.
    metrics = admin.metrics()
    stage = f'{{api_id="{api_id}",stage="prod"}}'
    assert metrics[f"portico_throttled_requests_total{stage}"] == 4
    assert metrics[f'portico_api_key_throttled_requests_total{{api_key_id="{key_id}"}}'] == 2
    assert f'portico_api_key_throttled_requests_total{{api_key_id="{key2_id}"}}' not in metrics
    # No request refused reached the integration: 1 probe + 30 + 10 + 3 + 9 calls.
    assert call.get("probe", PROBE_KEY).json()["calls"] == 54

    # UpdateUsagePlan: the per-method burst raised to 5 applies without a redeployment: the
    # drained bucket holds 2 more (polled slowly: each poll spends /limited's stage bucket).
    apigw.update_usage_plan(
        usagePlanId=tiered["id"],
        patchOperations=[
            {
                "op": "replace",
                "path": f"/apiStages/{api_id}:prod/throttle/~1limited/GET/burstLimit",
                "value": "5",
            }
        ],
    )
    wait_for(lambda: call.get("limited", KEY).status_code == 200, timeout=3, interval=0.1)
    assert call.get("limited", KEY).status_code == 200
    _too_many(call.get("limited", KEY))


def test_the_account_throttle_is_the_configs_and_get_account_shows_it(portico, tmp_path):
    config = {
        "settings": {
            "accountThrottle": {"throttlingRateLimit": SLOW, "throttlingBurstLimit": 8},
            "rateLimitHeaders": True,
        }
    }
    admin = start_admin_server(portico, tmp_path, functions=FUNCTIONS, config=config)
    apigw = admin.client("apigateway")
    assert apigw.get_account()["throttleSettings"] == {"burstLimit": 8, "rateLimit": SLOW}
    # Read-only, as on AWS: UpdateAccount has no throttle path.
    with pytest.raises(apigw.exceptions.BadRequestException):
        apigw.update_account(
            patchOperations=[{"op": "replace", "path": "/throttleSettings/burstLimit", "value": "9"}]
        )
    api_id = _rest_api(apigw, "account", {"open": False})
    apigw.create_deployment(restApiId=api_id, stageName="prod")
    call = Caller(admin, api_id)
    call.until_served("open")
    # The stage allows more (AWS's 10,000 default); the account's 8 is narrower and wins.
    assert call.statuses("open", 7) == [200] * 7
    refused = call.get("open")
    _too_many(refused)
    # settings.rateLimitHeaders: the refusing bucket's size, and when it has a token again.
    assert refused.headers["ratelimit-limit"] == "8"
    assert refused.headers["ratelimit-remaining"] == "0"
    assert refused.headers["retry-after"] == refused.headers["ratelimit-reset"]
    assert 900 <= int(refused.headers["retry-after"]) <= 1000


def test_default_account_throttle_is_awss():
    from portico.config.models import Config

    assert Config().settings.accountThrottle.throttle() == {"rate": 10000.0, "burst": 5000}


# -- quotas ------------------------------------------------------------------------------------------


def test_a_daily_quota_across_stages_getusage_and_updateusage(portico, tmp_path, clock):
    clock.set(utc(2031, 3, 12, 22, 0))
    config = {"settings": {"rateLimitHeaders": True, **FAST_FLUSH}}
    admin = start_admin_server(portico, tmp_path, functions=FUNCTIONS, config=config)
    apigw = admin.client("apigateway")
    api_id = _rest_api(apigw, "daily", {"items": True})
    for stage in ("prod", "dev"):
        apigw.create_deployment(restApiId=api_id, stageName=stage)
    plan = apigw.create_usage_plan(
        name="daily",
        quota={"limit": 5, "period": "DAY"},
        apiStages=[{"apiId": api_id, "stage": "prod"}, {"apiId": api_id, "stage": "dev"}],
    )
    key_id = _key(apigw, KEY, plan["id"])
    call = Caller(admin, api_id)
    first = call.until_served("items", KEY)
    # What is left of the quota, and seconds to 00:00 UTC (the period's end).
    assert (first.headers["ratelimit-limit"], first.headers["ratelimit-remaining"]) == ("5", "4")
    assert 7000 <= int(first.headers["ratelimit-reset"]) <= 7200
    assert call.statuses("items", 2, KEY) == [200, 200]
    # Counted across all the plan's stages.
    assert call.statuses("items", 2, KEY, stage="dev") == [200, 200]
    refused = call.get("items", KEY, stage="dev")
    _limit_exceeded(refused)
    assert refused.headers["retry-after"] == refused.headers["ratelimit-reset"]
    _limit_exceeded(call.get("items", KEY))
    usage = apigw.get_usage(usagePlanId=plan["id"], startDate="2031-03-11", endDate="2031-03-12")
    assert usage["items"] == {key_id: [[0, 5], [5, 0]]}
    assert (usage["startDate"], usage["endDate"]) == ("2031-03-11", "2031-03-12")
    # Each refusal counted, by stage and by key.
    metrics = admin.metrics()
    assert metrics[f'portico_quota_exceeded_requests_total{{api_id="{api_id}",stage="prod"}}'] == 1
    assert metrics[f'portico_quota_exceeded_requests_total{{api_id="{api_id}",stage="dev"}}'] == 1
    assert metrics[f'portico_api_key_quota_exceeded_requests_total{{api_key_id="{key_id}"}}'] == 2

    # UpdateUsage: 2 remain today; the core applies it within a second.
    updated = apigw.update_usage(
        usagePlanId=plan["id"],
        keyId=key_id,
        patchOperations=[{"op": "replace", "path": "/remaining", "value": "2"}],
    )
    assert updated["items"] == {key_id: [[5, 2]]}
    _, waited = wait_for(lambda: call.get("items", KEY).status_code == 200, timeout=3)
    assert waited < 1.0, waited
    assert call.get("items", KEY).status_code == 200
    _limit_exceeded(call.get("items", KEY))

    # A new UTC day: the whole quota again, the credit gone with its day.
    clock.set(utc(2031, 3, 13, 0, 0, 5))
    assert call.statuses("items", 5, KEY) == [200] * 5
    _limit_exceeded(call.get("items", KEY))
    usage = apigw.get_usage(
        usagePlanId=plan["id"], startDate="2031-03-12", endDate="2031-03-13", keyId=key_id
    )
    assert usage["items"] == {key_id: [[7, 0], [5, 0]]}
    metrics = admin.metrics()
    labels = f'usage_plan_id="{plan["id"]}",api_key_id="{key_id}",period="DAY"'
    assert metrics[f"portico_usage_plan_quota_period_requests{{{labels}}}"] == 5


def test_weekly_quota_with_an_offset_in_its_initial_week(portico, tmp_path, clock):
    # Wednesday 2031-03-12: its week runs from Sunday the 9th to Saturday the 15th (UTC).
    clock.set(utc(2031, 3, 12, 12, 0))
    admin = start_admin_server(portico, tmp_path, functions=FUNCTIONS, config={"settings": FAST_FLUSH})
    apigw = admin.client("apigateway")
    api_id = _rest_api(apigw, "weekly", {"items": True})
    apigw.create_deployment(restApiId=api_id, stageName="prod")
    plan = apigw.create_usage_plan(
        name="weekly",
        quota={"limit": 4, "period": "WEEK", "offset": 3},
        apiStages=[{"apiId": api_id, "stage": "prod"}],
    )
    assert plan["quota"] == {"limit": 4, "period": "WEEK", "offset": 3}
    key_id = _key(apigw, KEY, plan["id"])
    call = Caller(admin, api_id)
    call.until_served("items", KEY)  # the initial week allows 4 - 3 = 1
    _limit_exceeded(call.get("items", KEY))
    clock.set(utc(2031, 3, 15, 23, 59, 50))
    _limit_exceeded(call.get("items", KEY))
    # Sunday 00:00 UTC: a new week, the whole limit.
    clock.set(utc(2031, 3, 16, 0, 0, 10))
    assert call.statuses("items", 4, KEY) == [200] * 4
    _limit_exceeded(call.get("items", KEY))
    usage = apigw.get_usage(usagePlanId=plan["id"], startDate="2031-03-14", endDate="2031-03-16")
    assert usage["items"] == {key_id: [[0, 0], [0, 0], [4, 0]]}


def test_monthly_quota_starts_on_the_first(portico, tmp_path, clock):
    admin = start_admin_server(portico, tmp_path, functions=FUNCTIONS, config={"settings": FAST_FLUSH})
    apigw = admin.client("apigateway")
    api_id = _rest_api(apigw, "monthly", {"items": True})
    apigw.create_deployment(restApiId=api_id, stageName="prod")
    plan = apigw.create_usage_plan(
        name="monthly", quota={"limit": 3, "period": "MONTH"}, apiStages=[{"apiId": api_id, "stage": "prod"}]
    )
    key_id = _key(apigw, KEY, plan["id"])
    call = Caller(admin, api_id)
    clock.set(utc(2031, 2, 28, 23, 59, 30))  # 2031's February has 28 days
    call.until_served("items", KEY)
    assert call.statuses("items", 2, KEY) == [200, 200]
    _limit_exceeded(call.get("items", KEY))
    clock.set(utc(2031, 3, 1, 0, 0, 5))
    assert call.statuses("items", 3, KEY) == [200] * 3
    _limit_exceeded(call.get("items", KEY))
    usage = apigw.get_usage(usagePlanId=plan["id"], startDate="2031-02-27", endDate="2031-03-01")
    assert usage["items"] == {key_id: [[0, 3], [3, 0], [3, 0]]}


# -- durability ---------------------------------------------------------------------------------------


def _kill_node(server) -> None:
    """kill -9 of every process of the node (server, workers, admin API, usage writer)."""
    os.killpg(server.process.pid, signal.SIGKILL)
    server.process.wait(timeout=10)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            os.killpg(server.process.pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.05)
    raise AssertionError("processes of the node outlived kill -9")


def test_quota_counts_survive_kill_9_and_a_restart(portico, tmp_path, clock):
    clock.set(utc(2031, 6, 10, 12, 0))
    config = {"settings": {"usageFlushIntervalMs": 100}}
    admin = start_admin_server(portico, tmp_path, functions=FUNCTIONS, config=config)
    apigw = admin.client("apigateway")
    api_id = _rest_api(apigw, "durable", {"items": True})
    apigw.create_deployment(restApiId=api_id, stageName="prod")
    plan = apigw.create_usage_plan(
        name="durable", quota={"limit": 10, "period": "DAY"}, apiStages=[{"apiId": api_id, "stage": "prod"}]
    )
    key_id = _key(apigw, KEY, plan["id"])
    call = Caller(admin, api_id)
    call.until_served("items", KEY)
    assert call.statuses("items", 3, KEY) == [200] * 3
    # Past the stated bound (settings.usageFlushIntervalMs), the counts are durable.
    time.sleep(0.5)
    _kill_node(admin.server)

    admin = start_admin_server(portico, tmp_path, functions=FUNCTIONS, config=config)
    apigw = admin.client("apigateway")
    call = Caller(admin, api_id)
    usage = apigw.get_usage(usagePlanId=plan["id"], startDate="2031-06-10", endDate="2031-06-10")
    assert usage["items"] == {key_id: [[4, 6]]}
    assert call.statuses("items", 2, KEY) == [200, 200]
    # A graceful stop right after requests loses none: the writer writes once more, last.
    admin.server.stop()
    admin = start_admin_server(portico, tmp_path, functions=FUNCTIONS, config=config)
    apigw = admin.client("apigateway")
    call = Caller(admin, api_id)
    assert apigw.get_usage(usagePlanId=plan["id"], startDate="2031-06-10", endDate="2031-06-10")["items"] == {
        key_id: [[6, 4]]
    }
    assert call.statuses("items", 4, KEY) == [200] * 4
    _limit_exceeded(call.get("items", KEY))


def test_two_workers_never_pass_a_quota_together(portico, tmp_path):
    admin = start_admin_server(portico, tmp_path, functions=FUNCTIONS, workers=2, config={})
    apigw = admin.client("apigateway")
    api_id = _rest_api(apigw, "shared", {"items": True, "open": False})
    apigw.create_deployment(restApiId=api_id, stageName="prod")
    plan = apigw.create_usage_plan(
        name="shared", quota={"limit": 60, "period": "DAY"}, apiStages=[{"apiId": api_id, "stage": "prod"}]
    )
    key_id = _key(apigw, KEY, plan["id"])
    call = Caller(admin, api_id)
    # Both workers serve the plan (each reloads on its own) before the burst.
    call.until_served("items", KEY)
    time.sleep(1.0)
    answers: list[httpx.Response] = []
    lock = threading.Lock()

    def one(_: int) -> None:
        response = call.get("items", KEY)  # a new connection each: the kernel spreads them
        with lock:
            answers.append(response)

    with ThreadPoolExecutor(24) as pool:
        list(pool.map(one, range(300)))
    admitted = [r for r in answers if r.status_code == 200]
    for response in answers:
        if response.status_code != 200:
            _limit_exceeded(response)
    pids = {r.json()["pid"] for r in admitted}
    assert len(admitted) == 59
    assert len(pids) == 2, pids
    today = dt.datetime.now(dt.UTC).date().isoformat()
    # GetUsage sees every admitted request, written or still pending in the workers' table.
    usage = apigw.get_usage(usagePlanId=plan["id"], startDate=today, endDate=today)
    assert usage["items"] == {key_id: [[60, 0]]}


# -- the config file ---------------------------------------------------------------------------------


def _file_config(flush_ms: int = 100) -> dict:
    return {
        "settings": {"usageFlushIntervalMs": flush_ms},
        "apis": [
            {
                "name": "keyed",
                "id": "keyedapi",
                "protocolType": "REST",
                "routes": [
                    {
                        "routeKey": "GET /items",
                        "apiKeyRequired": True,
                        "integration": {"type": "MOCK", "statusCode": 200, "body": "{}"},
                    },
                    {
                        "routeKey": "GET /few",
                        "apiKeyRequired": True,
                        "integration": {"type": "MOCK", "statusCode": 200, "body": "{}"},
                    },
                ],
                "stages": [{"stageName": "prod"}],
            }
        ],
        "apiKeys": [{"name": "partner", "value": KEY, "enabled": True}],
        "usagePlans": [
            {
                "name": "gold",
                "apiKeys": ["partner"],
                "throttle": {"rateLimit": SLOW, "burstLimit": 50},
                "quota": {"limit": 6, "period": "DAY"},
                "apiStages": [
                    {
                        "apiId": "keyedapi",
                        "stage": "prod",
                        "throttle": {"/few/GET": {"rateLimit": SLOW, "burstLimit": 2}},
                    }
                ],
            }
        ],
    }


def test_usage_plans_of_the_config_file_with_data_dir(portico, tmp_path, clock):
    clock.set(utc(2031, 7, 1, 8, 0))
    data_dir = tmp_path / "data"
    server = portico(_file_config(), extra_args=["--data-dir", str(data_dir)])

    def get(path: str) -> httpx.Response:
        return httpx.get(f"{server.url}/prod/{path}", headers={"x-api-key": KEY}, timeout=5)

    assert [get("few").status_code for _ in range(2)] == [200, 200]
    _too_many(get("few"))
    assert [get("items").status_code for _ in range(2)] == [200, 200]
    time.sleep(0.4)
    server.stop()
    server = portico(_file_config(), extra_args=["--data-dir", str(data_dir)])
    # 4 of the day's 6 were counted before the restart.
    assert [get("items").status_code for _ in range(2)] == [200, 200]
    _limit_exceeded(get("items"))


def test_config_file_plans_are_checked(tmp_path):
    config = _file_config()
    config["usagePlans"][0]["apiStages"][0]["throttle"] = {"/nope/GET": {"rateLimit": 1, "burstLimit": 1}}
    path = tmp_path / "bad.yaml"
    import yaml

    path.write_text(yaml.safe_dump(config))
    result = run_portico("check", str(path))
    assert result.returncode == 2
    assert "'/nope/GET' is not a method of API 'keyedapi'" in result.stderr
    config["usagePlans"][0]["apiStages"][0]["throttle"] = {"nope": {"rateLimit": 1, "burstLimit": 1}}
    path.write_text(yaml.safe_dump(config))
    assert "expected /{resourcePath}/{METHOD}" in run_portico("check", str(path)).stderr
    config["usagePlans"][0]["apiStages"][0]["throttle"] = {}
    config["usagePlans"][0]["quota"] = {"limit": 5, "period": "YEAR"}
    path.write_text(yaml.safe_dump(config))
    assert "quota.period" in run_portico("check", str(path)).stderr


# -- properties ---------------------------------------------------------------------------------------


def _sunday_on_or_before(day: dt.date) -> dt.date:
    return day - dt.timedelta(days=(day.weekday() + 1) % 7)


@given(st.datetimes(min_value=dt.datetime(1971, 1, 1), max_value=dt.datetime(2400, 12, 31)))
def test_quota_periods_are_utc_days_sunday_weeks_and_months(moment):
    epoch_ms = int(moment.replace(tzinfo=dt.UTC).timestamp() * 1000)
    day = moment.date()

    def dates(period: str) -> tuple[int, dt.date, dt.date]:
        index, start, end = _core.quota_period(period, epoch_ms)
        return index, EPOCH + dt.timedelta(days=start), EPOCH + dt.timedelta(days=end)

    index, start, end = dates("DAY")
    assert (start, end) == (day, day + dt.timedelta(days=1))
    assert index == (day - EPOCH).days
    _, start, end = dates("WEEK")
    assert start == _sunday_on_or_before(day) and start.weekday() == 6
    assert end == start + dt.timedelta(days=7)
    index, start, end = dates("MONTH")
    first_of_next = (day.replace(day=28) + dt.timedelta(days=4)).replace(day=1)
    assert (start, end) == (day.replace(day=1), first_of_next)
    assert index == day.year * 12 + day.month - 1


@given(
    limit=st.integers(0, 30),
    offset=st.integers(0, 40),
    period=st.sampled_from(["DAY", "WEEK", "MONTH"]),
    steps=st.lists(
        st.tuples(st.integers(0, 5 * DAY_MS), st.integers(1, 6), st.booleans(), st.integers(-5, 5)),
        min_size=1,
        max_size=30,
    ),
)
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_two_tables_on_one_file_admit_exactly_the_quota(tmp_path, limit, offset, period, steps):
    """Two handles on one shared file (as two workers map it): per period, requests are admitted
    exactly while the period holds fewer than its allowance (`limit`, less `offset` in the initial
    period, plus the period's credit), whichever handle counts."""
    path = tmp_path / f"usage-{time.monotonic_ns()}"
    tables = [_core.UsageTable(str(path), 64), _core.UsageTable(str(path), 64)]
    now = int(utc(2030, 12, 30).timestamp() * 1000)
    since = now
    counted: dict[int, int] = {}
    credits: dict[int, int] = {}
    for gap, burst, second, credit in steps:
        now += gap
        index = _core.quota_period(period, now)[0]
        credits[index] = credits.get(index, 0) + credit
        allowed = _core.quota_limit(period, limit, offset, since, index, credits[index])
        initial = index == _core.quota_period(period, since)[0]
        # The offset never takes the limit below 0; the credit then adds or takes away.
        base = max(limit - offset, 0) if initial else limit
        assert allowed == max(base + credits[index], 0)
        for _ in range(burst):
            admitted, quota_limit, remaining, reset_ms = tables[second].count(
                "plan", "key", (period, limit, offset, since), now, [], list(credits.items())
            )
            n = counted.get(index, 0)
            assert admitted == (n < allowed)
            assert quota_limit == allowed
            if admitted:
                counted[index] = n + 1
                assert remaining == allowed - n - 1
            assert 0 < reset_ms <= 31 * DAY_MS
    (entry,) = [e for e in tables[0].entries() if e[0] == "usage"]
    if entry[3] is None:  # no request was ever admitted
        assert not any(counted.values())
    else:
        assert entry[3][2] == counted.get(entry[3][1], 0)
    path.unlink()


def test_usage_writer_writes_only_what_changed(tmp_path):
    from portico.control.store import Store
    from portico.serve.usage import UsageWriter

    store = Store(tmp_path / "state")
    table = _core.UsageTable(str(tmp_path / "usage"), 64)
    writer = UsageWriter(store, table)
    now = int(utc(2031, 1, 5, 23, 59).timestamp() * 1000)
    for _ in range(3):
        table.count("p", "k", None, now)
    assert writer.flush() == 1
    assert writer.flush() == 0
    table.count("p", "k", None, now + 120_000)  # the next day
    assert writer.flush() == 1
    with store.read() as tx:
        rows = sorted(tx.usage(0))
    day = now // DAY_MS
    assert rows == [("p", "k", day, 3), ("p", "k", day + 1, 1)]
    # Counts only grow: an older, lower count never replaces a higher one.
    store.write_usage([("p", "k", day, 1)])
    with store.read() as tx:
        assert ("p", "k", day, 3) in tx.usage(0)


def test_metrics_escape_labels():
    from portico.control.data_plane import metrics_text

    text = metrics_text([("stage", 'a"b', "s\\1", 2, 0, 7, 1), ("key", "k\n", 0, 1)])
    assert 'portico_throttled_requests_total{api_id="a\\"b",stage="s\\\\1"} 2' in text
    assert 'portico_api_key_quota_exceeded_requests_total{api_key_id="k\\n"} 1' in text
    assert 'portico_cache_hits_total{api_id="a\\"b",stage="s\\\\1"} 7' in text
    assert re.search(r"# TYPE portico_quota_exceeded_requests_total counter", text)
