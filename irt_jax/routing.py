"""Routing: send each query to the LLM most likely to answer it.

Choices are always made among the models whose answer is known (in sparse
data not every model ran every query); unknown cells are never chosen.
"""

from __future__ import annotations

import numpy as np

from irt_jax.data import Split


def choose_by_score(scores: np.ndarray, known: np.ndarray) -> np.ndarray:
  """Per query, the known model with the highest score ([n, M] -> [n]; -1 if none)."""
  masked = np.where(known, scores, -np.inf)
  choice = masked.argmax(axis=1)
  return np.where(known.any(axis=1), choice, -1)


def choose_by_order(order: np.ndarray, known: np.ndarray) -> np.ndarray:
  """Per query, the first model in `order` whose answer is known (-1 if none)."""
  rank = np.empty(len(order), np.int64)
  rank[order] = np.arange(len(order))
  return choose_by_score(np.broadcast_to(-rank, known.shape), known)


def model_accuracy(split: Split) -> np.ndarray:
  """Each model's accuracy over its known cells of a split ([M], NaN if none)."""
  mask = split.mask
  with np.errstate(invalid="ignore", divide="ignore"):
    return np.where(mask, split.labels, 0).sum(0) / mask.sum(0)


def best_single_order(train: Split) -> np.ndarray:
  """Models by train accuracy, best first (ties: lower index first)."""
  acc = np.nan_to_num(model_accuracy(train), nan=-1.0)
  return np.lexsort((np.arange(len(acc)), -acc))


def route(scores: np.ndarray, model_names, candidates=None) -> list[str]:
  """Best model name per query for scores [n, M] (logits of P(correct)); `candidates`
  restricts the choice (e.g. to the models a deployment can call)."""
  allowed = np.ones(scores.shape, bool)
  if candidates is not None:
    unknown = sorted(set(candidates) - set(model_names))
    if unknown:
      raise ValueError(f"unknown model name(s) {unknown}; this run knows {list(model_names)}")
    allowed[:] = np.isin(np.asarray(model_names), list(candidates))[None, :]
  return [model_names[i] for i in choose_by_score(scores, allowed)]


# ----------------------------------------------------------------------------
# Cost-aware choices. `proba` are probabilities of a correct answer (not
# logits: quality and cost are traded on the probability scale), `cost` is
# [M] (per model) or [n, M] (per query and model), in any one unit.

def _cost_table(cost: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
  cost = np.asarray(cost, np.float64)
  if cost.shape not in ((shape[1],), shape):
    raise ValueError(f"cost of shape {cost.shape} does not fit {shape[0]} queries x "
                     f"{shape[1]} models; give [{shape[1]}] or [{shape[0]}, {shape[1]}]")
  return np.broadcast_to(cost, shape)


def choose_with_cost(proba: np.ndarray, cost: np.ndarray, cost_weight: float,
                     known: np.ndarray) -> np.ndarray:
  """Per query, the known model maximising P(correct) - cost_weight * cost
  (-1 if none); cost_weight = 0 is plain routing, inf the cheapest known model
  (ties broken by P, then by model index)."""
  proba = np.asarray(proba, np.float64)
  cost = _cost_table(cost, proba.shape)
  if np.isinf(cost_weight):
    # Cheapest first, then most likely correct: lexicographic by a rank score.
    c = np.where(known, cost, np.inf)
    cheapest = c == c.min(axis=1, keepdims=True)
    return choose_by_score(proba, known & cheapest)
  return choose_by_score(proba - float(cost_weight) * cost, known)


def _mean_cost(choice: np.ndarray, cost: np.ndarray) -> float:
  rows = np.flatnonzero(choice >= 0)
  return float(cost[rows, choice[rows]].sum() / max(len(choice), 1))


def choose_under_budget(proba: np.ndarray, cost: np.ndarray, budget: float,
                        known: np.ndarray, iterations: int = 60) -> np.ndarray:
  """The routing with the highest expected accuracy whose mean cost per query
  stays within `budget`.

  Method: the Lagrangian relaxation. For a price w on cost, the per-query
  choice argmax P - w * cost is optimal for its own mean cost, and that cost
  falls as w grows; bisection finds the smallest w whose routing fits the
  budget. The budget left over is then spent greedily: queries are switched to
  a costlier model in order of accuracy gained per unit of extra cost, while
  the mean stays within budget. This is exact at the Lagrangian breakpoints and
  otherwise short of the optimum by at most one query's gain (the problem is a
  multiple-choice knapsack). A budget below the cheapest routing's mean cost is
  a ValueError.
  """
  proba = np.asarray(proba, np.float64)
  cost = _cost_table(cost, proba.shape)
  n = len(proba)
  cheapest = choose_with_cost(proba, cost, np.inf, known)
  floor = _mean_cost(cheapest, cost)
  if budget < floor - 1e-12:
    raise ValueError(f"budget {budget:g} is below the mean cost of always choosing the "
                     f"cheapest model, {floor:g}")
  best = choose_by_score(proba, known)
  if _mean_cost(best, cost) <= budget:
    return best
  # Bisection on w: w_hi fits the budget, w_lo does not.
  spread = np.ptp(np.where(known, cost, 0.0)) or 1.0
  w_lo, w_hi = 0.0, 1.0 / spread
  while _mean_cost(choose_with_cost(proba, cost, w_hi, known), cost) > budget:
    w_lo, w_hi = w_hi, w_hi * 4
    if w_hi > 1e300:
      w_hi = np.inf
      break
  for _ in range(iterations):
    if np.isinf(w_hi):
      break
    mid = 0.5 * (w_lo + w_hi)
    if _mean_cost(choose_with_cost(proba, cost, mid, known), cost) <= budget:
      w_hi = mid
    else:
      w_lo = mid
  choice = choose_with_cost(proba, cost, w_hi, known)
  # Greedy fill: best single-query upgrades by gain per extra cost.
  spent = _mean_cost(choice, cost) * n
  rows = np.flatnonzero(choice >= 0)
  while True:
    cur_p = proba[rows, choice[rows]][:, None]
    cur_c = cost[rows, choice[rows]][:, None]
    gain = np.where(known[rows], proba[rows] - cur_p, -np.inf)
    extra = cost[rows] - cur_c
    fits = known[rows] & (gain > 0) & (spent + extra <= budget * n + 1e-12)
    if not fits.any():
      break
    ratio = np.where(fits, gain / np.maximum(extra, 1e-300), -np.inf)
    ratio = np.where(fits & (extra <= 0), np.inf, ratio)  # free gains first
    i, j = np.unravel_index(np.argmax(ratio), ratio.shape)
    spent += extra[i, j]
    choice[rows[i]] = j
  return choice
