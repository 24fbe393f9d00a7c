r"""Training with scripted validation accuracy and a deterministic kill -9.

The checkpoint bugs worth testing need a run whose best epoch is not its last and
a process that dies at a known point; real accuracies and wall-clock races give
neither reliably. `script_val_accuracy` makes epoch e's validation accuracy
`schedule[e]` (the loss stays real); `kill_after_saves` sends SIGKILL to this
process right after its n-th checkpoint save is on disk.

In-process tests call the two functions with pytest's monkeypatch; a subprocess
runs the real training entry point (irt_jax/cli/train.py) under them:

  IRT_TEST_VAL_ACCURACY=0.5,0.9,0.6 IRT_TEST_KILL_AFTER_SAVES=4 \
      python -m tests.scripted_training --config=configs/test.py --workdir=...
"""

from __future__ import annotations

import os
import signal

from irt_jax.training import batches
from irt_jax import checkpoint as ckpt_lib
from irt_jax.training import step as step_lib


class _Patcher:
  """monkeypatch.setattr for use outside pytest (the subprocess)."""

  def setattr(self, target, name, value):
    setattr(target, name, value)


def script_val_accuracy(monkeypatch, schedule) -> None:
  """Validation accuracy of epoch e becomes schedule[e] (e counts from 0).

  The epoch is the one the training loop last asked `batches.iterate` for, so
  the schedule follows a resumed run exactly as an uninterrupted one.
  """
  current = {"epoch": None}
  real_iterate, real_evaluate = batches.iterate, step_lib.evaluate_split

  def iterate(*args, **kwargs):
    if "epoch" in kwargs:  # the training split; evaluation passes no epoch
      current["epoch"] = kwargs["epoch"]
    return real_iterate(*args, **kwargs)

  def evaluate_split(p_eval_step, params, data, split, rows):
    out = real_evaluate(p_eval_step, params, data, split, rows)
    if split == "val":
      out = {**out, "accuracy": float(schedule[current["epoch"]])}
    return out

  monkeypatch.setattr(batches, "iterate", iterate)
  monkeypatch.setattr(step_lib, "evaluate_split", evaluate_split)


def kill_after_saves(monkeypatch, n: int, kill=None) -> None:
  """After the n-th save of this process has returned (the step is on disk and
  pruning is done), calls `kill` (default: SIGKILL to this very process)."""
  count = {"saves": 0}
  real_save = ckpt_lib.Checkpoints.save
  kill = kill or (lambda: os.kill(os.getpid(), signal.SIGKILL))

  def save(self, step, *args, **kwargs):
    real_save(self, step, *args, **kwargs)
    count["saves"] += 1
    if count["saves"] == n:
      kill()

  monkeypatch.setattr(ckpt_lib.Checkpoints, "save", save)


if __name__ == "__main__":
  from absl import app

  from irt_jax.cli import train

  train.define_flags()

  patcher = _Patcher()
  if os.environ.get("IRT_TEST_VAL_ACCURACY"):
    script_val_accuracy(patcher, [float(x) for x in
                                  os.environ["IRT_TEST_VAL_ACCURACY"].split(",")])
  if os.environ.get("IRT_TEST_KILL_AFTER_SAVES"):
    kill_after_saves(patcher, int(os.environ["IRT_TEST_KILL_AFTER_SAVES"]))
  app.run(train.main)
