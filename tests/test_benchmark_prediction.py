"""Benchmark-score prediction: metrics, estimators and selection on hand cases, the
leave-one-benchmark-out split, plots, and the entry point end to end with resume."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from configs import test as test_config
from irt_jax import checkpoint as ckpt_lib
from irt_jax.data import io as data_lib
from irt_jax.data import splits as data_splits
from irt_jax.data import synthetic
from irt_jax.benchmarks import figures
from irt_jax.benchmarks import grid
from irt_jax.benchmarks import leave_benchmark_out
from irt_jax.benchmarks import scores
from irt_jax.benchmarks import tables
from irt_jax.evaluation import calibration
from irt_jax.evaluation import plots
from tests.conftest import REPO
from tests.conftest import synthetic_spec


# ----------------------------------------------------------------------------
# Metrics against hand-computed values.

def test_kendall_and_spearman_with_ties_match_hand_computation():
  x, y = [1, 2, 2, 3], [1, 3, 2, 3]
  # 6 pairs: 4 concordant, 0 discordant, one tied in x only, one tied in y only:
  # tau_b = 4 / sqrt((6 - 1) * (6 - 1)) = 0.8.
  assert scores.kendall(x, y) == pytest.approx(0.8)
  # Average ranks x (1, 2.5, 2.5, 4), y (1, 3.5, 2, 3.5): Pearson = 3.75 / 4.5.
  assert scores.spearman(x, y) == pytest.approx(3.75 / 4.5)
  assert np.isnan(scores.kendall([1, 1, 1], [1, 2, 3]))


def test_mae_and_signed_bias():
  m = scores.score_metrics([0.5, 0.7, 0.2], [0.4, 0.9, 0.2])
  assert m["mae"] == pytest.approx(0.1)
  assert m["bias"] == pytest.approx(-0.1 / 3)   # (0.1 - 0.2 + 0) / 3: sign kept


def test_ece_on_a_hand_made_set_uses_15_equal_width_bins():
  p = [0.05, 0.1, 0.5, 0.55, 0.95, 1.0]
  y = [0, 1, 1, 0, 1, 1]
  # bins of width 1/15: 0.05 -> 0, 0.1 -> 1, 0.5 -> 7, 0.55 -> 8, 0.95 and 1.0 -> 14.
  # |acc - conf| * n per bin: .05, .9, .5, .55, 2 * .025 -> 2.05 over 6 cells.
  rel = calibration.reliability(p, y)
  assert rel["ece"] == pytest.approx(2.05 / 6)
  assert rel["count"][14] == 2 and rel["count"][7] == 1 and sum(rel["count"]) == 6
  assert rel["confidence"][14] == pytest.approx(0.975) and rel["accuracy"][1] == 1.0
  assert rel["confidence"][3] is None
  assert calibration.ece(p, y, n_bins=10) == pytest.approx(1.05 / 6)  # 0.5, 0.55 share a bin


def test_temperature_fit_recovers_the_scale_of_overconfident_logits():
  rng = np.random.default_rng(0)
  z = rng.normal(0, 3, 20000)
  y = (rng.random(20000) < 1 / (1 + np.exp(-z / 2.0))).astype(np.int8)
  t = calibration.fit_temperature(z, y)
  assert t == pytest.approx(2.0, rel=0.08)
  assert calibration.nll(z, y, t) < calibration.nll(z, y, 1.0)


# ----------------------------------------------------------------------------
# Estimators and adaptive selection.

def test_offset_refit_and_combined_estimate_on_a_hand_case():
  logits = np.zeros(6)
  labels = np.array([1, 1, 1, 0, 0, 1])  # the last two are not observed
  # A flat prior: the MAP offset is the MLE, logit(3/4) = log 3.
  assert scores.fit_offset(logits[:4], labels[:4], prior_sd=1e6) == pytest.approx(np.log(3), 1e-6)
  # 3 correct of 4 observed, 2 unobserved at sigmoid(log 3) = 3/4 each: (3 + 1.5) / 6.
  est = scores.combined_estimate(logits, labels, [0, 1, 2, 3], prior_sd=1e6)
  assert est == pytest.approx(0.75)
  # With the N(0, 1) prior the offset solves 3 - 4 sigmoid(d) - d = 0 (by bisection here).
  lo, hi = 0.0, 2.0
  for _ in range(60):
    mid = (lo + hi) / 2
    lo, hi = (mid, hi) if 3 - 4 / (1 + np.exp(-mid)) - mid > 0 else (lo, mid)
  assert scores.fit_offset(logits[:4], labels[:4], prior_sd=1.0) == pytest.approx(lo, abs=1e-8)
  # A prior mean shifts the shrinkage target.
  assert scores.fit_offset([0.0], [1], prior_sd=1e-4, prior_mean=-2.0) == pytest.approx(-2.0, abs=1e-3)
  # No observation: the model's own mean prediction.
  assert scores.combined_estimate([0.0, np.log(3)], [0, 0], []) == pytest.approx((0.5 + 0.75) / 2)


def test_fit_offset_reaches_the_map_when_p_saturates():
  """Many pooled labels far from the logits (a benchmark-wide offset over 60 LLMs x
  25 labels): plain Newton from the prior mean oscillated and returned the prior
  mean itself here, biasing a held-out benchmark's estimate by +58 points."""
  cases = [(np.full(1500, -8.0), np.ones(1500), 3.0), (np.full(1500, 9.0), np.zeros(1500), 3.0),
           (np.r_[np.full(700, -12.0), np.full(800, 4.0)], np.r_[np.ones(700), np.zeros(800)], 1.0)]
  for logits, labels, sd in cases:
    delta = scores.fit_offset(logits, labels, prior_sd=sd)
    p = 1 / (1 + np.exp(-(logits + delta)))
    assert abs((labels - p).sum() - delta / sd ** 2) < 1e-6, (delta, sd)
  # The first case by hand: 1500 (1 - sigmoid(delta - 8)) = delta / 9, i.e.
  # exp(8 - delta) ~ delta / 13500, so delta - 8 ~ log(13500 / delta) and delta ~ 14.81.
  assert scores.fit_offset(cases[0][0], cases[0][1], prior_sd=3.0) == pytest.approx(14.81, abs=0.01)


