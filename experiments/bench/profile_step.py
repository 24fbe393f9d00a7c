"""Where the production training step's time goes, op by op (prints a table; not a test).

    .venv/bin/python -m experiments.bench.profile_step --models=112   # the paper's shape
    .venv/bin/python -m experiments.bench.profile_step --models=9     # llmrouter's

Runs `training.pmap_train_step` at the paper config's model size under
`jax.profiler` (a Perfetto trace), then sums each XLA op's wall time per step and
names it with the JAX operation it came from (from the compiled HLO's metadata).
Ops run concurrently on the CPU's threads, so the column can add up to more
than the step.
"""

from __future__ import annotations

import argparse
import collections
import glob
import gzip
import json
import os
import re
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

from irt_jax import utils  # noqa: E402

if "--system_malloc" not in sys.argv[1:]:  # before jax or numpy start threads
  utils.retain_freed_memory()

import jax  # noqa: E402
import numpy as np  # noqa: E402

from configs import irtnet as paper_config  # noqa: E402
from irt_jax.training import parallel
from irt_jax import training  # noqa: E402
from irt_jax.models import irtnet as model_lib  # noqa: E402


def op_sources(hlo_text: str) -> dict[str, tuple[str, str]]:
  """HLO instruction name -> (its shape, the JAX op_name it was lowered from)."""
  out = {}
  for m in re.finditer(r"^\s+(?:ROOT )?%([\w.\-]+) = (\S+) .*?op_name=\"([^\"]*)\"", hlo_text, re.M):
    out[m.group(1)] = (m.group(2), m.group(3))
  return out


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--models", type=int, default=112, help="LLMs (the block has ~2048 cells)")
  parser.add_argument("--steps", type=int, default=5, help="profiled steps")
  parser.add_argument("--top", type=int, default=20, help="ops listed")
  parser.add_argument("--system_malloc", action="store_true",
                      help="leave glibc's allocator as it is (training keeps freed memory)")
  args = parser.parse_args()
  config = paper_config.get_config()
  spec = model_lib.ModelSpec.from_config(config.model, args.models, 768)
  optimizer = training.make_optimizer(config.optim)
  rows = parallel.queries_per_batch(config.train.batch_cells, args.models, 1)
  rng = np.random.default_rng(0)
  state = parallel.replicate(jax.device_get(
      training.init_state(jax.random.PRNGKey(0), model_lib.KIND, spec, optimizer)))
  batch = jax.device_put({"query_index": np.arange(rows, dtype=np.int32)[None],
                          "embeddings": rng.normal(size=(1, rows, 768)).astype(np.float32),
                          "labels": (rng.random((1, rows, args.models)) < 0.6).astype(np.float32),
                          "mask": np.ones((1, rows, args.models), bool)},
                         parallel.local_sharding())
  step = training.pmap_train_step(model_lib.KIND, spec, optimizer)
  key = jax.random.PRNGKey(1)
  sources = op_sources(step.lower(state, batch, key).compile().as_text())
  for _ in range(3):  # warm
    state, metrics = step(state, batch, key)
  jax.block_until_ready((state, metrics))
  times = []
  with tempfile.TemporaryDirectory() as log_dir:
    jax.profiler.start_trace(log_dir, create_perfetto_trace=True)
    for _ in range(args.steps):
      t = time.perf_counter()
      state, metrics = step(state, batch, key)
      jax.block_until_ready((state, metrics))
      times.append(time.perf_counter() - t)
    jax.profiler.stop_trace()
    trace_file = glob.glob(os.path.join(log_dir, "**", "perfetto_trace.json.gz"), recursive=True)[0]
    with gzip.open(trace_file) as f:
      events = json.load(f)
  events = events["traceEvents"] if isinstance(events, dict) else events
  per_op = collections.defaultdict(float)
  for e in events:
    if e.get("ph") == "X" and e.get("name") in sources:
      per_op[e["name"]] += e["dur"] / 1e3 / args.steps
  step_ms = 1e3 * float(np.median(times))
  print(f"{args.models} LLMs, {rows} query rows per block: step {step_ms:.1f} ms (median of "
        f"{args.steps}, profiled); XLA ops, ms per step:")
  for name, ms in sorted(per_op.items(), key=lambda kv: -kv[1])[:args.top]:
    shape, source = sources[name]
    print(f"{ms:8.2f} ms {100 * ms / step_ms:4.0f}%  {name:28s} {shape[:30]:30s} {source[-70:]}")


if __name__ == "__main__":
  main()
