"""The service's counters over the last minutes, for the page (GET /ui/state).

The Prometheus counters (serving/metrics.py) only grow. Every `every_s` a
background task copies their values (and which models are cooling down) into a
ring kept for `keep_s`; a window of the last N seconds is the counters now
minus the oldest copy inside the window. Nothing is added to a request's path:
the copies are read from the registry the requests already count in.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import time
from collections.abc import Callable

Key = tuple[str, tuple]          # (sample name, sorted label items)


def counter_values(registry) -> dict[Key, float]:
  """Every counter sample (`*_total`) of a prometheus_client registry."""
  out = {}
  for family in registry.collect():
    if family.type != "counter":
      continue
    for sample in family.samples:
      if sample.name.endswith("_total"):
        out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
  return out


def _by_label(delta: dict[Key, float], name: str, label: str) -> collections.Counter:
  out: collections.Counter = collections.Counter()
  for (sample, labels), value in delta.items():
    if sample == name:
      out[dict(labels).get(label, "")] += value
  return out


class Traffic:
  """A ring of (time, counter values, models cooling down) copies."""

  def __init__(self, registry, cooling: Callable[[], set], every_s: float = 5.0,
               keep_s: float = 900.0, clock: Callable[[], float] = time.monotonic):
    self.registry, self.cooling, self.clock = registry, cooling, clock
    self.every_s, self.keep_s = every_s, keep_s
    self.ring: collections.deque = collections.deque()
    self.task: asyncio.Task | None = None

  def sample(self) -> None:
    now = self.clock()
    self.ring.append((now, counter_values(self.registry), frozenset(self.cooling())))
    while self.ring and self.ring[0][0] < now - self.keep_s:
      self.ring.popleft()

  def window(self, seconds: float, models) -> dict:
    """Per model, over about the last `seconds`: chat answers and their share,
    fallbacks away from it, upstream errors, whether it cooled down; and requests
    by endpoint. `covers_s` says how far back the oldest copy used goes (None:
    no copy yet, the counts are since the service started)."""
    now, values = self.clock(), counter_values(self.registry)
    base_t, base, seen_cooling = None, None, set(self.cooling())
    for t, snapshot, cooling in self.ring:
      if t >= now - seconds:
        if base is None:
          base_t, base = t, snapshot
        seen_cooling |= cooling
    delta = {k: v - (base or {}).get(k, 0.0) for k, v in values.items()}
    answered = _by_label(delta, "irt_routed_total", "model")
    fallbacks = _by_label(delta, "irt_fallbacks_total", "failed_model")
    errors = _by_label(delta, "irt_upstream_errors_total", "model")
    total = sum(answered.values())
    rows = [{"model": m, "answered": int(answered[m]),
             "share": answered[m] / total if total else 0.0, "fallbacks": int(fallbacks[m]),
             "errors": int(errors[m]), "cooled_down": m in seen_cooling}
            for m in models]
    requests = _by_label(delta, "irt_requests_total", "endpoint")
    return {"seconds": seconds, "covers_s": None if base is None else round(now - base_t, 1),
            "answered": int(total),
            "models": rows, "requests": {k: int(v) for k, v in sorted(requests.items()) if v}}

  def start(self) -> None:
    self.sample()
    self.task = asyncio.get_running_loop().create_task(self._run())

  async def _run(self) -> None:
    while True:
      await asyncio.sleep(self.every_s)
      self.sample()

  async def stop(self) -> None:
    if self.task is not None:
      self.task.cancel()
      with contextlib.suppress(asyncio.CancelledError):
        await self.task
