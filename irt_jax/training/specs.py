"""A training config resolved once into small typed specs, with every check.

`resolve(config)` is the one reader of a training config: the entry points
(train.py, `training.run`, `training.train_and_evaluate`) call it first, so a
mistake (an unknown kind or field, a missing section, a batch layout or
`config.auto` that cannot work) is one ConfigError naming the field before a
workdir is made or data is read. The layers below take the spec they need:
the optimiser an `OptimSpec`, the epoch controllers a `ScheduleSpec`, the data
layer a `DataSpec`, and so on. `RunSpec.record` is the config as a plain dict,
saved beside every checkpoint (runs describe themselves) and compared when a
run resumes.
"""

from __future__ import annotations

import copy
import dataclasses
from typing import Any

import ml_collections

from irt_jax import models
from irt_jax.data import resolve as data_resolve
from irt_jax.data import synthetic
from irt_jax.models import base as kind_lib
from irt_jax.training import batches
from irt_jax.training import sizing
from irt_jax.utils import ConfigError


@dataclasses.dataclass(frozen=True)
class ModelChoice:
  """`config.model`: the kind and its checked fields (the kind's spec is built
  from them once the data's shape is known)."""
  kind: kind_lib.Kind
  fields: dict          # config.model, `name` included

  def spec(self, n_models: int, input_dim: int):
    return self.kind.spec(self.fields, n_models, input_dim)


@dataclasses.dataclass(frozen=True)
class BatchSpec:
  """`config.train`'s batching: layout name, cells per global batch, eval rows."""
  batching: str         # 'blocks' or 'pairs'
  batch_cells: int
  eval_rows: int
  log_every_steps: int


@dataclasses.dataclass(frozen=True)
class OptimSpec:
  """Adam with coupled L2 decay (`config.optim`)."""
  lr: float
  weight_decay: float
  b1: float
  b2: float
  eps: float


@dataclasses.dataclass(frozen=True)
class ScheduleSpec:
  """Epochs, the plateau learning-rate cut and early stopping."""
  num_epochs: int
  early_stop_patience: int
  plateau_factor: float
  plateau_patience: int
  plateau_threshold: float


@dataclasses.dataclass(frozen=True)
class AutoSpec:
  """`config.auto` when on: batch size (and lr) from the data's shape (sizing.py)."""
  steps_per_epoch: int
  min_rows: int
  max_rows: int
  lr_scaling: str
  reference_cells: int


@dataclasses.dataclass(frozen=True)
class RunSpec:
  """Everything a run reads from its config. Gradient kinds have `batch`,
  `optim`, `schedule` and `checkpoint_every`; fitted kinds have None there."""
  model: ModelChoice
  seed: int
  data: data_resolve.DataSpec
  batch: BatchSpec | None
  optim: OptimSpec | None
  schedule: ScheduleSpec | None
  checkpoint_every: int
  auto: AutoSpec | None
  members: tuple        # (name, RunSpec) of runs to train first (an ensemble recipe)
  record: dict          # the config as saved with the checkpoints

  @property
  def kind(self) -> kind_lib.Kind:
    return self.model.kind

  def sized(self, n_models: int, n_train_queries: int) -> "RunSpec":
    """`config.auto` applied to the data's shape: the batch's cells and the lr
    set, recorded in `record` as trained (a resumed run resolves the same)."""
    if self.auto is None:
      return self
    cells, lr, note = sizing.size(self.auto, self.batch.batching, self.optim.lr, n_models,
                                  n_train_queries)
    record = copy.deepcopy(self.record)
    record["train"]["batch_cells"], record["optim"]["lr"] = cells, lr
    record["auto"].update(steps_per_epoch=0, resolved_from=note)
    return dataclasses.replace(self, batch=dataclasses.replace(self.batch, batch_cells=cells),
                               optim=dataclasses.replace(self.optim, lr=lr), auto=None,
                               record=record)

  def with_model(self, **fields: Any) -> "RunSpec":
    """The spec with config.model fields set (an ensemble's members, once known)."""
    record = copy.deepcopy(self.record)
    record["model"].update(fields)
    return dataclasses.replace(
        self, model=ModelChoice(self.kind, {**self.model.fields, **fields}), record=record)


