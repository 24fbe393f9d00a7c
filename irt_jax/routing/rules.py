"""Routing: send each query to the LLM most likely to answer it.

Choices are always made among the models whose answer is known (in sparse
data not every model ran every query); unknown cells are never chosen.
"""

from __future__ import annotations

import heapq

import numpy as np

from irt_jax.data.io import Split
from irt_jax.routing import costs
from irt_jax import numerics
from irt_jax.numerics import sigmoid


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


# ----------------------------------------------------------------------------
# Cost-aware choices: the one home of the rules that the Router, the command
# line, the service and the cost-frontier evaluator all use. They take logits
# (quality and cost are traded on the probability scale, computed here in
# float64; ties are broken by logit, so saturated probabilities never tie) and
# a cost [M] (per model) or [n, M] (per query and model), in any one unit.
#
# Two cost rules (`rule`):
#   * linear (the default): argmax P(correct) - cost_weight * cost.
#   * balance (Avengers-Pro, Zhang et al., arXiv 2508.12631): per query, over the
#     allowed models, argmax alpha * min-max normalised P + (1 - alpha) *
#     (1 - cost / largest cost) (`numerics.balance_score`). The normalisation
#     makes it scale-free: alpha means the same whatever the unit of cost.
#     alpha = 1 is plain routing (argmax of P, ties by logit); 0 the cheapest.

COST_RULES = ("linear", "balance")


def check_rule(rule: str, alpha=None, cost_weight: float = 0.0, budget=None) -> float | None:
  """The balance rule's alpha as a float in [0, 1] (None for the linear rule); a
  ValueError in one line for an unknown rule, a bad or missing alpha, alpha given
  to the linear rule, or cost_weight / budget given to the balance rule."""
  if rule not in COST_RULES:
    raise ValueError(f"unknown cost rule {rule!r}; choose one of {', '.join(COST_RULES)}")
  if rule == "linear":
    if alpha is not None:
      raise ValueError("alpha is the weight of the cost rule 'balance'; pass rule='balance' "
                       "with it, or cost_weight for the rule 'linear'")
    return None
  if alpha is None:
    raise ValueError("the cost rule 'balance' needs alpha in [0, 1] (1: the likeliest model, "
                     "0: the cheapest)")
  alpha = numerics.unit_interval(alpha, "alpha")
  if cost_weight or budget is not None:
    raise ValueError("the cost rule 'balance' takes alpha, not cost_weight or budget")
  return alpha



