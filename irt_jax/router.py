"""Route raw text: query -> the run's encoder -> the run's predictor -> a model.

    from irt_jax.router import Router
    router = Router.from_checkpoint("runs/routerdc", encoder_dir=".models/all-mpnet-base-v2")
    router.route(["What is 17 * 23?"])[0].model

A Router holds a predictor (any model kind, `predictors.load`) and the query
encoder the run was trained with, loaded lazily and once. Choices are made on
logits when cost plays no part, so saturated probabilities (float32 rounds
P > 1 - 6e-8 to 1.0) never tie; with costs the objective is
P(correct) - cost_weight * cost, ties broken by logit.

Costs are per query and model, in whatever unit the caller uses (dollars, tokens):
a vector [M] (one price per model), a matrix [N, M] (one per query routed, in
the order given) or a callable texts -> [N, M]. `budget` caps the mean cost over
the queries of one call; see `choose_within_budget` for how.
"""

from __future__ import annotations

import dataclasses
import heapq
import os
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np


class RouterError(ValueError):
  """The Router cannot do what was asked (missing encoder, bad costs, unknown model)."""


@dataclasses.dataclass(frozen=True)
class Route:
  """One query's routing: the chosen model and the best alternative."""
  model: str
  p_correct: float
  logit: float
  expected_cost: float | None          # None when the Router has no costs
  runner_up: str | None                # None when only one model was allowed
  runner_up_p: float | None

  def to_dict(self) -> dict:
    return dataclasses.asdict(self)


def sigmoid(logits: np.ndarray) -> np.ndarray:
  """P(correct) from logits, in float64 (float32 saturates to 1.0 near logit 17)."""
  return 1.0 / (1.0 + np.exp(-np.asarray(logits, np.float64)))


