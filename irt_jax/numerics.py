"""Numerics shared by every layer: P(correct) from logits in float64, the one
parser of the finite non-negative numbers (cost weights, budgets) users give, and
Avengers-Pro's performance-cost score (the `balance` cost rule of routing and the
`cluster` kind's per-cluster score).

One home for the sigmoid, so that evaluation, routing, cold start and the service
all turn logits into probabilities the same way (float32 saturates near logit 17,
where cost-aware choices would then see ties).
"""

from __future__ import annotations

import math
import numbers

import numpy as np
from scipy import special


def sigmoid(logits: np.ndarray) -> np.ndarray:
  """P(correct) from logits, in float64 (float32 saturates to 1.0 near logit 17)."""
  return special.expit(np.asarray(logits, np.float64))


def non_negative(value, what: str, *, from_text: bool = False) -> float:
  """`value` as a finite float >= 0, else a ValueError naming `what` and the value.

  The one parser for the cost weights and budgets that the Router, the command
  line and the service accept. JSON's true/false are not numbers here (Python
  counts them as ints); text is parsed only with `from_text` (e.g. the `0.3` of
  a model name `router-irtnet-0.3`), so a JSON string "0.3" stays an error.
  """
  number = None
  if isinstance(value, str) and from_text:
    try:
      number = float(value)
    except ValueError:
      number = None
  elif isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_)):
    number = float(value)
  if number is None or not math.isfinite(number) or number < 0:
    shown = value if isinstance(value, str) else repr(value)
    raise ValueError(f"{what} must be a finite number >= 0, got {shown}")
  return number


def unit_interval(value, what: str) -> float:
  """`value` as a float in [0, 1], else a ValueError naming `what` and the value."""
  number = None
  if isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_)):
    number = float(value)
  if number is None or not 0.0 <= number <= 1.0:      # NaN fails the comparison
    shown = value if isinstance(value, str) else repr(value)
    raise ValueError(f"{what} must be a number in [0, 1], got {shown}")
  return number


def balance_score(accuracy: np.ndarray, cost: np.ndarray, alpha: float,
                  allowed: np.ndarray | None = None) -> np.ndarray:
  """Avengers-Pro's performance-cost score (Zhang et al., arXiv 2508.12631) over
  the last axis (the models; [..., M], float64):

    alpha * (acc - min acc) / (max acc - min acc) + (1 - alpha) * (1 - cost / max cost),

  min and max taken over the `allowed` models of each row only (all when None),
  so the score does not depend on the unit of cost. A row whose allowed
  accuracies (costs) are all equal, or whose largest cost is 0, scores that term 1.
  Cells outside `allowed` get the same formula with the allowed models' min and max."""
  acc = np.asarray(accuracy, np.float64)
  cost = np.broadcast_to(np.asarray(cost, np.float64), acc.shape)
  allowed = np.broadcast_to(True if allowed is None else allowed, acc.shape)
  hi = np.where(allowed, acc, -np.inf).max(-1, keepdims=True)
  lo = np.where(allowed, acc, np.inf).min(-1, keepdims=True)
  top = np.where(allowed, cost, -np.inf).max(-1, keepdims=True)
  with np.errstate(invalid="ignore", divide="ignore"):
    good = np.where(hi > lo, (acc - lo) / (hi - lo), 1.0)
    cheap = np.where(top > 0, 1.0 - cost / top, 1.0)
  return alpha * good + (1.0 - alpha) * cheap


def pca_2d(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """Coordinates on the first two principal axes, and their variance shares (the
  abilities map of the evaluation report and of the service's page)."""
  x = np.asarray(x, np.float64)
  centred = x - x.mean(axis=0)
  _, s, vt = np.linalg.svd(centred, full_matrices=False)
  coords = centred @ vt[:2].T
  if coords.shape[1] < 2:
    coords = np.pad(coords, ((0, 0), (0, 2 - coords.shape[1])))
  share = s ** 2 / max((s ** 2).sum(), 1e-12)
  return coords, np.pad(share[:2], (0, max(0, 2 - len(share[:2]))))