def _read(config, name: str, fields) -> dict:
  """`config.<name>`'s `fields`; a missing one is a ConfigError naming it."""
  section = config.get(name)
  missing = [f for f in fields if section is None or f not in section]
  if missing:
    kind = config.model.get("name", "irtnet")
    raise ConfigError(f"model kind {kind!r} is trained by gradient and needs "
                      f"config.{name}.{missing[0]}; start from configs/{kind}.py")
  return {f: section[f] for f in fields}


def _at_least(value, low, field: str) -> None:
  if not value >= low:
    raise ConfigError(f"config.{field}={value!r}: expected >= {low}")


def _gradient_specs(config) -> tuple[BatchSpec, OptimSpec, ScheduleSpec, AutoSpec | None]:
  """The specs only gradient-trained kinds read, each field checked."""
  batch = BatchSpec(**_read(config, "train", [f.name for f in dataclasses.fields(BatchSpec)]))
  if batch.batching not in batches.LAYOUTS:
    raise ConfigError(f"config.train.batching={batch.batching!r}: expected one of "
                      f"{', '.join(batches.LAYOUTS)}")
  _at_least(batch.batch_cells, 1, "train.batch_cells")
  _at_least(batch.eval_rows, 1, "train.eval_rows")
  optim = OptimSpec(**_read(config, "optim", [f.name for f in dataclasses.fields(OptimSpec)]))
  _at_least(optim.lr, 0, "optim.lr")
  _at_least(optim.weight_decay, 0, "optim.weight_decay")
  schedule = ScheduleSpec(
      **_read(config, "train", ("num_epochs", "early_stop_patience")),
      **_read(config, "optim", ("plateau_factor", "plateau_patience", "plateau_threshold")))
  _at_least(schedule.num_epochs, 0, "train.num_epochs")
  auto = config.get("auto")
  if auto is None or not auto.steps_per_epoch:
    return batch, optim, schedule, None
  auto = AutoSpec(**{f.name: auto[f.name] for f in dataclasses.fields(AutoSpec)})
  sizing.check(auto)
  sizing.check_batching(auto, batch.batching)
  return batch, optim, schedule, auto


def _data_spec(config) -> data_resolve.DataSpec:
  spec = data_resolve.DataSpec.from_config(config)
  if not spec.dir:  # the synthetic generator's fields, checked before it runs
    try:
      synthetic.SyntheticSpec(**dict(spec.synthetic))
    except TypeError as e:
      raise ConfigError(f"config.data.synthetic: {e}; start from configs/common.py") from None
  return spec


def _nested_members(config) -> tuple:
  """((name, RunSpec) of each run in `config.members`, trained first into
  WORKDIR/members/NAME with this run's data, encoder and seed): a recipe that
  is an ensemble in one config. None when `config.model.members` names them."""
  nested = config.get("members")
  if not nested or config.model.get("members"):
    return ()
  out = []
  for name in nested:
    member = ml_collections.ConfigDict(nested[name].to_dict())
    member.data, member.encoder = config.data, config.encoder
    member.seed = config.seed
    out.append((name, resolve(member)))
  return tuple(out)


def resolve(config: ml_collections.ConfigDict) -> RunSpec:
  """The run `config` describes, checked: the one function that reads it."""
  kind = models.get(config.model.get("name", "irtnet"))
  fields = config.model.to_dict()
  kind_lib.model_fields(kind.spec_cls, fields)  # unknown or missing fields
  gradient = (_gradient_specs(config) if kind.trained_by_gradient
              else (None, None, None, None))
  _at_least(config.checkpoint.every_steps, 0, "checkpoint.every_steps")
  members = _nested_members(config)
  return RunSpec(model=ModelChoice(kind, fields), seed=config.seed, data=_data_spec(config),
                 batch=gradient[0], optim=gradient[1], schedule=gradient[2],
                 checkpoint_every=config.checkpoint.every_steps, auto=gradient[3],
                 members=members, record=config.to_dict())