def cost_table(cost: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
  """`cost` broadcast to [n, M], checked by `costs.check_costs` (a DataError, a
  ValueError, saying which shapes fit); NaN marks cells without a cost."""
  return np.broadcast_to(costs.check_costs(cost, shape[1], shape[0], missing_ok=True), shape)


def best_two(score: np.ndarray, tie: np.ndarray, allowed: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """Per row, the index of the highest and second-highest allowed `score`
  (ties broken by `tie`, then by lower index); -1 where there is none."""
  n, m = score.shape
  allowed = np.broadcast_to(allowed, (n, m))
  s = np.where(allowed, score, -np.inf)
  t = np.where(allowed, tie, -np.inf)
  idx = np.broadcast_to(-np.arange(m), (n, m))
  order = np.lexsort((idx, t, s), axis=-1)  # ascending: the best is last
  counts = allowed.sum(1)
  first = np.where(counts >= 1, order[:, -1], -1)
  second = np.where(counts >= 2, order[:, -2] if m >= 2 else -1, -1)
  return first, second


def ranked(score: np.ndarray, tie: np.ndarray, allowed: np.ndarray, k: int) -> list[list[int]]:
  """Per row, up to `k` allowed indices best first by `score` (ties by `tie`,
  then lower index): one sort giving the order in which `best_two` would pick
  them one at a time, each pick leaving the allowed models not yet picked."""
  n, m = score.shape
  idx = np.broadcast_to(-np.arange(m), (n, m))
  order = np.lexsort((idx, tie, score), axis=-1)[:, ::-1]   # best first
  keep = np.take_along_axis(np.broadcast_to(allowed, (n, m)), order, axis=-1)
  return [row[mask][:k].tolist() for row, mask in zip(order, keep)]


def choose_with_cost(logits: np.ndarray, cost: np.ndarray | None, cost_weight: float,
                     known: np.ndarray, runner_up: bool = False, *, rule: str = "linear",
                     alpha: float | None = None):
  """Per query, the known model maximising the rule's score (-1 if none), ties
  broken by logit, then by lower index. Rule linear: P(correct) - cost_weight *
  cost; cost_weight = 0 is plain routing (argmax of the logits; cost may be
  None), inf the cheapest known model (the likeliest among equally cheap ones).
  Rule balance: Avengers-Pro's score with weight `alpha`, normalised over the
  query's known models. With `runner_up`, returns (chosen, runner-up)."""
  logits = np.asarray(logits, np.float64)
  known = np.broadcast_to(known, logits.shape)
  score = rule_score(logits, cost, cost_weight, rule=rule, alpha=alpha, allowed=known)
  if np.isinf(cost_weight):
    score = np.where(known, score, -np.inf)
  first, second = best_two(score, logits, known)
  return (first, second) if runner_up else first


def rule_score(logits: np.ndarray, cost: np.ndarray | None, cost_weight: float, *,
               rule: str = "linear", alpha: float | None = None,
               allowed: np.ndarray | None = None) -> np.ndarray:
  """What `choose_with_cost` maximises ([n, M], float64). Rule linear: the logit
  when cost_weight = 0, -cost when it is inf (cheapest first; equal costs: by
  logit), else P(correct) - cost_weight * cost. Rule balance:
  `numerics.balance_score` of P(correct) and cost with min and max over the
  `allowed` models of each query (all when None)."""
  logits = np.asarray(logits, np.float64)
  if rule == "balance":
    alpha = check_rule(rule, alpha, cost_weight)
    if cost is None:
      raise ValueError("the cost rule 'balance' needs costs")
    allowed = None if allowed is None else np.broadcast_to(allowed, logits.shape)
    return numerics.balance_score(sigmoid(logits), cost_table(cost, logits.shape), alpha, allowed)
  check_rule(rule, alpha)
  if cost_weight == 0:
    return logits
  if cost is None:
    raise ValueError("cost_weight > 0 needs costs")
  cost = cost_table(cost, logits.shape)
  if np.isinf(cost_weight):
    return -cost
  return sigmoid(logits) - float(cost_weight) * cost


def upper_hull(cost: np.ndarray, logits: np.ndarray, p: np.ndarray) -> list[int]:
  """One query's models worth upgrading through (`cost`, `logits`, `p` over its
  known models, [k] each): the upper convex hull of its (cost, P) points from
  the cheapest (the likeliest among equally cheap ones) up, as indices into the
  arrays. Successive gain/cost ratios along it fall."""
  hull: list[int] = []
  for j in np.lexsort((-logits, cost)):  # cheapest first; equal costs: likeliest first
    if hull and cost[j] == cost[hull[-1]]:
      continue                        # same cost, less likely
    if hull and logits[j] <= logits[hull[-1]]:
      continue                        # dearer and no more likely: dominated
    while len(hull) >= 2:             # keep the upper hull concave
      a, b = hull[-2], hull[-1]
      if (p[b] - p[a]) * (cost[j] - cost[b]) <= (p[j] - p[b]) * (cost[b] - cost[a]):
        hull.pop()
      else:
        break
    hull.append(int(j))
  return hull


def _upgrade(hulls: list[list[int]], chosen: np.ndarray, cost: np.ndarray, p: np.ndarray,
             spent: float, limit: float) -> np.ndarray:
  """Takes every query's hull steps in one order of falling gain per cost while
  the total cost stays within `limit`; a step that does not fit leaves its query
  where it is (its later steps build on it), others still go on."""
  def ratio(q, a, b):
    return float((p[q, b] - p[q, a]) / (cost[q, b] - cost[q, a]))

  heap = [(-ratio(q, h[0], h[1]), q, 1) for q, h in enumerate(hulls) if len(h) > 1]
  heapq.heapify(heap)
  while heap:
    neg_ratio, q, step = heapq.heappop(heap)
    if neg_ratio >= 0:
      break                           # no step left that raises P
    hull = hulls[q]
    extra = cost[q, hull[step]] - cost[q, hull[step - 1]]
    if spent + extra > limit:
      continue
    spent += extra
    chosen[q] = hull[step]
    if step + 1 < len(hull):
      heapq.heappush(heap, (-ratio(q, hull[step], hull[step + 1]), q, step + 1))
  return chosen


def choose_under_budget(logits: np.ndarray, cost: np.ndarray, budget: float,
                        known: np.ndarray) -> np.ndarray:
  """Per query a known model (-1 if none) maximising the summed P(correct) with
  mean cost over the queries <= `budget`.

  Greedy upgrade by marginal gain per cost: every query starts at its cheapest
  known model (the likeliest among equally cheap ones); the only upgrades worth
  considering lie on the upper convex hull of its (cost, P) points (`upper_hull`),
  whose successive gain/cost ratios fall. All queries' hull steps are taken in one
  order of falling ratio while the total cost fits. Stopping at the first step
  that does not fit is exactly the Lagrangian sweep of cost_weight (each query
  at argmax P - lambda * cost for the ratio lambda reached); the greedy then
  goes on with the steps of other queries that still fit, so leftover budget is
  used. The result is within one step's gain of the optimum (the problem is a
  multiple-choice knapsack). A budget below the cheapest routing's mean cost is
  a ValueError.
  """
  logits = np.asarray(logits, np.float64)
  n, m = logits.shape
  cost = cost_table(cost, (n, m))
  known = np.broadcast_to(known, (n, m))
  p = sigmoid(logits)
  chosen = np.full(n, -1, np.int64)
  hulls: list[list[int]] = []
  for q in range(n):
    idx = np.flatnonzero(known[q])
    hulls.append([int(idx[j]) for j in upper_hull(cost[q, idx], logits[q, idx], p[q, idx])])
    if hulls[-1]:
      chosen[q] = hulls[-1][0]
  rows = np.flatnonzero(chosen >= 0)
  total = float(cost[rows, chosen[rows]].sum())
  limit = float(budget) * n
  slack = 1e-12 * (1 + abs(limit))
  if total > limit + slack:
    raise ValueError(f"budget {budget:g} is below the mean cost of the cheapest routing, "
                     f"{total / max(n, 1):g}, for these queries")
  return _upgrade(hulls, chosen, cost, p, total, limit + slack)
