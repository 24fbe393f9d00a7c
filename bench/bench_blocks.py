r"""Query blocks vs (model, query) pairs: the cost of one training step.

The paper's code feeds batches of 2048 random (model, query) pairs and runs the
21M-parameter MoE once per pair. irt_jax feeds blocks of query rows with all
their models, so the MoE runs once per query and 2048 cells cost about
ceil(2048 / M) MoE evaluations. Both steps below compute the same masked BCE
and Adam update at the paper's shape; the figure is cells per second, measured
in one run on whatever device JAX finds.

  .venv/bin/python bench/bench_blocks.py [--models=112] [--steps=10]
"""

import argparse
import time

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from configs import irtnet
from irt_jax import losses
from irt_jax import model as model_lib
from irt_jax import training


def pair_logits(params, v, model_index, spec):
  """The paper's layout: one query embedding per cell, paired with one model."""
  h = model_lib.query_representation(params, v, spec)
  a, b = model_lib.query_parameters(params, h)
  return jnp.einsum("pd,pd->p", a, params["theta"][model_index]) - b


def timed(fn, *args, steps):
  out = fn(*args)
  jax.block_until_ready(out)
  start = time.perf_counter()
  for _ in range(steps):
    out = fn(*args)
  jax.block_until_ready(out)
  return (time.perf_counter() - start) / steps


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("--models", type=int, default=112)
  parser.add_argument("--cells", type=int, default=2048)
  parser.add_argument("--steps", type=int, default=10)
  args = parser.parse_args()

  config: ml_collections.ConfigDict = irtnet.get_config()
  spec = model_lib.ModelSpec.from_config(config.model, args.models, 768)
  spec = model_lib.ModelSpec(**{**spec.__dict__, "dropout": 0.0, "input_noise": 0.0})
  optimizer = training.make_optimizer(config.optim)
  params = model_lib.init_params(jax.random.PRNGKey(0), spec)
  opt_state = optimizer.init(params)
  rng = np.random.default_rng(0)

  rows = -(-args.cells // args.models)
  block_v = rng.normal(size=(rows, 768)).astype(np.float32)
  block_y = rng.integers(0, 2, size=(rows, args.models)).astype(np.float32)
  block_m = np.ones((rows, args.models), bool)
  pair_v = rng.normal(size=(args.cells, 768)).astype(np.float32)
  pair_model = rng.integers(0, args.models, size=args.cells)
  pair_y = rng.integers(0, 2, size=args.cells).astype(np.float32)

  def update(params, opt_state, loss_fn):
    grads = jax.grad(loss_fn)(params)
    updates, opt_state = optimizer.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state

  @jax.jit
  def block_step(params, opt_state):
    def loss(p):
      logits = model_lib.predict_logits(p, block_v, spec)
      return losses.masked_bce_sum(logits, block_y, block_m) / block_m.sum()
    return update(params, opt_state, loss)

  @jax.jit
  def pair_step(params, opt_state):
    def loss(p):
      return optax.sigmoid_binary_cross_entropy(pair_logits(p, pair_v, pair_model, spec),
                                                pair_y).mean()
    return update(params, opt_state, loss)

  t_block = timed(block_step, params, opt_state, steps=args.steps)
  t_pair = timed(pair_step, params, opt_state, steps=args.steps)
  cells_block = rows * args.models
  print(f"device: {jax.devices()[0].device_kind}; {args.models} models, d={spec.ability_dim}, "
        f"{spec.n_experts}+{spec.n_shared} experts, {model_lib.count_params(params):,} params")
  print(f"{'layout':34s} {'MoE evals':>9s} {'cells':>6s} {'step ms':>8s} {'cells/s':>10s}")
  print(f"{'pairs (paper code)':34s} {args.cells:9d} {args.cells:6d} {1e3 * t_pair:8.1f} "
        f"{args.cells / t_pair:10,.0f}")
  print(f"{'query blocks (irt_jax)':34s} {rows:9d} {cells_block:6d} {1e3 * t_block:8.1f} "
        f"{cells_block / t_block:10,.0f}")
  print(f"speed-up in cells/s: {(cells_block / t_block) / (args.cells / t_pair):.1f}x")


if __name__ == "__main__":
  main()
