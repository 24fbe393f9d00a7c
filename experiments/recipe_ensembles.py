r"""Scores the recipe search on validation, ensembles included, and ranks it.

  python -m experiments.recipe_ensembles --records=docs/results/recipe_search_runs.jsonl \
      --preds_dir=docs/results/preds_val --out=docs/results/recipe_search.jsonl
Reads the records of experiments/search_recommended.py and each run's val logits
(its --preds_dir), adds ensembles of entries
(`--ensembles=A+B[:rule]`, rule mean (default), global, per_llm or auto; a
fitted rule is scored cross-fitted over two halves of val, so no figure uses
labels its weights saw), and writes one JSON line per (candidate, dataset) plus
the ranking as a markdown table.

The selection rule, fixed before the search's results were read: every
candidate (single entries and ensembles, seed 0) is ranked among all candidates
on each shared dataset by val log loss, val AUC and val routing micro; its score
is the mean of those 9 ranks (3 datasets x 3 figures), lowest first, ties broken
by mean val log loss. A candidate whose members' training took more than 5
minutes in all on a dataset is listed but not eligible (the issue's 5 minutes are
for the whole recipe). Training seconds depend on the load: `--times` reads them
from a re-run of the same entries under one load instead of the search's own
records, which ran under whatever load each search process met. Only val is
read here.
"""

import json
import os
import sys

import numpy as np  # noqa: E402
from absl import app, flags  # noqa: E402

from irt_jax import metrics, numerics, utils  # noqa: E402
from irt_jax.evaluation import evaluators  # noqa: E402
from irt_jax.models import ensemble  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_list("records", ["docs/results/recipe_search_runs.jsonl"],
                  "Search records (experiments/search_recommended.py --out).")
flags.DEFINE_string("preds_dir", "docs/results/preds_val",
                    "The search's val logits (experiments/search_recommended.py --preds_dir).")
flags.DEFINE_list("ensembles", [], "A+B[+C][:rule] candidates (entry names).")
flags.DEFINE_string("out", "docs/results/recipe_search.jsonl", "Scored candidates (JSON lines).")
flags.DEFINE_float("max_seconds", 300.0, "Eligibility: the members' training seconds in all, "
                   "per dataset.")
flags.DEFINE_list("times", [], "Records of a timing re-run of the entries "
                  "(experiments/search_recommended.py --out; seed 0): their seconds replace the "
                  "search records' for eligibility, so every candidate is timed under one load.")

FIGURES = (("val_log_loss", False), ("val_auc", True), ("val_routing_micro", True))


def val_figures(logits, labels, benchmark) -> dict:
  """Val log loss, AUC, accuracy and routing of logits [n, M] (labels -1 unknown)."""
  known = labels >= 0
  rows = known.any(1)
  m = metrics.binary_metrics(numerics.sigmoid(logits[known]), labels[known])
  names = [str(b) for b in range(int(benchmark.max()) + 1)]
  r = evaluators.routing_summary(logits[rows], labels[rows], benchmark[rows], names,
                                 np.arange(labels.shape[1]))
  return {"val_accuracy": m["accuracy"], "val_auc": m["auc"], "val_log_loss": m["log_loss"],
          "val_routing_micro": r["micro"], "val_routing_macro": r["macro"]}


def load_preds(record: dict) -> dict:
  path = os.path.join(FLAGS.preds_dir, record["dataset"], f"{record['name']}-s{record['seed']}.npz")
  try:
    with np.load(path, allow_pickle=False) as f:
      return {k: f[k].astype(np.float64) if k == "logits" else f[k]
              for k in ("logits", "labels", "benchmark")}
  except (OSError, KeyError, ValueError) as e:
    sys.exit(f"recipe_ensembles.py: {path}: no val predictions of {record['name']} ({e})")


def train_seconds(names: list[str], dataset: str, singles: dict, times: dict) -> float | None:
  """The members' training seconds in all: from `times` (--times) when given;
  None where a member was not timed there."""
  source = times or singles
  if any((n, dataset) not in source for n in names):
    return None
  return round(sum(source[(n, dataset)]["seconds"] for n in names), 1)


