"""Metrics as plain numpy functions of scores and labels (no model, no files)."""

from __future__ import annotations

import numpy as np

EPS = 1e-7


def auc(scores: np.ndarray, labels: np.ndarray) -> float:
  """Area under the ROC curve (Mann-Whitney, ties counted half); NaN if one class."""
  scores, labels = np.asarray(scores), np.asarray(labels)
  pos = labels == 1
  n_pos, n_neg = int(pos.sum()), int((~pos).sum())
  if n_pos == 0 or n_neg == 0:
    return float("nan")
  ranks = average_ranks(scores)
  return float((ranks[pos].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def average_ranks(values: np.ndarray) -> np.ndarray:
  """1-based ranks, ties sharing their average rank."""
  values = np.asarray(values)
  order = np.argsort(values, kind="mergesort")
  sorted_values = values[order]
  starts = np.r_[0, np.flatnonzero(np.diff(sorted_values)) + 1]
  ends = np.r_[starts[1:], len(values)]
  ranks = np.empty(len(values), np.float64)
  ranks[order] = np.repeat((starts + ends + 1) / 2.0, ends - starts)
  return ranks


def binary_metrics(proba: np.ndarray, labels: np.ndarray) -> dict[str, float]:
  """Accuracy (P > 0.5), AUC, log loss and Brier score of P(correct) vs 0/1 labels."""
  p = np.clip(np.asarray(proba, np.float64), EPS, 1 - EPS)
  y = np.asarray(labels, np.float64)
  return {"accuracy": float(((p > 0.5) == (y > 0.5)).mean()),
          "auc": auc(p, y),
          "log_loss": float(-(y * np.log(p) + (1 - y) * np.log(1 - p)).mean()),
          "brier": float(((p - y) ** 2).mean())}


def pearson(x, y) -> float:
  x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
  if len(x) < 2 or x.std() == 0 or y.std() == 0:
    return float("nan")
  return float(np.corrcoef(x, y)[0, 1])


def spearman(x, y) -> float:
  """Pearson correlation of average ranks (ties handled)."""
  return pearson(average_ranks(np.asarray(x)), average_ranks(np.asarray(y)))
