"""A run from its config: resolved once (specs.resolve), its data prepared (the
one place), then trained by gradient (loop) or fitted (fitting), by its kind.

`run` is the library's entry point and what train.py calls; both end in the
same self-describing checkpoint (params, config, index maps, encoder record).
"""

from __future__ import annotations

import os
from typing import Any

import ml_collections
from absl import logging

from irt_jax.data import io as data_lib
from irt_jax.data import resolve as data_resolve
from irt_jax.models import base as kind_lib
from irt_jax.training import fitting
from irt_jax.training import loop
from irt_jax.training import members as members_lib
from irt_jax.training.specs import RunSpec
from irt_jax.training.specs import resolve


def run(config: ml_collections.ConfigDict | RunSpec, workdir: str,
        data: data_lib.ResponseData | None = None) -> dict[str, Any]:
  """Trains or fits the run in `workdir`, by its kind: the one place that picks.

  `config` is resolved first (`specs.resolve`: every check, before anything is
  written). `data`: what to train on, used as given (nothing is generated,
  encoded or cached; its fingerprint is what a resumed run must match); None
  prepares `config.data` into `workdir` (synthetic data generated, text
  encoded, a parsed copy cached there). Returns a summary with host state
  (`resumed_from_step`: the checkpoint a trained run continued from, None for
  a fresh one). Everything `eval.py --workdir` needs ends up in
  `workdir/checkpoints`.
  """
  spec = config if isinstance(config, RunSpec) else resolve(config)
  data = prepare_data(spec, workdir, data)
  if spec.kind.trained_by_gradient:
    spec = spec.sized(data.n_models, len(data.split("train").queries))
    return loop.train(spec, workdir, data, run_index(spec, workdir, data))
  return _fit(spec, workdir, data)


def train_and_evaluate(config: ml_collections.ConfigDict | RunSpec, workdir: str,
                       data: data_lib.ResponseData | None = None) -> dict[str, Any]:
  """`run` for gradient-trained kinds only (a fitted kind is a ConfigError)."""
  spec = config if isinstance(config, RunSpec) else resolve(config)
  if not spec.kind.trained_by_gradient:
    raise kind_lib.ConfigError(f"model kind {spec.kind.name!r} is fitted, not trained by "
                               f"gradient: use training.run, which picks by the kind")
  return run(spec, workdir, data)


def prepare_data(spec: RunSpec, workdir: str,
                 data: data_lib.ResponseData | None) -> data_lib.ResponseData:
  """`data` as given; None: prepared from `spec.data` into `workdir`."""
  os.makedirs(workdir, exist_ok=True)
  if data is None:
    data = data_resolve.prepare_and_load(spec.data, workdir)
  logging.info("%s", data_lib.describe(data))
  return data


def run_index(spec: RunSpec, workdir: str, data: data_lib.ResponseData) -> dict:
  """What a checkpoint records to interpret its parameters: the data's index
  maps and the encoder that made its query embeddings (for routing new text)."""
  return {**data.index_maps(), "encoder": data_resolve.encoder_record(spec.data, workdir)}


def _fit(spec: RunSpec, workdir: str, data: data_lib.ResponseData) -> dict[str, Any]:
  """A fitted kind's run (an ensemble's members trained or read first)."""
  index = run_index(spec, workdir, data)
  return fitting.fit_and_save(spec, workdir, data, index, with_members=lambda s: _members(
      s, workdir, data, index["encoder"]))


def _members(spec: RunSpec, workdir: str, data: data_lib.ResponseData,
             encoder: dict) -> tuple[RunSpec, list]:
  """(the ensemble's spec with `model.members` and `model.member_models` set,
  each member's params). A recipe's member runs (`config.members`) are trained
  first, one after the other, into WORKDIR/members/NAME (each resumes like any
  run); otherwise `config.model.members` names finished runs."""
  if spec.members:
    dirs = [os.path.join(workdir, "members", name) for name, _ in spec.members]
    for (_, member), member_dir in zip(spec.members, dirs):
      run(member, member_dir)  # trains or fits, by the member's kind
    spec = spec.with_model(members=",".join(dirs))
  member_models, params = members_lib.load(spec.model.fields, data, encoder)
  return spec.with_model(member_models=member_models), params
