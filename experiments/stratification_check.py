r"""What stratified picks and the difference estimator can gain at best, exactly.

The grid (python -m irt_jax predict-benchmark) reads choices of queries off a
few random draws. This check needs no draws: for every held-out benchmark and
LLM it computes the exact design sd of the label mean of k queries
(benchmarks.grid_estimators.design_variance) under

* random picks (simple random sampling);
* stratified picks on the LLM's own predicted P (the per-LLM choice) and on the
  fleet's mean predicted P (the shared choice), one pick per stratum;
* random picks of the residuals y - p, p the item side refitted on *all* of the
  benchmark's labels: the sd the difference estimator (`diff`) would have with
  the best p the model's logits allow, a ceiling no k labels can beat;

and the correlation of the labels with the model's logits over the benchmark's
queries, per LLM. Each figure is the root of the mean variance over LLMs,
averaged over the held-out benchmarks, in accuracy points. It trains nothing; it
reads WORKDIR/heldout/*/predictions.npz.

  python -m experiments.stratification_check --workdirs=runs/bp_bench_predict_llmrouter,\
      runs/bp_bench_predict_routerdc,runs/bp_bench_predict_zeroeval \
      --out=docs/results/stratification_check.jsonl
  python -m experiments.stratification_check --table_only --out=docs/results/stratification_check.jsonl
"""

import json
import os
import sys

import numpy as np
from absl import app
from absl import flags
from absl import logging

from irt_jax import numerics
from irt_jax import utils
from irt_jax.benchmarks import grid_estimators
from irt_jax.benchmarks import held_out
from irt_jax.benchmarks import leave_benchmark_out
from irt_jax.benchmarks import query_choice

FLAGS = flags.FLAGS
flags.DEFINE_list("workdirs", [], "Finished benchmark-prediction workdirs, one per dataset.")
flags.DEFINE_string("out", None, "Records (JSON lines, one per dataset and k) go here.")
flags.DEFINE_list("ks", ["10", "25", "50", "100"], "Label budgets.")
flags.DEFINE_bool("table_only", False, "Print the table from --out's records; run nothing.")

COLUMNS = ("random", "stratified_own", "stratified_fleet", "diff_ceiling")


def benchmark_row(bench: held_out.Bench, k: int) -> dict | None:
  """Mean over LLMs (with more than k answers) of each design's variance, and
  the mean correlation of labels with logits; None if no LLM has enough."""
  known = bench.labels >= 0
  y = (bench.labels == 1).astype(np.float64)
  s, c, delta = held_out.fit_item_side(bench, y, known, held_out.Priors(), per_llm=True)
  p_all = numerics.sigmoid(s * bench.ability_term - bench.difficulty[:, None] + c + delta)
  fleet = numerics.sigmoid(bench.logits).mean(1)
  var, corr = {c: [] for c in COLUMNS}, []
  for m in range(y.shape[1]):
    rows = np.flatnonzero(known[:, m])
    if len(rows) <= k:
      continue
    ym, one = y[rows, m], np.zeros(len(rows), np.int64)
    var["random"].append(grid_estimators.design_variance(ym, one, [k]))
    for name, key in (("stratified_own", -bench.logits[rows, m]), ("stratified_fleet", -fleet[rows])):
      var[name].append(grid_estimators.design_variance(ym, query_choice.strata(key, k), np.ones(k)))
    var["diff_ceiling"].append(grid_estimators.design_variance(ym - p_all[rows, m], one, [k]))
    if ym.std() > 0 and bench.logits[rows, m].std() > 0:
      corr.append(float(np.corrcoef(ym, bench.logits[rows, m])[0, 1]))
  if not var["random"]:
    return None
  return {**{c: float(np.mean(v)) for c, v in var.items()},
          "corr": float(np.mean(corr)) if corr else None}


def dataset_records(workdir: str, ks) -> list[dict]:
  """One record per k: each column's sd (points), averaged over benchmarks."""
  rows = {k: [] for k in ks}
  for path, bench in leave_benchmark_out.held_out_benches(workdir):
    logging.info("%s", path)
    for k in ks:
      row = benchmark_row(bench, k)
      if row is not None:
        rows[k].append(row)
  name = os.path.basename(os.path.normpath(workdir))
  return [{"workdir": name, "k": k, "n_benchmarks": len(r),
           **{c: float(np.mean([100 * np.sqrt(x[c]) for x in r])) for c in COLUMNS},
           "corr": float(np.mean([x["corr"] for x in r if x["corr"] is not None]))}
          for k, r in rows.items() if r]


def table(records: list[dict]) -> str:
  out = ["| dataset | k | random | stratified, own P | stratified, fleet P | diff ceiling | "
         "corr(label, logit) |", "|---|---|---|---|---|---|---|"]
  for r in sorted(records, key=lambda r: (r["workdir"], r["k"])):
    out.append(f"| {r['workdir']} | {r['k']} | " + " | ".join(f"{r[c]:.2f}" for c in COLUMNS)
               + f" | {r['corr']:.2f} |")
  return "\n".join(out) + "\n"


def main(argv):
  del argv
  if not FLAGS.out or not (FLAGS.workdirs or FLAGS.table_only):
    sys.exit("stratification_check: --out and --workdirs (or --table_only) are required")
  if FLAGS.table_only:
    records = utils.read_records(FLAGS.out, {"workdir", "k", *COLUMNS}) if os.path.exists(
        FLAGS.out) else []
    if not records:
      sys.exit(f"stratification_check: no records in {FLAGS.out}")
    print(table(records))
    return
  ks = [int(k) for k in FLAGS.ks]
  records = [r for w in FLAGS.workdirs for r in dataset_records(w, ks)]
  with open(FLAGS.out, "w") as f:
    f.writelines(json.dumps(r) + "\n" for r in records)
  print(table(records))


if __name__ == "__main__":
  app.run(main)
