"""``GET /metrics`` of ``ferry api``: what the job store knows, for Prometheus.

- ``ferry_jobs{status, kind, connection}``: jobs by status, for every configured connection and
  each kind of its service (one HMGET of the store's counts: the same cost at any store size);
- ``ferry_workers``: workers with a fresh heartbeat;
- ``ferry_connection_paused{connection}``, ``ferry_parked_steps{connection}`` and
  ``ferry_connection_throttled{connection}`` (1 while a 429 pause holds it).

The workers' own counters (steps, durations, HTTP answers, retries, waits, bytes) are served by
each ``ferry worker --metrics-port N``; scrape both.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from producers.client import Ferry
from producers.kinds import KINDS
from producers.records import JobStatus

CONTENT_TYPE = CONTENT_TYPE_LATEST


class StoreCollector(Collector):
    def __init__(self, ferry: Ferry) -> None:
        self.ferry = ferry

    def describe(self) -> list[GaugeMetricFamily]:
        return []  # collected fresh at each scrape; nothing to read at registration

    def collect(self) -> Iterator[GaugeMetricFamily]:
        config = self.ferry.config
        combos = [(status.value, kind.name, name)
                  for name, conn in sorted(config.connections.items())
                  for kind in KINDS.values() if kind.service == conn.service
                  for status in JobStatus]
        counts = self.ferry.store.job_counts(combos)
        jobs = GaugeMetricFamily("ferry_jobs", "Jobs in the store by status, kind and connection",
                                 labels=["status", "kind", "connection"])
        for labels, n in zip(combos, counts, strict=True):
            jobs.add_metric(list(labels), n)
        yield jobs
        ready = [w for w in self.ferry.workers() if not w.get("parent")]
        yield GaugeMetricFamily("ferry_workers", "Workers with a fresh heartbeat", value=len(ready))
        states = self.ferry.store.connection_states(sorted(config.connections))
        paused = GaugeMetricFamily("ferry_connection_paused", "1 while an operator pauses the connection",
                                   labels=["connection"])
        parked = GaugeMetricFamily("ferry_parked_steps", "Steps waiting for their paused connection",
                                   labels=["connection"])
        throttled = GaugeMetricFamily("ferry_connection_throttled",
                                      "1 while the destination's 429 pause holds the connection's requests",
                                      labels=["connection"])
        for name, state in states.items():
            paused.add_metric([name], 1 if state.paused else 0)
            parked.add_metric([name], state.parked)
            throttled.add_metric([name], 1 if state.throttled_until else 0)
        yield paused
        yield parked
        yield throttled


def exposition(ferry: Ferry) -> bytes:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(StoreCollector(ferry))
    return generate_latest(registry)
