"""Evaluation of any trained run: metrics (pure functions), evaluators (small
classes chosen by name) and report writing, kept apart.

`run(workdir, ...)` restores a run, predicts a split once and hands the same
context to every chosen evaluator; `compare(workdirs, ...)` does it for several
runs on the same data and tabulates them side by side.
"""

from __future__ import annotations

import os

from irt_jax.data import resolve
from irt_jax import predictors
from irt_jax import utils
from irt_jax.evaluation import evaluators as evaluators_lib
from irt_jax.evaluation import paired
from irt_jax.evaluation import report as report_lib


def evaluate(run: predictors.Run, data, split: str = "test",
             names=evaluators_lib.DEFAULT, options: dict | None = None) -> dict:
  """The report dict for one split: one key per evaluator, plus what was evaluated."""
  ctx = evaluators_lib.Context(
      run=run, data=data, split=split,
      predictions=evaluators_lib.predictions_for(run.predictor, data, split),
      options=options or {})
  report = {"dataset": data.name, "split": split, "kind": run.kind.name,
            "checkpoint_step": int(run.step), "n_models": data.n_models,
            "n_queries": int(len(ctx.predictions.labels))}
  for evaluator in evaluators_lib.get(names):
    report[evaluator.name] = evaluator.run(ctx)
  return report


def default_evaluators(run: predictors.Run, options: dict | None = None) -> tuple[str, ...]:
  """Every evaluator that applies to `run` (each class says when), in registry order."""
  return evaluators_lib.applying(run, options)


def run(workdir: str, split: str = "test", output_dir: str | None = None,
        step: int | str = "best", names=None, options: dict | None = None,
        data_dir: str | None = None) -> dict:
  """Restores `workdir`'s checkpoint, evaluates a split, writes report.json and
  report.md (with PNG plots in plots/) in `output_dir` (default WORKDIR/eval).
  `data_dir`: another folder in the layout, LLMs matched by name (other_data)."""
  trained = predictors.load(workdir, step)
  subset = None
  if data_dir:
    from irt_jax.evaluation import other_data
    trained, data, subset = other_data.load(trained, data_dir, require=("train", split))
  else:
    data = resolve.load_for_run(trained.config, workdir, require=("train", split))
  out = output_dir or os.path.join(workdir, "eval")
  options = {"plot_dir": out, **(options or {})}  # evaluators' figures go beside the report
  report = evaluate(trained, data, split, names or default_evaluators(trained, options),
                    options)
  if subset:
    report["data_subset"] = subset
  report_lib.write(report, out)
  figures = report_lib.report_plots(report, os.path.join(out, "plots"))
  report_lib.write_markdown(report, out, figures)
  return report


def compare(workdirs: list[str], split: str = "test", step: int | str = "best",
            n_resamples: int = paired.N_RESAMPLES) -> dict:
  """Evaluates several runs (any kinds) on the first run's data; one table, and
  each run's paired difference from the first with a bootstrap interval."""
  runs = [predictors.load(w, step) for w in workdirs]
  for w, r in zip(workdirs[1:], runs[1:]):
    # Every run is scored on the first run's data: its columns must be the same
    # LLMs in the same order, and it must read the same embeddings.
    if list(r.model_names) != list(runs[0].model_names):
      raise ValueError(f"{w}: trained on other LLMs than {workdirs[0]} ({len(r.model_names)} "
                       f"vs {len(runs[0].model_names)}; first difference: "
                       f"{_first_difference(r.model_names, runs[0].model_names)}); compare "
                       f"runs of one dataset")
    if r.predictor.input_dim != runs[0].predictor.input_dim:
      raise ValueError(f"{w}: reads {r.predictor.input_dim}-d embeddings, {workdirs[0]} "
                       f"{runs[0].predictor.input_dim}-d; compare runs of one dataset")
  data = resolve.load_for_run(runs[0].config, runs[0].workdir, require=("train", split))
  reports, scored = {}, {}
  for w, r in zip(workdirs, runs):
    label = os.path.basename(os.path.normpath(w))
    if label in reports:
      label = w
    reports[label] = evaluate(r, data, split)
    pred = evaluators_lib.predictions_for(r.predictor, data, split)
    scored[label] = paired.score(pred.logits, pred.labels, pred.benchmark)
  first = next(iter(scored))
  # Each run against the first on the same queries: 95% paired bootstrap intervals.
  differences = {label: paired.compare([scored[first]], [s], n_resamples)
                 for label, s in scored.items() if label != first}
  return {"dataset": data.name, "split": split, "runs": reports,
          "table": report_lib.compare_rows(reports), "reference": first,
          "paired": differences, "n_resamples": n_resamples}


def _first_difference(a, b) -> str:
  for i, (x, y) in enumerate(zip(a, b)):
    if x != y:
      return f"position {i}: {x!r} vs {y!r}"
  return f"position {min(len(a), len(b))}: one list ends"


def write_compare(result: dict, output_dir: str) -> str:
  """compare.json, compare.md and the routing-per-benchmark plot of compared runs."""
  from irt_jax.evaluation import plots
  os.makedirs(output_dir, exist_ok=True)
  utils.write_json(os.path.join(output_dir, "compare.json"), result)
  files = {"routing accuracy per benchmark": plots.routing_per_benchmark(
      result["runs"], os.path.join(output_dir, "plots", "compare_routing_per_benchmark.png"),
      f"Routing accuracy per benchmark: {result['dataset']} / {result['split']}")}
  path = os.path.join(output_dir, "compare.md")
  with open(path, "w", encoding="utf-8") as f:
    f.write(report_lib.compare_markdown(result, files, output_dir))
  return path
