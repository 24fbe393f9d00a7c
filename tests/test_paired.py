"""Paired bootstrap intervals (irt_jax/evaluation/paired.py): hand-computed
cases, agreement with sklearn and scipy, and intervals that must include 0."""

import numpy as np
import pytest
from scipy import stats
from sklearn.metrics import log_loss, roc_auc_score

from irt_jax.evaluation import evaluators, paired


def _hand_case():
  """4 queries, 2 models. A routes to model 0 everywhere, B to model 1.
  Model 1 is right on every query, model 0 on none: B wins each query by 1."""
  labels = np.array([[0, 1]] * 4)
  a = np.array([[2.0, -2.0]] * 4)
  b = np.array([[-2.0, 2.0]] * 4)
  bench = np.array([0, 0, 1, 1])
  return paired.score(a, labels, bench), paired.score(b, labels, bench)


def test_hand_case_routing_difference_is_exact_and_degenerate():
  a, b = _hand_case()
  out = paired.compare([a], [b], n_resamples=1000)
  for key in ("routing_micro", "routing_macro"):
    # every resample has A at 0 and B at 1: the interval is the point itself
    assert out[key] == {"diff": 1.0, "low": 1.0, "high": 1.0, "verdict": "win"}
  # A is confidently wrong (AUC 0), B confidently right (AUC 1)
  assert out["auc"]["diff"] == pytest.approx(1.0)
  assert out["auc"]["low"] == pytest.approx(1.0)
  expected_ll = np.log1p(np.exp(-2.0))  # B's loss per cell
  assert out["log_loss"]["diff"] == pytest.approx(expected_ll - (2.0 + expected_ll))
  assert out["log_loss"]["verdict"] == "win"  # lower is better
  swapped = paired.compare([b], [a], n_resamples=200)
  assert swapped["routing_micro"]["verdict"] == "loss"
  assert swapped["log_loss"]["verdict"] == "loss"


def _random_case(seed=0, n=300, m=5, sparse=False):
  rng = np.random.default_rng(seed)
  ability = rng.normal(size=m)
  difficulty = rng.normal(size=n)
  truth = ability[None, :] - difficulty[:, None]
  labels = (rng.random((n, m)) < 1 / (1 + np.exp(-truth))).astype(np.int8)
  if sparse:
    labels[rng.random((n, m)) < 0.3] = -1
    labels[:, 0] = np.where(labels[:, 0] < 0, 1, labels[:, 0])  # every query keeps a label
  bench = rng.integers(0, 3, n)
  return truth, labels, bench, rng


def test_point_estimates_match_sklearn_and_the_evaluators():
  truth, labels, bench, rng = _random_case(sparse=True)
  logits = np.round(truth + rng.normal(scale=1.0, size=truth.shape), 1)  # ties count half
  s = paired.score(logits, labels, bench)
  got = {k: float(v[0]) for k, v in paired.statistics(s, np.ones((1, len(labels)))).items()}
  known = labels >= 0
  p = 1 / (1 + np.exp(-logits[known]))
  assert got["auc"] == pytest.approx(roc_auc_score(labels[known], logits[known]), abs=1e-12)
  assert got["log_loss"] == pytest.approx(log_loss(labels[known], p), abs=1e-9)
  routing = evaluators.routing_summary(logits, labels, bench, ("x", "y", "z"),
                                       np.arange(labels.shape[1]))
  assert got["routing_micro"] == pytest.approx(routing["micro"])
  assert got["routing_macro"] == pytest.approx(routing["macro"])


def test_weighted_statistics_equal_statistics_of_the_repeated_queries():
  """A resample given as counts must score exactly like the resampled rows."""
  truth, labels, bench, rng = _random_case(seed=1, n=60, sparse=True)
  logits = np.round(truth + rng.normal(size=truth.shape), 1)  # ties in the AUC
  picks = rng.integers(0, len(labels), len(labels))
  weights = np.bincount(picks, minlength=len(labels))[None, :].astype(float)
  by_weight = paired.statistics(paired.score(logits, labels, bench), weights)
  repeated = paired.score(logits[picks], labels[picks], bench[picks])
  by_rows = paired.statistics(repeated, np.ones((1, len(picks))))
  for key in paired.STATISTICS:
    assert by_weight[key][0] == pytest.approx(by_rows[key][0], abs=1e-12), key


