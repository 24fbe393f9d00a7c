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
