"""What the service counts, in the Prometheus text format (prometheus_client).

One registry per app (not the library's global one), so that several apps in
one process, as in the tests and benches, count apart. Label values are model
names and fixed endpoint names only: never keys, queries or user input, so
the number of series stays bounded.
"""

from __future__ import annotations

import os

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client import CONTENT_TYPE_LATEST

CONTENT_TYPE = CONTENT_TYPE_LATEST
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
OVERHEAD_BUCKETS = (0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.015, 0.025, 0.05, 0.1,
                    0.25, 0.5, 1, 2.5)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)


class Metrics:
  """The service's counters and histograms (names below end in _total for counters)."""

  def __init__(self):
    self.registry = r = CollectorRegistry()
    self.requests = Counter("irt_requests", "HTTP requests by endpoint and status",
                            ["endpoint", "status"], registry=r)
    self.routed = Counter("irt_routed", "Chat answers by the model that answered "
                          "(after any fallbacks)", ["model"], registry=r)
    self.fallbacks = Counter("irt_fallbacks", "Moves to the next ranked model, by the model "
                             "whose upstream failed", ["failed_model"], registry=r)
    self.upstream_errors = Counter("irt_upstream_errors", "Upstream failures by model and "
                                   "reason", ["model", "reason"], registry=r)
    self.route_seconds = Histogram("irt_route_seconds", "Encoding, scoring and ranking a "
                                   "request's queries (batching wait included)",
                                   buckets=LATENCY_BUCKETS, registry=r)
    self.upstream_seconds = Histogram("irt_upstream_seconds", "An upstream's answer (whole body, "
                                      "or first event when streamed), by model", ["model"],
                                      buckets=LATENCY_BUCKETS, registry=r)
    self.overhead_seconds = Histogram("irt_overhead_seconds", "Time a proxied request spent in "
                                      "the service, upstream waits excluded (the "
                                      "x-irt-jax-overhead-ms header)", buckets=OVERHEAD_BUCKETS,
                                      registry=r)
    self.batch_queries = Histogram("irt_encoder_batch_queries", "Queries per encoder call "
                                   "(micro-batching)", buckets=BATCH_BUCKETS, registry=r)
    self.feedback = Counter("irt_feedback", "Feedback records logged, by model", ["model"],
                            registry=r)
    self.spend_usd = Counter("irt_spend_usd", "USD of answers (usage x prices) by key name "
                             "(or digest prefix) and model", ["key", "model"], registry=r)
    self.reloads = Counter("irt_reloads", "Router reloads by result", ["result"], registry=r)

  def request(self, endpoint: str, status: int) -> None:
    self.requests.labels(endpoint, str(status)).inc()

  def fallback(self, failed_model: str) -> None:
    self.fallbacks.labels(failed_model).inc()

  def upstream_error(self, model: str, reason: str) -> None:
    self.upstream_errors.labels(model, reason).inc()

  def upstream_time(self, model: str, seconds: float) -> None:
    self.upstream_seconds.labels(model).observe(seconds)

  def batch(self, rows: int) -> None:
    self.batch_queries.observe(rows)

  def render(self) -> bytes:
    """This app's counts; under `serve --workers` (PROMETHEUS_MULTIPROC_DIR set),
    the sum over every worker's (prometheus-client's multiprocess collector)."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
      from prometheus_client import multiprocess
      registry = CollectorRegistry()
      multiprocess.MultiProcessCollector(registry)
      return generate_latest(registry)
    return generate_latest(self.registry)
