"""Max Expert (routing/hindsight.py) and LLMRouterBench's figures
(evaluation/field_metrics.py) against cases computed by hand."""

import numpy as np
import pytest

from irt_jax.data.io import Split
from irt_jax.evaluation import evaluators, field_metrics, paired, report
from irt_jax.routing import hindsight

# Train: 3 models, benchmark 0 on rows 0-3, benchmark 1 on rows 4-7.
# Benchmark 0: model 2 right 4/4, model 0 2/4, model 1 1/4 -> order 2, 0, 1.
# Benchmark 1: model 0 right 3/4, model 1 3/4 (tie: lower index first), model 2 0/4.
# Pooled: model 0 5/8, model 1 4/8, model 2 4/8 -> the best single model is 0.
TRAIN = Split(np.arange(8, dtype=np.int32), np.array([
    [1, 0, 1], [1, 0, 1], [0, 1, 1], [0, 0, 1],
    [1, 1, 0], [1, 1, 0], [1, 1, 0], [0, 0, 0]], np.int8))
BENCH = np.array([0, 0, 0, 0, 1, 1, 1, 1, 0, 0, 1, 1, 2])  # row 12: a benchmark not in train


def test_max_expert_orders_and_scores_by_hand():
  orders = hindsight.benchmark_orders(TRAIN, BENCH[:8], 3)
  assert orders.tolist() == [[2, 0, 1], [0, 1, 2], [0, 1, 2]]  # benchmark 2: the global order
  s = hindsight.for_split(TRAIN, BENCH, np.array([8, 10, 12]), 3)
  assert s.tolist() == [[-1, -2, 0], [0, -1, -2], [0, -1, -2]]


