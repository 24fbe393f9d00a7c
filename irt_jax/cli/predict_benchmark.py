r"""`irt-jax predict-benchmark`: leave-one-benchmark-out benchmark-score prediction for
one dataset and model kind.

  irt-jax predict-benchmark --config=configs/bench_predict.py \
      --config.data.dir=../shared/data/llmrouter --workdir=runs/bp/llmrouter
One model is trained per held-out benchmark (WORKDIR/heldout/<B>/); rerunning the
same command skips finished benchmarks and resumes an interrupted one. Writes
WORKDIR/benchmark_prediction.json, WORKDIR/benchmark_prediction.md and plots/.

  irt-jax predict-benchmark predict --workdir=RUN --queries=new.jsonl \
      [--labels=answers.csv] [--propose=K] [--grid=BP_WORKDIR_OR_RECORDS]
prints per LLM of the trained run RUN its predicted score on a new benchmark with a
95% interval (benchmarks.predict), or with --propose=K the K queries to label.
"""

import sys

from absl import app
from absl import flags
from absl import logging
from ml_collections import config_flags

from irt_jax import logs
from irt_jax import utils
from irt_jax.cli import flags as cli_flags
from irt_jax.benchmarks import grid
from irt_jax.benchmarks import grid_tables
from irt_jax.benchmarks import leave_benchmark_out
from irt_jax.benchmarks import scores
from irt_jax.benchmarks import tables

FLAGS = flags.FLAGS


def define_flags() -> None:
  config_flags.DEFINE_config_file("config", utils.config_file("synthetic"), "Training config file.",
                                  lock_config=True)
  flags.DEFINE_string("workdir", None, "Held-out runs and the results go here.")
  flags.DEFINE_string("from_records", None, "Train nothing: print the grid's markdown tables "
                      "(goals with each row chosen on the other datasets, the optimistic "
                      "same-figures goals, then per dataset MAE, Spearman, bias, Kendall) from "
                      "these records (JSON lines of WORKDIR/benchmark_grid.jsonl files, "
                      "concatenated).")
  flags.DEFINE_string("plot", None, "With --from_records: also write the MAE-vs-k plot here.")
  flags.DEFINE_enum("protocol", "ours", ["ours", "paper"],
                    "ours: train/val = the other benchmarks' own train/val splits; paper: "
                    "IrtNet's benchmark_prediction.py (all splits pooled, 90/10 cell split, "
                    "10 epochs, no LR scheduler).")
  flags.DEFINE_list("ks", [str(k) for k in scores.KS], "Few-shot label budgets per LLM.")
  flags.DEFINE_integer("random_repeats", scores.RANDOM_REPEATS, "Random draws per LLM and k (also the "
                       "grid's draws per cell).")
  flags.DEFINE_float("prior_sd", scores.PRIOR_SD, "Prior sd of the refitted per-LLM logit offset.")
  flags.DEFINE_list("benchmarks", [], "Only these held-out benchmarks (default: all).")
  flags.DEFINE_list("protocol_labels", list(grid.PROTOCOLS),
                    "Who is labelled in the grid: shared (one set of k queries for every LLM) "
                    "and/or per_llm (k queries per LLM, each its own).")
  flags.DEFINE_list("selections", [], "Query choices in the grid (default: all): random, "
                    "stratified, anchors_items, anchors_embeddings (shared), adaptive, fluid "
                    "(per_llm).")
  flags.DEFINE_float("scale_prior_sd", grid.SCALE_PRIOR_SD,
                     "Prior sd of the irt estimator's discrimination scale (around 1).")
  flags.DEFINE_float("shared_prior_sd", scores.SHARED_PRIOR_SD,
                     "Prior sd of the benchmark-wide logit offset (around 0).")
  flags.DEFINE_bool("plots", True, "Write PNG plots and benchmark_prediction.md.")
  flags.DEFINE_string("queries", None, "predict: the new benchmark's queries, JSON lines "
                      '{"id": ..., "text": ...} or {"id": ..., "embedding": [...]}.')
  flags.DEFINE_string("labels", None, "predict: answers already labelled, CSV with columns "
                      "query_id, model, correct (0/1).")
  flags.DEFINE_integer("propose", 0, "predict: list this many queries to label (the anchors) "
                       "instead of predicting.")
  flags.DEFINE_string("grid", None, "predict: a benchmark-prediction workdir or its "
                      "benchmark_grid.jsonl, whose records choose the estimator and interval "
                      "(default: --workdir).")
  flags.DEFINE_string("encoder_dir", None, "predict: the run's encoder folder, for text queries "
                      "(default: the one the run recorded).")


def tables_from_records(path: str, plot: str | None) -> None:
  with cli_flags.user_errors("predict-benchmark", also=(OSError,)):
    records = utils.read_records(path, grid_tables.GRID_REQUIRED)
  if not records:
    sys.exit(f"predict-benchmark: {path} holds no records")
  records = grid_tables.label_grid_runs(records)
  print(grid_tables.benchmark_grid_markdown(records))
  if plot:
    from irt_jax.benchmarks import figures
    logging.info("wrote %s", figures.grid_error_vs_k(records, plot))


def predict_command() -> None:
  from irt_jax.benchmarks import predict
  if not FLAGS.workdir or not FLAGS.queries:
    sys.exit("predict-benchmark predict: --workdir (a trained run) and --queries are required")
  logs.quiet_startup()
  with cli_flags.user_errors("predict-benchmark predict"):
    print(predict.run(FLAGS.workdir, FLAGS.queries, FLAGS.labels, FLAGS.propose, FLAGS.grid,
                      FLAGS.encoder_dir), end="")


def main(argv):
  if argv[1:] == ["predict"]:
    return predict_command()
  cli_flags.no_arguments(argv)
  if FLAGS.from_records:
    return tables_from_records(FLAGS.from_records, FLAGS.plot)
  if not FLAGS.workdir:
    raise app.UsageError("--workdir is required (or --from_records for the tables alone)")
  logs.quiet_startup()
  try:
    ks = sorted({int(k) for k in FLAGS.ks})
  except ValueError:
    raise app.UsageError(f"--ks must be integers, got {FLAGS.ks}")
  if any(k <= 0 for k in ks):
    raise app.UsageError(f"--ks must be positive (k = 0 is always reported), got {ks}")
  config = utils.config_from_flag(FLAGS, "predict-benchmark")
  with cli_flags.user_errors("predict-benchmark"):
    result = leave_benchmark_out.run(config, FLAGS.workdir, protocol=FLAGS.protocol, ks=ks,
                    repeats=FLAGS.random_repeats, benchmarks=FLAGS.benchmarks or None,
                    prior_sd=FLAGS.prior_sd, plots=FLAGS.plots,
                    label_protocols=FLAGS.protocol_labels, selections=FLAGS.selections or None,
                    priors=grid.Priors(FLAGS.prior_sd, FLAGS.shared_prior_sd,
                                           FLAGS.scale_prior_sd))
  logging.info("wrote %s/%s", FLAGS.workdir, scores.RESULT_FILE)
  print(tables.format_benchmark_prediction(result))