def test_adaptive_selection_picks_the_most_informative_query():
  logits = np.array([0.0, 2.0, -1.0, 5.0])
  a_sq = np.array([1.0, 4.0, 1.0, 9.0])
  # p(1-p)|a|^2: 0.25, 0.105*4 = 0.42, 0.197, 0.0066*9 = 0.06: query 1, neither the
  # p = 0.5 query nor the most discriminating one.
  info = scores.information(logits, a_sq)
  assert info == pytest.approx([0.25, 4 * 0.88080 * 0.11920, 0.26894 * 0.73106,
                                9 * 0.99331 * 0.00669], abs=1e-4)
  order = scores.adaptive_order(logits, a_sq, np.array([1, 1, 0, 1]), k_max=4)
  assert order[0] == 1 and sorted(order) == [0, 1, 2, 3]
  # The second pick uses the offset refitted on the first answer (correct -> delta > 0).
  delta = scores.fit_offset(logits[[1]], [1])
  assert delta > 0
  rest = [0, 2, 3]
  assert order[1] == rest[int(np.argmax(scores.information(logits[rest], a_sq[rest], delta)))]


def test_benchmark_scores_layout_and_naive_means():
  rng = np.random.default_rng(1)
  n, m = 60, 5
  labels = (rng.random((n, m)) < 0.6).astype(np.int8)
  labels[:50, 4] = -1  # model 4 knows 10 queries: no k = 10 estimate for it
  logits = rng.normal(size=(n, m))
  s = scores.benchmark_scores(logits, np.ones(n), labels, ks=(5, 10), repeats=3, seed=0)
  assert s["true"][0] == pytest.approx(labels[:, 0].mean())
  assert s["true"][4] == pytest.approx(labels[50:, 4].mean())
  assert s["0"]["zero_shot"][4] == pytest.approx((1 / (1 + np.exp(-logits[50:, 4]))).mean())
  assert np.isnan(s["10"]["adaptive"][4]) and np.isfinite(s["5"]["adaptive"][4])
  # Naive = mean of labels of a subset of size k: a multiple of 1/k.
  assert np.allclose(s["5"]["naive_random"][:, :4] * 5, np.round(s["5"]["naive_random"][:, :4] * 5))
  metrics = scores.benchmark_metrics(s, ks=(5, 10))
  assert set(metrics) == {"0", "5", "10"}
  assert set(metrics["10"]) == {"random", "adaptive", "naive", "naive_adaptive"}
  assert set(metrics["10"]["random"]) == {"mae", "bias", "spearman", "kendall", "n_llms"}
  assert metrics["10"]["adaptive"]["n_llms"] == 4 and metrics["5"]["adaptive"]["n_llms"] == 5
  mean = scores.mean_over_benchmarks({"a": metrics, "b": metrics})
  assert mean["5"]["naive"]["mae"] == pytest.approx(metrics["5"]["naive"]["mae"])
  assert mean["5"]["naive"]["n_benchmarks"] == 2


