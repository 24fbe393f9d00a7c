r"""Every model kind on the shared datasets: test metrics, mean +- std over seeds.

  python -m experiments.compare_kinds --kinds=irtnet,irtnet_linear,mf,routerdc,knn,logreg \
      --datasets=routerdc,llmrouter,zeroeval --seeds=0,1,2 --workdir=runs/kinds
Each (kind, dataset, seed) trains with `configs/<kind>.py` as published (no
tuning here; knn's k and logreg's C are chosen on val inside their fit), then is
evaluated once on the test split. Finished runs are skipped, so an interrupted
comparison resumes. Appends to --records (default WORKDIR/results.jsonl) and writes
WORKDIR/table.md.
Fitted kinds (knn, logreg) do not depend on the seed and run once; `cluster`
(k-means from a seeded start) runs once per seed. A name in
--kinds is a config file (configs/<name>.py), so `recommended` (an ensemble whose
members train with the run's seed) runs like a gradient kind, once per seed.
`--table_only` rewrites the table from the records, listing cells not yet run.
Each run's test logits and labels go to PREDS_DIR/<dataset>/<kind>-s<seed>.npz
(default: preds/ beside the records; with best_single-s0.npz, the best single
model as a router, and max_expert-s0.npz, the train-best model of each query's
benchmark, which needs the benchmark label), and the table adds every kind's paired difference from the
first kind with a 95% bootstrap interval over test queries (evaluation/paired).
"""

import json
import os
import sys
import time

from irt_jax import logs  # noqa: E402
from irt_jax import utils  # noqa: E402

utils.retain_freed_memory()  # before jax or numpy start threads (see its docstring)

from absl import app, flags, logging  # noqa: E402

from irt_jax import checkpoint, evaluation, models, predictors
from irt_jax.data import resolve
from irt_jax import training  # noqa: E402
from irt_jax.evaluation import evaluators, field_metrics, paired, report  # noqa: E402
from irt_jax.data import io as data_io  # noqa: E402
from irt_jax.routing import hindsight, rules  # noqa: E402
import numpy as np  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_list("kinds", ["irtnet", "irtnet_linear", "mf", "routerdc", "knn", "logreg"],
                  "Kinds (the paper's first: its row leads the table).")
flags.DEFINE_list("datasets", ["routerdc", "llmrouter", "zeroeval"], "Folders under --data_root.")
flags.DEFINE_string("data_root", os.path.join(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))), "..", "shared", "data"), "Where the datasets live.")
flags.DEFINE_list("seeds", ["0", "1", "2"], "Seeds (gradient kinds).")
flags.DEFINE_string("workdir", "runs/kinds", "Runs and table.md go here.")
flags.DEFINE_string("records", None, "One JSON line per finished run (default WORKDIR/results.jsonl). "
                    "The README's tables read docs/results/kinds.jsonl, which is committed, so a "
                    "new clone re-prints them and resumes without re-running finished cells.")
flags.DEFINE_list("overrides", [], "key=value config overrides for every run (e.g. "
                  "train.batching=pairs).")
flags.DEFINE_bool("table_only", False, "Only rewrite table.md from the records (run nothing).")
flags.DEFINE_string("tag", "", "Suffix of the run names (to compare override sets).")
flags.DEFINE_string("preds_dir", None, "Per-run test predictions (default: preds/ beside "
                    "--records); the paired intervals are computed from them.")
flags.DEFINE_integer("n_resamples", 2000, "Bootstrap resamples of test queries.")

COLUMNS = (("accuracy", "correctness", "accuracy"), ("auc", "correctness", "auc"),
           ("log_loss", "correctness", "log_loss"),
           ("routing_micro", "routing", "micro"), ("routing_macro", "routing", "macro"))


def kind_config(kind):
  """configs/<kind>.py as published, then --overrides."""
  try:
    config = utils.load_config(kind)
  except utils.ConfigError:
    raise ValueError(f"unknown model kind or config {kind!r} (no configs/{kind}.py); valid "
                     f"kinds: {', '.join(models.names())}") from None
  utils.apply_overrides(config, FLAGS.overrides)
  return config


def save_hindsight(data, preds_dir):
  """Once per dataset, the routers read off the train split, as logits: the best
  single model (minus its rank by train accuracy) and Max Expert (minus the rank
  by train accuracy on the query's benchmark, routing/hindsight.py)."""
  test = data.split("test")
  bench = data.benchmark[test.queries]
  single = os.path.join(preds_dir, data.name, "best_single-s0.npz")
  if not os.path.exists(single):
    order = rules.best_single_order(data.split("train"))
    rank = np.empty(len(order))
    rank[order] = np.arange(len(order))
    paired.save(single, np.broadcast_to(-rank, test.labels.shape), test.labels, bench)
  expert = os.path.join(preds_dir, data.name, "max_expert-s0.npz")
  if not os.path.exists(expert):
    scores = hindsight.for_split(data.split("train"), data.benchmark, test.queries,
                                 len(data.benchmark_names))
    paired.save(expert, scores, test.labels, bench)


def save_predictions(run, data, name, seed, preds_dir):
  """The run's test logits (and the hindsight routers) for the paired intervals."""
  pred = evaluators.predictions_for(run.predictor, data, "test")
  paired.save(os.path.join(preds_dir, data.name, f"{name}-s{seed}.npz"), pred.logits,
              pred.labels, pred.benchmark)
  save_hindsight(data, preds_dir)


