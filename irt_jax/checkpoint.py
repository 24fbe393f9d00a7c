"""Orbax checkpoints that describe themselves.

A checkpoint step holds four items: `state` (params, optimiser state, step), and
three JSON items: `meta` (`run_meta`: step, seed, schedule and early-stopping
state, history, best step, models added after training), `config` (the full training config) and `index` (model names,
benchmark names, dataset), so evaluation and routing need nothing but the workdir.

Which step is best has one source of truth: the `best` record in the meta of
the latest checkpoint (written by the training loop, restored on resume, so it
survives any number of restarts). Orbax deletes nothing by itself; after each
save is finished on disk, `Checkpoints.save` deletes every step that is neither
that new latest step nor the best step its meta names. So at every instant the
latest finished step and the best step it records exist on disk: a kill before
the new step is finalised leaves the previous pair, a kill during the deletions
leaves extra steps that the next save removes. Orbax writes a step into a
temporary directory and renames it when complete; temporary directories left by
a kill during a save are ignored and cleaned when training opens the workdir.
"""

from __future__ import annotations

import os
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp

from irt_jax.errors import UserError

ITEMS = ("state", "meta", "config", "index")


class CheckpointError(UserError, RuntimeError):
  """A checkpoint that is missing, unreadable or does not fit the run."""


def run_meta(*, step: int, seed: int | None, history: list, best: dict | None,
             stopped: bool, epoch_sums: dict | None = None, layout: dict | None = None,
             plateau: dict | None = None, early_stopping: dict | None = None,
             added_models: list = (), ability_updates: list = ()) -> dict:
  """The `meta` item of a checkpoint, with the same keys whatever wrote it.

  Trained runs fill every field (the controllers and the epoch's partial sums
  are what a resume continues from; `layout` is the device layout and data
  fingerprint a resume must match); fitted runs and runs with added models leave
  the training-only ones None. `added_models`: the LLMs added after training
  (name, answers, source run and step), oldest first; `ability_updates`: the
  abilities changed after training (from feedback: `python -m irt_jax update`),
  oldest first. One builder, so readers
  (eval, the Router, add_model, a resume) find every key in every run.
  """
  return {"step": int(step), "seed": seed, "history": list(history), "best": best,
          "stopped": bool(stopped), "epoch_sums": epoch_sums, "layout": layout,
          "plateau": plateau, "early_stopping": early_stopping,
          "added_models": list(added_models), "ability_updates": list(ability_updates)}


def save_derived_run(out: str, step: int, params, *, meta: dict, config: dict,
                     index: dict) -> str:
  """Writes a run derived from a trained one (LLMs added, abilities updated) into
  `out`: one checkpoint at the source's step, nothing trained further. The one
  writer for add_model and update, so both runs restore the same way."""
  checkpoints = Checkpoints(out)
  checkpoints.save(int(step), {"step": np.int32(step), "params": params},
                   meta=meta, config=config, index=index)
  checkpoints.wait()
  checkpoints.close()
  return out


def recorded_best(meta: dict) -> int | None:
  """The best step a checkpoint's meta records (None before any epoch ended)."""
  best = (meta.get("best") or {}).get("step")
  return None if best is None else int(best)


class Checkpoints:
  """The checkpoints of one workdir (`workdir/checkpoints`)."""

  def __init__(self, workdir: str, *, read_only: bool = False):
    self.directory = os.path.join(os.path.abspath(workdir), "checkpoints")
    if read_only and not os.path.isdir(self.directory):
      raise CheckpointError(f"{self.directory}: no checkpoints here (was training run "
                            f"with --workdir={workdir}?)")
    # No Orbax deletion policy (it would rank steps by metrics it only knows for
    # steps saved by this very manager object); `_prune` deletes from our meta.
    options = ocp.CheckpointManagerOptions(max_to_keep=None, read_only=read_only,
                                           create=not read_only,
                                           cleanup_tmp_directories=not read_only)
    self._manager = ocp.CheckpointManager(self.directory, options=options, item_names=ITEMS)

  def latest_step(self) -> int | None:
    return self._manager.latest_step()

  def all_steps(self) -> list[int]:
    return list(self._manager.all_steps())

  def save(self, step: int, state: Any, *, meta: dict, config: dict, index: dict) -> None:
    """Saves host (numpy) state plus JSON items, waits until the step is final on
    disk, then deletes every step but it and the best step `meta` records."""
    self._manager.save(step, args=ocp.args.Composite(
        state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta),
        config=ocp.args.JsonSave(config), index=ocp.args.JsonSave(index)), force=True)
    self._manager.wait_until_finished()
    self._prune(keep={step, recorded_best(meta)})

  def _prune(self, keep: set) -> None:
    """Deletes finished steps outside `keep` (every process calls it: Orbax's
    delete runs on the primary process and waits for the others)."""
    for old in self.all_steps():
      if old not in keep:
        self._manager.delete(old)

  def wait(self) -> None:
    self._manager.wait_until_finished()

  def close(self) -> None:
    """Closes the manager after its start-up clean-up of temporary paths has finished:
    Orbax runs that clean-up in a thread when the manager opens and awaits it only
    before a save, so a process that opens a workdir and exits on an error would
    otherwise end with that thread's shutdown traceback after the error's one line."""
    await_cleanup = getattr(self._manager, "_maybe_await_cleanup_tmp_directory", None)
    if await_cleanup is not None:  # orbax-checkpoint 0.12 (pinned); absent: nothing to wait for
      await_cleanup()
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
    """The best-by-validation-accuracy step recorded by the latest checkpoint
    (the one source of truth that `save` also prunes by)."""
    latest, meta, _, _ = self.restore_json()
    best = recorded_best(meta)
    if best is None:
      raise CheckpointError(f"{self.directory}: no epoch has finished yet, so there is no "
                            f"best checkpoint; train longer or pass an explicit step")
    if best not in self.all_steps():
      raise CheckpointError(f"{self.directory}: step {latest} records step {best} as the best, "
                            f"but it is not on disk (have {self.all_steps()}); evaluate "
                            f"another step with --step=latest or --step=N")
    return best


def _check_finite(tree: Any, where: str) -> None:
  for path, leaf in jax.tree_util.tree_leaves_with_path(tree):
    arr = np.asarray(leaf)
    if np.issubdtype(arr.dtype, np.floating) and not np.isfinite(arr).all():
      raise CheckpointError(f"{where}: parameter {jax.tree_util.keystr(path)} holds NaN/inf")