def test_cell_accuracy():
  logits = np.array([[1.0, -1.0], [0.5, 2.0]])
  labels = np.array([[1, 1], [0, -1]], np.int8)
  assert scores.cell_accuracy(logits, labels) == pytest.approx(1 / 3)


# ----------------------------------------------------------------------------
# The leave-one-benchmark-out split never trains on B.

@pytest.fixture(scope="module")
def small_data(tmp_path_factory):
  spec = synthetic_spec(n_models=6, n_queries=240, embed_dim=8, n_benchmarks=3,
                        true_dim=2, missing_frac=0.1, seed=5)
  folder = synthetic.write(str(tmp_path_factory.mktemp("bp_data")), spec)
  return folder, data_lib.load_dataset(folder)


@pytest.mark.parametrize("protocol", ["ours", "paper"])
def test_leave_out_never_puts_the_held_out_benchmark_in_training(small_data, tmp_path, protocol):
  folder, data = small_data
  for b in range(3):
    train_data, target = data_splits.leave_out(data, b, protocol, seed=0)
    for name in ("train", "val"):
      part = train_data.split(name)
      assert not (data.benchmark[part.queries] == b).any()
      assert part.n_cells > 0
    assert set(train_data.splits) == {"train", "val"}
    assert (data.benchmark[target.queries] == b).all()
    every = sum(int((data.split(s).mask & (data.benchmark[data.split(s).queries] == b)[:, None])
                    .sum()) for s in data_lib.SPLITS)
    assert target.n_cells == every  # all of B's cells, from every split
    others = lambda s: int((data.split(s).mask
                            & (data.benchmark[data.split(s).queries] != b)[:, None]).sum())
    n_train_val = train_data.split("train").n_cells + train_data.split("val").n_cells
    if protocol == "ours":  # the other benchmarks' own train and val, test unused
      assert n_train_val == others("train") + others("val")
    else:                   # pooled from every split, about 10% of cells in val
      assert n_train_val == sum(others(s) for s in data_lib.SPLITS)
      assert 0.05 < train_data.split("val").n_cells / n_train_val < 0.15
    # The query table and embeddings stay whole and row-aligned (B's texts are
    # what the model predicts from): only labels are withheld.
    assert train_data.query_ids == data.query_ids and train_data.embeddings is data.embeddings
    assert train_data.benchmark_names == data.benchmark_names