def _best_two(score: np.ndarray, tie: np.ndarray, allowed: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """Per row, the index of the highest and second-highest allowed `score`
  (ties broken by `tie`, then by lower index); -1 where there is none."""
  n, m = score.shape
  s = np.where(allowed, score, -np.inf)
  t = np.where(allowed, tie, -np.inf)
  idx = np.broadcast_to(-np.arange(m), (n, m))
  order = np.lexsort((idx, t, s), axis=-1)  # ascending: the best is last
  counts = allowed.sum(1)
  first = np.where(counts >= 1, order[:, -1], -1)
  second = np.where(counts >= 2, order[:, -2] if m >= 2 else -1, -1)
  return first, second


def choose(logits: np.ndarray, costs: np.ndarray | None = None, cost_weight: float = 0.0,
           allowed: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
  """(chosen, runner-up) model indices per query for logits [N, M].

  cost_weight == 0: argmax of the logits (never of probabilities). Otherwise
  argmax of P(correct) - cost_weight * cost, ties broken by logit.
  """
  logits = np.asarray(logits, np.float64)
  allowed = np.ones(logits.shape, bool) if allowed is None else np.broadcast_to(allowed, logits.shape)
  if cost_weight == 0:
    return _best_two(logits, logits, allowed)
  if costs is None:
    raise RouterError("cost_weight > 0 needs costs; give the Router costs=")
  score = sigmoid(logits) - float(cost_weight) * np.broadcast_to(costs, logits.shape)
  return _best_two(score, logits, allowed)


def choose_within_budget(logits: np.ndarray, costs: np.ndarray, budget: float,
                         allowed: np.ndarray | None = None) -> np.ndarray:
  """Per query a model index maximising the summed P(correct) with mean cost <= budget.

  Greedy upgrade by marginal gain per cost: every query starts at its cheapest
  allowed model (the likeliest among equally cheap ones); the only upgrades
  worth considering lie on the upper convex hull of its (cost, P) points, whose
  successive gain/cost ratios fall. All queries' hull steps are taken in one
  order of falling ratio while the total cost fits. Stopping at the first step
  that does not fit is exactly the Lagrangian sweep of cost_weight (each query
  at argmax P - lambda * cost for the ratio lambda reached); the greedy then goes
  on with the steps of other queries that still fit, so leftover budget is used.
  The result is within one step's gain of the optimum.

  Raises RouterError when even the cheapest choices exceed the budget.
  """
  logits = np.asarray(logits, np.float64)
  n, m = logits.shape
  costs = np.broadcast_to(np.asarray(costs, np.float64), (n, m))
  allowed = np.ones((n, m), bool) if allowed is None else np.broadcast_to(allowed, (n, m))
  p = sigmoid(logits)
  if n == 0:
    return np.zeros(0, np.int64)
  chosen = np.empty(n, np.int64)
  hulls: list[list[int]] = []
  for q in range(n):
    idx = np.flatnonzero(allowed[q])
    # Cheapest first; among equal costs the likeliest (by logit) first.
    idx = idx[np.lexsort((-logits[q, idx], costs[q, idx]))]
    hull: list[int] = []
    for j in idx:
      if hull and costs[q, j] == costs[q, hull[-1]]:
        continue                      # same cost, less likely
      if hull and logits[q, j] <= logits[q, hull[-1]]:
        continue                      # dearer and no more likely: dominated
      while len(hull) >= 2:           # keep the upper hull concave
        a, b = hull[-2], hull[-1]
        left = (p[q, b] - p[q, a]) * (costs[q, j] - costs[q, b])
        right = (p[q, j] - p[q, b]) * (costs[q, b] - costs[q, a])
        if left <= right:
          hull.pop()
        else:
          break
      hull.append(int(j))
    hulls.append(hull)
    chosen[q] = hull[0]
  total = float(costs[np.arange(n), chosen].sum())
  limit = float(budget) * n
  if total > limit * (1 + 1e-12) + 1e-12:
    raise RouterError(f"budget {budget:g} is below the cheapest routing's mean cost "
                      f"{total / n:g} for these queries")
  heap = []
  for q, hull in enumerate(hulls):
    if len(hull) > 1:
      heapq.heappush(heap, (-_ratio(p, costs, q, hull[0], hull[1]), q, 1))
  while heap:
    neg_ratio, q, step = heapq.heappop(heap)
    if neg_ratio >= 0:
      break                           # no step left that raises P
    hull = hulls[q]
    extra = costs[q, hull[step]] - costs[q, hull[step - 1]]
    if total + extra > limit * (1 + 1e-12) + 1e-12:
      continue                        # this query stays; later steps build on this one
    total += extra
    chosen[q] = hull[step]
    if step + 1 < len(hull):
      heapq.heappush(heap, (-_ratio(p, costs, q, hull[step], hull[step + 1]), q, step + 1))
  return chosen


def _ratio(p, costs, q, a, b) -> float:
  return float((p[q, b] - p[q, a]) / (costs[q, b] - costs[q, a]))


class Router:
  """Text -> P(correct) for each model -> a routing choice.

  `predictor`: anything with `.logits(embeddings [N, D]) -> [N, M]`,
  `.model_names` and `.input_dim` (a `predictors.Predictor`). `encoder`: anything
  with `.encode(texts) -> [N, D]` (a `SentenceEncoder`), or a zero-argument
  callable returning one, called once on first use.
  """

  def __init__(self, predictor, encoder, costs=None, name: str | None = None,
               workdir: str | None = None):
    self.predictor = predictor
    self.model_names: tuple[str, ...] = tuple(predictor.model_names)
    kind = getattr(predictor, "kind", None)
    self.name = name or getattr(kind, "name", None) or "custom"
    self.workdir = workdir
    self._encoder = None if callable(encoder) and not hasattr(encoder, "encode") else encoder
    self._load_encoder = encoder if self._encoder is None else None
    self._lock = threading.Lock()
    self.costs = self._check_costs(costs)

  # ---------------------------------------------------------------- building
  @classmethod
  def from_predictor(cls, predictor, encoder, costs=None, name: str | None = None) -> "Router":
    return cls(predictor, encoder, costs=costs, name=name)

  @classmethod
  def from_checkpoint(cls, workdir: str, encoder_dir: str | None = None, step="best",
                      costs=None) -> "Router":
    """The run in `workdir` and its query encoder.

    The encoder folder is `encoder_dir`, else the one the run recorded. When the
    run recorded a fingerprint of its encoder's weights, a folder with other
    weights is refused (its embeddings would mean nothing to the model).
    """
    from irt_jax import predictors
    run = predictors.load(workdir, step)
    record = dict(run.encoder or {})
    name = record.get("name") or "unknown"
    folder = encoder_dir or record.get("model_dir")
    if not folder or not os.path.isdir(folder):
      where = (f"encoder folder {folder} does not exist" if folder else
               "the run recorded no encoder folder")
      raise RouterError(f"{workdir}: this run needs its query encoder {name!r} to route text, "
                        f"but {where}; pass encoder_dir=<a folder holding {name}> "
                        f"(--encoder_dir on the command line)")
    if record.get("fingerprint"):
      from irt_jax import datasets
      found = datasets.weights_fingerprint(folder)
      if found != record["fingerprint"]:
        raise RouterError(f"{folder}: its weights differ from those of the encoder {name!r} this "
                          f"run was trained with (fingerprint {found[:12]} != "
                          f"{record['fingerprint'][:12]}); pass the folder the run used")
    max_length = record.get("max_length") or None
    input_dim = run.predictor.input_dim

    def load():
      from irt_jax.encoder import load_encoder
      encoder = load_encoder(folder, max_length=max_length)
      if encoder.dim != input_dim:
        raise RouterError(f"{folder}: encoder {encoder.name!r} makes {encoder.dim}-d embeddings "
                          f"but this run reads {input_dim}-d ones (it was trained with {name!r})")
      return encoder

    return cls(run.predictor, load, costs=costs, name=run.kind.name, workdir=workdir)

  @property
  def encoder(self):
    """The query encoder, loaded on first use (once, also under threads)."""
    if self._encoder is None:
      with self._lock:
        if self._encoder is None:
          self._encoder = self._load_encoder()
    return self._encoder

  # ---------------------------------------------------------------- costs
  def _check_costs(self, costs, n: int | None = None) -> Any:
    """Costs as float64 [M] or [N, M] (a name -> cost mapping becomes [M]);
    callables are checked when called."""
    if costs is None or callable(costs):
      return costs
    m = len(self.model_names)
    if isinstance(costs, Mapping):
      unknown = sorted(set(costs) - set(self.model_names))
      if unknown:
        raise RouterError(f"costs name unknown model(s) {unknown[:5]}; this router knows: "
                          f"{', '.join(self.model_names)}")
      missing = [k for k in self.model_names if k not in costs]
      if missing:
        raise RouterError(f"costs lack model(s) {missing[:5]}; every one of the run's {m} "
                          f"models needs a cost")
      costs = [costs[k] for k in self.model_names]
    try:
      arr = np.asarray(costs, np.float64)
    except (TypeError, ValueError) as e:
      raise RouterError(f"costs must be numbers: {e}") from None
    if arr.ndim not in (1, 2) or arr.shape[-1] != m:
      raise RouterError(f"costs of shape {arr.shape} do not fit {m} models: give [{m}] "
                        f"(per model) or [queries, {m}] (per query and model)")
    if arr.ndim == 2 and n is not None and arr.shape[0] != n:
      raise RouterError(f"per-query costs have {arr.shape[0]} rows for {n} queries")
    if not np.isfinite(arr).all() or (arr < 0).any():
      raise RouterError("costs must be finite and >= 0")
    return arr

  def cost_matrix(self, texts: Sequence[str] | None, n: int, costs=None) -> np.ndarray | None:
    """Costs [n, M] for this call (`costs` overrides the Router's), or None."""
    costs = self.costs if costs is None else costs
    if costs is None:
      return None
    if callable(costs):
      if texts is None:
        raise RouterError("the Router's costs are a function of the texts; route texts, "
                          "not embeddings or logits")
      costs = costs(list(texts))
    arr = self._check_costs(costs, n)
    return np.broadcast_to(arr, (n, len(self.model_names)))

  def allowed(self, candidates: Sequence[str] | None) -> np.ndarray:
    """Mask [M] of the models routing may choose."""
    if candidates is None:
      return np.ones(len(self.model_names), bool)
    if isinstance(candidates, str):
      candidates = [candidates]
    unknown = [c for c in candidates if c not in self.model_names]
    if unknown:
      raise RouterError(f"unknown candidate model(s) {unknown}; this router knows: "
                        f"{', '.join(self.model_names)}")
    if not candidates:
      raise RouterError("candidates is empty: name at least one model")
    return np.isin(np.asarray(self.model_names), list(candidates))

  # ---------------------------------------------------------------- predicting
  def embed(self, texts: Sequence[str]) -> np.ndarray:
    if isinstance(texts, str):
      raise TypeError("give a list of texts, not a single string")
    texts = list(texts)
    if not all(isinstance(t, str) for t in texts):
      raise TypeError("texts must be strings")
    if not texts:
      return np.zeros((0, self.predictor.input_dim), np.float32)
    return np.asarray(self.encoder.encode(texts), np.float32)

  def logits(self, texts: Sequence[str]) -> np.ndarray:
    """Logits of P(correct) [queries, models]."""
    emb = self.embed(texts)
    if emb.shape[0] == 0:
      return np.zeros((0, len(self.model_names)), np.float32)
    return np.asarray(self.predictor.logits(emb))

  def predict(self, texts: Sequence[str]) -> np.ndarray:
    """P(correct) [queries, models] (float64)."""
    return sigmoid(self.logits(texts))

  def route(self, texts: Sequence[str], cost_weight: float = 0.0, budget: float | None = None,
            candidates: Sequence[str] | None = None, costs=None) -> list[Route]:
    """Per query the chosen model, its P(correct), expected cost and runner-up.

    cost_weight == 0 and no budget: the model with the highest logit.
    cost_weight > 0: argmax P - cost_weight * cost. budget: the routing with the
    highest summed P whose mean cost over these queries is <= budget
    (`choose_within_budget`); the runner-up is then the argmax of P among the rest.
    """
    self.allowed(candidates)          # a bad name fails before any encoding
    return self.route_logits(self.logits(texts), cost_weight, budget, candidates, costs,
                             texts=texts)

  def route_logits(self, logits: np.ndarray, cost_weight: float = 0.0,
                   budget: float | None = None, candidates: Sequence[str] | None = None,
                   costs=None, texts: Sequence[str] | None = None) -> list[Route]:
    """`route` for logits already computed ([N, M], e.g. by a batched service)."""
    logits = np.asarray(logits, np.float64)
    n = logits.shape[0]
    try:
      cost_weight = float(cost_weight)
    except (TypeError, ValueError):
      raise RouterError(f"cost_weight must be a number, got {cost_weight!r}") from None
    if not np.isfinite(cost_weight) or cost_weight < 0:
      raise RouterError(f"cost_weight must be finite and >= 0, got {cost_weight}")
    allowed = np.broadcast_to(self.allowed(candidates), logits.shape)
    cost = self.cost_matrix(texts, n, costs)
    if cost is None and (cost_weight > 0 or budget is not None):
      raise RouterError("cost_weight > 0 and budget need costs per model; give the Router "
                        "costs= (a vector [models], a matrix [queries, models] or a mapping "
                        "model name -> cost)")
    if budget is not None:
      try:
        budget = float(budget)
      except (TypeError, ValueError):
        raise RouterError(f"budget must be a number, got {budget!r}") from None
      if not np.isfinite(budget) or budget < 0:
        raise RouterError(f"budget must be finite and >= 0, got {budget}")
      first = choose_within_budget(logits, cost, budget, allowed)
      rest = allowed.copy()
      rest[np.arange(n), first] = False
      second, _ = _best_two(logits, logits, rest)
    else:
      first, second = choose(logits, cost, cost_weight, allowed)
    p = sigmoid(logits)
    out = []
    for q in range(n):
      i, j = int(first[q]), int(second[q])
      out.append(Route(
          model=self.model_names[i], p_correct=float(p[q, i]), logit=float(logits[q, i]),
          expected_cost=None if cost is None else float(cost[q, i]),
          runner_up=self.model_names[j] if j >= 0 else None,
          runner_up_p=float(p[q, j]) if j >= 0 else None))
    return out


def read_costs_json(path: str) -> dict:
  """A JSON object model name -> cost per query, from `path` (the Router checks the names)."""
  import json
  try:
    with open(path, encoding="utf-8") as f:
      obj = json.load(f)
  except (OSError, ValueError) as e:
    raise RouterError(f"{path}: cannot read costs: {e}") from None
  if not isinstance(obj, dict) or not all(
      isinstance(v, (int, float)) and not isinstance(v, bool) for v in obj.values()):
    raise RouterError(f"{path}: costs must be a JSON object model name -> number")
  return obj
