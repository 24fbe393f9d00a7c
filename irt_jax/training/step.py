"""The optimiser and the pure data-parallel steps (pmapped over the `data` axis).

`train_step(state, batch, rng) -> (state, metrics)` is pure: everything it
closes over (the kind, its spec, the optimiser) is fixed when it is built.
"""

from __future__ import annotations

from typing import Callable

import flax
import jax
import jax.numpy as jnp
import optax

from irt_jax.data import io as data_lib
from irt_jax.models import base as kind_lib
from irt_jax.models import losses
from irt_jax.training import batches
from irt_jax.training import parallel
from irt_jax.training.specs import OptimSpec


def make_optimizer(optim: OptimSpec) -> optax.GradientTransformation:
  """Adam with coupled L2 decay, as torch.optim.Adam(weight_decay=wd).

  The decay is added to the gradient before Adam's moments (unlike AdamW); the
  learning rate is a hyperparameter in the state so the plateau schedule can
  change it between epochs and checkpoints carry it.
  """

  @optax.inject_hyperparams
  def adam_l2(learning_rate, weight_decay):
    return optax.chain(optax.add_decayed_weights(weight_decay),
                       optax.scale_by_adam(b1=optim.b1, b2=optim.b2, eps=optim.eps),
                       optax.scale_by_learning_rate(learning_rate))

  return adam_l2(learning_rate=optim.lr, weight_decay=optim.weight_decay)


@flax.struct.dataclass
class TrainState:
  step: jax.Array
  params: kind_lib.Params
  opt_state: optax.OptState


def init_state(rng: jax.Array, kind: kind_lib.Kind, spec,
               optimizer: optax.GradientTransformation) -> TrainState:
  params = kind.init(rng, spec)
  return TrainState(step=jnp.zeros((), jnp.int32), params=params,
                    opt_state=optimizer.init(params))


def make_train_step(kind: kind_lib.Kind, spec, optimizer: optax.GradientTransformation,
                    axis_name: str = parallel.AXIS) -> Callable:
  """The per-device program of one data-parallel step, for any gradient kind.

  The objective is the kind's summed loss (BCE unless the kind brings its own)
  averaged over every observed cell of the global batch:
  each device differentiates its own sum divided by the global cell count, and
  the gradients are summed over `axis_name`. Devices holding more observed cells
  thus weigh more, exactly as in one big batch, whatever the device count.
  """

  loss_sum = kind.objective()

  def train_step(state: TrainState, batch: dict, rng: jax.Array):
    step_rng = jax.random.fold_in(rng, state.step)
    mask, labels = batch["mask"], batch["labels"]
    total = parallel.psum(mask.sum().astype(jnp.float32), axis_name)

    def objective(params):
      value, logits = loss_sum(params, batch, spec, step_rng)
      return value / jnp.maximum(total, 1.0), logits

    grads, logits = jax.grad(objective, has_aux=True)(state.params)
    grads = parallel.psum(grads, axis_name)
    updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    metrics = parallel.psum(losses.masked_counts(logits, labels, mask), axis_name)
    return state.replace(step=state.step + 1, params=params, opt_state=opt_state), metrics

  return train_step


def pmap_train_step(kind: kind_lib.Kind, spec, optimizer: optax.GradientTransformation,
                    devices: list | None = None, donate: bool = True) -> Callable:
  """`make_train_step` as it runs: pmapped, the batch split over devices, the
  state and metrics replicated (`parallel.replicate`) and the state donated.

  The state goes in and out with no device axis (`in_axes=None`,
  `out_axes=None`; the summed gradients keep every copy identical). Stacked on
  a leading axis instead, pmap squeezes and re-expands it around the step, and
  XLA then copies every parameter and Adam moment to keep the donated buffers
  safe: 0.6 GB of extra traffic per step (`experiments/bench/step_variants.py`, variant
  `pmap_stacked`).
  """
  return jax.pmap(make_train_step(kind, spec, optimizer), axis_name=parallel.AXIS,
                  in_axes=(None, 0, None), out_axes=None,
                  donate_argnums=(0,) if donate else (), devices=devices)


def pmap_eval_step(kind: kind_lib.Kind, spec) -> Callable:
  """`make_eval_step` pmapped like `pmap_train_step`: replicated params in,
  a batch split over devices, the (summed) counts out once."""
  return jax.pmap(make_eval_step(kind, spec), axis_name=parallel.AXIS, in_axes=(None, 0),
                  out_axes=None)


def make_eval_step(kind: kind_lib.Kind, spec, axis_name: str = parallel.AXIS) -> Callable:
  """Summed BCE / accuracy counts of a block, without noise or dropout (the
  same yardstick for every kind, whatever it trains on)."""

  def eval_step(params, batch):
    logits = kind.logits(params, batch["embeddings"], spec)
    return parallel.psum(losses.masked_counts(logits, batch["labels"], batch["mask"]),
                         axis_name)

  return eval_step


def evaluate_split(p_eval_step: Callable, params, data: data_lib.ResponseData, split: str,
                   rows: int) -> dict[str, float]:
  """Loss and accuracy over every observed cell of a split (all processes join)."""
  outs = [p_eval_step(params, parallel.shard(block))
          for block in batches.iterate(data.split(split), data.embeddings, rows,
                                       process_index=jax.process_index(),
                                       process_count=jax.process_count())]
  fetched = [parallel.unreplicate(o) for o in outs]  # psum'd: the global total
  return losses.summarise({k: sum(float(f[k]) for f in fetched) for k in fetched[0]})
