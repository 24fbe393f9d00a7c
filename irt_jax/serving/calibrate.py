"""`router-<kind>@share=S`: a cost weight calibrated to a target share of
expensive calls (RouteLLM's threshold calibration, on the IRT probabilities).

A model is expensive when its cost (the Router's costs, per query, averaged
over queries) is above `above`. For a cost weight w the router sends each of
the run's validation queries to its best model by P(correct) - w x cost (the
service's own rule, `Router.rank_logits`); the share of them that go to
expensive models falls as w grows. The weight served for `@share=S` is the
smallest w whose share is at most S (found by bisection, to 1e-4 relative),
so quality is given up only as far as the target asks. A target below what
any weight reaches gets the weight that reaches the least.

    cal = Calibration(above=1.0, queries=lambda router: (logits [N, M], texts or None))
    cal.weight(router, 0.3, routable) -> w
"""

from __future__ import annotations

import threading
from collections.abc import Callable

import numpy as np

SHARE_MARK = "@share="
MAX_WEIGHT = 1e6


def parse_share(model, prefix: str) -> float | None:
  """S of `<prefix>@share=S` (0 <= S <= 1), None for any other name."""
  from irt_jax.serving.requests import marked_fraction
  return marked_fraction(model, prefix, SHARE_MARK, "share", 0.3)


def expensive_share(router, logits: np.ndarray, texts, weight: float, expensive: np.ndarray,
                    routable) -> float:
  """The share of queries routed (at `weight`) to a model marked in `expensive` [M]."""
  ranks = router.rank_logits(logits, weight, routable, k=1, texts=texts)
  index = {m: i for i, m in enumerate(router.model_names)}
  return float(np.mean([expensive[index[r[0]]] for r in ranks]))


def calibrate(share_at: Callable[[float], float], target: float) -> float:
  """The smallest w >= 0 with share_at(w) <= target (share_at falls with w)."""
  if share_at(0.0) <= target:
    return 0.0
  hi = 1e-3
  while share_at(hi) > target:
    if hi >= MAX_WEIGHT:
      return hi                          # the least share any weight reaches
    hi *= 4
  lo = hi / 4 if hi > 1e-3 else 0.0
  while hi - lo > 1e-4 * hi:
    mid = (lo + hi) / 2
    if share_at(mid) <= target:
      hi = mid
    else:
      lo = mid
  return hi


class Calibration:
  """Weights per (Router, target share), computed once each from the Router's
  validation queries (`queries(router) -> (logits [N, M], texts or None)`)."""

  def __init__(self, above: float, queries: Callable):
    self.above, self.queries = above, queries
    self._lock = threading.Lock()
    self._data: dict[int, tuple] = {}
    self._weights: dict[tuple, float] = {}

  def weight(self, router, share: float, routable) -> float:
    key = (id(router), share, tuple(routable))
    with self._lock:
      if key not in self._weights:
        if id(router) not in self._data:
          self._data = {id(router): (router, *self.queries(router))}   # one Router at a time
        _, logits, texts = self._data[id(router)]
        costs = router.cost_matrix(texts, logits.shape[0])
        if costs is None:
          raise ValueError("calibrated routing needs costs: start the service with --costs")
        expensive = np.nanmean(costs, axis=0) > self.above
        self._weights[key] = calibrate(
            lambda w: expensive_share(router, logits, texts, w, expensive, routable), share)
      return self._weights[key]


def validation_queries(router, workdir: str | None = None):
  """(logits [N, M], prompts or None) of the run's validation queries."""
  from irt_jax import predictors
  from irt_jax.data import resolve
  workdir = workdir or router.workdir
  run = predictors.load(workdir, "best")
  data = resolve.load_for_run(run.config, workdir)
  rows = np.unique(data.split("val").queries)
  texts = [data.prompts[i] for i in rows] if data.prompts is not None else None
  return np.asarray(router.predictor.logits(data.embeddings[rows]), np.float64), texts
