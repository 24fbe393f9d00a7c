"""Kinds fitted directly from the data (nearest neighbours, logistic regression).

They skip the gradient loop but end the same way as every run: one
self-describing checkpoint (params, config, index maps, encoder record) with its
validation score recorded as the best step, so eval.py, the Router and the
service load it exactly like an IrtNet run.
"""

from __future__ import annotations

import time
from typing import Callable

import jax
import numpy as np
from absl import logging

from irt_jax import checkpoint as ckpt_lib
from irt_jax import predictors
from irt_jax.data import io as data_lib
from irt_jax.models import losses
from irt_jax.models import base as kind_lib
from irt_jax.training.specs import RunSpec

FIT_STEP = 1  # the one checkpoint step of a fitted run


def split_metrics(kind: kind_lib.Kind, spec, params, data: data_lib.ResponseData,
                  split: str) -> dict[str, float]:
  """BCE loss and accuracy over a split's observed cells (the training loop's
  yardstick, so fitted and trained runs report the same numbers)."""
  part = data.split(split)
  predictor = predictors.Predictor(kind=kind, spec=spec, params=params,
                                   model_names=data.model_names)
  logits = predictor.logits(data.embeddings[part.queries])
  sums = jax.device_get(losses.masked_counts(logits, part.labels.astype(np.float32),
                                             part.mask))
  return losses.summarise(sums)


def fit_and_save(spec: RunSpec, workdir: str, data: data_lib.ResponseData, index: dict,
                 with_members: Callable | None = None) -> dict:
  """Fits `spec`'s kind on train (choosing its own settings on val), saves, summarises.

  `with_members(spec) -> (spec, member params)`: an ensemble's member runs,
  trained or read (by the caller, training.runs), when it is not fitted yet.
  The checkpoint manager is closed however this ends: Orbax starts cleaning the
  workdir's temporary paths in a background thread when it opens, and a process
  that exits on an error (a missing ensemble member) while that thread still runs
  prints a shutdown traceback after the error's one line."""
  checkpoints = ckpt_lib.Checkpoints(workdir)
  try:
    return _fit_and_save(checkpoints, spec, workdir, data, index, with_members)
  finally:
    checkpoints.close()


def _fit_and_save(checkpoints: ckpt_lib.Checkpoints, spec: RunSpec, workdir: str,
                  data: data_lib.ResponseData, index: dict, with_members) -> dict:
  kind = spec.kind
  if checkpoints.latest_step() is not None:
    logging.info("%s already holds a fitted %s run; nothing to do", workdir, kind.name)
    run = predictors.load(workdir, "latest")
    _, meta, _, _ = ckpt_lib.Checkpoints(workdir, read_only=True).restore_json(run.step)
    return {"state": {"params": run.predictor.params}, "history": meta["history"],
            "best": meta["best"], "data": data}
  extra = {}
  if kind.takes_members:  # an ensemble: its member runs, loaded and checked by the caller
    spec, extra["members"] = with_members(spec)
  model_spec = spec.model.spec(data.n_models, data.embed_dim)
  t0 = time.time()
  params = jax.device_get(kind.fit(model_spec, data, spec, jax.random.PRNGKey(spec.seed),
                                   **extra))
  seconds = time.time() - t0
  train = split_metrics(kind, model_spec, params, data, "train")
  val = split_metrics(kind, model_spec, params, data, "val")
  record = {"epoch": 0, "step": FIT_STEP, "lr": None, "train_loss": train["loss"],
            "train_accuracy": train["accuracy"], "val_loss": val["loss"],
            "val_accuracy": val["accuracy"], "seconds": round(seconds, 3)}
  logging.info("fitted %s in %.1fs: train acc %.4f | val loss %.4f acc %.4f", kind.name,
               seconds, train["accuracy"], val["loss"], val["accuracy"])
  best = {"step": FIT_STEP, "epoch": 0, "val_accuracy": val["accuracy"]}
  meta = ckpt_lib.run_meta(step=FIT_STEP, seed=spec.seed, history=[record], best=best,
                           stopped=True)
  state = {"step": np.int32(FIT_STEP), "params": params}
  checkpoints.save(FIT_STEP, state, meta=meta, config=spec.record, index=index)
  checkpoints.wait()
  return {"state": state, "history": [record], "best": best, "data": data}
