r"""How the benchmark grid's prior sds were chosen: leave one dataset out.

The grid (python -m irt_jax predict-benchmark) runs with prior sds set before
any result was seen (per-LLM offset 1.0, benchmark offset 3.0, discrimination
scale 0.5). This check scores the irt estimator (shared labels, random picks)
over a small set of per-LLM and scale prior sds on every dataset's finished
held-out runs, and for each dataset names the values the *other* datasets would
choose (lowest MAE averaged over their k), so no dataset's own figures pick its
hyperparameters. It trains nothing; it reads WORKDIR/heldout/*/predictions.npz.

  python -m experiments.benchmark_prior_check --workdirs=runs/bp_bench_predict_llmrouter,\
      runs/bp_bench_predict_routerdc,runs/bp_bench_predict_zeroeval \
      --out=docs/results/benchmark_prior_check.jsonl
  python -m experiments.benchmark_prior_check --table_only --out=docs/results/benchmark_prior_check.jsonl
"""

import itertools
import json
import os
import sys

from absl import app
from absl import flags
from absl import logging

from irt_jax import utils
from irt_jax.benchmarks import grid
from irt_jax.benchmarks import grid_tables
from irt_jax.benchmarks import leave_benchmark_out

FLAGS = flags.FLAGS
flags.DEFINE_list("workdirs", [], "Finished benchmark-prediction workdirs, one per dataset.")
flags.DEFINE_string("out", None, "Records (JSON lines) go here; finished cells are kept.")
flags.DEFINE_list("per_llm_sds", ["0.5", "1.0", "2.0"], "Per-LLM offset prior sds to try.")
flags.DEFINE_list("scale_sds", ["0.25", "0.5", "1.0"], "Discrimination-scale prior sds to try.")
flags.DEFINE_list("ks", ["10", "25", "50", "100"], "Label budgets.")
flags.DEFINE_integer("draws", 3, "Random draws per cell.")
flags.DEFINE_bool("table_only", False, "Print the choice table from --out's records; run nothing.")


def dataset_rows(workdir: str, priors: grid.Priors, ks, draws: int) -> list[dict]:
  """The grid's summary rows of shared/random/irt on one workdir's held-out runs."""
  with open(os.path.join(workdir, "benchmark_prediction_setup.json")) as f:
    seed = json.load(f)["seed"]
  per = {}
  for path, bench in leave_benchmark_out.held_out_benches(workdir):
    out = grid.benchmark_grid(bench, ks, draws, seed, priors, ("shared",), ("random",))
    out = {key: v for key, v in out.items() if key[3] == "irt"}
    per[path] = grid.grid_metrics(out, grid.true_scores(bench.labels))
  return grid.summarize(per)


def main(argv):
  del argv
  if not FLAGS.out or not (FLAGS.workdirs or FLAGS.table_only):
    sys.exit("benchmark_prior_check: --out and --workdirs (or --table_only) are required")
  ks = [int(k) for k in FLAGS.ks]
  done = []
  if os.path.exists(FLAGS.out):
    done = utils.read_records(FLAGS.out, {"workdir", "per_llm_sd", "scale_sd", "mae"})
  if FLAGS.table_only:
    if not done:
      sys.exit(f"benchmark_prior_check: no records in {FLAGS.out}")
    print(grid_tables.prior_check_table(done, (grid.Priors().per_llm_sd, grid.Priors().scale_sd)))
    return
  for workdir, sd, scale in itertools.product(FLAGS.workdirs, FLAGS.per_llm_sds, FLAGS.scale_sds):
    tag = {"workdir": os.path.basename(os.path.normpath(workdir)), "per_llm_sd": float(sd),
           "scale_sd": float(scale)}
    if any(all(r.get(k) == v for k, v in tag.items()) for r in done):
      continue
    logging.info("%s", tag)
    priors = grid.Priors(per_llm_sd=float(sd), scale_sd=float(scale))
    rows = dataset_rows(workdir, priors, ks, FLAGS.draws)
    with open(FLAGS.out, "a") as f:
      for r in rows:
        f.write(json.dumps({**tag, **r}) + "\n")
    done += [{**tag, **r} for r in rows]
  print(grid_tables.prior_check_table(done, (grid.Priors().per_llm_sd, grid.Priors().scale_sd)))


if __name__ == "__main__":
  app.run(main)