def test_other_benchmarks_accuracy_baseline_reads_only_other_benchmarks_train_cells(small_data):
  _, data = small_data
  train = data.split("train")
  for b in range(3):
    rows = train.labels[data.benchmark[train.queries] != b]
    expected = [(rows[:, m][rows[:, m] >= 0] == 1).mean() for m in range(data.n_models)]
    np.testing.assert_allclose(scores.other_benchmarks_accuracy(data, b), expected)


def test_leave_out_rejects_unknown_protocol_and_index(small_data):
  _, data = small_data
  with pytest.raises(ValueError, match="protocol"):
    data_splits.leave_out(data, 0, "pooled")
  with pytest.raises(ValueError, match="out of range"):
    data_splits.leave_out(data, 3)


# ----------------------------------------------------------------------------
# Plots.

def _fake_result():
  rng = np.random.default_rng(0)
  per_llm, per = {}, {}
  for bench in ("alpha", "beta"):
    true = rng.random(5)
    per_llm[bench] = {"models": [f"m{i}" for i in range(5)], "true": true.tolist(), "n": [50] * 5,
                     "0": {"zero_shot": (true + 0.1).tolist()},
                     "10": {"random": true.tolist(), "adaptive": (true - 0.02).tolist(),
                            "naive": true.tolist()},
                     "25": {"random": true.tolist(), "adaptive": true.tolist(),
                            "naive": true.tolist()}}
    m = {"mae": 0.1, "bias": 0.05, "spearman": 0.9, "kendall": 0.8, "n_llms": 5}
    per[bench] = {"0": {"zero_shot": m}, "10": {s: m for s in scores.SELECTIONS},
                  "25": {s: dict(m, mae=0.05) for s in scores.SELECTIONS}}
  return {"dataset": "toy", "setup": {"kind": "irtnet", "protocol": "ours"},
          "per_benchmark": per, "mean": scores.mean_over_benchmarks(per), "scores": per_llm}


def _is_png(path):
  with open(path, "rb") as f:
    head = f.read(8)
  return head == b"\x89PNG\r\n\x1a\n" and os.path.getsize(path) > 5000


def test_benchmark_prediction_plots_are_written_and_non_empty(tmp_path):
  files = figures.benchmark_prediction_plots(_fake_result(), str(tmp_path))
  assert len(files) == 3
  assert all(_is_png(p) for p in files.values())


def test_other_plots_are_written_and_non_empty(tmp_path):
  rng = np.random.default_rng(0)
  paths = [
      plots.ability_scatter(*plots.pca_2d(rng.normal(size=(6, 4))),
                            [f"org/model-{i}" for i in range(6)], str(tmp_path / "a.png"),
                            accuracy=rng.random(6)),
      plots.difficulty_vs_accuracy([0.1, 1.0], [0.8, 0.3], ["x", "y"], rng.normal(size=50),
                                   rng.random(50), str(tmp_path / "d.png")),
      plots.reliability_diagram({"model": calibration.reliability(rng.random(200),
                                                                  rng.random(200) < 0.5)},
                                str(tmp_path / "r.png")),
      plots.routing_per_benchmark(
          {"run1": {"kind": "irtnet", "routing": {"per_benchmark": {"x": 0.5, "y": 0.7}}},
           "run2": {"kind": "knn", "routing": {"per_benchmark": {"x": 0.4, "y": 0.8}}}},
          str(tmp_path / "c.png"))]
  assert all(_is_png(p) for p in paths)


def test_pca_2d_recovers_the_main_axis():
  x = np.zeros((4, 3))
  x[:, 1] = [-3, -1, 1, 3]
  x[:, 2] = [0.1, -0.1, -0.1, 0.1]  # orthogonal to the main axis
  coords, share = plots.pca_2d(x)
  assert np.abs(coords[:, 0]) == pytest.approx([3, 1, 1, 3])
  assert share[0] > 0.99


# ----------------------------------------------------------------------------
# End to end on tiny synthetic data, with resume.

