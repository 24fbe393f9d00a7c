"""Orbax checkpoints that describe themselves.

A checkpoint step holds four items: `state` (params, optimiser state, step), and
three JSON items: `meta` (epoch, seed, schedule and early-stopping state, history,
best step), `config` (the full training config) and `index` (model names,
benchmark names, dataset), so evaluation and routing need nothing but the workdir.

Preservation keeps the latest step (for resuming) and the best epoch by
validation accuracy (earliest on ties), nothing else.
"""

from __future__ import annotations

import logging
import os
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp
from orbax.checkpoint import checkpoint_managers as cm

ITEMS = ("state", "meta", "config", "index")


class CheckpointError(RuntimeError):
  """A checkpoint that is missing, unreadable or does not fit the run."""


def _rank(metrics: dict) -> tuple[float, float]:
  return (metrics["val_accuracy"], -metrics["epoch"])


class Checkpoints:
  """The checkpoints of one workdir (`workdir/checkpoints`)."""

  def __init__(self, workdir: str, *, read_only: bool = False):
    self.directory = os.path.join(os.path.abspath(workdir), "checkpoints")
    if read_only and not os.path.isdir(self.directory):
      raise CheckpointError(f"{self.directory}: no checkpoints here (was training run "
                            f"with --workdir={workdir}?)")
    policy = cm.AnyPreservationPolicy([
        cm.LatestN(n=1),
        cm.BestN(get_metric_fn=_rank, n=1, keep_checkpoints_without_metrics=False),
    ])
    options = ocp.CheckpointManagerOptions(preservation_policy=policy, read_only=read_only,
                                           create=not read_only)
    self._manager = ocp.CheckpointManager(self.directory, options=options, item_names=ITEMS)

  def latest_step(self) -> int | None:
    return self._manager.latest_step()

  def all_steps(self) -> list[int]:
    return list(self._manager.all_steps())

  def save(self, step: int, state: Any, *, meta: dict, config: dict, index: dict,
           metrics: dict | None = None) -> None:
    """Saves host (numpy) state plus JSON items; epoch-end saves pass metrics."""
    self._manager.save(step, args=ocp.args.Composite(
        state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta),
        config=ocp.args.JsonSave(config), index=ocp.args.JsonSave(index)),
        metrics=metrics, force=True)

  def wait(self) -> None:
    self._manager.wait_until_finished()

  def close(self) -> None:
    self._manager.close()

  def _restore(self, step: int, **args) -> Any:
    try:
      return self._manager.restore(step, args=ocp.args.Composite(**args))
    except Exception as e:  # Orbax raises many types for damaged files.
      raise CheckpointError(f"{self.directory}/{step}: cannot be restored "
                            f"({type(e).__name__}: {e})") from e

  def _step_or_latest(self, step: int | None) -> int:
    if step is None:
      step = self.latest_step()
      if step is None:
        raise CheckpointError(f"{self.directory}: holds no finished checkpoint")
    elif step not in self.all_steps():
      raise CheckpointError(f"{self.directory}: no checkpoint at step {step} "
                            f"(have {self.all_steps()})")
    return step

  def restore_json(self, step: int | None = None) -> tuple[int, dict, dict, dict]:
    """(step, meta, config, index) of a step (default: latest)."""
    step = self._step_or_latest(step)
    out = self._restore(step, meta=ocp.args.JsonRestore(), config=ocp.args.JsonRestore(),
                        index=ocp.args.JsonRestore())
    return step, out["meta"], out["config"], out["index"]

  def restore_state(self, step: int, target: Any | None = None) -> Any:
    """The state item; with a target pytree (numpy leaves) its structure is kept."""
    step = self._step_or_latest(step)
    arg = ocp.args.StandardRestore(target) if target is not None else ocp.args.StandardRestore()
    state = self._restore(step, state=arg)["state"]
    _check_finite(state, f"{self.directory}/{step}")
    return state

  def best_step(self) -> int:
    """The best-by-validation-accuracy step recorded by the latest checkpoint."""
    _, meta, _, _ = self.restore_json()
    best = meta.get("best", {}).get("step")
    if best is None:
      raise CheckpointError(f"{self.directory}: no epoch has finished yet, so there is no "
                            f"best checkpoint; train longer or pass an explicit step")
    return self._step_or_latest(int(best))


def _check_finite(tree: Any, where: str) -> None:
  for path, leaf in jax.tree_util.tree_leaves_with_path(tree):
    arr = np.asarray(leaf)
    if np.issubdtype(arr.dtype, np.floating) and not np.isfinite(arr).all():
      raise CheckpointError(f"{where}: parameter {jax.tree_util.keystr(path)} holds NaN/inf")


class _DropOrbaxInfo(logging.Filter):
  def filter(self, record: logging.LogRecord) -> bool:
    return record.levelno >= logging.WARNING or "/orbax/" not in record.pathname


def quiet_orbax_logs() -> None:
  """Orbax logs every file it writes at INFO; keep its warnings and errors only."""
  logging.getLogger("absl").addFilter(_DropOrbaxInfo())