def complete_hindsight(preds_dir):
  """Max Expert's file for datasets whose predictions predate it (read from the
  dataset folder, default benchmarks; its test benchmarks must match the files')."""
  for dataset in FLAGS.datasets:
    folder = os.path.join(preds_dir, dataset)
    if not os.path.isdir(folder) or os.path.exists(os.path.join(folder, "max_expert-s0.npz")):
      continue
    data_dir = os.path.join(FLAGS.data_root, dataset)
    if not os.path.isdir(data_dir):
      logging.warning("no %s: Max Expert for %s not written", data_dir, dataset)
      continue
    data = data_io.load_dataset(data_dir, require=("train", "test"))
    existing = paired.files_for(preds_dir, dataset, "best_single")
    if existing:
      with np.load(existing[0]) as f:
        if not np.array_equal(f["benchmark"], data.benchmark[data.split("test").queries]):
          sys.exit(f"compare_kinds.py: {data_dir}: its test benchmarks differ from those of "
                   f"{existing[0]} (another benchmark mapping?)")
    save_hindsight(data, preds_dir)


def run_one(kind, dataset, seed, out, preds_dir):
  config = kind_config(kind)
  config.seed = seed
  config.data.dir = os.path.join(FLAGS.data_root, dataset)
  workdir = os.path.join(FLAGS.workdir, f"{kind}{FLAGS.tag}-{dataset}-s{seed}")
  t0 = time.time()
  summary = training.run(config, workdir)  # trains or fits, by the kind; resolves the data
  seconds = time.time() - t0
  run = predictors.load(workdir)
  data = resolve.prepare_and_load(run.config, workdir, require=("train", "test"))
  result = evaluation.evaluate(run, data, "test")  # the test split, read once per run
  save_predictions(run, data, kind + FLAGS.tag, seed, preds_dir)
  record = {"kind": kind + FLAGS.tag, "dataset": dataset, "seed": seed,
            "seconds": round(seconds, 1), "best": summary.get("best"),
            "overrides": list(FLAGS.overrides), "baselines": result["routing"]["baselines"]}
  for col, group, key in COLUMNS:
    record[col] = result[group][key]
  with open(out, "a") as f:
    f.write(json.dumps(record) + "\n")
  print(json.dumps(record), flush=True)


# Fitted kinds whose fit reads the seed (k-means restarts): run once per seed.
SEEDED_FITS = {"cluster"}

# log_loss is recorded since the paired intervals; older records lack it.
RECORD_KEYS = ({"kind", "dataset", "seed", "seconds", "baselines"}
               | {col for col, _, _ in COLUMNS if col != "log_loss"})


def read_records(path: str) -> list[dict]:
  try:
    return utils.read_records(path, RECORD_KEYS)
  except ValueError as e:
    sys.exit(f"compare_kinds.py: {e}")


def main(argv):
  del argv
  logs.quiet_startup()
  os.makedirs(FLAGS.workdir, exist_ok=True)
  out = FLAGS.records or os.path.join(FLAGS.workdir, "results.jsonl")
  preds_dir = FLAGS.preds_dir or os.path.join(os.path.dirname(os.path.abspath(out)), "preds")
  os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
  done = {}  # (kind + tag, dataset, seed) -> the overrides it ran with
  if os.path.exists(out):
    done = {(r["kind"], r["dataset"], r["seed"]): r.get("overrides", []) for r in read_records(out)}
  for kind in [] if FLAGS.table_only else FLAGS.kinds:  # all checked before the first run
    try:
      models.for_config(kind_config(kind))
    except ValueError as e:  # an unknown kind or override (ConfigError is a ValueError)
      sys.exit(f"compare_kinds.py: {kind}: {e}")
  missing = [d for d in FLAGS.datasets if not os.path.isdir(os.path.join(FLAGS.data_root, d))]
  if missing and not FLAGS.table_only:
    sys.exit(f"compare_kinds.py: no dataset folder {os.path.join(FLAGS.data_root, missing[0])} "
             "(see --data_root and --datasets)")
  for kind in [] if FLAGS.table_only else FLAGS.kinds:
    model_kind = models.for_config(kind_config(kind))
    # an ensemble trains its members with the run's seed (configs/recommended.py)
    fitted = not (model_kind.trained_by_gradient or model_kind.takes_members
                  or model_kind.name in SEEDED_FITS)
    for dataset in FLAGS.datasets:
      for seed in ([0] if fitted else [int(s) for s in FLAGS.seeds]):
        key = (kind + FLAGS.tag, dataset, seed)
        if key not in done:
          logging.info("running %s%s on %s, seed %d", kind, FLAGS.tag, dataset, seed)
          try:
            run_one(kind, dataset, seed, out, preds_dir)
          except (ValueError, checkpoint.CheckpointError, training.TrainingError) as e:
            sys.exit(f"compare_kinds.py: {kind}{FLAGS.tag} on {dataset}, seed {seed}: {e}")
        elif sorted(done[key]) != sorted(FLAGS.overrides):
          logging.warning("%s on %s, seed %d: recorded with overrides %s, not %s; kept as "
                          "finished (use another --tag, or delete its line in %s to re-run)",
                          *key, done[key], list(FLAGS.overrides), out)
  if not os.path.exists(out):
    sys.exit(f"compare_kinds.py: no records at {out}: run without --table_only first")
  records = read_records(out)
  names = [k + FLAGS.tag for k in FLAGS.kinds]
  text = report.kinds_table(records, FLAGS.datasets, names)
  if os.path.isdir(preds_dir):
    complete_hindsight(preds_dir)
    text += "\n" + report.paired_table(FLAGS.datasets, names, preds_dir, FLAGS.n_resamples)
    text += "\n" + field_metrics.field_table(FLAGS.datasets, names, preds_dir)
  with open(os.path.join(FLAGS.workdir, "table.md"), "w") as f:
    f.write(text)
  print(text)


if __name__ == "__main__":
  app.run(main)
