"""Checkpoints (restore, kill -9 and resume, damage) and evaluation (metrics, routing, CLI)."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from configs import test as test_config
from irt_jax import checkpoint as ckpt_lib
from irt_jax.data import io as data_lib
from irt_jax import evaluation
from irt_jax.evaluation import evaluators
from irt_jax import metrics
from irt_jax.routing import rules
from irt_jax import predictors
from irt_jax import training
from tests.conftest import REPO, SHARED_DATA, needs_shared_data

REPORT_KEYS = {"correctness", "routing", "n_models", "n_queries", "dataset", "checkpoint_step"}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
  config = test_config.get_config()
  config.train.num_epochs = 3
  workdir = str(tmp_path_factory.mktemp("run"))
  return workdir, training.train_and_evaluate(config, workdir)


@pytest.mark.slow
def test_restore_then_evaluate_gives_identical_metrics(trained):
  workdir, summary = trained
  latest = predictors.load(workdir, "latest")
  jax.tree.map(np.testing.assert_array_equal, latest.predictor.params, summary["state"].params)
  # Validation metrics recomputed from restored parameters equal those logged in training.
  data = summary["data"]
  val = data.split("val")
  proba = latest.predictor.proba(data.embeddings[val.queries])
  p = np.clip(proba[val.mask], 1e-7, 1 - 1e-7).astype(np.float64)
  y = val.labels[val.mask]
  assert ((p > 0.5) == (y == 1)).mean() == pytest.approx(summary["history"][-1]["val_accuracy"])
  logloss = -(y * np.log(p) + (1 - y) * np.log(1 - p)).mean()
  assert logloss == pytest.approx(summary["history"][-1]["val_loss"], rel=1e-4)
  # Evaluating twice from disk gives the same report.
  a = evaluation.run(workdir, "test", output_dir=os.path.join(workdir, "e1"))
  b = evaluation.run(workdir, "test", output_dir=os.path.join(workdir, "e2"))
  assert a == b and REPORT_KEYS <= set(a)


def test_best_checkpoint_is_kept_beside_the_latest(trained):
  workdir, summary = trained
  checkpoints = ckpt_lib.Checkpoints(workdir, read_only=True)
  best = summary["best"]
  history = summary["history"]
  assert best["val_accuracy"] == max(r["val_accuracy"] for r in history)
  first_best = next(r for r in history if r["val_accuracy"] == best["val_accuracy"])
  assert best["step"] == first_best["step"]
  assert set(checkpoints.all_steps()) == {best["step"], history[-1]["step"]}
  assert predictors.load(workdir).step == best["step"]


def _train_cmd(workdir, *extra):
  return [sys.executable, "train.py", "--config=configs/test.py", f"--workdir={workdir}",
          "--config.train.num_epochs=6", "--config.data.synthetic.n_queries=1500",
          "--config.model.hidden_dim=128", "--config.checkpoint.every_steps=7", *extra]


@pytest.mark.slow
def test_kill_9_mid_run_then_rerun_ends_like_an_uninterrupted_run(tmp_path):
  interrupted, clean = str(tmp_path / "killed"), str(tmp_path / "clean")
  proc = subprocess.Popen(_train_cmd(interrupted), cwd=REPO, stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL)
  ckpt_dir = os.path.join(interrupted, "checkpoints")
  deadline = time.time() + 240
  steps = []
  while time.time() < deadline and proc.poll() is None:
    steps = [int(s) for s in os.listdir(ckpt_dir) if s.isdigit()] if os.path.isdir(ckpt_dir) else []
    if any(s >= 14 for s in steps):
      break
    time.sleep(0.05)
  assert proc.poll() is None, "training finished before it could be interrupted"
  proc.send_signal(signal.SIGKILL)
  proc.wait(timeout=30)
  resumed = subprocess.run(_train_cmd(interrupted), cwd=REPO, capture_output=True, text=True,
                           timeout=300)
  assert resumed.returncode == 0, resumed.stderr[-3000:]
  assert "Resumed from step" in resumed.stderr
  config = test_config.get_config()  # the same run, uninterrupted, in this process
  config.train.num_epochs = 6
  config.data.synthetic.n_queries = 1500
  config.model.hidden_dim = 128
  config.checkpoint.every_steps = 7
  training.train_and_evaluate(config, clean)
  a, b = predictors.load(interrupted, "latest"), predictors.load(clean, "latest")
  assert a.step == b.step
  jax.tree.map(np.testing.assert_array_equal, a.predictor.params, b.predictor.params)
  lines = lambda w: [json.loads(l) for l in open(os.path.join(w, "metrics.jsonl"))]
  strip = lambda rs: [{k: v for k, v in r.items() if k not in ("seconds", "steps_per_second")}
                      for r in rs]
  assert strip(lines(interrupted)) == strip(lines(clean))


@pytest.mark.slow
def test_eval_cli_writes_the_report(trained, tmp_path):
  workdir, _ = trained
  out = subprocess.run([sys.executable, "eval.py", f"--workdir={workdir}",
                        f"--output_dir={tmp_path}", "--split=val"], cwd=REPO,
                       capture_output=True, text=True, timeout=300)
  assert out.returncode == 0, out.stderr[-3000:]
  report = json.load(open(tmp_path / "report.json"))
  assert REPORT_KEYS <= set(report)
  assert set(report["correctness"]) == {"accuracy", "auc", "log_loss", "brier"}
  assert set(report["routing"]) == {"micro", "macro", "per_benchmark", "baselines", "field"}
  assert set(report["routing"]["baselines"]) == {"oracle", "best_single", "random", "max_expert"}
  assert set(report["routing"]["field"]["macro"]) == {"imp_rand", "gain_best", "imp_max", "oracle_gap"}
  assert "best_single" in out.stdout and "correctness" in out.stdout
  assert "max_expert (needs the benchmark label)" in out.stdout and "ImpMax" in out.stdout


def test_missing_checkpoint_is_a_clear_error(tmp_path):
  with pytest.raises(ckpt_lib.CheckpointError, match="no checkpoints here"):
    predictors.load(str(tmp_path))
  out = subprocess.run([sys.executable, "eval.py", f"--workdir={tmp_path}"], cwd=REPO,
                       capture_output=True, text=True, timeout=120)
  assert out.returncode != 0 and "no checkpoints here" in out.stderr


def test_corrupt_checkpoint_is_a_clear_error(trained, tmp_path):
  workdir, summary = trained
  broken = str(tmp_path / "broken")
  shutil.copytree(workdir, broken)
  step = summary["best"]["step"]
  state_dir = os.path.join(broken, "checkpoints", str(step), "state")
  for root, _, files in os.walk(state_dir):
    for f in files:
      path = os.path.join(root, f)
      with open(path, "r+b") as fh:
        size = os.path.getsize(path)
        fh.write(b"\x00garbage" * max(1, size // 8))
  with pytest.raises(ckpt_lib.CheckpointError, match=rf"checkpoints/{step}"):
    predictors.load(broken, step)


# --- Evaluation functions ------------------------------------------------------

def test_auc_matches_pairwise_definition():
  rng = np.random.default_rng(0)
  scores = np.round(rng.random(200), 1)  # many ties
  labels = (rng.random(200) < scores).astype(int)
  pos, neg = scores[labels == 1], scores[labels == 0]
  pairs = (pos[:, None] > neg[None]).mean() + 0.5 * (pos[:, None] == neg[None]).mean()
  assert metrics.auc(scores, labels) == pytest.approx(pairs)


def test_routing_on_a_hand_made_sparse_matrix():
  labels = np.array([[1, 0, -1],    # bench a
                     [0, 0, 1],     # bench a
                     [-1, 1, 0],    # bench b
                     [0, 0, 0]],    # bench b
                    np.int8)
  proba = np.array([[0.9, 0.1, 0.99],   # unknown model 2 must not be picked
                    [0.2, 0.3, 0.1],
                    [0.8, 0.75, 0.7],
                    [0.5, 0.5, 0.5]])
  logits = np.log(proba) - np.log1p(-proba)
  r = evaluators.routing_summary(logits, labels, np.array([0, 0, 1, 1]), ("a", "b"),
                                 best_single_order=np.array([0, 2, 1]))
  # Picks: q0 -> m0 (1), q1 -> m1 (0), q2 -> m1 (1; m0 unknown), q3 -> m0 (0).
  assert r["micro"] == pytest.approx(0.5)
  assert r["per_benchmark"] == {"a": 0.5, "b": 0.5}
  b = r["baselines"]
  assert b["oracle"]["micro"] == pytest.approx(0.75)
  # Best single m0; where unknown (q2) the next in order, m2 (label 0).
  assert b["best_single"]["micro"] == pytest.approx(0.25)
  assert b["random"]["micro"] == pytest.approx((0.5 + 1 / 3 + 0.5 + 0) / 4)
  assert b["random"]["macro"] == pytest.approx(((0.5 + 1 / 3) / 2 + 0.25) / 2)


def test_plain_routing_picks_the_likeliest_allowed_model():
  # choose_by_score is what rules.choose_with_cost(cost_weight=0) and the Router
  # reduce to: the argmax among allowed models (candidates, or known cells).
  logits = np.log(np.array([[0.2, 0.9, 0.5], [0.7, 0.1, 0.6]]))
  every = np.ones((2, 3), bool)
  assert rules.choose_by_score(logits, every).tolist() == [1, 0]
  candidates = np.array([True, False, True])[None, :]
  assert rules.choose_by_score(logits, np.broadcast_to(candidates, (2, 3))).tolist() == [2, 0]
  assert rules.choose_with_cost(logits, None, 0.0, candidates).tolist() == [2, 0]
  assert rules.choose_by_score(logits, np.zeros((2, 3), bool)).tolist() == [-1, -1]


@pytest.mark.parametrize("name, oracle, best, rand", [
    pytest.param("routerdc", (82.59, 76.38), (58.27, 46.99), (55.20, 47.17), marks=needs_shared_data("routerdc")),
    pytest.param("llmrouter", (80.27, 79.96), (63.38, 62.63), (42.57, 41.76), marks=needs_shared_data("llmrouter")),
    pytest.param("zeroeval", (98.94, 98.57), (94.72, 93.95), (66.82, 62.17), marks=needs_shared_data("zeroeval")),
])
def test_baselines_agree_with_the_shared_data_readme(name, oracle, best, rand):
  data = data_lib.load_dataset(os.path.join(SHARED_DATA, name))
  test = data.split("test")
  got = evaluators.routing_summary(np.zeros(test.labels.shape), test.labels,
                                   data.benchmark[test.queries], data.benchmark_names,
                                   rules.best_single_order(data.split("train")))
  for key, want in (("oracle", oracle), ("best_single", best), ("random", rand)):
    b = got["baselines"][key]
    assert (round(100 * b["micro"], 2), round(100 * b["macro"], 2)) == want
