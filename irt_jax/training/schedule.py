"""Epoch-level controllers, host side and saved in every checkpoint's meta: the
plateau learning-rate cut (on val loss) and early stopping (on val accuracy).
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from irt_jax.training import parallel
from irt_jax.training.specs import ScheduleSpec
from irt_jax.training.step import TrainState


@dataclasses.dataclass
class Plateau:
  """ReduceLROnPlateau on val loss, torch semantics (mode=min, rel threshold):
  the rate is cut when more than `patience` epochs in a row fail to improve."""
  factor: float
  patience: int
  threshold: float
  best: float = math.inf
  bad_epochs: int = 0

  def update(self, val_loss: float) -> bool:
    """Records an epoch; True when the learning rate should be cut now."""
    if val_loss < self.best * (1.0 - self.threshold):
      self.best, self.bad_epochs = val_loss, 0
      return False
    self.bad_epochs += 1
    if self.bad_epochs > self.patience:
      self.bad_epochs = 0
      return True
    return False


@dataclasses.dataclass
class EarlyStopping:
  """Stops after `patience` epochs without a val-accuracy gain; remembers the best."""
  patience: int
  best: float = -math.inf
  best_step: int | None = None
  best_epoch: int | None = None
  bad_epochs: int = 0

  def update(self, val_accuracy: float, step: int, epoch: int) -> bool:
    """Records an epoch; True when training should stop."""
    if val_accuracy > self.best:
      self.best, self.best_step, self.best_epoch, self.bad_epochs = val_accuracy, step, epoch, 0
    else:
      self.bad_epochs += 1
    return self.bad_epochs >= self.patience


def set_learning_rate(state: TrainState, lr: float) -> TrainState:
  opt_state = state.opt_state
  hyper = dict(opt_state.hyperparams)
  hyper["learning_rate"] = parallel.like(lr, hyper["learning_rate"])
  return state.replace(opt_state=opt_state._replace(hyperparams=hyper))


def learning_rate(state: TrainState) -> float:
  return float(np.asarray(state.opt_state.hyperparams["learning_rate"]).reshape(-1)[0])


def controllers(schedule: ScheduleSpec, saved: dict | None = None
                ) -> tuple[Plateau, EarlyStopping]:
  """Fresh controllers for `schedule`, or those a checkpoint's meta saved (its
  early-stopping patience replaced by the schedule's: it may change on resume)."""
  if saved is not None:
    return (Plateau(**saved["plateau"]),
            EarlyStopping(**{**saved["early_stopping"],
                             "patience": schedule.early_stop_patience}))
  return (Plateau(schedule.plateau_factor, schedule.plateau_patience,
                  schedule.plateau_threshold),
          EarlyStopping(schedule.early_stop_patience))