def ensemble_row(spec: str, singles: dict, preds: dict, dataset: str,
                 times: dict) -> dict | None:
  names, _, rule = spec.partition(":")
  names, rule = names.split("+"), rule or "mean"
  if any((n, dataset) not in preds for n in names):
    return None
  z = np.stack([preds[(n, dataset)]["logits"].astype(np.float64) for n in names])
  first = preds[(names[0], dataset)]
  if rule == "mean":
    combined = z.mean(0)
  elif rule == "auto":
    scores = ensemble.choose_combination(z, first["labels"])
    rule = "auto->" + min(scores, key=scores.get)
    combined = ensemble.cross_fitted_logits(rule[6:], z, first["labels"])
  else:
    combined = ensemble.cross_fitted_logits(rule, z, first["labels"])
  row = {"name": spec, "dataset": dataset, "seed": 0, "members": names, "rule": rule,
         "seconds": round(sum(singles[(n, dataset)]["seconds"] for n in names), 1),
         "train_seconds": train_seconds(names, dataset, singles, times)}
  row.update(val_figures(combined, first["labels"], first["benchmark"]))
  return row


def rank(rows: list[dict], datasets: list[str]) -> list[tuple]:
  """(mean rank, mean log loss, name) per candidate present on every dataset."""
  names = sorted({r["name"] for r in rows})
  by = {(r["name"], r["dataset"]): r for r in rows}
  names = [n for n in names if all((n, d) in by for d in datasets)]
  ranks = {n: [] for n in names}
  for d in datasets:
    for key, higher in FIGURES:
      values = np.array([by[(n, d)][key] for n in names])
      order = metrics.average_ranks(-values if higher else values)
      for n, r in zip(names, order):
        ranks[n].append(r)
  return sorted((float(np.mean(ranks[n])), float(np.mean([by[(n, d)]["val_log_loss"]
                                                           for d in datasets])), n)
                for n in names)


def read_search(paths: list[str]) -> dict:
  """(name, dataset) -> seed-0 record, from search records (one load per file list)."""
  out = {}
  for path in paths:
    try:
      records = utils.read_records(path, {"name", "dataset", "seed", "seconds"})
    except (OSError, ValueError) as e:
      sys.exit(f"recipe_ensembles.py: {e}")
    out.update({(r["name"], r["dataset"]): r for r in records if r["seed"] == 0})
  return out


def print_ranking(rows: list[dict], datasets: list[str]) -> None:
  """The ranking as a markdown table; `train s` is the members' training seconds
  in all on the slowest dataset (over FLAGS.max_seconds: not eligible)."""
  by = {(r["name"], r["dataset"]): r for r in rows}
  print("| rank | candidate | mean rank | mean val log loss | " +
        " | ".join(f"{d} loss / AUC / routing" for d in datasets) + " | train s |")
  print("|---" * (5 + len(datasets)) + "|")
  for i, (mean_rank, loss, name) in enumerate(rank(rows, datasets), 1):
    cells = [f"{by[(name, d)]['val_log_loss']:.4f} / {by[(name, d)]['val_auc']:.4f} / "
             f"{100 * by[(name, d)]['val_routing_micro']:.2f}" for d in datasets]
    seconds = [by[(name, d)]["train_seconds"] for d in datasets]
    if None in seconds:
      sys.exit(f"recipe_ensembles.py: {name}: a member has no timing on "
               f"{datasets[seconds.index(None)]} in --times")
    slowest = max(seconds)
    flag = " (over 5 min)" if slowest > FLAGS.max_seconds else ""
    print(f"| {i} | {name}{flag} | {mean_rank:.2f} | {loss:.4f} | " + " | ".join(cells) +
          f" | {slowest:.0f} |")


def main(argv):
  del argv
  singles = read_search(FLAGS.records)
  times = read_search(FLAGS.times) if FLAGS.times else {}
  preds, rows = {}, []
  for key, r in singles.items():
    preds[key] = load_preds(r)
    row = {**r, "members": [r["name"]], "rule": "single",
           "train_seconds": train_seconds([r["name"]], r["dataset"], singles, times)}
    row.update(val_figures(preds[key]["logits"], preds[key]["labels"], preds[key]["benchmark"]))
    rows.append(row)
  datasets = sorted({d for _, d in singles})
  for spec in FLAGS.ensembles:
    for d in datasets:
      row = ensemble_row(spec, singles, preds, d, times)
      if row is not None:
        rows.append(row)
  with open(FLAGS.out, "w") as f:
    for r in rows:
      f.write(json.dumps(r) + "\n")
  print_ranking(rows, datasets)


if __name__ == "__main__":
  app.run(main)
