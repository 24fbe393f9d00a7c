"""Evaluation metrics against cases computed by hand (in the comments), built so
that plausible wrong implementations give other numbers: unknown cells with
extreme predictions (counting them moves every metric), tied scores across the
classes (AUC must count them half), benchmarks of unequal size (micro != macro)
and a query no model has an answer for (must be left out, not counted wrong)."""

import math

import numpy as np
import pytest

from irt_jax.routing import rules
from irt_jax.data.io import Split
from irt_jax.evaluation.evaluators import Predictions, correctness, routing_summary
from irt_jax.metrics import auc


def _logit(p):
  with np.errstate(divide="ignore"):
    p = np.asarray(p, np.float64)
    return np.log(p) - np.log1p(-p)


def test_correctness_metrics_on_known_cells_only():
  labels = np.array([[1, 0, -1],
                     [0, -1, 1],
                     [1, 1, 0]], np.int8)
  proba = np.array([[0.8, 0.4, 0.99],    # 0.99 and 0.01 sit on unknown cells
                    [0.4, 0.01, 0.8],
                    [0.6, 0.4, 0.4]])
  got = correctness(Predictions(_logit(proba), labels, np.zeros(3, int), ("a",)))
  # Known cells (p, y): (.8,1) (.4,0) (.4,0) (.8,1) (.6,1) (.4,1) (.4,0).
  # p > .5 is right on all but (.4,1): 6/7.
  assert got["accuracy"] == pytest.approx(6 / 7)
  # Positives .8 .8 .6 .4 vs negatives .4 .4 .4: 12 pairs, 9 won, 3 tied (.4 = .4).
  assert got["auc"] == pytest.approx((9 + 0.5 * 3) / 12)
  assert got["log_loss"] == pytest.approx(
      -(2 * math.log(0.8) + 4 * math.log(0.6) + math.log(0.4)) / 7)
  # Squared errors .04 .16 .16 .04 .16 .36 .16.
  assert got["brier"] == pytest.approx(1.08 / 7)


def test_log_loss_of_certain_wrong_predictions_is_clipped_not_infinite():
  got = correctness(Predictions(_logit([[1.0, 0.0]]), np.array([[0, 1]], np.int8),
                                np.zeros(1, int), ("a",)))
  assert got["log_loss"] == pytest.approx(-math.log(1e-7), rel=1e-6)
  assert got["brier"] == pytest.approx(1.0) and got["accuracy"] == 0.0


@pytest.mark.parametrize("scores, labels, want", [
    ([0.5, 0.5, 0.5, 0.5], [1, 0, 1, 0], 0.5),            # all tied: half of every pair
    ([0.1, 0.3, 0.3, 0.9], [0, 0, 1, 1], (3 + 0.5) / 4),  # one tied pair of 4
    ([0.9, 0.8, 0.2], [0, 0, 1], 0.0),                    # perfectly wrong
    ([0.2, 0.7], [1, 1], float("nan")),                   # one class: undefined
])
def test_auc_ties_by_hand(scores, labels, want):
  got = auc(np.array(scores), np.array(labels))
  assert got == pytest.approx(want, nan_ok=True)


def _sparse_routing_case():
  labels = np.array([[1, 0, -1],     # q0 a
                     [0, 1, 1],      # q1 a
                     [1, -1, 0],     # q2 a
                     [0, 1, 0],      # q3 b
                     [-1, -1, -1],   # q4 b: no answer known, left out entirely
                     [0, 0, -1]],    # q5 a
                    np.int8)
  proba = np.array([[0.2, 0.9, 0.99],   # m2 unknown: picks m1 -> 0
                    [0.1, 0.8, 0.7],    # m1 -> 1
                    [0.7, 0.9, 0.3],    # m1 unknown: m0 -> 1
                    [0.3, 0.2, 0.9],    # m2 -> 0
                    [0.9, 0.9, 0.9],
                    [0.5, 0.6, 0.1]])   # m1 -> 0
  return Predictions(_logit(proba), labels, np.array([0, 0, 0, 1, 1, 0]), ("a", "b"))


def test_routing_micro_and_macro_with_unequal_benchmarks_and_unknown_cells():
  case = _sparse_routing_case()
  r = routing_summary(case.logits, case.labels, case.benchmark, case.benchmark_names,
                      best_single_order=np.array([2, 0, 1]))
  # irt_jax picks: a = q0 0, q1 1, q2 1, q5 0 -> 2/4; b = q3 0 -> 0/1 (q4 left out).
  assert r["per_benchmark"] == {"a": 0.5, "b": 0.0}
  assert r["micro"] == pytest.approx(2 / 5)
  assert r["macro"] == pytest.approx(0.25)
  b = r["baselines"]
  # Oracle: any known correct: a = 1, 1, 1, 0; b = 1.
  assert (b["oracle"]["micro"], b["oracle"]["macro"]) == pytest.approx((4 / 5, (0.75 + 1) / 2))
  # Best single m2, else m0: q0 m0 1, q1 m2 1, q2 m2 0, q5 m0 0 | q3 m2 0.
  assert (b["best_single"]["micro"], b["best_single"]["macro"]) == pytest.approx((2 / 5, 0.25))
  # Random among known: a = 1/2, 2/3, 1/2, 0 (mean 5/12); b = 1/3.
  assert b["random"]["micro"] == pytest.approx((0.5 + 2 / 3 + 0.5 + 0 + 1 / 3) / 5)
  assert b["random"]["macro"] == pytest.approx((5 / 12 + 1 / 3) / 2)


def test_best_single_order_on_a_sparse_split_with_ties():
  train = Split(queries=np.arange(4, dtype=np.int32), labels=np.array([
      # m0  m1  m2  m3  m4
      [1, 1, -1, 1, 1],
      [0, 1, -1, 1, -1],
      [-1, 0, -1, 1, -1],
      [-1, 0, -1, 0, -1]], np.int8).astype(np.int8))
  # Accuracy over known cells: m0 1/2, m1 2/4 (tie: lower index first), m2 none
  # (last), m3 3/4, m4 1/1. Counting unknown cells as wrong would rank m1 before
  # m0 and m4 last of the answered.
  np.testing.assert_array_equal(rules.model_accuracy(train)[[0, 1, 3, 4]], [0.5, 0.5, 0.75, 1.0])
  assert np.isnan(rules.model_accuracy(train)[2])
  order = rules.best_single_order(train)
  assert order.tolist() == [4, 3, 0, 1, 2]
  # Routed with it, the first model in that order whose answer is known is used.
  known = np.array([[False, True, True, False, False],
                    [True, True, True, True, True],
                    [False, False, False, False, False]])
  assert rules.choose_by_order(order, known).tolist() == [1, 4, -1]
