"""What the admin API sees of the data plane it runs beside (`portico serve --admin-port`): the
account's throttle (the config file's `settings.accountThrottle`, which `get_account` shows as
AWS does, read-only), and the usage table the workers count in (`rust/usage.rs`): counts not yet
made durable (GetUsage, UpdateUsage) and the counters of refused requests (`GET /metrics`).
"""

from __future__ import annotations

import contextlib
import threading
from dataclasses import dataclass, field
from typing import Any

from portico import _core

__all__ = ["DataPlaneView", "metrics_text"]


@dataclass
class DataPlaneView:
    # The account's bucket as the core's limit ({"rate", "burst"}); None: no account limit.
    account_throttle: dict[str, float] | None = None
    # The workers' shared usage table (None: the admin API runs alone).
    usage_path: str | None = None
    _table: Any = field(default=None, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def throttle_settings(self) -> dict[str, Any] | None:
        """`Account.throttleSettings`."""
        if self.account_throttle is None:
            return None
        return {
            "burstLimit": int(self.account_throttle["burst"]),
            "rateLimit": float(self.account_throttle["rate"]),
        }

    def usage_table(self) -> _core.UsageTable | None:
        if self.usage_path is None:
            return None
        with self._lock:
            if self._table is None:
                with contextlib.suppress(OSError):
                    self._table = _core.UsageTable(self.usage_path)
            return self._table

    def entries(self) -> list[tuple]:
        table = self.usage_table()
        return table.entries() if table is not None else []

    def pending_days(self, plan_id: str, key_ids: set[str] | None = None) -> dict[tuple[str, int], int]:
        """The workers' counts of a plan's keys, (key, day) -> requests (the two days they keep)."""
        out: dict[tuple[str, int], int] = {}
        for entry in self.entries():
            if entry[0] == "usage" and entry[1] == plan_id and (key_ids is None or entry[2] in key_ids):
                for day, used in entry[4]:
                    out[(entry[2], day)] = used
        return out


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


_FAMILIES = (
    (
        "portico_throttled_requests_total",
        "Requests refused with 429 Too Many Requests (THROTTLED) by any bucket, by stage.",
        "stage",
        3,
    ),
    (
        "portico_quota_exceeded_requests_total",
        "Requests refused with 429 Limit Exceeded (QUOTA_EXCEEDED), by stage.",
        "stage",
        4,
    ),
    (
        "portico_cache_hits_total",
        "Requests answered from the stage cache, by stage.",
        "stage",
        5,
    ),
    (
        "portico_cache_misses_total",
        "Requests to cached methods that the stage cache could not answer, by stage.",
        "stage",
        6,
    ),
    (
        "portico_api_key_throttled_requests_total",
        "Requests refused by a usage plan's throttle, by API key.",
        "key",
        2,
    ),
    (
        "portico_api_key_quota_exceeded_requests_total",
        "Requests refused by a usage plan's quota, by API key.",
        "key",
        3,
    ),
)


def metrics_text(entries: list[tuple]) -> str:
    """The counters in Prometheus' text format (version 0.0.4), as Kong's and APISIX's
    Prometheus plugins expose theirs."""
    lines: list[str] = []
    for name, help_text, kind, index in _FAMILIES:
        lines += [f"# HELP {name} {help_text}", f"# TYPE {name} counter"]
        for entry in sorted(e for e in entries if e[0] == kind):
            if kind == "stage":
                labels = f'api_id="{_label(entry[1])}",stage="{_label(entry[2])}"'
            else:
                labels = f'api_key_id="{_label(entry[1])}"'
            lines.append(f"{name}{{{labels}}} {entry[index]}")
    name = "portico_usage_plan_quota_period_requests"
    lines += [
        f"# HELP {name} Requests of an API key counted in its usage plan's current quota period.",
        f"# TYPE {name} gauge",
    ]
    for entry in sorted(e for e in entries if e[0] == "usage" and e[3] is not None):
        _, plan_id, key_id, (period, _, used), _ = entry
        labels = f'usage_plan_id="{_label(plan_id)}",api_key_id="{_label(key_id)}",period="{period}"'
        lines.append(f"{name}{{{labels}}} {used}")
    return "\n".join(lines) + "\n"
