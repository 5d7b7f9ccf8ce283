"""``/metrics``: a Prometheus collector that reads the store at scrape time.

Gauges come from the state itself and counters from the hash the workers' settle scripts add
to (:mod:`cdn_refresh.store.metrics`), so one scrape of any API instance shows the whole
deployment, every worker on every host, and two API instances show the same figures.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector, CollectorRegistry

from cdn_refresh.store import Store


class StoreCollector(Collector):
    """Every cdn_refresh_* metric, from two round trips to Redis per scrape."""

    def __init__(self, store: Store) -> None:
        self._store = store

    def describe(self) -> list[Metric]:
        # Nothing at registration: describing would read Redis before anyone scrapes.
        return []

    def collect(self) -> Iterator[Metric]:
        figures = self._store.metrics.snapshot()
        pending = GaugeMetricFamily(
            "cdn_refresh_pending_paths", "Paths waiting to be sent", labels=["type", "priority"]
        )
        oldest = GaugeMetricFamily(
            "cdn_refresh_oldest_pending_age_seconds",
            "Age of the oldest pending path (0 when none waits)",
            labels=["type"],
        )
        used = GaugeMetricFamily(
            "cdn_refresh_quota_used", "Paths reserved in the rolling quota window", labels=["type"]
        )
        limit = GaugeMetricFamily(
            "cdn_refresh_quota_limit", "Paths the rolling quota window allows", labels=["type"]
        )
        dead = GaugeMetricFamily(
            "cdn_refresh_dead_letter_paths", "Dead-lettered paths", labels=["type"]
        )
        submitted = CounterMetricFamily(
            "cdn_refresh_submitted_paths", "Paths recorded as submitted", labels=["type"]
        )
        calls = CounterMetricFamily(
            "cdn_refresh_calls", "Provider calls by outcome", labels=["type", "outcome"]
        )
        duration = HistogramMetricFamily(
            "cdn_refresh_call_duration_seconds", "Provider call duration", labels=["type"]
        )
        for kind, fig in figures.items():
            t = kind.label
            pending.add_metric([t, "interactive"], fig.pending_interactive)
            pending.add_metric([t, "bulk"], fig.pending_bulk)
            oldest.add_metric([t], fig.oldest_pending_age_s)
            used.add_metric([t], fig.quota_used)
            limit.add_metric([t], fig.quota_limit)
            dead.add_metric([t], fig.dead_letters)
            submitted.add_metric([t], fig.submitted_paths)
            for outcome, n in sorted(fig.calls.items()):
                calls.add_metric([t, outcome], n)
            duration.add_metric([t], fig.cumulative_buckets(), fig.duration_sum_s)
        yield from (pending, oldest, used, limit, dead, submitted, calls, duration)
        yield from self._webhooks()

    def _webhooks(self) -> Iterator[Metric]:
        hooks = self._store.webhooks.figures()
        yield GaugeMetricFamily(
            "cdn_refresh_webhook_outbox",
            "Webhook deliveries not yet taken by their receiver",
            value=hooks.outbox,
        )
        yield GaugeMetricFamily(
            "cdn_refresh_webhook_oldest_delivery_age_seconds",
            "Age of the oldest webhook delivery in the outbox (0 when none waits)",
            value=hooks.oldest_age_s,
        )
        yield GaugeMetricFamily(
            "cdn_refresh_webhook_dead_letters",
            "Webhook deliveries given up on (WEBHOOK_MAX_AGE_S), or whose job was gone",
            value=hooks.dead_letters,
        )
        yield GaugeMetricFamily(
            "cdn_refresh_webhook_registrations",
            "Callbacks waiting for their job to end",
            value=hooks.registrations,
        )


def registry_for(store: Store) -> CollectorRegistry:
    """A registry holding only the store's figures (not this API process's own)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(StoreCollector(store))
    return registry
