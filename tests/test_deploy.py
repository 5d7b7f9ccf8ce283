"""The deploy files: the Grafana dashboard parses, and every metric it charts is one the API
exports (names read from the collector itself, not a list kept by hand)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import redis

from api.metrics import StoreCollector
from tests.conftest import make_store

ROOT = Path(__file__).resolve().parent.parent
DASHBOARD = ROOT / "deploy" / "grafana" / "cdn-refresh-dashboard.json"


def exported_names(redis_client: redis.Redis) -> set[str]:
    names = set()
    for family in StoreCollector(make_store(redis_client)).collect():
        names |= {s.name for s in family.samples} | {family.name}
        if family.type == "counter":  # exposed with _total even before its first sample
            names.add(family.name + "_total")
    return names


def test_the_dashboard_charts_only_exported_metrics(redis_client: redis.Redis) -> None:
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    used = {n for e in exprs for n in re.findall(r"cdn_refresh_[a-z_]+", e)}
    exported = exported_names(redis_client)
    assert used and used <= exported, used - exported
    # Every metric the issue names is charted.
    for name in (
        "cdn_refresh_pending_paths",
        "cdn_refresh_oldest_pending_age_seconds",
        "cdn_refresh_quota_used",
        "cdn_refresh_quota_limit",
        "cdn_refresh_submitted_paths_total",
        "cdn_refresh_calls_total",
        "cdn_refresh_dead_letter_paths",
        "cdn_refresh_call_duration_seconds_bucket",
        "cdn_refresh_webhook_outbox",
        "cdn_refresh_webhook_oldest_delivery_age_seconds",
    ):
        assert name in used, name
    # Instances show the same figures: merged with max, never added up (as docs/operations.md says).
    assert not [e for e in exprs if "sum by" in e or "sum(" in e]


def test_no_alert_applies_counter_functions_to_a_gauge(redis_client: redis.Redis) -> None:
    gauges = {
        f.name for f in StoreCollector(make_store(redis_client)).collect() if f.type == "gauge"
    }
    text = (ROOT / "deploy" / "prometheus.yml").read_text(encoding="utf-8")
    for function, name in re.findall(r"(rate|increase|irate)\((cdn_refresh_[a-z_]+)", text):
        assert name not in gauges, (function, name)
