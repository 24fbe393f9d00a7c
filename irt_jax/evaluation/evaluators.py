"""Evaluators: small classes chosen by name, each owning its part of the report.

Every evaluator reads the same `Context` (the restored run, the data, and the
split's predictions as logits), so a new one is one class plus one registry
line, and none of them knows which model kind made the predictions. Each class
brings everything about its section:
* `applies(run, options)`: whether eval runs it by default on this run;
* `run(ctx) -> dict`: its section of report.json;
* `text(section)`: its lines of the terminal summary;
* `markdown(section)`: its lines of report.md;
* `figures(report, out_dir, tag)`: its PNGs (title -> path); `figure_rank`
  orders them in report.md (stable: lower first).
The report (evaluation.report) only walks the registry.
"""

from __future__ import annotations

import dataclasses
import os

import numpy as np

from irt_jax import numerics
from irt_jax.data import io as data_lib
from irt_jax import predictors
from irt_jax.routing import hindsight
from irt_jax.routing import rules
from irt_jax.benchmarks import evaluator
from irt_jax.evaluation import cost_frontier
from irt_jax import metrics
from irt_jax.evaluation import calibration
from irt_jax.evaluation import field_metrics
from irt_jax.evaluation import interpretability


@dataclasses.dataclass(frozen=True)
class Predictions:
  """Predicted logits of P(correct) for the queries of one split, beside their labels."""
  logits: np.ndarray       # float32 [n, M]
  labels: np.ndarray       # int8 [n, M], -1 unknown
  benchmark: np.ndarray    # int [n]
  benchmark_names: tuple[str, ...]

  @property
  def known(self) -> np.ndarray:
    return self.labels >= 0

  @property
  def proba(self) -> np.ndarray:
    return numerics.sigmoid(self.logits)


@dataclasses.dataclass(frozen=True)
class Context:
  """What an evaluator may read."""
  run: predictors.Run
  data: data_lib.ResponseData
  split: str
  predictions: Predictions
  options: dict = dataclasses.field(default_factory=dict)  # evaluator options from eval flags


def predictions_for(predictor: predictors.Predictor, data: data_lib.ResponseData,
                    split: str) -> Predictions:
  part = data.split(split)
  if tuple(data.model_names) != tuple(predictor.model_names):
    raise ValueError(f"dataset {data.name!r} lists models {list(data.model_names)[:5]}..., "
                     f"but the run was trained on {list(predictor.model_names)[:5]}...; "
                     f"evaluate on the data it was trained on")
  return Predictions(logits=predictor.logits(data.embeddings[part.queries]),
                     labels=part.labels, benchmark=data.benchmark[part.queries],
                     benchmark_names=data.benchmark_names)


def correctness(pred: Predictions) -> dict:
  """Accuracy, AUC, log loss and Brier over the known cells only."""
  return metrics.binary_metrics(pred.proba[pred.known], pred.labels[pred.known])


def _f(x, fmt=".4f") -> str:
  return "n/a" if x is None else format(x, fmt)


def _pct(x) -> str:
  return "   n/a" if x is None else f"{100 * x:6.2f}"


class CorrectnessEvaluator:
  """How well P(correct) predicts each known (query, model) label."""
  name = "correctness"
  figure_rank = 0

  def applies(self, run, options: dict) -> bool:
    return True

  def run(self, ctx: Context) -> dict:
    return correctness(ctx.predictions)

  def text(self, c: dict) -> list[str]:
    return [f"  correctness  acc {c['accuracy']:.4f}  auc {c['auc']:.4f}  "
            f"log_loss {c['log_loss']:.4f}  brier {c['brier']:.4f}"]

  def markdown(self, c: dict) -> list[str]:
    return ["## Correctness", "", "| accuracy | AUC | log loss | Brier |", "|---|---|---|---|",
            f"| {_f(c['accuracy'])} | {_f(c['auc'])} | {_f(c['log_loss'])} | "
            f"{_f(c['brier'])} |", ""]

  def figures(self, report: dict, out_dir: str, tag: str) -> dict[str, str]:
    return {}


