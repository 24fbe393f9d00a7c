"""Leave-one-benchmark-out: benchmark-score prediction on a benchmark the model
has never seen.

For each benchmark B one model is trained without any of B's labels
(data.splits.leave_out), then every LLM's accuracy on B is predicted with the
estimators of benchmarks.scores and benchmarks.grid (zero-shot, and from k labels per LLM).

Each held-out run lives in WORKDIR/heldout/<B>/ (a normal training workdir, so
an interrupted one resumes) and ends in predictions.npz; a benchmark with that
file is skipped on a rerun. It trains on the subset in memory: its config names
the dataset's folder, its checkpoint the subset's fingerprint (which a resumed
run must match), and no copy of the data is written.
"""

from __future__ import annotations

import dataclasses
import glob
import json
import os

import numpy as np
from absl import logging

from irt_jax import utils
from irt_jax.data import io as data_lib
from irt_jax.data import resolve
from irt_jax.data import splits as data_splits
from irt_jax.benchmarks import grid
from irt_jax.benchmarks import scores


GRID_FILE = "grid.json"
RECORDS_FILE = "benchmark_grid.jsonl"


def _sub_config(config, folder: str, protocol: str):
  """The held-out run's config: the dataset's folder (where its data and
  embeddings come from) and, for protocol 'paper', the released code's schedule."""
  sub = config.copy_and_resolve_references()
  with sub.unlocked():
    sub.data.dir = folder
    if protocol == "paper":  # IrtNet's benchmark_prediction.py: 10 epochs, no scheduler
      sub.train.num_epochs = 10
      sub.optim.plateau_factor = 1.0
      sub.train.early_stop_patience = sub.train.num_epochs + 1
  return sub


def item_strength(run, embeddings: np.ndarray) -> np.ndarray:
  """|a_q|^2 for kinds with an IRT view; ones otherwise."""
  kind, predictor = run.kind, run.predictor
  if kind.irt is None:
    return np.ones(len(embeddings))
  out = []
  for start in range(0, len(embeddings), 2048):
    a, _ = kind.irt.items(predictor.params, np.asarray(embeddings[start:start + 2048],
                                                       np.float32), predictor.spec)
    out.append((np.asarray(a, np.float64) ** 2).sum(axis=1))
  return np.concatenate(out) if out else np.zeros(0)


def irt_parameters(run, embeddings: np.ndarray) -> dict:
  """The held-out items' a_q [n, d], b_q [n] and every LLM's theta [M, d], for the
  IRT estimators that refit the new benchmark's item side with abilities fixed;
  nothing for kinds without an IRT view."""
  if run.kind.irt is None:
    return {}
  from irt_jax.coldstart import ability
  a, b = ability.item_parameters(run.predictor, embeddings)
  return {"item_a": np.asarray(a, np.float32), "item_b": np.asarray(b, np.float32),
          "theta": np.asarray(ability.abilities(run.predictor), np.float32)}


def train_held_out(config, workdir: str, data: data_lib.ResponseData, b: int,
                   protocol: str) -> dict:
  """Trains (or resumes, or reuses) the model without benchmark b; its predictions for b."""
  from irt_jax import checkpoint as ckpt_lib
  from irt_jax import predictors
  from irt_jax import training
  name = data.benchmark_names[b]
  subdir = os.path.join(workdir, "heldout", _safe(name))
  path = os.path.join(subdir, scores.PREDICTIONS_FILE)
  if os.path.exists(path):
    with np.load(path, allow_pickle=False) as f:
      return {k: f[k] for k in f.files}
  train_data, target = data_splits.leave_out(data, b, protocol, seed=config.seed)
  sub = _sub_config(config, os.path.abspath(resolve.folder(config, workdir)), protocol)
  training.run(sub, subdir, train_data)
  try:
    run = predictors.load(subdir, "best")
  except ckpt_lib.CheckpointError as e:  # the best step was not kept: say so, use the latest
    logging.warning("%s: %s; predicting with the latest checkpoint instead", subdir, e)
    run = predictors.load(subdir, "latest")
  emb = data.embeddings[target.queries]
  result = {"queries": target.queries, "labels": target.labels,
            "logits": run.predictor.logits(emb), "a_sq": item_strength(run, emb),
            "checkpoint_step": np.int64(run.step), **irt_parameters(run, emb)}
  np.savez(f"{path}.tmp.npz", **result)
  os.replace(f"{path}.tmp.npz", path)
  return result


