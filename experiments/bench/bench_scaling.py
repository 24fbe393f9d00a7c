"""Data-parallel scaling of the pmapped train step at the paper's shape.

The paper's IrtNet: 112 LLMs, ability dim 232, 40 experts (39 routed + 1 shared,
all active), hidden 512, output 256, 768-d query embeddings, ~2048 cells per
batch. One global batch of 20 query rows x 112 models (2,240 cells: the 2048
cells rounded up to whole rows and to a multiple of 4 devices, as training
lays them out) is trained on by 1, 2 and 4 devices; each device gets
20 / n rows and the gradients are psum'd. Reported per device count: the
median step time, cells/s, the ratio to 1 device, and the largest difference
between its parameters after a few steps and the 1-device parameters (the
step must not depend on the device count).

On a CPU host each device count runs in its own process with that many
forced CPU devices (XLA_FLAGS=--xla_force_host_platform_device_count=N). They
share the host's cores, so on a small machine this is a check that the
layout scales correctly, not a speed-up measurement. Where accelerators are
present (GPUs, TPU cores) the counts run on the first N real devices.

    .venv/bin/python -m experiments.bench.bench_scaling                 # 1, 2, 4 devices
    .venv/bin/python -m experiments.bench.bench_scaling --devices 1 2 4 8 --steps 20
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

N_MODELS, INPUT_DIM, BATCH_CELLS, GLOBAL_ROWS = 112, 768, 2048, 20


def _worker(n_devices: int, steps: int, check_steps: int, out: str) -> None:
  """Times the step on the first `n_devices` devices; writes JSON + params."""
  from irt_jax import utils
  utils.retain_freed_memory()  # as training does, before jax starts threads
  import jax
  import numpy as np

  from configs import irtnet
  from irt_jax.models import irtnet as model_lib
  from irt_jax.training import parallel
  from irt_jax import training
  from experiments.bench.run import time_steps

  devices = jax.local_devices()[:n_devices]
  if len(devices) < n_devices:
    raise SystemExit(f"asked for {n_devices} devices, have {len(devices)}")
  config = irtnet.get_config()  # the paper's model and optimiser settings
  spec = model_lib.ModelSpec.from_config(config.model, N_MODELS, INPUT_DIM)
  optimizer = training.make_optimizer(config.optim)
  init_rng, step_rng = jax.random.split(jax.random.PRNGKey(0))
  host_state = jax.device_get(training.init_state(init_rng, model_lib.KIND, spec, optimizer))

  rng = np.random.default_rng(0)
  batch = {  # one fixed global batch; 10% of the cells unobserved
      "query_index": np.arange(GLOBAL_ROWS, dtype=np.int32),
      "embeddings": rng.normal(size=(GLOBAL_ROWS, INPUT_DIM)).astype(np.float32),
      "labels": (rng.random((GLOBAL_ROWS, N_MODELS)) < 0.6).astype(np.float32),
      "mask": rng.random((GLOBAL_ROWS, N_MODELS)) < 0.9,
  }
  from jax.sharding import Mesh, NamedSharding, PartitionSpec
  sharding = NamedSharding(Mesh(np.array(devices), (parallel.AXIS,)),
                           PartitionSpec(parallel.AXIS))
  sharded = jax.device_put(parallel.shard(batch, n_devices), sharding)  # [n, rows/n, ...]
  p_step = training.pmap_train_step(model_lib.KIND, spec, optimizer, devices=devices)

  # Equality check: a few steps from the same start on the same global batch.
  state = parallel.replicate(host_state, devices)
  t0 = time.perf_counter()
  state, _ = p_step(state, sharded, step_rng)
  jax.block_until_ready(state)
  compile_s = time.perf_counter() - t0
  for _ in range(check_steps - 1):
    state, _ = p_step(state, sharded, step_rng)
  params = parallel.unreplicate(state.params)
  np.savez(out + ".npz", **{jax.tree_util.keystr(p): v for p, v in
                            jax.tree_util.tree_leaves_with_path(params)})
  np.savez(out + ".init.npz", **{jax.tree_util.keystr(p): np.asarray(v) for p, v in
                                 jax.tree_util.tree_leaves_with_path(host_state.params)})

  # Timing: warm steps, each waited for.
  state, times = time_steps(p_step, state, sharded, step_rng, steps=steps)
  cells = int(batch["mask"].sum())
  with open(out + ".json", "w") as f:
    json.dump({"devices": n_devices, "platform": devices[0].platform,
               "device_kind": devices[0].device_kind, "compile_s": compile_s,
               "step_s": float(np.median(times)), "step_s_min": float(np.min(times)),
               "cells": cells, "rows_per_device": GLOBAL_ROWS // n_devices,
               "params": model_lib.count_params(params)}, f)


def _accelerators() -> int:
  """Real non-CPU devices visible to a fresh JAX (0 on a CPU host)."""
  code = "import jax; print(sum(d.platform != 'cpu' for d in jax.devices()))"
  try:
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=300, cwd=REPO)
    return int(out.stdout.strip().splitlines()[-1])
  except Exception:
    return 0


def _device_env(n: int, accel: int) -> dict | None:
  """The environment of the n-device worker, or None when there are too few accelerators."""
  env = dict(os.environ)
  if not accel:
    # Forced CPU devices, one single-threaded device per forced device (as
    # in the tests: XLA's shared Eigen pool can stall a collective when
    # devices outnumber cores).
    env["JAX_PLATFORMS"] = "cpu"
    env["XLA_FLAGS"] = (f"{env.get('XLA_FLAGS', '')} "
                        f"--xla_force_host_platform_device_count={n} "
                        "--xla_cpu_multi_thread_eigen=false "
                        "--xla_cpu_collective_timeout_seconds=600").strip()
  elif n > accel:
    print(f"skipping {n} devices: only {accel} accelerators")
    return None
  return env


def _run_worker(n: int, env: dict, tmp: str, args) -> dict:
  """One device count in its own process: its timings and parameters (start and end)."""
  import numpy as np
  out = os.path.join(tmp, f"dev{n}")
  cmd = [sys.executable, "-m", "experiments.bench.bench_scaling", f"--worker={n}", f"--out={out}",
         f"--steps={args.steps}", f"--check_steps={args.check_steps}"]
  proc = subprocess.run(cmd, env=env, cwd=REPO, capture_output=True, text=True,
                        timeout=args.timeout)
  if proc.returncode:
    sys.exit(f"{n} devices failed:\n{proc.stderr[-3000:]}")
  with open(out + ".json") as f:
    r = json.load(f)
  with np.load(out + ".npz") as z:
    r["params_arrays"] = {k: z[k] for k in z.files}
  with np.load(out + ".init.npz") as z:
    r["init_arrays"] = {k: z[k] for k in z.files}
  print(f"{n} device(s) done: median step {r['step_s'] * 1e3:.1f} ms", flush=True)
  return r


def _print_table(results: list[dict], args) -> None:
  import numpy as np
  base = results[0]
  print(f"\nIrtNet at the paper's shape: {base['params']:,} parameters; global batch "
        f"{GLOBAL_ROWS} queries x {N_MODELS} models ({base['cells']} observed cells); "
        f"{base['platform']} ({base['device_kind']})"
        + (", forced CPU devices sharing the host's cores" if base["platform"] == "cpu"
           else ""))
  keys = sorted(base["params_arrays"])
  flat = lambda d: np.concatenate([d[k].ravel().astype(np.float64) for k in keys])
  p1 = flat(base["params_arrays"])
  moved = np.linalg.norm(p1 - flat(base["init_arrays"]))
  print(f"{'devices':>7} {'rows/dev':>8} {'compile s':>9} {'step ms':>8} {'cells/s':>9} "
        f"{'vs 1 dev':>8} {'max |dparam|':>12} {'rel. diff':>9}")
  for r in results:
    pn = flat(r["params_arrays"])
    same_start = np.array_equal(flat(r["init_arrays"]), flat(base["init_arrays"]))
    diff = float(np.max(np.abs(pn - p1)))
    rel = float(np.linalg.norm(pn - p1) / max(moved, 1e-30))
    print(f"{r['devices']:>7} {r['rows_per_device']:>8} {r['compile_s']:>9.1f} "
          f"{r['step_s'] * 1e3:>8.1f} {r['cells'] / r['step_s']:>9,.0f} "
          f"{base['step_s'] / r['step_s']:>7.2f}x {diff:>12.2e} {rel:>9.1e}"
          + ("" if same_start else "  (different initial params!)"))
  print(f"step ms: median of {args.steps} warm steps. Parameters compared after "
        f"{args.check_steps} steps from the same start on the same global batch: "
        f"max |dparam| is the largest elementwise difference from 1 device, rel. diff "
        f"= ||p_N - p_1|| / ||p_1 - p_init||.")


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--devices", type=int, nargs="+", default=[1, 2, 4])
  parser.add_argument("--steps", type=int, default=10, help="timed steps per device count")
  parser.add_argument("--check_steps", type=int, default=3,
                      help="steps before comparing parameters across device counts")
  parser.add_argument("--timeout", type=int, default=900, help="seconds per device count")
  parser.add_argument("--worker", type=int, help=argparse.SUPPRESS)
  parser.add_argument("--out", help=argparse.SUPPRESS)
  args = parser.parse_args()
  if args.worker:
    _worker(args.worker, args.steps, args.check_steps, args.out)
    return
  if any(GLOBAL_ROWS % n for n in args.devices):
    parser.error(f"device counts must divide the {GLOBAL_ROWS}-row global batch")
  accel = _accelerators()
  results = []
  with tempfile.TemporaryDirectory() as tmp:
    for n in args.devices:
      env = _device_env(n, accel)
      if env is not None:
        results.append(_run_worker(n, env, tmp, args))
  _print_table(results, args)

if __name__ == "__main__":
  main()