def test_routing_interval_agrees_with_scipy_paired_bootstrap():
  truth, labels, bench, rng = _random_case(seed=2, n=400)
  a = paired.score(truth + rng.normal(scale=2.0, size=truth.shape), labels, bench)
  b = paired.score(truth + rng.normal(scale=0.5, size=truth.shape), labels, bench)
  ours = paired.compare([a], [b], n_resamples=4000, seed=3)["routing_micro"]
  ref = stats.bootstrap((b.success, a.success), lambda x, y, axis: x.mean(axis) - y.mean(axis),
                        paired=True, n_resamples=4000, method="percentile",
                        random_state=np.random.default_rng(4)).confidence_interval
  assert ours["low"] == pytest.approx(ref.low, abs=0.006)
  assert ours["high"] == pytest.approx(ref.high, abs=0.006)


def test_two_runs_of_the_same_quality_tie():
  """Two equally noisy views of the truth: every interval must include 0."""
  truth, labels, bench, rng = _random_case(seed=5, n=250)
  a = paired.score(truth + rng.normal(size=truth.shape), labels, bench)
  b = paired.score(truth + rng.normal(size=truth.shape), labels, bench)
  out = paired.compare([a], [b], n_resamples=1000)
  for key in paired.STATISTICS:
    assert out[key]["low"] < 0 < out[key]["high"], (key, out[key])
    assert out[key]["verdict"] == "tie"


def test_identical_runs_give_a_zero_interval_and_seeds_average():
  truth, labels, bench, rng = _random_case(seed=6, n=100)
  a = paired.score(truth + rng.normal(size=truth.shape), labels, bench)
  b = paired.score(truth + rng.normal(size=truth.shape), labels, bench)
  same = paired.compare([a], [a], n_resamples=300)
  assert all(same[k]["low"] == same[k]["high"] == 0.0 for k in paired.STATISTICS)
  both = paired.compare([a], [a, b], n_resamples=300)
  only_b = paired.compare([a], [b], n_resamples=300)
  for key in paired.STATISTICS:  # a side's statistic is the mean over its runs
    assert both[key]["diff"] == pytest.approx(only_b[key]["diff"] / 2)


def test_runs_of_other_queries_are_refused():
  truth, labels, bench, _ = _random_case(n=50)
  a = paired.score(truth, labels, bench)
  b = paired.score(truth[:40], labels[:40], bench[:40])
  with pytest.raises(ValueError, match="same queries"):
    paired.compare([a], [b])
  with pytest.raises(ValueError, match="no query has a known label"):
    paired.score(truth, np.full_like(labels, -1), bench)


def test_queries_without_labels_are_dropped_and_files_round_trip(tmp_path):
  truth, labels, bench, _ = _random_case(n=40)
  labels[:5] = -1
  s = paired.score(truth, labels, bench)
  assert len(s.success) == 35 and s.cell_query.max() == 34
  path = str(tmp_path / "d" / "kind-s0.npz")
  paired.save(path, truth, labels, bench)
  (tmp_path / "d" / "kind-sbad.npz").write_bytes(b"")  # matches the glob, not a seed
  assert paired.files_for(str(tmp_path), "d", "kind") == [path]
  back = paired.load(path)
  assert np.allclose(back.cell_logit, s.cell_logit, atol=1e-5)
  assert np.array_equal(back.success, s.success)
  with pytest.raises(ValueError, match="kind-sbad.npz"):
    paired.load(str(tmp_path / "d" / "kind-sbad.npz"))


def test_format_marks_only_significant_differences():
  text = paired.format_difference({"diff": 0.0123, "low": 0.001, "high": 0.02,
                                   "verdict": "win"}, scale=100)
  assert text == "+1.23 [+0.10, +2.00] (B better)"
  assert "better" not in paired.format_difference({"diff": 0.01, "low": -0.01, "high": 0.03,
                                                   "verdict": "tie"})
