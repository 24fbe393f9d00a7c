"""Resuming: a run continues only from checkpoints of the same config, device
layout and data; `restore_or_init` gives a run's starting point either way.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import jax
from absl import logging

from irt_jax import checkpoint as ckpt_lib
from irt_jax.errors import UserError
from irt_jax.data import io as data_lib
from irt_jax.training import schedule as schedule_lib
from irt_jax.training.specs import ScheduleSpec

# Fields that may change between an interrupted run and its resumption.
RESUMABLE_FIELDS = ("train.num_epochs", "train.log_every_steps", "train.eval_rows",
                    "checkpoint.every_steps", "train.early_stop_patience")


class TrainingError(UserError, RuntimeError):
  """Training cannot go on (non-finite loss, a workdir of another run, ...)."""


def _flat(d: dict, prefix: str = "") -> dict:
  out = {}
  for k, v in d.items():
    if isinstance(v, dict):
      out.update(_flat(v, f"{prefix}{k}."))
    else:
      out[f"{prefix}{k}"] = v
  return out


def check_same_run(saved: dict, current: dict, directory: str) -> None:
  a, b = _flat(saved), _flat(json.loads(json.dumps(current)))
  diff = sorted(k for k in set(a) | set(b)
                if a.get(k) != b.get(k) and k not in RESUMABLE_FIELDS)
  if diff:
    details = ", ".join(f"{k}: {a.get(k)!r} -> {b.get(k)!r}" for k in diff[:6])
    raise TrainingError(f"{directory} holds checkpoints of a run with another config "
                        f"({details}); use a fresh --workdir or the same config")


def run_layout(data: data_lib.ResponseData, rows: int, steps_per_epoch: int) -> dict:
  """What a resumed run must share with the run that wrote its checkpoints: the
  device and process counts (the batch blocks and the steps per epoch depend on
  them) and a fingerprint of the training data."""
  return {"device_count": jax.device_count(), "process_count": jax.process_count(),
          "rows_per_batch": rows, "steps_per_epoch": steps_per_epoch,
          "data": data_lib.fingerprint(data)}


def check_same_layout(saved: dict | None, current: dict, directory: str) -> None:
  """Refuses to continue a run whose batches or data would differ from its start."""
  if saved is None:  # checkpoints written before layouts were recorded
    logging.warning("%s: checkpoints do not record their device count or data "
                    "fingerprint; resuming without checking them", directory)
    return
  devices = lambda l: f"{l['device_count']} device(s) in {l['process_count']} process(es)"
  if (saved["device_count"], saved["process_count"]) != (current["device_count"],
                                                         current["process_count"]):
    raise TrainingError(
        f"{directory} holds a run trained on {devices(saved)} ({saved['steps_per_epoch']} steps "
        f"per epoch), but this job has {devices(current)}, which would change its batches; "
        f"resume with {devices(saved)} or use a fresh --workdir")
  changed = sorted(k for k in set(saved["data"]) | set(current["data"])
                   if saved["data"].get(k) != current["data"].get(k))
  if changed:
    raise TrainingError(
        f"{directory} holds a run trained on other data (changed since: {', '.join(changed)}); "
        f"restore the data it was trained on, or use a fresh --workdir for the new data")


@dataclasses.dataclass
class Progress:
  """Where a run stands: its (host or replicated) state and step, the epoch
  controllers, and the meta saved with every checkpoint (`history`, `stopped`,
  `epoch_sums` of an epoch stopped part-way)."""
  state: Any
  step: int
  plateau: schedule_lib.Plateau
  early: schedule_lib.EarlyStopping
  meta: dict
  resumed_from: int | None   # the checkpoint step it continued from; None: a fresh run


def _restore(checkpoints: ckpt_lib.Checkpoints, latest: int, record: dict, layout: dict,
             host_state):
  """(state, meta) of the checkpoint at `latest`, refused when it cannot be continued."""
  _, meta, saved_config, _ = checkpoints.restore_json(latest)
  if meta.get("added_models") or meta.get("ability_updates"):
    raise TrainingError(f"{checkpoints.directory} holds a run with LLMs added after "
                        f"training (add_model) or abilities updated from feedback (update); "
                        f"train in a fresh --workdir instead")
  check_same_run(saved_config, record, checkpoints.directory)
  check_same_layout(meta.get("layout"), layout, checkpoints.directory)
  return checkpoints.restore_state(latest, host_state), meta


def restore_or_init(checkpoints: ckpt_lib.Checkpoints, host_state, schedule: ScheduleSpec,
                    record: dict, layout: dict) -> Progress:
  """A fresh run's progress (`host_state` at step 0), or the latest checkpoint's
  when there is one (refused if it was written with another config `record`,
  device `layout` or data). `checkpoints` is closed if it is refused."""
  plateau, early = schedule_lib.controllers(schedule)
  meta = {"history": [], "epoch_sums": None, "stopped": False}
  latest = checkpoints.latest_step()
  if latest is not None:
    try:
      host_state, meta = _restore(checkpoints, latest, record, layout, host_state)
    except BaseException:  # closed, so its background cleanup ends before the process does
      checkpoints.close()
      raise
    plateau, early = schedule_lib.controllers(schedule, meta)
    logging.info("Resumed from step %d of %s", latest, checkpoints.directory)
  return Progress(state=host_state, step=int(host_state.step), plateau=plateau, early=early,
                  meta=meta, resumed_from=latest)
