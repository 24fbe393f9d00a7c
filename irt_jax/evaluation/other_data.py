"""A run evaluated on another data folder in the layout (`eval.py --data_dir`).

The LLMs are matched by name: the folder's columns are put in the run's order;
LLMs of the folder the run does not have are left out, and the report says so
(`data_subset`); an LLM of the run that the folder lacks is an error, since the
run's routing would choose among LLMs the folder cannot score. The queries are
the folder's, read with the run's embedding dimension (a folder embedded by
another encoder is an error). Typical use: a run extended by `add_model`
evaluated on a folder that holds the new LLM's answers too.
"""

from __future__ import annotations

import dataclasses
import os

import numpy as np

from irt_jax import predictors
from irt_jax.data import io as data_lib
from irt_jax.data import resolve


def run_on(run: predictors.Run, data_dir: str) -> predictors.Run:
  """The same run, its config pointing at `data_dir` (where evaluators read the
  folder: costs, synthetic truth)."""
  if not os.path.isdir(data_dir):
    raise data_lib.DataError(f"{data_dir}: no such data folder (--data_dir)")
  config = run.config.copy_and_resolve_references()
  config.data.dir = os.path.abspath(data_dir)
  return dataclasses.replace(run, config=config)


def match_models(data: data_lib.ResponseData, names, data_dir: str):
  """(data with the run's LLM columns in the run's order, the folder's LLMs left out)."""
  have = list(data.model_names)
  lacking = [n for n in names if n not in have]
  if lacking:
    raise data_lib.DataError(
        f"{data_dir}: lacks {len(lacking)} LLM(s) the run routes among, e.g. {lacking[:3]}; "
        f"evaluate on a folder that has every LLM of the run ({len(names)})")
  cols = np.array([have.index(n) for n in names], np.int64)
  splits = {k: data_lib.Split(s.queries, s.labels[:, cols]) for k, s in data.splits.items()}
  extra = [n for n in have if n not in names]
  return dataclasses.replace(data, model_names=tuple(names), splits=splits), extra


def load(run: predictors.Run, data_dir: str, require=("train", "test")):
  """(the run pointed at `data_dir`, its data matched to the run's LLMs, the
  subset note or None)."""
  moved = run_on(run, data_dir)
  data = resolve.load_for_run(moved.config, run.workdir, require=require)
  if data.embed_dim != run.predictor.input_dim:
    raise data_lib.DataError(f"{data_dir}: has {data.embed_dim}-d query embeddings, the run "
                             f"reads {run.predictor.input_dim}-d ones (another encoder?)")
  data, extra = match_models(data, run.model_names, data_dir)
  note = None
  if extra:
    note = {"data_dir": os.path.abspath(data_dir), "models_scored": len(run.model_names),
            "models_left_out": extra,
            "note": f"evaluated on the {len(run.model_names)} LLMs of the run; {len(extra)} "
                    f"LLM(s) of the folder it does not have are left out"}
  return moved, data, note