def _tiny_config():
  config = test_config.get_config()
  config.train.num_epochs = 1
  config.data.synthetic.update(n_queries=300, n_models=6)
  return config


def _check_saved_tables(saved: dict) -> None:
  assert saved["benchmarks"] == ["bench1"]
  assert set(saved["per_benchmark"]) == {"bench1"}
  for table in list(saved["per_benchmark"].values()) + [saved["mean"]]:
    assert set(table) == {"0", "5", "10"}
    assert {"random", "adaptive", "naive"} <= set(table["5"])
    assert {"mae", "bias", "spearman", "kendall"} <= set(table["10"]["naive"])
  assert 0 <= saved["per_benchmark"]["bench1"]["0"]["zero_shot"]["cell_accuracy"] <= 1
  assert set(saved["per_benchmark"]["bench1"]["0"]) == {"zero_shot", "train_mean"}


def _check_trained_in_memory(workdir: str, config, saved: dict) -> None:
  # The held-out run trained on the subset without bench1's labels, in memory:
  # its checkpoint records that subset's fingerprint, and no copy was written.
  data = data_lib.load_dataset(os.path.join(workdir, "synthetic_data"))
  heldout = os.path.join(workdir, "heldout", "bench1")
  _, meta, saved_config, _ = ckpt_lib.Checkpoints(heldout, read_only=True).restore_json()
  subset, _ = data_splits.leave_out(data, 1, "ours", seed=config.seed)
  assert meta["layout"]["data"] == data_lib.fingerprint(subset) != data_lib.fingerprint(data)
  assert saved_config["data"]["dir"] == os.path.abspath(os.path.join(workdir, "synthetic_data"))
  assert sorted(os.listdir(heldout)) == ["checkpoints", leave_benchmark_out.GRID_FILE, "metrics.jsonl",
                                         scores.PREDICTIONS_FILE]
  # True scores: every LLM's accuracy over all of bench1's known cells (every split).
  rows = splits_union(data)[data.benchmark == 1]
  expected = [(rows[:, m][rows[:, m] >= 0] == 1).mean() for m in range(data.n_models)]
  np.testing.assert_allclose(saved["scores"]["bench1"]["true"], expected)


def _check_outputs_and_grid(workdir: str, saved: dict) -> None:
  assert os.path.getsize(os.path.join(workdir, "plots", "error_vs_k.png")) > 5000
  assert os.path.exists(os.path.join(workdir, "benchmark_prediction.md"))
  # The grid: every protocol's own choices x every estimator x k, in the JSON, the
  # records, the markdown and a plot.
  cells = {(r["protocol"], r["choice"], r["estimator"], r["k"]) for r in saved["grid"]}
  assert cells == {(p, c, e, k) for p, c in grid.cells()
                   for e in grid.ESTIMATORS for k in (5, 10)}
  with open(os.path.join(workdir, "benchmark_grid.jsonl")) as f:
    assert len(f.readlines()) == len(cells)
  with open(os.path.join(workdir, "benchmark_prediction.md")) as f:
    assert "| shared | anchors_items | irt |" in f.read()
  assert os.path.getsize(os.path.join(workdir, "plots", "grid_mae_vs_k.png")) > 5000


