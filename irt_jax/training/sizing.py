"""Batch size and learning rate chosen from the data's shape (`config.auto`).

The published configs fix `train.batch_cells`, so an epoch is 21 steps on
llmrouter (9 LLMs x 4.8k train queries), 56 on routerdc (7 x 16k) and about
1,600 at the paper's 112 x 28k: the same config sees 80x more updates per
epoch on one matrix than on another, and early stopping (counted in epochs)
then means something different on each. A config with `config.auto` set
instead asks for about `auto.steps_per_epoch` steps per epoch: the query rows
per batch follow from the number of training queries, within
[`auto.min_rows`, `auto.max_rows`], and `train.batch_cells` is set to rows x
LLMs. With `auto.lr_scaling='sqrt'` the learning rate grows with the square
root of the batch's cells relative to `auto.reference_cells` (the cells the
config's `optim.lr` was tuned at), within [1/4, 4] times, the usual rule for
Adam when the batch grows.

This is the one place those rules live (`size`): training applies them once
the data is loaded (`specs.RunSpec.sized`), before the config is saved, so the
checkpoint records the batch size and learning rate actually used (and a
resumed run resolves to the same); `resolve` applies them to a config.
"""

from __future__ import annotations

import copy
import math

import ml_collections

from irt_jax.utils import ConfigError

LR_SCALINGS = ("none", "sqrt")
LR_CLIP = 4.0  # the scaled rate stays within [lr / 4, lr * 4]


def resolve(config: ml_collections.ConfigDict, n_models: int,
            n_train_queries: int) -> ml_collections.ConfigDict:
  """The config with `train.batch_cells` and `optim.lr` set from the data's
  shape when `config.auto.steps_per_epoch` > 0 (a copy; `config` is untouched).

  A config without `auto` (every published kind) comes back unchanged.
  """
  auto = config.get("auto")
  if auto is None or not auto.steps_per_epoch:
    return config
  out = copy.deepcopy(config)
  cells, lr, note = size(auto, config.train.batching, config.optim.lr, n_models,
                         n_train_queries)
  out.train.batch_cells = cells
  out.optim.lr = lr
  out.auto.steps_per_epoch = 0  # resolved: the saved config trains as written
  out.auto.resolved_from = note
  return out


def size(auto, batching: str, lr: float, n_models: int,
         n_train_queries: int) -> tuple[int, float, str]:
  """(cells per batch, learning rate, a note of what they came from) for an
  `auto` block that is on (`auto.steps_per_epoch` > 0); `auto` is checked."""
  check(auto)
  check_batching(auto, batching)
  rows = math.ceil(n_train_queries / auto.steps_per_epoch)
  rows = min(max(rows, auto.min_rows), auto.max_rows)
  cells = rows * max(n_models, 1)
  if auto.lr_scaling == "sqrt":
    factor = min(max(math.sqrt(cells / auto.reference_cells), 1 / LR_CLIP), LR_CLIP)
    lr = float(lr * factor)
  return cells, lr, f"{n_models} LLMs x {n_train_queries} train queries"


def check_batching(auto, batching: str) -> None:
  if auto.steps_per_epoch and batching != "blocks":
    raise ConfigError("config.auto sizes query blocks: set config.train.batching='blocks' "
                      f"(it is {batching!r}) or config.auto.steps_per_epoch=0")


def check(auto) -> None:
  """One error naming the field for a setting `resolve` cannot use (`auto`:
  the config's block or the run's AutoSpec)."""
  if auto.steps_per_epoch < 0:
    raise ConfigError(f"config.auto.steps_per_epoch={auto.steps_per_epoch}: expected 0 "
                      "(off) or a positive number of steps")
  if not 1 <= auto.min_rows <= auto.max_rows:
    raise ConfigError(f"config.auto.min_rows={auto.min_rows}, max_rows={auto.max_rows}: "
                      "expected 1 <= min_rows <= max_rows")
  if auto.lr_scaling not in LR_SCALINGS:
    raise ConfigError(f"config.auto.lr_scaling={auto.lr_scaling!r}: expected one of "
                      f"{', '.join(LR_SCALINGS)}")
  if auto.reference_cells <= 0:
    raise ConfigError(f"config.auto.reference_cells={auto.reference_cells}: expected > 0")


def auto_config(steps_per_epoch: int = 64, lr_scaling: str = "none") -> ml_collections.ConfigDict:
  """The `config.auto` block (its one builder): a config adds it to opt in."""
  return ml_collections.ConfigDict(dict(
      steps_per_epoch=steps_per_epoch, min_rows=16, max_rows=1024, lr_scaling=lr_scaling,
      reference_cells=2048, resolved_from=""))
