"""The training step's layout alternatives, timed side by side (prints figures; not a test).

    .venv/bin/python bench/step_variants.py

At the paper's shape (112 LLMs) and llmrouter's (9), on one device:
  * `pmap`: the production step (training.pmap_train_step): state replicated
    with no device axis (in_axes / out_axes None), donated;
  * `pmap_keep`: the same without donation (the old state stays allocated);
  * `pmap_stacked`: the state stacked on a leading device axis (in_axes 0), the
    usual pmap idiom and this project's layout before; donated;
  * `jit_mesh`: the same per-device step function as jit(shard_map) over a
    one-axis mesh, state donated;
with XLA's cost analysis of each (FLOPs, bytes moved),
and the share of a step spent drawing the dropout masks and input noise
(`models.irtnet.regularisation_noise`). Six interleaved steps each; medians.
The process keeps freed memory for reuse as training does
(`utils.retain_freed_memory`); a second process times `pmap` with glibc's
default allocator (`--system_malloc`) for comparison.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P  # noqa: E402

from configs import irtnet as paper_config  # noqa: E402
from irt_jax import parallel, training, utils  # noqa: E402
from irt_jax.models import irtnet as model_lib  # noqa: E402
from run import cost  # noqa: E402  (bench/run.py, the suite: this script's directory is on sys.path)


def one_shape(n_models: int, names: list[str], reps: int = 6, label: str = "") -> None:
  config = paper_config.get_config()
  spec = model_lib.ModelSpec.from_config(config.model, n_models, 768)
  opt = training.make_optimizer(config.optim)
  rows = parallel.queries_per_batch(config.train.batch_cells, n_models, 1)
  rng = np.random.default_rng(0)
  step_fn = training.make_train_step(model_lib.KIND, spec, opt)
  host_state = jax.device_get(training.init_state(jax.random.PRNGKey(0), model_lib.KIND, spec, opt))
  batch = {"query_index": np.arange(rows, dtype=np.int32),
           "embeddings": rng.normal(size=(rows, 768)).astype(np.float32),
           "labels": (rng.random((rows, n_models)) < 0.6).astype(np.float32),
           "mask": np.ones((rows, n_models), bool)}
  key = jax.random.PRNGKey(1)
  mesh = Mesh(np.array(jax.devices()[:1]), (parallel.AXIS,))
  pmap_batch = jax.device_put(jax.tree.map(lambda x: x[None], batch), parallel.local_sharding())

  def stacked() -> list:  # the state stacked [devices, ...], pmap's usual idiom
    stacked_state = jax.tree.map(lambda x: jax.device_put(np.asarray(x)[None], parallel.local_sharding()),
                                 host_state)
    return [jax.pmap(step_fn, axis_name=parallel.AXIS, in_axes=(0, 0, None), donate_argnums=(0,)),
            stacked_state, pmap_batch]

  variants = {  # name: [step, its own state, the batch]
      "pmap": [training.pmap_train_step(model_lib.KIND, spec, opt), parallel.replicate(host_state),
               pmap_batch],
      "pmap_keep": [training.pmap_train_step(model_lib.KIND, spec, opt, donate=False),
                    parallel.replicate(host_state), pmap_batch],
      "pmap_stacked": stacked(),
      "jit_mesh": [jax.jit(jax.shard_map(step_fn, mesh=mesh, in_specs=(P(), P(parallel.AXIS), P()),
                                         out_specs=(P(), P()), check_vma=False),
                           donate_argnums=(0,)),
                   jax.device_put(host_state, NamedSharding(mesh, P())),
                   jax.device_put(batch, NamedSharding(mesh, P(parallel.AXIS)))],
  }
  variants = {name: v for name, v in variants.items() if name in names}
  for name, v in variants.items():
    flops, nbytes = cost(v[0].lower(v[1], v[2], key).compile())
    v[1], _ = v[0](v[1], v[2], key)
    jax.block_until_ready(v[1])
    v.append((flops, nbytes))
  times = {name: [] for name in variants}
  for _ in range(reps):
    for name, v in variants.items():
      t = time.perf_counter()
      v[1], m = v[0](v[1], v[2], key)
      jax.block_until_ready((v[1], m))
      times[name].append(time.perf_counter() - t)
  for name, v in variants.items():
    flops, nbytes = v[3]
    counted = ("no cost analysis on this backend" if flops is None else
               f"{flops / 1e9:6.2f} GFLOP  {nbytes / 1e9:5.2f} GB moved")
    print(f"{n_models:4d} LLMs, {rows:3d} rows  {name + label:27s} step {1e3 * np.median(times[name]):7.1f} ms  "
          f"{counted}", flush=True)
  if label:
    return
  idx = jnp.arange(rows, dtype=jnp.int32)
  noise = jax.jit(lambda k: model_lib.regularisation_noise(k, idx, spec))
  jax.block_until_ready(noise(key))
  t_noise = []
  for i in range(10):
    t = time.perf_counter()
    jax.block_until_ready(noise(jax.random.fold_in(key, i)))
    t_noise.append(time.perf_counter() - t)
  share = np.median(t_noise) / np.median(times["pmap"])
  print(f"{n_models:4d} LLMs, {rows:3d} rows  dropout masks + input noise alone    "
        f"{1e3 * np.median(t_noise):6.1f} ms ({100 * share:.0f}% of the pmap step)", flush=True)


VARIANTS = ["pmap", "pmap_keep", "pmap_stacked", "jit_mesh"]

if __name__ == "__main__":
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--system_malloc", action="store_true",
                      help="time the production step only, with glibc's default allocator")
  args = parser.parse_args()
  if args.system_malloc:
    for n in (112, 9):
      one_shape(n, ["pmap"], label=" (system malloc)")
    sys.exit(0)
  print(f"{jax.devices()[0].platform}, {jax.device_count()} device(s)", flush=True)
  utils.retain_freed_memory()
  for n in (112, 9):
    one_shape(n, VARIANTS)
  subprocess.run([sys.executable, __file__, "--system_malloc"], check=True)
