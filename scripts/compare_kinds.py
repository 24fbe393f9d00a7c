r"""Every model kind on the shared datasets: test metrics, mean +- std over seeds.

  python scripts/compare_kinds.py --kinds=irtnet,irtnet_linear,mf,routerdc,knn,logreg \
      --datasets=routerdc,llmrouter,zeroeval --seeds=0,1,2 --workdir=runs/kinds
Each (kind, dataset, seed) trains with `configs/<kind>.py` as published (no
tuning here; knn's k and logreg's C are chosen on val inside their fit), then is
evaluated once on the test split. Finished runs are skipped, so an interrupted
comparison resumes. Writes WORKDIR/results.jsonl and WORKDIR/table.md.
Fitted kinds (knn, logreg) do not depend on the seed and run once.
`--table_only` rewrites the table from results.jsonl, listing cells not yet run.
"""

import importlib
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402
from absl import app, flags, logging  # noqa: E402

from irt_jax import checkpoint, datasets, evaluation, models, predictors, training  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_list("kinds", ["irtnet", "irtnet_linear", "mf", "routerdc", "knn", "logreg"],
                  "Kinds (the paper's first: its row leads the table).")
flags.DEFINE_list("datasets", ["routerdc", "llmrouter", "zeroeval"], "Folders under --data_root.")
flags.DEFINE_string("data_root", os.path.join(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))), "..", "shared", "data"), "Where the datasets live.")
flags.DEFINE_list("seeds", ["0", "1", "2"], "Seeds (gradient kinds).")
flags.DEFINE_string("workdir", "runs/kinds", "Runs, results.jsonl and table.md go here.")
flags.DEFINE_list("overrides", [], "key=value config overrides for every run (e.g. "
                  "train.batching=pairs).")
flags.DEFINE_bool("table_only", False, "Only rewrite table.md from results.jsonl (run nothing).")
flags.DEFINE_string("tag", "", "Suffix of the run names (to compare override sets).")

COLUMNS = (("accuracy", "correctness", "accuracy", 100), ("auc", "correctness", "auc", 1),
           ("routing_micro", "routing", "micro", 100), ("routing_macro", "routing", "macro", 100))


def _parse(value):
  for cast in (int, float):
    try:
      return cast(value)
    except ValueError:
      pass
  return value


def run_one(kind, dataset, seed, out):
  config = importlib.import_module(f"configs.{kind}").get_config()
  config.seed = seed
  config.data.dir = os.path.join(FLAGS.data_root, dataset)
  for item in FLAGS.overrides:
    key, _, value = item.partition("=")
    *path, leaf = key.split(".")
    node = config
    for p in path:
      node = node[p]
    node[leaf] = _parse(value)
  workdir = os.path.join(FLAGS.workdir, f"{kind}{FLAGS.tag}-{dataset}-s{seed}")
  t0 = time.time()
  summary = training.train_and_evaluate(config, workdir)
  seconds = time.time() - t0
  run = predictors.load(workdir)
  data = datasets.prepare_and_load(run.config, workdir, require=("train", "test"))
  report = evaluation.evaluate(run, data, "test")  # the test split, read once per run
  record = {"kind": kind + FLAGS.tag, "dataset": dataset, "seed": seed,
            "seconds": round(seconds, 1), "best": summary.get("best"),
            "baselines": report["routing"]["baselines"]}
  for col, group, key, _ in COLUMNS:
    record[col] = report[group][key]
  with open(out, "a") as f:
    f.write(json.dumps(record) + "\n")
  print(json.dumps(record), flush=True)


def table(records):
  lines = ["| dataset | kind | seeds | test accuracy | test AUC | routing micro | routing macro |"
           " train s |", "|---|---|---|---|---|---|---|---|"]
  for dataset in FLAGS.datasets:
    rows = [r for r in records if r["dataset"] == dataset]
    kinds = [k + FLAGS.tag for k in FLAGS.kinds]
    for kind in kinds + [k for k in dict.fromkeys(r["kind"] for r in rows) if k not in kinds]:
      rs = [r for r in rows if r["kind"] == kind]
      if not rs:
        lines.append(f"| {dataset} | {kind} | 0 | not run | | | | |")
        continue
      cells = []
      for col, _, _, scale in COLUMNS:
        v = scale * np.array([r[col] for r in rs])
        fmt = ".4f" if scale == 1 else ".2f"
        cells.append(f"{v.mean():{fmt}} +- {v.std():{fmt}}" if len(v) > 1 else f"{v[0]:{fmt}}")
      sec = np.mean([r["seconds"] for r in rs])
      lines.append(f"| {dataset} | {kind} | {len(rs)} | " + " | ".join(cells) + f" | {sec:.0f} |")
    if rows:
      b = rows[0]["baselines"]
      for name in ("oracle", "best_single", "random"):
        lines.append(f"| {dataset} | *{name}* | | | | {100 * b[name]['micro']:.2f} | "
                     f"{100 * b[name]['macro']:.2f} | |")
  return "\n".join(lines) + "\n"


def main(argv):
  del argv
  checkpoint.quiet_orbax_logs()
  os.makedirs(FLAGS.workdir, exist_ok=True)
  out = os.path.join(FLAGS.workdir, "results.jsonl")
  done = set()
  if os.path.exists(out):
    with open(out) as f:
      done = {(r["kind"], r["dataset"], r["seed"]) for r in map(json.loads, f)}
  for kind in [] if FLAGS.table_only else FLAGS.kinds:
    fitted = not models.get(kind).trained_by_gradient
    for dataset in FLAGS.datasets:
      for seed in ([0] if fitted else [int(s) for s in FLAGS.seeds]):
        if (kind + FLAGS.tag, dataset, seed) not in done:
          logging.info("running %s%s on %s, seed %d", kind, FLAGS.tag, dataset, seed)
          run_one(kind, dataset, seed, out)
  with open(out) as f:
    records = [json.loads(l) for l in f]
  text = table(records)
  with open(os.path.join(FLAGS.workdir, "table.md"), "w") as f:
    f.write(text)
  print(text)


if __name__ == "__main__":
  app.run(main)
