"""Training: a config resolved once into specs (specs), a run trained by gradient
(loop over the pure steps of step, with schedule and resume) or fitted (fitting),
picked by `run` (runs); batches, device parallelism and multi-host setup.

The public entry points: `run`, `train_and_evaluate`, `resolve` (the config
check, every error before anything is written) and `TrainingError`.
"""

from irt_jax.training.resume import TrainingError
from irt_jax.training.runs import run
from irt_jax.training.runs import train_and_evaluate
from irt_jax.training.schedule import EarlyStopping
from irt_jax.training.schedule import Plateau
from irt_jax.training.schedule import learning_rate
from irt_jax.training.schedule import set_learning_rate
from irt_jax.training.specs import RunSpec
from irt_jax.training.specs import resolve
from irt_jax.training.step import TrainState
from irt_jax.training.step import evaluate_split
from irt_jax.training.step import init_state
from irt_jax.training.step import make_eval_step
from irt_jax.training.step import make_optimizer
from irt_jax.training.step import make_train_step
from irt_jax.training.step import pmap_eval_step
from irt_jax.training.step import pmap_train_step

__all__ = ["EarlyStopping", "Plateau", "RunSpec", "TrainState", "TrainingError",
           "evaluate_split", "init_state", "learning_rate", "make_eval_step",
           "make_optimizer", "make_train_step", "pmap_eval_step", "pmap_train_step",
           "resolve", "run", "set_learning_rate", "train_and_evaluate"]