def benchmark_means(success: np.ndarray, benchmark: np.ndarray, names) -> dict[str, float]:
  return {names[b]: float(success[benchmark == b].mean()) for b in np.unique(benchmark)}


def micro_macro(success: np.ndarray, benchmark: np.ndarray, names) -> dict:
  """micro: mean over queries; macro: mean over benchmarks of per-benchmark means."""
  per = benchmark_means(success, benchmark, names)
  return {"micro": float(success.mean()), "macro": float(np.mean(list(per.values()))),
          "per_benchmark": per}


def routing_summary(logits: np.ndarray, labels: np.ndarray, benchmark: np.ndarray,
                    names, best_single_order: np.ndarray,
                    max_expert: np.ndarray | None = None) -> dict:
  """Routing accuracy of argmax-logit choices among known models, with baselines.

  Baselines: oracle (any known model correct), best_single (highest train
  accuracy, falling back down that order where its answer is unknown), random
  (expected accuracy of a uniform pick among known models) and, given its
  [n, M] scores (routing/hindsight.py), max_expert (the train-best model of each
  query's benchmark: it reads the benchmark label, which a router is not given),
  with LLMRouterBench's ImpRand / ImpMax / OracleGap under "field".
  """
  known = labels >= 0
  rows = np.flatnonzero(known.any(axis=1))
  known, labels, bench = known[rows], labels[rows], benchmark[rows]
  picked = lambda choice: (labels[np.arange(len(rows)), choice] == 1).astype(np.float64)
  out = micro_macro(picked(rules.choose_by_score(logits[rows], known)), bench, names)
  baselines = {
      "oracle": ((labels == 1) & known).any(axis=1).astype(np.float64),
      "best_single": picked(rules.choose_by_order(best_single_order, known)),
      "random": np.where(known, labels == 1, 0).sum(1) / known.sum(1),
  }
  if max_expert is not None:
    baselines["max_expert"] = picked(rules.choose_by_score(max_expert[rows], known))
  out["baselines"] = {}
  for name, success in baselines.items():
    s = micro_macro(np.asarray(success, np.float64), bench, names)
    out["baselines"][name] = {"micro": s["micro"], "macro": s["macro"]}
  if max_expert is not None:
    out["field"] = field_metrics.routing_summary(out)
  return out


class RoutingEvaluator:
  """Share of queries answered correctly by the model each router picks."""
  name = "routing"
  figure_rank = 1  # the per-benchmark bars after the maps of the other sections

  def applies(self, run, options: dict) -> bool:
    return True

  def run(self, ctx: Context) -> dict:
    pred = ctx.predictions
    train = ctx.data.split("train")
    order = rules.best_single_order(train)
    expert = hindsight.for_split(train, ctx.data.benchmark, ctx.data.split(ctx.split).queries,
                                 len(ctx.data.benchmark_names))
    return routing_summary(pred.logits, pred.labels, pred.benchmark, pred.benchmark_names,
                           order, max_expert=expert)

  def text(self, r: dict) -> list[str]:
    lines = [f"  routing      {'':12s} micro   macro",
             f"    {'this run':22s} {_pct(r['micro'])}  {_pct(r['macro'])}"]
    for name, b in r["baselines"].items():
      label = field_metrics.baseline_label(name)
      lines.append(f"    {label:22s} {_pct(b['micro'])}  {_pct(b['macro'])}")
    lines += field_metrics.routing_lines(r)
    return lines + ["  per benchmark (this run's routing): " + ", ".join(
        f"{k} {100 * v:.2f}" for k, v in r["per_benchmark"].items())]

  def markdown(self, r: dict) -> list[str]:
    out = ["## Routing (% of queries answered correctly)", "", "| router | micro | macro |",
           "|---|---|---|", f"| this run | {100 * r['micro']:.2f} | {100 * r['macro']:.2f} |"]
    out += [f"| {field_metrics.baseline_label(n)} | {100 * b['micro']:.2f} | "
            f"{100 * b['macro']:.2f} |" for n, b in r["baselines"].items()]
    return out + ["", "Per benchmark: " + ", ".join(f"{k} {100 * v:.2f}"
                                                    for k, v in r["per_benchmark"].items()), ""]

  def figures(self, report: dict, out_dir: str, tag: str) -> dict[str, str]:
    from irt_jax.evaluation import plots
    return {"routing accuracy per benchmark": plots.routing_per_benchmark(
        {report.get("kind", "run"): report}, os.path.join(out_dir, "routing_per_benchmark.png"),
        f"Routing accuracy per benchmark: {tag}")}


