"""Kinds fitted directly from the data (nearest neighbours, logistic regression).

They skip the gradient loop but end the same way as every run: one
self-describing checkpoint (params, config, index maps, encoder record) with its
validation score recorded as the best step, so eval.py, the Router and the
service load it exactly like an IrtNet run.
"""

from __future__ import annotations

import time

import jax
import ml_collections
import numpy as np
from absl import logging

from irt_jax import checkpoint as ckpt_lib
from irt_jax.data import io as data_lib
from irt_jax.models import losses
from irt_jax.models import base as kind_lib

FIT_STEP = 1  # the one checkpoint step of a fitted run


def split_metrics(kind: kind_lib.Kind, spec, params, data: data_lib.ResponseData,
                  split: str) -> dict[str, float]:
  """BCE loss and accuracy over a split's observed cells (the training loop's
  yardstick, so fitted and trained runs report the same numbers)."""
  from irt_jax import predictors  # predictors imports checkpoint; keep this module light
  part = data.split(split)
  predictor = predictors.Predictor(kind=kind, spec=spec, params=params,
                                   model_names=data.model_names)
  logits = predictor.logits(data.embeddings[part.queries])
  sums = jax.device_get(losses.masked_counts(logits, part.labels.astype(np.float32),
                                             part.mask))
  return losses.summarise(sums)


def fit_and_save(config: ml_collections.ConfigDict, workdir: str, kind: kind_lib.Kind,
                 data: data_lib.ResponseData, index: dict) -> dict:
  """Fits `kind` on train (choosing its own settings on val), saves, summarises.

  The checkpoint manager is closed however this ends: Orbax starts cleaning the
  workdir's temporary paths in a background thread when it opens, and a process
  that exits on an error (a missing ensemble member) while that thread still runs
  prints a shutdown traceback after the error's one line."""
  checkpoints = ckpt_lib.Checkpoints(workdir)
  try:
    return _fit_and_save(checkpoints, config, workdir, kind, data, index)
  finally:
    checkpoints.close()


def _fit_and_save(checkpoints: ckpt_lib.Checkpoints, config: ml_collections.ConfigDict,
                  workdir: str, kind: kind_lib.Kind, data: data_lib.ResponseData,
                  index: dict) -> dict:
  if checkpoints.latest_step() is not None:
    logging.info("%s already holds a fitted %s run; nothing to do", workdir, kind.name)
    from irt_jax import predictors
    run = predictors.load(workdir, "latest")
    _, meta, _, _ = ckpt_lib.Checkpoints(workdir, read_only=True).restore_json(run.step)
    return {"state": {"params": run.predictor.params}, "history": meta["history"],
            "best": meta["best"], "data": data}
  extra = {}
  if kind.takes_members:  # an ensemble: its member runs, loaded and checked here
    from irt_jax.training import members
    config = members.train_nested(config, workdir)
    config, extra["members"] = members.load(config, data, index["encoder"])
  spec = kind.spec(config.model, data.n_models, data.embed_dim)
  t0 = time.time()
  params = jax.device_get(kind.fit(spec, data, config, jax.random.PRNGKey(config.seed),
                                   **extra))
  seconds = time.time() - t0
  train = split_metrics(kind, spec, params, data, "train")
  val = split_metrics(kind, spec, params, data, "val")
  record = {"epoch": 0, "step": FIT_STEP, "lr": None, "train_loss": train["loss"],
            "train_accuracy": train["accuracy"], "val_loss": val["loss"],
            "val_accuracy": val["accuracy"], "seconds": round(seconds, 3)}
  logging.info("fitted %s in %.1fs: train acc %.4f | val loss %.4f acc %.4f", kind.name,
               seconds, train["accuracy"], val["loss"], val["accuracy"])
  best = {"step": FIT_STEP, "epoch": 0, "val_accuracy": val["accuracy"]}
  meta = ckpt_lib.run_meta(step=FIT_STEP, seed=config.seed, history=[record], best=best,
                           stopped=True)
  state = {"step": np.int32(FIT_STEP), "params": params}
  checkpoints.save(FIT_STEP, state, meta=meta, config=config.to_dict(), index=index)
  checkpoints.wait()
  return {"state": state, "history": [record], "best": best, "data": data}
