r"""Validation-only search for configs/recommended.py (issue: a recommended IrtNet).

  python -m experiments.search_recommended --datasets=llmrouter,routerdc,zeroeval \
      --grid=NAME:key=value,key=value [--grid=...] --out=runs/search/results.jsonl
Each grid entry starts from configs/irtnet.py on query blocks with `config.auto`
off (base_config; an entry's first item `base=KIND` starts from configs/KIND.py
instead, e.g. `logreg:base=logreg`), applies the overrides, trains on train
(early stopping on val) and evaluates on **val only** (the test split is never
read here). One JSON line per (entry, dataset, seed) goes to --out, so an
interrupted search resumes where it stopped; each run's val logits and labels go
to --preds_dir, so ensembles of entries can be scored on val afterwards
(experiments/recipe_ensembles.py).
"""

import json
import os
import sys
import time

from irt_jax import logs  # noqa: E402
from irt_jax import utils  # noqa: E402

utils.retain_freed_memory()  # before jax or numpy start threads (see its docstring)

from absl import app, flags, logging  # noqa: E402

from irt_jax import checkpoint, evaluation, predictors
from irt_jax.data import resolve
from irt_jax import training  # noqa: E402
from irt_jax.training import sizing  # noqa: E402
from irt_jax.evaluation import evaluators, paired  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_list("datasets", ["llmrouter"], "Folders under --data_root.")
flags.DEFINE_string("data_root", os.path.join(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))), "..", "shared", "data"), "Where the datasets live.")
flags.DEFINE_multi_string("grid", [], "NAME:key=value,key=value (config overrides).")
flags.DEFINE_list("seeds", ["0"], "Seeds per entry.")
flags.DEFINE_string("out", "runs/search/results.jsonl", "Results (JSON lines).")
flags.DEFINE_string("preds_dir", None, "Each run's val logits go to PREDS_DIR/<dataset>/"
                    "<name>-s<seed>.npz (default: preds_val/ beside --out), for "
                    "experiments/recipe_ensembles.py.")


def base_config(overrides):
  """configs/irtnet.py on query blocks (the layout of the README's search table;
  an entry may set train.batching=pairs) with config.auto present but off, or
  configs/KIND.py for a leading `base=KIND`; then the entry's overrides."""
  kind = "irtnet"
  if overrides and overrides[0].startswith("base="):
    kind, overrides = overrides[0].partition("=")[2], overrides[1:]
  try:
    config = utils.load_config(kind)
  except utils.ConfigError:
    raise ValueError(f"base={kind}: no configs/{kind}.py") from None
  if kind == "irtnet":
    config.train.batching = "blocks"
    config.auto = sizing.auto_config(steps_per_epoch=0)
  utils.apply_overrides(config, overrides)
  return config


def main(argv):
  del argv
  logs.quiet_startup()
  done = set()
  if os.path.exists(FLAGS.out):
    try:
      done = {(r["name"], r["dataset"], r["seed"])
              for r in utils.read_records(FLAGS.out, {"name", "dataset", "seed"})}
    except ValueError as e:
      sys.exit(f"search_recommended.py: {e}")
  os.makedirs(os.path.dirname(FLAGS.out) or ".", exist_ok=True)
  grid = [(name, [o for o in overrides.split(",") if o])
          for name, _, overrides in (entry.partition(":") for entry in FLAGS.grid)]
  for name, overrides in grid:  # every entry checked before the first run starts
    try:
      base_config(overrides)
    except ValueError as e:
      sys.exit(f"search_recommended.py: --grid {name}: {e}")
  missing = [d for d in FLAGS.datasets if not os.path.isdir(os.path.join(FLAGS.data_root, d))]
  if missing:
    folder = os.path.join(FLAGS.data_root, missing[0])
    sys.exit(f"search_recommended.py: no dataset folder {folder} (see --data_root and --datasets)")
  for name, overrides in grid:
    for dataset in FLAGS.datasets:
      for seed in map(int, FLAGS.seeds):
        if (name, dataset, seed) in done:
          continue
        try:
          record = run_entry(name, overrides, dataset, seed)
        except (ValueError, checkpoint.CheckpointError, training.TrainingError) as e:
          sys.exit(f"search_recommended.py: {name} on {dataset}, seed {seed}: {e}")
        logging.info("%s", record)
        print(json.dumps(record), flush=True)
        with open(FLAGS.out, "a") as f:
          f.write(json.dumps(record) + "\n")


def run_entry(name, overrides, dataset, seed) -> dict:
  """Trains one grid entry and evaluates its best checkpoint on val: its record."""
  config = base_config(overrides)
  config.seed = seed
  config.data.dir = os.path.join(FLAGS.data_root, dataset)
  workdir = os.path.join(os.path.dirname(FLAGS.out), f"{name}-{dataset}-s{seed}")
  t0 = time.time()
  summary = training.run(config, workdir)  # trains or fits, by the kind
  run = predictors.load(workdir, "best")
  data = resolve.prepare_and_load(run.config, workdir, require=("train", "val"))
  rep = evaluation.evaluate(run, data, "val", names=("correctness", "routing"))
  pred = evaluators.predictions_for(run.predictor, data, "val")
  paired.save(os.path.join(FLAGS.preds_dir or os.path.join(os.path.dirname(FLAGS.out),
                                                           "preds_val"),
                           dataset, f"{name}-s{seed}.npz"), pred.logits, pred.labels,
              pred.benchmark)
  return {"name": name, "dataset": dataset, "seed": seed, "overrides": ",".join(overrides),
          "val_accuracy": rep["correctness"]["accuracy"],
          "val_auc": rep["correctness"]["auc"],
          "val_log_loss": rep["correctness"]["log_loss"],
          "batch_cells": run.config.train.get("batch_cells"),
          "lr": run.config.get("optim", {}).get("lr"),
          "val_routing_micro": rep["routing"]["micro"],
          "val_routing_macro": rep["routing"]["macro"],
          "best_epoch": ((summary.get("best") or {}).get("epoch")),
          "epochs": len(summary.get("history") or []), "seconds": round(time.time() - t0, 1)}


if __name__ == "__main__":
  app.run(main)
