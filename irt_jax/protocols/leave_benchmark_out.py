"""Leave-one-benchmark-out: benchmark-score prediction on a benchmark the model
has never seen.

For each benchmark B one model is trained without any of B's labels
(data.splits.leave_out), then every LLM's accuracy on B is predicted with the
estimators of evaluation.benchmark_scores (zero-shot, and from k labels per LLM).

Each held-out run lives in WORKDIR/heldout/<B>/ (a normal training workdir, so
an interrupted one resumes) and ends in predictions.npz; a benchmark with that
file is skipped on a rerun. It trains on the subset in memory: its config names
the dataset's folder, its checkpoint the subset's fingerprint (which a resumed
run must match), and no copy of the data is written.
"""

from __future__ import annotations

import json
import os

import numpy as np
from absl import logging

from irt_jax import utils
from irt_jax.data import io as data_lib
from irt_jax.data import resolve
from irt_jax.data import splits as data_splits
from irt_jax.evaluation.benchmark_scores import (
    KS, PREDICTIONS_FILE, PRIOR_SD, RANDOM_REPEATS, RESULT_FILE, SHARED_PRIOR_SD,
    _json_scores, benchmark_metrics, benchmark_scores, cell_accuracy, mean_over_benchmarks,
    other_benchmarks_accuracy)


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


def _item_strength(run, embeddings: np.ndarray) -> np.ndarray:
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


def train_held_out(config, workdir: str, data: data_lib.ResponseData, b: int,
                   protocol: str) -> dict:
  """Trains (or resumes, or reuses) the model without benchmark b; its predictions for b."""
  from irt_jax import checkpoint as ckpt_lib
  from irt_jax import predictors
  from irt_jax.training import loop as training
  name = data.benchmark_names[b]
  subdir = os.path.join(workdir, "heldout", _safe(name))
  path = os.path.join(subdir, PREDICTIONS_FILE)
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
            "logits": run.predictor.logits(emb), "a_sq": _item_strength(run, emb),
            "checkpoint_step": np.int64(run.step)}
  np.savez(f"{path}.tmp.npz", **result)
  os.replace(f"{path}.tmp.npz", path)
  return result


def _safe(name: str) -> str:
  return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)


def run(config, workdir: str, *, protocol: str = "ours", ks=KS,
        repeats: int = RANDOM_REPEATS, benchmarks=None, prior_sd: float = PRIOR_SD,
        plots: bool = True) -> dict:
  """Leave-one-benchmark-out over a dataset; writes WORKDIR/benchmark_prediction.json."""
  from tqdm import tqdm
  # Checked before any training: the estimators divide by prior_sd^2 and average the draws.
  if not prior_sd > 0:
    raise ValueError(f"prior_sd must be positive, got {prior_sd}")
  if repeats < 1:
    raise ValueError(f"random_repeats must be at least 1, got {repeats}")
  os.makedirs(workdir, exist_ok=True)
  setup = {"protocol": protocol, "kind": config.model.name, "ks": [int(k) for k in ks],
           "random_repeats": int(repeats), "prior_sd": float(prior_sd), "seed": int(config.seed),
           "shared_prior_sd": SHARED_PRIOR_SD,
           "estimator": "MAP logit offsets: benchmark-wide on all LLMs' k labels (prior "
                        "N(0, shared_prior_sd^2)), then per LLM around it (prior sd "
                        "prior_sd); observed labels + refitted P on the rest",
           "adaptive": "sequential max p(1-p)|a_q|^2 given the refitted offset"}
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
  per_benchmark, scores = {}, {}
  bar = tqdm(chosen, desc="held-out benchmarks", unit="benchmark")
  for i, name in enumerate(bar):
    bar.set_postfix_str(name)
    logging.info("[%d/%d] leaving out %s", i + 1, len(chosen), name)
    b = names.index(name)
    pred = train_held_out(config, workdir, data, b, protocol)
    s = benchmark_scores(pred["logits"], pred["a_sq"], pred["labels"], ks, repeats,
                         seed=config.seed + b, prior_sd=prior_sd)
    s["0"]["train_mean"] = other_benchmarks_accuracy(data, b)
    per_benchmark[name] = benchmark_metrics(s, ks)
    zs = per_benchmark[name]["0"]["zero_shot"]
    if zs is not None:
      zs["cell_accuracy"] = cell_accuracy(pred["logits"], pred["labels"])
      logging.info("[%d/%d] %s zero-shot: MAE %.4f bias %+.4f Spearman %.3f", i + 1,
                   len(chosen), name, zs["mae"], zs["bias"], zs["spearman"])
    scores[name] = _json_scores(s, data.model_names)
  result = {"dataset": data.name, "setup": setup, "benchmarks": chosen,
            "per_benchmark": per_benchmark, "mean": mean_over_benchmarks(per_benchmark),
            "scores": scores}
  utils.write_json(os.path.join(workdir, RESULT_FILE), result)
  if plots:
    from irt_jax.evaluation import plots as plots_lib
    from irt_jax.evaluation import report as report_lib
    files = plots_lib.benchmark_prediction_plots(result, os.path.join(workdir, "plots"))
    report_lib.write_benchmark_prediction_md(result, files, workdir)
  return result