def _check_cli_resumes_and_refuses(workdir: str, config, path: str, saved: dict, done: str) -> None:
  # Interrupted after its training: the CLI resumes from the checkpoint (no new
  # step) and gives the same numbers.
  os.remove(done)
  ckpts = os.path.join(workdir, "heldout", "bench1", "checkpoints")
  steps_before = sorted(os.listdir(ckpts))
  cmd = [sys.executable, "-m", "irt_jax", "predict-benchmark", "--config=configs/test.py",
         f"--workdir={workdir}", "--config.train.num_epochs=1",
         "--config.data.synthetic.n_queries=300", "--config.data.synthetic.n_models=6",
         "--ks=10,5", "--random_repeats=2", "--benchmarks=bench1", "--noplots"]
  proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600)
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert "zero_shot" in proc.stdout and "leave-one-benchmark-out" in proc.stdout
  assert sorted(os.listdir(ckpts)) == steps_before
  with open(path) as f:
    assert json.load(f)["per_benchmark"] == saved["per_benchmark"]

  # A prior sd or repeat count the estimators cannot use: one line, exit 1, before any training.
  for flag, message in (("--prior_sd=0", "prior_sd must be positive, got 0.0"),
                        ("--random_repeats=0", "random_repeats must be at least 1, got 0")):
    bad = subprocess.run(cmd[:6] + [flag], cwd=REPO, capture_output=True, text=True, timeout=600)
    assert bad.returncode == 1 and bad.stderr.strip().splitlines()[-1] == f"predict-benchmark: {message}"
    assert "Traceback" not in bad.stderr

  # A workdir of another protocol is refused (the entry turns it into one line and exit 1).
  with pytest.raises(ValueError, match="another --workdir"):
    leave_benchmark_out.run(config, workdir, protocol="paper", benchmarks=["bench1"])


@pytest.mark.slow
def test_entry_point_end_to_end_with_resume(tmp_path):
  workdir = str(tmp_path / "bp")
  config = _tiny_config()
  result = leave_benchmark_out.run(config, workdir, ks=(5, 10), repeats=2, benchmarks=["bench1"])
  path = os.path.join(workdir, scores.RESULT_FILE)
  with open(path) as f:
    saved = json.load(f)
  _check_saved_tables(saved)
  _check_trained_in_memory(workdir, config, saved)
  _check_outputs_and_grid(workdir, saved)

  # A rerun skips the finished benchmark (no training, predictions untouched).
  done = os.path.join(workdir, "heldout", "bench1", scores.PREDICTIONS_FILE)
  mtime = os.path.getmtime(done)
  assert leave_benchmark_out.run(config, workdir, ks=(5, 10), repeats=2, benchmarks=["bench1"],
                plots=False)["per_benchmark"] == result["per_benchmark"]
  assert os.path.getmtime(done) == mtime
  with pytest.raises(ValueError, match="not in"):
    leave_benchmark_out.run(config, workdir, benchmarks=["nope"])
  _check_cli_resumes_and_refuses(workdir, config, path, saved, done)


def splits_union(data):
  labels = np.full((data.n_queries, data.n_models), -1, np.int8)
  for s in data.splits.values():
    labels[s.queries] = np.where(s.mask, s.labels, labels[s.queries])
  return labels


def test_kinds_table_puts_kinds_side_by_side_in_points():
  m = lambda mae, bias, rho: {"mae": mae, "bias": bias, "spearman": rho, "kendall": 0.0}
  results = [{"dataset": "d", "setup": {"kind": kind}, "mean": {
      "0": {"zero_shot": m(0.2, -0.031, 0.7)},
      "10": {"random": m(0.073, 0.001, 0.81), "adaptive": m(0.11, 0.004, 0.8),
             "naive": m(0.09, 0.002, 0.77)}}} for kind in ("irtnet", "knn")]
  lines = tables.benchmark_prediction_kinds_table(results, ks=("10",)).splitlines()
  assert lines[0].count("|") == 7 and len(lines) == 4
  assert lines[2] == ("| d | irtnet | 20.0 / -3.1 / 0.70 | 7.3 / +0.1 / 0.81 | 11.0 / +0.4 / 0.80 | "
                      "9.0 / +0.2 / 0.77 |")
  assert lines[3].startswith("| d | knn |")
  named = tables.benchmark_prediction_kinds_table(results, ks=("10",), labels=["irtnet (small)", "knn"])
  assert named.splitlines()[2].startswith("| d | irtnet (small) | 20.0 / -3.1 / 0.70 |")
  with pytest.raises(ValueError, match="1 labels for 2 results"):
    tables.benchmark_prediction_kinds_table(results, labels=["x"])