def test_max_expert_in_the_routing_summary_and_the_field_figures():
  # Test rows 8-11: benchmark 0 twice, benchmark 1 twice.
  labels = np.array([[0, 1, 1], [1, 0, 0], [1, 0, 0], [0, 1, -1]], np.int8)
  bench = BENCH[8:12]
  expert = hindsight.for_split(TRAIN, BENCH, np.arange(8, 12), 3)
  logits = np.array([[0.0, 1.0, 0.0], [0.0, 1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
  r = evaluators.routing_summary(logits, labels, bench, ("a", "b"), np.array([0, 1, 2]),
                                 max_expert=expert)
  # The router picks 1, 1, 0, 1: right, wrong, right, right -> 0.75; macro (0.5 + 1) / 2.
  assert (r["micro"], r["macro"]) == (0.75, 0.75)
  # Max Expert: model 2 on benchmark 0 (right, wrong), model 0 on benchmark 1 (right, wrong).
  assert r["baselines"]["max_expert"] == {"micro": 0.5, "macro": 0.5}
  # Random: 2/3, 1/3, 1/3, 1/2 -> micro 11/24; oracle 1 everywhere.
  assert r["baselines"]["random"]["micro"] == pytest.approx(11 / 24)
  f = r["field"]["micro"]
  assert f["imp_rand"] == pytest.approx((0.75 - 11 / 24) / (11 / 24))
  assert f["imp_max"] == pytest.approx(0.5)   # (0.75 - 0.5) / 0.5
  assert f["oracle_gap"] == pytest.approx(0.25)  # (1 - 0.75) / 1
  # Best single = model 0 (train 5/8): wrong, right, right, wrong -> 0.5 (each benchmark 0.5).
  assert r["baselines"]["best_single"] == {"micro": 0.5, "macro": 0.5}
  assert f["gain_best"] == pytest.approx(0.5)  # (0.75 - 0.5) / 0.5
  assert "field" not in evaluators.routing_summary(logits, labels, bench, ("a", "b"),
                                                   np.array([0, 1, 2]))


def test_routing_figures_by_hand():
  got = field_metrics.routing(acc=0.6, random=0.4, max_expert=0.5, oracle=0.8, best_single=0.48)
  assert got == pytest.approx({"imp_rand": 0.5, "gain_best": 0.25, "imp_max": 0.2,
                               "oracle_gap": 0.25})
  # Below Max Expert and the best single model: negative, not clipped.
  below = field_metrics.routing(0.45, 0.4, 0.5, 0.9, best_single=0.5)
  assert below["imp_max"] == pytest.approx(-0.1) and below["gain_best"] == pytest.approx(-0.1)


def _frontier(points, best, singles):
  return {"points": [{"cost": c, "accuracy": a} for c, a in points],
          "baselines": {"best_single": {"cost": best[0], "accuracy": best[1]}},
          "single_models": [{"cost": c, "accuracy": a} for c, a in singles]}


def test_cost_figures_by_hand():
  # Swept points; the best single model costs 4 at 0.70; another model costs 0.5 at 0.30.
  fr = _frontier([(1, 0.5), (2, 0.7), (3, 0.72), (2.5, 0.6)], (4, 0.7), [(4, 0.7), (0.5, 0.3)])
  got = field_metrics.cost_summary(fr)
  assert got["perf_gain"] == pytest.approx(0.72 / 0.7 - 1)
  assert got["cost_save"] == pytest.approx(0.5)  # cheapest point >= 0.70 costs 2: 1 - 2 / 4
  # Pareto set: (0.5, .3), (1, .5), (2, .7), (3, .72); (4, .7) and (2.5, .6) are dominated.
  # Costs / 4: (2.5, .6) -> (0.625, .6), nearest frontier point (0.5, .7): sqrt(.125^2 + .1^2).
  assert got["pareto_dist"] == pytest.approx(np.hypot(0.125, 0.1) / 4)
  never = field_metrics.cost_summary(_frontier([(1, 0.5)], (4, 0.7), [(4, 0.7)]))
  assert never["cost_save"] is None and never["perf_gain"] == pytest.approx(0.5 / 0.7 - 1)


def test_pareto_mask_keeps_ties_and_drops_the_dominated():
  mask = field_metrics.pareto_mask([1, 1, 2, 3], [0.5, 0.5, 0.4, 0.9])
  assert mask.tolist() == [True, True, False, True]


def test_paired_table_lists_max_expert_on_routing_with_its_label(tmp_path):
  labels = np.array([[1, 0], [0, 1], [1, 0], [0, 1]], np.int8)
  bench = np.array([0, 0, 1, 1])
  d = tmp_path / "p" / "ds"
  # The run routes every query right; Max Expert half of them.
  paired.save(str(d / "run-s0.npz"), np.where(labels == 1, 1.0, -1.0), labels, bench)
  paired.save(str(d / "max_expert-s0.npz"), np.array([[0, -1]] * 4, float), labels, bench)
  text = report.paired_table(["ds"], ["run"], str(tmp_path / "p"), n_resamples=50)
  rows = {l.split(" | ")[1]: l for l in text.splitlines() if l.startswith("| ds")}
  expert = rows["max_expert (needs the benchmark label)"]
  cells = expert.split(" | ")
  assert cells[3:5] == ["", ""]                   # no AUC / log loss for a hindsight router
  assert cells[5].startswith("50.00; -50.00 [")  # routing micro: 50 against the run's 100
  assert rows["best_single"] == "| ds | best_single | 0 | no predictions | | | |"


def test_field_table_from_prediction_files_by_hand(tmp_path):
  labels = np.array([[1, 0, 1], [0, 1, 1], [1, 0, 0], [1, 1, 0]], np.int8)
  bench = np.array([0, 0, 1, 1])
  d = tmp_path / "p" / "ds"
  pick = lambda models: np.eye(3)[models]  # one-hot logits: the argmax is the pick
  # Seed 0 picks 0, 1, 0, 1: all right (1.0). Seed 1 picks 1, 0, 0, 2: only query 2 (0.25;
  # macro 0 and 0.5 -> 0.25). Mean over seeds: 0.625 micro and macro.
  paired.save(str(d / "run-s0.npz"), pick([0, 1, 0, 1]), labels, bench)
  paired.save(str(d / "run-s1.npz"), pick([1, 0, 0, 2]), labels, bench)
  # Max Expert: model 2 on benchmark 0, model 0 on benchmark 1: all right (1.0).
  paired.save(str(d / "max_expert-s0.npz"), pick([2, 2, 0, 0]), labels, bench)
  # Best single: model 0 everywhere, 3 of 4 (0.75; macro 0.5 and 1 -> 0.75).
  paired.save(str(d / "best_single-s0.npz"), pick([0, 0, 0, 0]), labels, bench)
  text = field_metrics.field_table(["ds"], ["run", "absent"], str(tmp_path / "p"))
  rows = [l for l in text.splitlines() if l.startswith("| ds")]
  # Random: 2/3, 2/3, 1/3, 2/3 -> 7/12 (macro (2/3 + 1/2) / 2, also 7/12); oracle 1.
  # ImpRand 0.625 / (7/12) - 1 = +7.14%; GainBest 0.625 / 0.75 - 1 = -16.67%;
  # ImpMax 0.625 - 1 = -37.50%; OracleGap 1 - 0.625 = 37.50%.
  assert rows == ["| ds | run | +7.14; +7.14 | -16.67; -16.67 | -37.50; -37.50 | "
                  "+37.50; +37.50 |"]
  missing = field_metrics.field_table(["other"], ["run"], str(tmp_path / "p"))
  assert "no max_expert or best_single predictions" in missing