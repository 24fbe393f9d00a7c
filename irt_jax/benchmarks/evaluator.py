"""The eval report's benchmark-prediction section: the mean table of a finished
leave-one-benchmark-out run, read from its benchmark_prediction.json (an
evaluator of evaluation.evaluators' registry, with its applies / run / text /
markdown / figures)."""

from __future__ import annotations

import json
import os

from irt_jax.benchmarks import scores


class BenchmarkPredictionEvaluator:
  """The mean table of a finished leave-one-benchmark-out run, into report.json.

  It reads option `benchmark_prediction` (a folder or a JSON file) or, by
  default, WORKDIR/benchmark_prediction.json; it trains nothing (that is one
  training per benchmark: python -m irt_jax predict-benchmark).
  """
  name = "benchmark_prediction"
  figure_rank = 0

  def applies(self, run, options: dict) -> bool:
    """Asked for (option benchmark_prediction) or a result beside the run."""
    return bool(options.get("benchmark_prediction")) or os.path.exists(
        os.path.join(run.workdir, scores.RESULT_FILE))

  def run(self, ctx) -> dict:
    path = ctx.options.get("benchmark_prediction") or ctx.run.workdir
    if os.path.isdir(path):
      path = os.path.join(path, scores.RESULT_FILE)
    if not os.path.exists(path):
      return {"skipped": f"{path} not found; run python -m irt_jax predict-benchmark "
                         f"--workdir=... first"}
    with open(path) as f:
      result = json.load(f)
    return {"source": os.path.abspath(path), "dataset": result["dataset"],
            "setup": result["setup"], "mean": result["mean"],
            "per_benchmark": result["per_benchmark"]}

  def text(self, section: dict) -> list[str]:
    return []

  def markdown(self, section: dict) -> list[str]:
    if "mean" not in section:  # skipped: no result to show
      return []
    from irt_jax.benchmarks import tables
    return ["## Benchmark-score prediction (leave one benchmark out)", "",
            tables.benchmark_prediction_markdown(
                {"dataset": section["dataset"], "setup": section["setup"],
                 "mean": section["mean"], "per_benchmark": section["per_benchmark"]})]

  def figures(self, report: dict, out_dir: str, tag: str) -> dict[str, str]:
    return {}