def _safe(name: str) -> str:
  return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)


def held_out_benches(workdir: str):
  """(path, grid Bench) for each finished held-out run of `workdir`
  (heldout/<B>/predictions.npz, read without pickle), in path order: what the
  experiments read instead of training anything."""
  for path in sorted(glob.glob(os.path.join(workdir, "heldout", "*", scores.PREDICTIONS_FILE))):
    with np.load(path, allow_pickle=False) as f:
      yield path, grid.bench_from_predictions({key: f[key] for key in f.files})


def held_out_grid(workdir: str, name: str, pred: dict, embeddings, settings: dict) -> dict:
  """One held-out benchmark's grid metrics (benchmarks.grid), cached in
  heldout/<B>/grid.json with the settings that made it: a rerun with the same
  settings reuses it, other settings recompute it."""
  path = os.path.join(workdir, "heldout", _safe(name), GRID_FILE)
  if os.path.exists(path):
    with open(path) as f:
      saved = json.load(f)
    if saved.get("settings") == settings:
      return saved["metrics"]
  bench = grid.bench_from_predictions(pred, embeddings)
  estimated = grid.benchmark_grid(
      bench, settings["ks"], settings["draws"], settings["seed"],
      grid.Priors(**settings["priors"]), settings["protocols"], settings["choices"])
  metrics = grid.grid_metrics(estimated, grid.true_scores(bench.labels))
  utils.write_json(path, {"settings": settings, "metrics": metrics})
  return metrics


def write_records(path: str, result: dict) -> None:
  """The grid's records (benchmark_grid.records) as JSON lines, written atomically:
  what docs/results/benchmark_grid.jsonl is made of."""
  with open(f"{path}.tmp", "w") as f:
    for record in grid.records(result):
      f.write(json.dumps(record) + "\n")
  os.replace(f"{path}.tmp", path)


