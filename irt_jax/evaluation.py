"""Evaluation: correctness of P(correct) and routing accuracy, as small evaluators.

Each evaluator has one `run(predictions) -> dict`; `run(workdir, ...)` restores
a run, predicts a split and writes `report.json` (keys are stable).
"""

from __future__ import annotations

import dataclasses
import os

import numpy as np

from irt_jax import data as data_lib
from irt_jax import datasets
from irt_jax import model as model_lib
from irt_jax import routing
from irt_jax import runs
from irt_jax import synthetic
from irt_jax import utils

EPS = 1e-7


@dataclasses.dataclass(frozen=True)
class Predictions:
  """Predicted P(correct) for the queries of one split, beside their labels."""
  proba: np.ndarray        # float [n, M]
  labels: np.ndarray       # int8 [n, M], -1 unknown
  benchmark: np.ndarray    # int [n]
  benchmark_names: tuple[str, ...]

  @property
  def known(self) -> np.ndarray:
    return self.labels >= 0


def auc(scores: np.ndarray, labels: np.ndarray) -> float:
  """Area under the ROC curve (Mann-Whitney, ties counted half); NaN if one class."""
  pos = labels == 1
  n_pos, n_neg = int(pos.sum()), int((~pos).sum())
  if n_pos == 0 or n_neg == 0:
    return float("nan")
  order = np.argsort(scores, kind="mergesort")
  sorted_scores = scores[order]
  ranks = np.empty(len(scores), np.float64)
  # Average ranks over runs of equal scores.
  starts = np.r_[0, np.flatnonzero(np.diff(sorted_scores)) + 1]
  ends = np.r_[starts[1:], len(scores)]
  avg = (starts + ends + 1) / 2.0
  ranks[order] = np.repeat(avg, ends - starts)
  return float((ranks[pos].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


class CorrectnessEvaluator:
  """How well P(correct) predicts each known (query, model) label."""

  def run(self, pred: Predictions) -> dict:
    known = pred.known
    p = np.clip(pred.proba[known].astype(np.float64), EPS, 1 - EPS)
    y = pred.labels[known].astype(np.float64)
    return {"accuracy": float(((p > 0.5) == (y > 0.5)).mean()),
            "auc": auc(p, y),
            "log_loss": float(-(y * np.log(p) + (1 - y) * np.log(1 - p)).mean()),
            "brier": float(((p - y) ** 2).mean())}


class RoutingEvaluator:
  """Share of queries answered correctly by the model each router picks.

  micro: mean over queries; macro: mean over benchmarks of per-benchmark means.
  Baselines: oracle (any known model correct), best_single (highest train
  accuracy, falling back down that order where its answer is unknown) and
  random (expected accuracy of a uniform pick among known models).
  """

  def __init__(self, best_single_order: np.ndarray):
    self.best_single_order = best_single_order

  def _summary(self, success: np.ndarray, pred: Predictions, rows: np.ndarray) -> dict:
    bench = pred.benchmark[rows]
    per = {pred.benchmark_names[b]: float(success[bench == b].mean())
           for b in np.unique(bench)}
    return {"micro": float(success.mean()), "macro": float(np.mean(list(per.values()))),
            "per_benchmark": per}

  def run(self, pred: Predictions) -> dict:
    known = pred.known
    rows = np.flatnonzero(known.any(axis=1))
    known, labels = known[rows], pred.labels[rows]
    picked = lambda choice: labels[np.arange(len(rows)), choice] == 1
    model = self._summary(picked(routing.choose_by_score(pred.proba[rows], known)), pred, rows)
    baselines = {
        "oracle": ((labels == 1) & known).any(axis=1).astype(np.float64),
        "best_single": picked(routing.choose_by_order(self.best_single_order, known)),
        "random": np.where(known, labels == 1, 0).sum(1) / known.sum(1),
    }
    model["baselines"] = {}
    for name, success in baselines.items():
      s = self._summary(np.asarray(success, np.float64), pred, rows)
      model["baselines"][name] = {"micro": s["micro"], "macro": s["macro"]}
    return model


def predictions_for(run: runs.Run, data: data_lib.ResponseData, split: str) -> Predictions:
  part = data.split(split)
  if list(data.model_names) != run.model_names:
    raise ValueError(f"dataset {data.name!r} lists models {list(data.model_names)[:5]}..., "
                     f"but the checkpoint in {run.workdir} was trained on "
                     f"{run.model_names[:5]}...; evaluate on the data it was trained on")
  proba = run.predict_proba(data.embeddings[part.queries])
  return Predictions(proba=proba, labels=part.labels, benchmark=data.benchmark[part.queries],
                     benchmark_names=data.benchmark_names)


def evaluate(run: runs.Run, data: data_lib.ResponseData, split: str = "test") -> dict:
  """The report dict for one split."""
  pred = predictions_for(run, data, split)
  order = routing.best_single_order(data.split("train"))
  return {"dataset": data.name, "split": split, "checkpoint_step": int(run.step),
          "n_models": data.n_models, "n_queries": int(len(pred.labels)),
          "correctness": CorrectnessEvaluator().run(pred),
          "routing": RoutingEvaluator(order).run(pred)}


def spearman(x: np.ndarray, y: np.ndarray) -> float:
  """Rank correlation (ties broken by order; the values here are continuous)."""
  rank = lambda v: np.argsort(np.argsort(np.asarray(v)))
  return float(np.corrcoef(rank(x), rank(y))[0, 1])


def truth_recovery(run: runs.Run, data: data_lib.ResponseData, split: str, truth: dict) -> dict:
  """For synthetic data: how well the learned difficulty tracks the true one."""
  queries = data.split(split).queries
  _, difficulty = model_lib.query_difficulty(run.params, data.embeddings[queries], run.spec)
  return {"difficulty_spearman": spearman(np.asarray(difficulty), truth["difficulty"][queries])}


def format_report(report: dict) -> str:
  c, r = report["correctness"], report["routing"]
  lines = [f"{report['dataset']} / {report['split']}: {report['n_models']} models x "
           f"{report['n_queries']} queries (checkpoint step {report['checkpoint_step']})",
           f"  correctness  acc {c['accuracy']:.4f}  auc {c['auc']:.4f}  "
           f"log_loss {c['log_loss']:.4f}  brier {c['brier']:.4f}",
           f"  routing      {'':12s} micro   macro",
           f"    {'irt_jax':22s} {100 * r['micro']:6.2f}  {100 * r['macro']:6.2f}"]
  for name, b in r["baselines"].items():
    lines.append(f"    {name:22s} {100 * b['micro']:6.2f}  {100 * b['macro']:6.2f}")
  lines.append("  per benchmark (irt_jax routing): " + ", ".join(
      f"{k} {100 * v:.2f}" for k, v in r["per_benchmark"].items()))
  if "synthetic_truth" in report:
    lines.append(f"  synthetic truth: Spearman(learned, true difficulty) = "
                 f"{report['synthetic_truth']['difficulty_spearman']:.4f}")
  return "\n".join(lines)


def run(workdir: str, split: str = "test", output_dir: str | None = None,
        step: int | str = "best") -> dict:
  """Restores `workdir`'s checkpoint, evaluates a split, writes report.json."""
  trained = runs.load_run(workdir, step)
  data = datasets.load(trained.config, workdir, require=("train", split))
  report = evaluate(trained, data, split)
  truth_file = os.path.join(datasets.data_dir(trained.config, workdir), synthetic.TRUTH_FILE)
  if os.path.exists(truth_file):
    report["synthetic_truth"] = truth_recovery(trained, data, split,
                                               synthetic.load_truth(os.path.dirname(truth_file)))
  output_dir = output_dir or os.path.join(workdir, "eval")
  os.makedirs(output_dir, exist_ok=True)
  utils.write_json(os.path.join(output_dir, "report.json"), report)
  return report
