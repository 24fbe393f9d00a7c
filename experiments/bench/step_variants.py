"""The training step's layout alternatives, each timed alone (prints figures; not a test).

    .venv/bin/python -m experiments.bench.step_variants

At the paper's shape (112 LLMs), llmrouter's (9) and the pairs layout's (one LLM
per row: 2048 rows, the paper code's sampling), on one device:
  * `pmap`: the production step (training.pmap_train_step): state replicated
    with no device axis (in_axes / out_axes None), donated;
  * `pmap_keep`: the same without donation (the old state stays allocated);
  * `pmap_stacked`: the state stacked on a leading device axis (in_axes 0), the
    usual pmap idiom and this project's layout before; donated;
  * `jit_mesh`: the same per-device step function as jit(shard_map) over a
    one-axis mesh, state donated;
  * `pmap_system_malloc`: `pmap` with glibc's default allocator (every other
    variant keeps freed memory for reuse, as training does:
    `utils.retain_freed_memory`);
  * `pmap_thread_arenas`: `pmap` keeping freed memory but with a malloc arena
    per thread, where requests over 64 MB are still mapped and unmapped;
with XLA's cost analysis of each (FLOPs, bytes moved), and the time of drawing
the dropout masks and input noise alone (`models.irtnet.regularisation_noise`).
Each variant runs in a fresh process (a process's allocator state carries over
between programs, which skewed variants timed side by side in one process):
3 warm-up steps, then the median of 12.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

from irt_jax import utils  # noqa: E402

if "--variant=pmap_system_malloc" not in sys.argv[1:]:  # before jax or numpy start threads
  utils.retain_freed_memory(one_arena="--variant=pmap_thread_arenas" not in sys.argv[1:])

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P  # noqa: E402

from configs import irtnet as paper_config  # noqa: E402
from irt_jax.training import parallel
from irt_jax import training  # noqa: E402
from irt_jax.models import irtnet as model_lib  # noqa: E402
from experiments.bench.run import cost, time_steps  

VARIANTS = ["pmap", "pmap_keep", "pmap_stacked", "jit_mesh", "pmap_system_malloc",
            "pmap_thread_arenas"]


def time_variant(name: str, n_models: int, steps: int = 12) -> None:
  config = paper_config.get_config()
  spec = model_lib.ModelSpec.from_config(config.model, n_models, 768)
  opt = training.make_optimizer(config.optim)
  rows = parallel.queries_per_batch(config.train.batch_cells, n_models, 1)
  rng = np.random.default_rng(0)
  host_state = jax.device_get(training.init_state(jax.random.PRNGKey(0), model_lib.KIND, spec, opt))
  batch = {"query_index": np.arange(rows, dtype=np.int32),
           "embeddings": rng.normal(size=(rows, 768)).astype(np.float32),
           "labels": (rng.random((rows, n_models)) < 0.6).astype(np.float32),
           "mask": np.ones((rows, n_models), bool)}
  key = jax.random.PRNGKey(1)
  pmap_batch = jax.device_put(jax.tree.map(lambda x: x[None], batch), parallel.local_sharding())
  if name in ("pmap", "pmap_system_malloc", "pmap_keep", "pmap_thread_arenas"):
    step = training.pmap_train_step(model_lib.KIND, spec, opt, donate=name != "pmap_keep")
    state, fed = parallel.replicate(host_state), pmap_batch
  elif name == "pmap_stacked":
    step = jax.pmap(training.make_train_step(model_lib.KIND, spec, opt), axis_name=parallel.AXIS,
                    in_axes=(0, 0, None), donate_argnums=(0,))
    state = jax.tree.map(lambda x: jax.device_put(np.asarray(x)[None], parallel.local_sharding()),
                         host_state)
    fed = pmap_batch
  elif name == "jit_mesh":
    mesh = Mesh(np.array(jax.devices()[:1]), (parallel.AXIS,))
    step = jax.jit(jax.shard_map(training.make_train_step(model_lib.KIND, spec, opt), mesh=mesh,
                                 in_specs=(P(), P(parallel.AXIS), P()), out_specs=(P(), P()),
                                 check_vma=False), donate_argnums=(0,))
    state = jax.device_put(host_state, NamedSharding(mesh, P()))
    fed = jax.device_put(batch, NamedSharding(mesh, P(parallel.AXIS)))
  else:
    raise SystemExit(f"unknown variant {name!r}; known: {VARIANTS}")
  flops, nbytes = cost(step.lower(state, fed, key).compile())
  state, times = time_steps(step, state, fed, key, steps=steps, warmup=3)
  counted = ("no cost analysis on this backend" if flops is None else
             f"{flops / 1e9:6.2f} GFLOP  {nbytes / 1e9:5.2f} GB moved")
  print(f"{n_models:4d} LLMs, {rows:3d} rows  {name:19s} step {1e3 * np.median(times):7.1f} ms  "
        f"{counted}", flush=True)
  if name != "pmap":
    return
  idx = jnp.arange(rows, dtype=jnp.int32)
  noise = jax.jit(lambda k: model_lib.regularisation_noise(k, idx, spec))
  jax.block_until_ready(noise(key))
  t_noise = []
  for i in range(10):
    t = time.perf_counter()
    jax.block_until_ready(noise(jax.random.fold_in(key, i)))
    t_noise.append(time.perf_counter() - t)
  share = np.median(t_noise) / np.median(times)
  print(f"{n_models:4d} LLMs, {rows:3d} rows  dropout masks + input noise alone     "
        f"{1e3 * np.median(t_noise):6.1f} ms ({100 * share:.0f}% of the pmap step)", flush=True)


if __name__ == "__main__":
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--variant", choices=VARIANTS, help="time this one here (default: all, "
                      "each in its own process)")
  parser.add_argument("--models", type=int, default=112)
  args = parser.parse_args()
  if args.variant:
    time_variant(args.variant, args.models)
    sys.exit(0)
  print(f"{jax.devices()[0].platform}, {jax.device_count()} device(s)", flush=True)
  for n in (112, 9, 1):
    for name in VARIANTS:
      subprocess.run([sys.executable, "-m", "experiments.bench.step_variants", f"--variant={name}", f"--models={n}"], check=True)
