"""The member runs of an ensemble (models/ensemble.py): loaded and checked.

An ensemble copies its members in when it is built, so this is the one moment
they are read: each must be a finished run (its best checkpoint) of the same
LLMs, on embeddings of the same width from the same encoder, and, where its
checkpoint records a data fingerprint (every gradient-trained run does), of
exactly this data. Anything else is a ConfigError naming the member and what
differs; a combination of runs that never saw the same matrix would be scored
on columns that mean other models.
"""

from __future__ import annotations

import json
import os

import ml_collections

from irt_jax import checkpoint as ckpt_lib
from irt_jax import predictors
from irt_jax.data import io as data_lib
from irt_jax.models import ensemble
from irt_jax.utils import ConfigError


def _check_member(workdir: str, run: predictors.Run, data: data_lib.ResponseData,
                  encoder: dict) -> None:
  where = f"config.model.members: {workdir}"
  if list(run.model_names) != list(data.model_names):
    raise ConfigError(f"{where} was trained on other LLMs ({len(run.model_names)} vs "
                      f"{data.n_models} in {data.name}); an ensemble's members share one dataset")
  if run.predictor.input_dim != data.embed_dim:
    raise ConfigError(f"{where} reads {run.predictor.input_dim}-d embeddings, the data "
                      f"{data.embed_dim}-d")
  theirs = run.encoder or {}
  if theirs.get("name") != encoder.get("name") or theirs.get("fingerprint") != encoder.get(
      "fingerprint"):
    raise ConfigError(f"{where} was trained with encoder {theirs.get('name')!r}, this run "
                      f"uses {encoder.get('name')!r}: the Router would encode queries two ways")
  _, meta, _, _ = ckpt_lib.Checkpoints(workdir, read_only=True).restore_json(run.step)
  saved = (meta.get("layout") or {}).get("data")
  if saved is not None:
    current = data_lib.fingerprint(data)
    changed = sorted(k for k in set(saved) | set(current) if saved.get(k) != current.get(k))
    if changed:
      raise ConfigError(f"{where} was trained on other data (differs in: {', '.join(changed)})")


def train_nested(config: ml_collections.ConfigDict, workdir: str) -> ml_collections.ConfigDict:
  """A recipe that is an ensemble in one config: `config.members` (name ->
  a member's full config, e.g. configs/recommended.py) is trained member by
  member into WORKDIR/members/NAME with this run's data, encoder and seed (each
  resumes like any run), and `config.model.members` is set to those workdirs.
  A config without `members`, or with `model.members` given, is returned as is."""
  nested = config.get("members")
  if not nested or config.model.members:
    return config
  from irt_jax.training import loop  # the loop imports this module's caller
  dirs = []
  for name in nested:
    member = ml_collections.ConfigDict(nested[name].to_dict())
    member.data, member.encoder = config.data, config.encoder
    member.seed = config.seed
    dirs.append(os.path.join(workdir, "members", name))
    loop.run(member, dirs[-1])  # trains or fits, by the member's kind
  out = ml_collections.ConfigDict(config.to_dict())
  out.model.members = ",".join(dirs)
  return out


def load(config: ml_collections.ConfigDict, data: data_lib.ResponseData,
         encoder: dict) -> tuple[ml_collections.ConfigDict, list]:
  """(the config with `model.member_models` filled in, each member's params).

  Members are read at their best checkpoint (by val accuracy, as eval.py reads
  a run); a missing or unreadable one is a ConfigError naming it.
  """
  spec_members = ensemble.member_workdirs(
      ensemble.Spec(0, 0, config.model.members, config.model.combine, ()))
  if not spec_members:
    raise ConfigError("config.model.members is empty: list the workdirs of the runs to "
                      "combine (e.g. --config.model.members=runs/irtnet,runs/logreg)")
  models, params = [], []
  for workdir in spec_members:
    try:
      run = predictors.load(workdir, "best")
    except (ckpt_lib.CheckpointError, OSError, ValueError) as e:
      raise ConfigError(f"config.model.members: {workdir}: not a finished run ({e})") from None
    _check_member(workdir, run, data, encoder)
    models.append(json.dumps(run.config.model.to_dict(), sort_keys=True))
    params.append(run.predictor.params)
  out = ml_collections.ConfigDict(config.to_dict())
  out.model.member_models = tuple(models)
  return out, params
