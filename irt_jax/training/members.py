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


def load(model: dict, data: data_lib.ResponseData, encoder: dict) -> tuple[tuple, list]:
  """(`model.member_models` for the ensemble's config.model `model`: each
  member's config.model as JSON, each member's params).

  Members are read at their best checkpoint (by val accuracy, as eval.py reads
  a run); a missing or unreadable one is a ConfigError naming it.
  """
  spec_members = ensemble.member_workdirs(
      ensemble.Spec(0, 0, model["members"], model["combine"], ()))
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
  return tuple(models), params