class SyntheticTruthEvaluator:
  """On synthetic data: how well the learned difficulty tracks the true one."""
  name = "synthetic_truth"
  figure_rank = 0

  def applies(self, run, options: dict) -> bool:
    from irt_jax.data import resolve
    from irt_jax.data import synthetic
    return os.path.exists(os.path.join(resolve.folder(run.config, run.workdir),
                                       synthetic.TRUTH_FILE))

  def text(self, truth: dict) -> list[str]:
    if "difficulty_spearman" not in truth:
      return []
    return [f"  synthetic truth: Spearman(learned, true difficulty) = "
            f"{truth['difficulty_spearman']:.4f}"]

  def markdown(self, truth: dict) -> list[str]:
    return []

  def figures(self, report: dict, out_dir: str, tag: str) -> dict[str, str]:
    return {}

  def run(self, ctx: Context) -> dict:
    from irt_jax.data import resolve
    from irt_jax.data import synthetic
    from irt_jax.models import base
    folder = resolve.folder(ctx.run.config, ctx.run.workdir)
    predictor = ctx.run.predictor
    if not os.path.exists(os.path.join(folder, synthetic.TRUTH_FILE)):
      return {"skipped": "no synthetic truth beside this data"}
    if predictor.kind.irt is None:
      return {"skipped": f"kind {predictor.kind.name!r} has no difficulty parameter"}
    truth = synthetic.load_truth(folder)
    queries = ctx.data.split(ctx.split).queries
    _, difficulty = base.identified_items(predictor.kind, predictor.params,
                                          ctx.data.embeddings[queries], predictor.spec)
    return {"difficulty_spearman": metrics.spearman(np.asarray(difficulty),
                                                    truth["difficulty"][queries])}


# name -> evaluator class; eval.py's --evaluators picks from these. The order is
# the order of report.json's keys by default and of the report's sections.
REGISTRY: dict[str, type] = {
    CorrectnessEvaluator.name: CorrectnessEvaluator,
    RoutingEvaluator.name: RoutingEvaluator,
    interpretability.InterpretabilityEvaluator.name: interpretability.InterpretabilityEvaluator,
    calibration.CalibrationEvaluator.name: calibration.CalibrationEvaluator,
    evaluator.BenchmarkPredictionEvaluator.name:
        evaluator.BenchmarkPredictionEvaluator,
    SyntheticTruthEvaluator.name: SyntheticTruthEvaluator,
    cost_frontier.CostFrontierEvaluator.name: cost_frontier.CostFrontierEvaluator,
}
DEFAULT = ("correctness", "routing")
DEFAULT += ("interpretability", "calibration")  # cheap: one pass over the split


def applying(run, options: dict | None = None) -> tuple[str, ...]:
  """The evaluators that apply to `run` (each class says when), in registry order."""
  return tuple(name for name, cls in REGISTRY.items() if cls().applies(run, options or {}))


def get(names) -> list:
  unknown = [n for n in names if n not in REGISTRY]
  if unknown:
    raise ValueError(f"unknown evaluator(s) {unknown}; valid: {', '.join(sorted(REGISTRY))}")
  return [REGISTRY[n]() for n in names]