def run(config, workdir: str, *, protocol: str = "ours", ks=scores.KS,
        repeats: int = scores.RANDOM_REPEATS, benchmarks=None, prior_sd: float = scores.PRIOR_SD,
        plots: bool = True, label_protocols=grid.PROTOCOLS, selections=None,
        priors: grid.Priors | None = None) -> dict:
  """Leave-one-benchmark-out over a dataset; writes WORKDIR/benchmark_prediction.json
  and the grid's records, WORKDIR/benchmark_grid.jsonl."""
  from tqdm import tqdm
  settings = _grid_settings(config, ks, repeats, prior_sd, label_protocols, selections, priors)
  os.makedirs(workdir, exist_ok=True)
  setup = {"protocol": protocol, "kind": config.model.name, "ks": [int(k) for k in ks],
           "random_repeats": int(repeats), "prior_sd": float(prior_sd), "seed": int(config.seed),
           "shared_prior_sd": scores.SHARED_PRIOR_SD,
           "estimator": "MAP logit offsets: benchmark-wide on all LLMs' k labels (prior "
                        "N(0, shared_prior_sd^2)), then per LLM around it (prior sd "
                        "prior_sd); observed labels + refitted P on the rest",
           "adaptive": "sequential max p(1-p)|a_q|^2 given the refitted offset",
           "grid": settings}
  setup_path = os.path.join(workdir, "benchmark_prediction_setup.json")
  if os.path.exists(setup_path):
    with open(setup_path) as f:
      saved = json.load(f)
    if saved["protocol"] != protocol or saved["kind"] != setup["kind"]:
      raise ValueError(f"{workdir} holds a {saved['kind']}/{saved['protocol']} benchmark-"
                       f"prediction run; use another --workdir for {setup['kind']}/{protocol}")
  utils.write_json(setup_path, setup)
  data = resolve.prepare_and_load(config, workdir, require=("train", "val"))
  names = list(data.benchmark_names)
  chosen = names if not benchmarks else list(benchmarks)
  unknown = [b for b in chosen if b not in names]
  if unknown:
    raise ValueError(f"benchmark(s) {unknown} not in {data.name!r}; it has {names}")
  per_benchmark, per_llm, grids = {}, {}, {}
  bar = tqdm(chosen, desc="held-out benchmarks", unit="benchmark")
  for i, name in enumerate(bar):
    bar.set_postfix_str(name)
    logging.info("[%d/%d] leaving out %s", i + 1, len(chosen), name)
    b = names.index(name)
    pred = train_held_out(config, workdir, data, b, protocol)
    s = scores.benchmark_scores(pred["logits"], pred["a_sq"], pred["labels"], ks, repeats,
                         seed=config.seed + b, prior_sd=prior_sd)
    s["0"]["train_mean"] = scores.other_benchmarks_accuracy(data, b)
    per_benchmark[name] = scores.benchmark_metrics(s, ks)
    zs = per_benchmark[name]["0"]["zero_shot"]
    if zs is not None:
      zs["cell_accuracy"] = scores.cell_accuracy(pred["logits"], pred["labels"])
      logging.info("[%d/%d] %s zero-shot: MAE %.4f bias %+.4f Spearman %.3f", i + 1,
                   len(chosen), name, zs["mae"], zs["bias"], zs["spearman"])
    per_llm[name] = scores._json_scores(s, data.model_names)
    grids[name] = held_out_grid(workdir, name, pred, data.embeddings[pred["queries"]], settings)
  result = {"dataset": data.name, "setup": setup, "benchmarks": chosen,
            "per_benchmark": per_benchmark, "mean": scores.mean_over_benchmarks(per_benchmark),
            "scores": per_llm, "grid": grid.summarize(grids)}
  _write_outputs(result, workdir, plots)
  return result


def _grid_settings(config, ks, repeats, prior_sd, label_protocols, selections, priors) -> dict:
  """The grid's settings (what its per-benchmark cache is keyed on), checked
  before any training: the estimators divide by prior sds and average the draws."""
  if not prior_sd > 0:
    raise ValueError(f"prior_sd must be positive, got {prior_sd}")
  if repeats < 1:
    raise ValueError(f"random_repeats must be at least 1, got {repeats}")
  priors = priors or grid.Priors(per_llm_sd=prior_sd)
  priors.check()
  return {"ks": [int(k) for k in ks], "draws": int(repeats), "seed": int(config.seed),
          "priors": dataclasses.asdict(priors), "protocols": list(label_protocols),
          "choices": None if selections is None else list(selections),
          # what the grid computes, so a cache made before an estimator or choice
          # was added is recomputed rather than reused without it
          "estimators": list(grid.ESTIMATORS),
          "cells": [list(c) for c in grid.cells(label_protocols, selections)]}


def _write_outputs(result: dict, workdir: str, plots: bool) -> None:
  """benchmark_prediction.json, the grid's records and (with plots) the PNGs and markdown."""
  utils.write_json(os.path.join(workdir, scores.RESULT_FILE), result)
  write_records(os.path.join(workdir, RECORDS_FILE), result)
  if not plots:
    return
  from irt_jax.benchmarks import figures
  from irt_jax.benchmarks import tables
  files = figures.benchmark_prediction_plots(result, os.path.join(workdir, "plots"))
  records = grid.records(result)
  if records:
    files["grid: MAE vs k"] = figures.grid_error_vs_k(
        records, os.path.join(workdir, "plots", "grid_mae_vs_k.png"))
  tables.write_benchmark_prediction_md(result, files, workdir)
