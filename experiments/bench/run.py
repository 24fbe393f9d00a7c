r"""irt_jax's benchmark suite: every figure in one process, each beside the machine's own limit.

  .venv/bin/python -m experiments.bench.run [--quick] [--only=peak,steps,...] [--out=docs/results/bench/results.json]

Items (run in this order; --only picks some):
  peak     peak_matmul_gflops (large float32 GEMM) and peak_memory_gbps (large axpy);
  steps    one training step at the paper's shape (112 LLMs, 768-d, d=232, 39+1 experts,
           hidden 512, output 256, 2048 cells) and at llmrouter's (9 LLMs, 228 queries
           per block), blocks vs pairs layouts: step ms, cells/s, FLOPs and bytes from
           XLA's cost analysis, roofline time max(FLOPs/peak, bytes/bandwidth) and
           step_fraction_of_roofline = roofline / measured; a blocks step fed from
           host data (block building included); epoch_speedup_vs_per_pair;
  route    route_queries_per_s from embeddings at batch 1/64/4096, route_latency_ms,
           and from text with the MiniLM encoder (.models/all-MiniLM-L6-v2);
  load     csv_load_s / cached_load_s on a generated paper-sized dataset (experiments/bench/paper_data.py)
           plus building one epoch of training blocks;
  encoder  MiniLM and MPNet at batch 1 (a short query), batch 64 (llmrouter prompts) and
           max length: XLA FLOPs, ms, encoder_<model>_<shape>_fraction_of_roofline, and
           encoder_speed_vs_torch (sentence-transformers in --torch_python, interleaved,
           at the same batch size) and encoder_speed_vs_torch_best (against torch's best
           of that and --torch_batch_sizes: it pads each batch to its longest text);
           --encoder_precisions=float32,bfloat16 times the options in the same rounds;
  route_text  route_text_latency_ms: Router.route([text]) for a short query, MPNet and
           an llmrouter run (--llmrouter_run), p50 of 50 after warm-up;
  serve    serve_routes_per_s: POST /route with MPNet and MiniLM, short and llmrouter
           queries, 1/4/16 clients in another process (experiments/bench/bench_serve.py), timed in
           steady state (two warm-up passes over the same texts compile the shapes first);
  train    time_to_train_llmrouter_s: the paper config on query blocks on llmrouter end to
           end (load, train, best checkpoint), beside the released code's 6,224 s;
  paper_train  paper_scale_train_s: experiments/bench/paper_data.py's generated 112 x 35,673 set
           (labels from a known IRT model) on query blocks to its best checkpoint
           (--paper_epochs cap), evaluated: test accuracy, difficulty Spearman to the truth.
Each item's peak resident memory (VmHWM, reset before the item) is recorded as
`<item>.peak_rss_mb`. --quick uses fewer steps, a 1/10-size load dataset and
skips the end-to-end training (recorded as null with an estimate from the
measured llmrouter step); the full run measures everything.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import re
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

from irt_jax import utils  # noqa: E402

utils.retain_freed_memory()  # before jax or numpy start threads: steps are timed as they train

import jax
import jax.numpy as jnp
import numpy as np
import optax

from configs import irtnet as paper_config
from irt_jax.training import batches
from irt_jax.data import io as data_lib
from irt_jax.data import cache as data_cache
from irt_jax import predictors
from irt_jax.models import irtnet as model_lib
from irt_jax.training import parallel
from irt_jax.routing import rules
from irt_jax.serving import app as serving
from irt_jax import training


def make_predictor(params, spec) -> predictors.Predictor:
  """The production prediction path: one Predictor, as a Router holds (its
  weights are moved and folded into their prediction form once)."""
  names = tuple(str(i) for i in range(spec.n_models))
  return predictors.Predictor(model_lib.KIND, spec, params, names)


def route_names(logits, names) -> list[str]:
  """Plain routing: the argmax over every model (rules.choose_by_score, none masked)."""
  return [names[i] for i in rules.choose_by_score(logits, np.ones(np.shape(logits), bool))]


SHARED = REPO.parent / "shared" / "data"
LLMROUTER = SHARED / "llmrouter"
MINILM = REPO / ".models" / "all-MiniLM-L6-v2"
MPNET = REPO / ".models" / "all-mpnet-base-v2"
RELEASED_CODE_LLMROUTER_S = 6224.0  # the paper's PyTorch code, same data, same machine class
SHAPES = {"paper": dict(n_models=112, n_queries=35_673), "llmrouter": dict(n_models=9, n_queries=5_989)}
GOALS = {  # key: (goal, comparison) as the issue states them
    "step_fraction_of_roofline": (0.5, ">="),
    "time_to_train_llmrouter_s": (RELEASED_CODE_LLMROUTER_S / 30, "<="),
    "epoch_speedup_vs_per_pair": (20.0, ">="),
    "route_queries_per_s[64]": (2000.0, ">="),
    "route_latency_ms": (15.0, "<"),
    "csv_load_and_blocks_s": (10.0, "<"),
    "cached_load_s": (2.0, "<"),
}


# ---------------------------------------------------------------------------
# Measuring.

def rss_peak_mb() -> float | None:
  try:
    with open("/proc/self/status") as f:
      return int(re.search(r"VmHWM:\s+(\d+)", f.read()).group(1)) / 1024
  except (OSError, AttributeError):
    return None


def rss_now_mb() -> float | None:
  try:
    with open("/proc/self/status") as f:
      return int(re.search(r"VmRSS:\s+(\d+)", f.read()).group(1)) / 1024
  except (OSError, AttributeError):
    return None


def rss_reset() -> bool:
  """Resets the kernel's peak-RSS mark (Linux clear_refs 5), so each item's peak is its own."""
  try:
    with open("/proc/self/clear_refs", "w") as f:
      f.write("5")
    return True
  except OSError:
    return False


def best_time(fn, *, min_s: float, min_reps: int = 1, max_reps: int = 50) -> tuple[float, float]:
  """(best, median) seconds of fn() over repeats lasting at least min_s in all."""
  times, start = [], time.perf_counter()
  while len(times) < max_reps and (len(times) < min_reps or time.perf_counter() - start < min_s):
    t = time.perf_counter()
    fn()
    times.append(time.perf_counter() - t)
  return float(np.min(times)), float(np.median(times))


def time_steps(step, state, *args, steps: int, warmup: int = 0):
  """Runs `state, metrics = step(state, *args)` warmup + steps times, waiting for each
  step; returns the last state and the timed steps' seconds."""
  times = []
  for i in range(warmup + steps):
    t = time.perf_counter()
    state, metrics = step(state, *args)
    jax.block_until_ready((state, metrics))
    if i >= warmup:
      times.append(time.perf_counter() - t)
  return state, times


def cost(compiled) -> tuple[float | None, float | None]:
  """(FLOPs, bytes accessed) of a compiled program from XLA's cost analysis."""
  try:
    c = compiled.cost_analysis()
  except Exception:  # not every backend implements it
    return None, None
  if isinstance(c, (list, tuple)):
    c = c[0] if c else {}
  return c.get("flops"), c.get("bytes accessed")


def roofline(flops, nbytes, peaks) -> dict:
  if flops is None or nbytes is None or not peaks:
    return {"roofline_ms": None, "bound": None}
  t_flop = flops / (peaks["peak_matmul_gflops"] * 1e9)
  t_mem = nbytes / (peaks["peak_memory_gbps"] * 1e9)
  return {"roofline_ms": 1e3 * max(t_flop, t_mem), "bound": "compute" if t_flop >= t_mem else "memory"}


# ---------------------------------------------------------------------------
# Items. Each returns a dict of results; `ctx` carries figures between items.

def item_peak(args, ctx) -> dict:
  n = 2048
  a = jax.random.normal(jax.random.PRNGKey(0), (n, n), jnp.float32)
  b = jax.random.normal(jax.random.PRNGKey(1), (n, n), jnp.float32)
  mm = jax.jit(lambda a, b: a @ b)
  mm(a, b).block_until_ready()
  t_mm, _ = best_time(lambda: mm(a, b).block_until_ready(), min_s=1.0 if args.quick else 3.0,
                      min_reps=3)
  size = 32 * 2**20  # 32M floats = 128 MiB per array, far beyond any cache
  x = jnp.ones((size,), jnp.float32)
  y = jnp.ones((size,), jnp.float32)
  axpy = jax.jit(lambda x, y: 1.0001 * x + y, donate_argnums=(1,))  # in place: no page faults
  holder = [axpy(x, y)]

  def run_axpy():
    holder[0] = axpy(x, holder[0])
    holder[0].block_until_ready()

  t_ax, _ = best_time(run_axpy, min_s=1.0 if args.quick else 3.0, min_reps=3)
  out = {"peak_matmul_gflops": 2 * n**3 / t_mm / 1e9,
         "peak_memory_gbps": 3 * 4 * size / t_ax / 1e9,  # read x, read y, write the result
         "peak_method": f"best of repeated float32 {n}x{n} GEMM; axpy over 2 x 128 MiB arrays "
                        "(3 x 128 MiB moved)"}
  ctx["peaks"] = out
  return out


def _pair_step(spec, optimizer, pairs: int):
  """The paper code's formulation: one MoE evaluation per (model, query) pair, with its own
  input noise and dropout, the same masked BCE and Adam update."""

  def step(params, opt_state, v, model_index, y, rng):
    noise, keep = model_lib.regularisation_noise(rng, jnp.arange(pairs), spec)

    def loss(p):
      h = model_lib.query_representation(p, v + noise, spec, keep if spec.dropout > 0 else None)
      a, b = model_lib.query_parameters(p, h)
      logits = jnp.einsum("pd,pd->p", a, p["theta"][model_index]) - b
      return optax.sigmoid_binary_cross_entropy(logits, y).mean()

    grads = jax.grad(loss)(params)
    updates, opt_state = optimizer.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state

  return jax.jit(step, donate_argnums=(0, 1))


def _one_shape(name, n_models, args, ctx) -> dict:
  config = paper_config.get_config()
  spec = model_lib.ModelSpec.from_config(config.model, n_models, 768)
  optimizer = training.make_optimizer(config.optim)
  rng = np.random.default_rng(0)
  rows = parallel.queries_per_batch(config.train.batch_cells, n_models, 1)
  out = {"n_models": n_models, "rows_per_block": rows, "params": None}
  peaks = ctx.get("peaks")
  step = _BlockStep(spec, optimizer, rows, n_models)
  out["params"] = model_lib.count_params(parallel.unreplicate(step.state.params))
  out["blocks"] = blocks = _time_blocks(step, rng, args.block_steps, peaks)
  out["blocks_from_host_step_ms"] = _time_blocks_from_host(step, rng, args.block_steps)
  del step
  full_pairs = config.train.batch_cells
  out["pairs"] = pair = _time_pairs(spec, optimizer, n_models, full_pairs, rng, args, peaks)
  out["cells_per_s_blocks_vs_pairs"] = blocks["cells_per_s"] / pair["cells_per_s"]
  # A full epoch over the train split (80% of the queries, every model answered):
  # steps per epoch x measured step (a paper-shape pairs epoch takes over an hour here).
  train_q = int(0.8 * SHAPES[name]["n_queries"])
  epoch_blocks = math.ceil(train_q / rows) * out["blocks_from_host_step_ms"] / 1e3
  epoch_pairs = math.ceil(train_q * n_models / full_pairs) * pair["step_ms"] / 1e3
  out["epoch"] = {"train_queries": train_q, "blocks_s": epoch_blocks, "pairs_s": epoch_pairs,
                  "method": "steps per epoch x median measured step (blocks: fed from host)"}
  out["epoch_speedup_vs_per_pair"] = epoch_pairs / epoch_blocks
  return out


class _BlockStep:
  """The production step (training.pmap_train_step) over one device with the state
  donated, exactly as train_and_evaluate runs it, and its replicated state."""

  def __init__(self, spec, optimizer, rows, n_models):
    self.rows, self.n_models = rows, n_models
    self.state = parallel.replicate(jax.device_get(
        training.init_state(jax.random.PRNGKey(0), model_lib.KIND, spec, optimizer)))
    self.fn = training.pmap_train_step(model_lib.KIND, spec, optimizer)
    self.rng = jax.random.PRNGKey(1)


def _with_roofline(row: dict, flops, nbytes, peaks) -> dict:
  row.update(roofline(flops, nbytes, peaks))
  row["step_fraction_of_roofline"] = (row["roofline_ms"] / row["step_ms"]
                                      if row["roofline_ms"] else None)
  return row


def _time_blocks(step: _BlockStep, rng, steps: int, peaks) -> dict:
  """One device-resident block, compiled then timed: ms, cells/s, FLOPs, bytes, roofline."""
  rows, n_models = step.rows, step.n_models
  batch = {"query_index": np.arange(rows, dtype=np.int32)[None],
           "embeddings": rng.normal(size=(1, rows, 768)).astype(np.float32),
           "labels": (rng.random((1, rows, n_models)) < 0.6).astype(np.float32),
           "mask": np.ones((1, rows, n_models), bool)}
  batch = jax.device_put(batch, parallel.local_sharding())
  t = time.perf_counter()
  compiled = step.fn.lower(step.state, batch, step.rng).compile()
  compile_s = time.perf_counter() - t
  flops, nbytes = cost(compiled)
  step.state, times = time_steps(step.fn, step.state, batch, step.rng, steps=steps, warmup=1)
  cells = rows * n_models
  step_s = float(np.median(times))
  blocks = {"step_ms": 1e3 * step_s, "step_ms_min": 1e3 * min(times), "cells": cells,
            "cells_per_s": cells / step_s, "flops": flops, "bytes": nbytes,
            "compile_s": compile_s, "steps_timed": len(times)}
  return _with_roofline(blocks, flops, nbytes, peaks)


def _time_blocks_from_host(step: _BlockStep, rng, steps: int) -> float:
  """Median ms of the same step fed from host data as the epoch loop does it: a fresh
  block built by batches.iterate from a split, sharded and sent each step."""
  rows, n_models = step.rows, step.n_models
  n_q = 64 * rows
  split = data_lib.Split(queries=np.arange(n_q, dtype=np.int32),
                         labels=(rng.random((n_q, n_models)) < 0.6).astype(np.int8))
  emb = rng.normal(size=(n_q, 768)).astype(np.float32)
  it = batches.iterate(split, emb, rows, seed=0, epoch=0)
  times = []
  for _ in range(steps):
    t = time.perf_counter()
    step.state, m = step.fn(step.state, parallel.shard(next(it), 1), step.rng)
    jax.block_until_ready((step.state, m))
    times.append(time.perf_counter() - t)
  return 1e3 * float(np.median(times))


def _time_pair_size(spec, optimizer, n_models, pairs, rng, steps: int):
  """(median s, FLOPs, bytes, compile s) of one step of `pairs` (model, query) pairs."""
  step_rng = jax.random.PRNGKey(1)
  params = model_lib.init_params(jax.random.PRNGKey(0), spec)
  opt_state = optimizer.init(params)
  v = jnp.asarray(rng.normal(size=(pairs, 768)).astype(np.float32))
  mi = jnp.asarray(rng.integers(0, n_models, size=pairs))
  y = jnp.asarray((rng.random(pairs) < 0.6).astype(np.float32))
  pair_step = _pair_step(spec, optimizer, pairs)
  t = time.perf_counter()
  compiled = pair_step.lower(params, opt_state, v, mi, y, step_rng).compile()
  p_compile = time.perf_counter() - t
  pflops, pbytes = cost(compiled)
  params, opt_state = pair_step(params, opt_state, v, mi, y, step_rng)
  jax.block_until_ready(params)
  times = []
  for _ in range(steps):
    t = time.perf_counter()
    params, opt_state = pair_step(params, opt_state, v, mi, y, step_rng)
    jax.block_until_ready(params)
    times.append(time.perf_counter() - t)
  return float(np.median(times)), pflops, pbytes, p_compile


def _time_pairs(spec, optimizer, n_models, full_pairs, rng, args, peaks) -> dict:
  """Pairs: the paper code's layout, 2048 (model, query) pairs per step. --quick times
  128 and 256 pairs and extrapolates linearly in the pair count (a 2048-pair step
  takes 10-40 s on a shared 2-core CPU); the full run times 2048 pairs."""
  sizes = [128, 256] if args.quick else [full_pairs]
  timed = {pairs: _time_pair_size(spec, optimizer, n_models, pairs, rng, args.pair_steps)
           for pairs in sizes}
  if len(sizes) == 1:
    step_s, pflops, pbytes, p_compile = timed[full_pairs]
    method = f"measured at {full_pairs} pairs"
  else:
    (p0, (t0, f0, b0, c0)), (p1, (t1, f1, b1, _)) = sorted(timed.items())
    lin = lambda a0, a1: None if a0 is None else a0 + (a1 - a0) * (full_pairs - p0) / (p1 - p0)
    step_s, pflops, pbytes, p_compile = lin(t0, t1), lin(f0, f1), lin(b0, b1), c0
    method = (f"--quick: extrapolated linearly from {p0} pairs ({1e3 * t0:.0f} ms) and "
              f"{p1} pairs ({1e3 * t1:.0f} ms) to {full_pairs}")
  pair = {"step_ms": 1e3 * step_s, "cells": full_pairs, "cells_per_s": full_pairs / step_s,
          "flops": pflops, "bytes": pbytes, "compile_s": p_compile,
          "steps_timed": args.pair_steps, "method": method}
  return _with_roofline(pair, pflops, pbytes, peaks)


def item_steps(args, ctx) -> dict:
  out = {}
  for name, shape in SHAPES.items():
    out[name] = _one_shape(name, shape["n_models"], args, ctx)
    print(f"  steps[{name}]: blocks {out[name]['blocks']['step_ms']:.1f} ms, "
          f"pairs {out[name]['pairs']['step_ms']:.1f} ms", flush=True)
  out["epoch_speedup_vs_per_pair"] = out["paper"]["epoch_speedup_vs_per_pair"]
  ctx["steps"] = out
  return out


def _route_rate(predictor, names, batch: int, min_s: float) -> dict:
  rng = np.random.default_rng(batch)
  v = rng.normal(size=(batch, predictor.input_dim)).astype(np.float32)
  fn = lambda: route_names(predictor.logits(v), names)
  predictor.logits(v[:256])  # compiles the buckets this batch size uses
  best, median = best_time(fn, min_s=min_s, min_reps=1 if batch > 1000 else 5)
  return {"queries_per_s": batch / median, "median_ms": 1e3 * median, "best_ms": 1e3 * best}


def item_route(args, ctx) -> dict:
  config = paper_config.get_config()
  spec = model_lib.ModelSpec.from_config(config.model, 112, 768)
  params = jax.device_put(model_lib.init_params(jax.random.PRNGKey(0), spec))
  names = [f"llm-{i}" for i in range(112)]
  min_s = 0.5 if args.quick else 3.0
  predictor = make_predictor(params, spec)
  rates = {b: _route_rate(predictor, names, b, min_s) for b in (1, 64, 4096)}
  # The same weights without the folded prediction form, in the same run.
  import dataclasses
  unfolded = dataclasses.replace(predictor, kind=dataclasses.replace(
      model_lib.KIND, prepare=None, prepared_logits=None))
  plain = {b: _route_rate(unfolded, names, b, min_s) for b in (1, 64, 4096)}
  # Per query in the prediction form (predictors.Predictor): first expert layers,
  # the gate, and the second layers folded with the heads and abilities (113 columns).
  flops_per_query = 2 * (768 * 40 * 512 + 768 * 39 + 40 * 512 * 113 + 40 * 113)
  peaks = ctx.get("peaks")
  out = {"route_queries_per_s": {str(b): r["queries_per_s"] for b, r in rates.items()},
         "route_latency_ms": rates[1]["median_ms"], "detail": {str(b): r for b, r in rates.items()},
         "flops_per_query": flops_per_query, "shape": "paper: 112 LLMs, 768-d, 39+1 experts",
         "unfolded_queries_per_s": {str(b): r["queries_per_s"] for b, r in plain.items()},
         "unfolded_latency_ms": plain[1]["median_ms"]}
  if peaks:
    out["route_queries_per_s_compute_limit"] = peaks["peak_matmul_gflops"] * 1e9 / flops_per_query
    out["route_latency_ms_memory_limit"] = (1e3 * 4 * model_lib.count_params(predictor.prediction_params)
                                            / (peaks["peak_memory_gbps"] * 1e9))
  # POST /route over HTTP (irt_jax.serving.app under uvicorn, in this process), one
  # query per request, the same predictor behind a hash "encoder": the service's
  # own cost. Sequential requests give the latency; 16 concurrent, the rate.
  from experiments.bench import bench_serve
  from irt_jax.routing.router import Router
  router = Router.from_predictor(predictor, bench_serve.HashEncoder(spec.input_dim))
  texts = bench_serve.queries(None, 200 if args.quick else 1000)
  batch = serving.Limits().max_batch_queries
  one = bench_serve.measure(router, texts, 1, batch)["warm"]
  many = bench_serve.measure(router, texts, 16, batch)["warm"]
  out["route_http_latency_ms"] = {"p50": one["p50_ms"], "p99": one["p99_ms"]}
  out["route_http"] = {"sequential": one, "concurrency_16": many,
                       "note": "warm pass; hash encoder (the service and predictor alone)"}

  return out  # routing from text: the route_text item (MPNet, a trained llmrouter run)


def item_load(args, ctx) -> dict:
  from experiments.bench import paper_data
  scale = 0.1 if args.quick else 1.0
  folder = os.path.join(args.scratch, f"paper_data_{scale:g}")
  t = time.perf_counter()
  spec = paper_data.write(folder, scale=scale)
  generate_s = time.perf_counter() - t
  csv_bytes = sum(os.path.getsize(os.path.join(folder, f"{s}.csv")) for s in data_lib.SPLITS)
  with tempfile.TemporaryDirectory(dir=args.scratch) as cache:
    t = time.perf_counter()
    data = data_cache.load_and_cache(folder, cache)
    csv_s = time.perf_counter() - t
    csv_peak = rss_peak_mb()
    config = paper_config.get_config()
    rows = parallel.queries_per_batch(config.train.batch_cells, data.n_models, 1)
    t = time.perf_counter()
    n_blocks = sum(1 for _ in batches.iterate(data.split("train"), data.embeddings, rows,
                                              seed=0, epoch=0))
    blocks_s = time.perf_counter() - t
    del data
    t = time.perf_counter()
    again = data_cache.load_and_cache(folder, cache)
    cached_s = time.perf_counter() - t
    cached_bytes = sum(os.path.getsize(os.path.join(cache, f)) for f in os.listdir(cache))
  return {"csv_load_s": csv_s, "blocks_build_s": blocks_s, "csv_load_and_blocks_s": csv_s + blocks_s,
          "cached_load_s": cached_s, "dataset": f"{spec['n_models']} x {spec['n_queries']} "
          f"(scale {scale:g} of the paper's 35,673 queries), full layout with prompt text",
          "csv_bytes": csv_bytes, "cached_bytes": cached_bytes, "train_blocks": n_blocks,
          "cells": int(sum(s.n_cells for s in again.splits.values())),
          "peak_rss_after_csv_load_mb": csv_peak, "generate_s_if_not_cached": generate_s,
          "note": "csv_load_s is the first parse (the OS page cache may already hold the files); "
                  "cached_load_s reads the .npz written by that first load"}


def _llmrouter_prompts() -> list[str]:
  _, prompts, _ = data_lib.read_question_order(str(LLMROUTER / "question_order.csv"))
  return [p for p in prompts if p]


def _short_prompts(enc, n: int, max_tokens: int = 32) -> list[str]:
  """llmrouter prompts of at most max_tokens tokens (a short query), seed 0."""
  prompts = _llmrouter_prompts()
  rng = np.random.default_rng(0)
  picked = [prompts[i] for i in rng.permutation(len(prompts))[:8 * n]]
  return [p for p, ids in zip(picked, enc.tokenize(picked)) if len(ids) <= max_tokens][:n]


class TorchWorker:
  """sentence-transformers in another Python (experiments/bench/torch_worker.py), timed on request."""

  def __init__(self, python: str, model_dir: Path, max_length: int, threads: int):
    import subprocess
    self.proc = subprocess.Popen([python, str(REPO / "experiments" / "bench" / "torch_worker.py")],
                                 stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    self._send({"model_dir": str(model_dir), "max_length": max_length, "threads": threads})
    self.info = self._read()

  def _send(self, obj) -> None:
    self.proc.stdin.write(json.dumps(obj) + "\n")
    self.proc.stdin.flush()

  def _read(self) -> dict:
    line = self.proc.stdout.readline()
    if not line:
      raise RuntimeError("torch worker exited (see its stderr)")
    return json.loads(line)

  def encode(self, texts: list[str], batch_size: int) -> tuple[float, np.ndarray]:
    self._send({"texts": texts, "batch_size": batch_size})
    r = self._read()
    return r["seconds"], np.asarray(r["embeddings"], np.float32)

  def close(self) -> None:
    self.proc.stdin.write("\n")
    self.proc.stdin.close()
    self.proc.wait(timeout=60)


def _encoder_shapes(enc, quick: bool) -> dict:
  """batch 1 (a short query), batch 64 (llmrouter prompts), and max-length inputs."""
  rng = np.random.default_rng(0)
  prompts = _llmrouter_prompts()
  batch64 = [prompts[i] for i in rng.choice(len(prompts), 64, replace=False)]
  long = [" ".join(["word"] * (2 * enc.max_length))] * (4 if quick else 8)
  return {"batch1": (_short_prompts(enc, 1), 1), "batch64": (batch64, 64),
          f"len{enc.max_length}": (long, len(long))}


def _encoder_model(args, model_dir: Path, peaks) -> dict:
  """Per shape: XLA FLOPs, JAX and torch ms (interleaved rounds, medians), the ratio and
  the fraction of the float32 roofline; each of --encoder_precisions beyond float32 (an
  option checked against float32 in docs/encoder.md) timed in the same rounds."""
  from experiments.bench import profile_encoder
  from irt_jax.encoder import load_encoder
  enc = load_encoder(str(model_dir))
  reduced = {p: load_encoder(str(model_dir), precision=p) for p in args.encoder_precisions
             if p != "float32"}
  shapes = _encoder_shapes(enc, args.quick)
  if args.encoder_shapes:
    shapes = {k: v for k, v in shapes.items() if k in args.encoder_shapes.split(",")}
  worker, note = None, None
  if args.torch_python and os.path.exists(args.torch_python):
    worker = TorchWorker(args.torch_python, model_dir, enc.max_length, os.cpu_count())
  else:
    note = (f"torch side not measured: --torch_python={args.torch_python!r} not found" if args.torch_python
            else "torch side not measured: no --torch_python (or IRT_JAX_TORCH_PYTHON) given")
  try:
    times, diffs, cosines, gemm_gflops = _encoder_rounds(args, enc, reduced, shapes, worker)
  finally:
    if worker is not None:
      worker.close()
  peak = max([gemm_gflops] + ([peaks["peak_matmul_gflops"]] if peaks else []))
  out = {"shapes": {}, "torch_note": note, "rounds": args.encoder_rounds, "peak_gflops": peak,
         "peak_note": "best float32 2048^3 GEMM of the peak item and of the encoder's rounds"}
  for s, (texts, bs) in shapes.items():
    flops = profile_encoder.flops_of(enc, texts, bs)
    row = _encoder_row(times[s], flops, peak, bs)
    row.update(texts=len(texts), flops=flops)
    if s in diffs:
      row["max_abs_diff_vs_torch"] = diffs[s]
    for p in reduced:
      row.setdefault("by_precision", {})[p] = dict(
          _encoder_row({**times[s], "jax": times[s][p]}, flops, peak, bs),
          min_cosine_vs_float32=cosines[s][p])
    out["shapes"][s] = row
  return out


def _encoder_rounds(args, enc, reduced, shapes, worker):
  """Round 0 compiles and warms up (untimed); every later round times, in turn, a 2048^3
  GEMM (on a shared machine the peak moves; its best GFLOP/s is returned), then per shape the float32 encoder, each
  reduced-precision one and torch at the same and at --torch_batch_sizes (smaller: it pads
  each batch to its longest text, so sorted smaller batches are its fair best)."""
  extra = [b for b in args.torch_batch_sizes if b > 0]
  times = {s: {"jax": [], "torch": [], "torch_by_bs": {b: [] for b in extra if b < bs},
               **{p: [] for p in reduced}} for s, (_, bs) in shapes.items()}
  diffs, cosines = {}, {s: {} for s in shapes}
  n = 2048
  a = jax.random.normal(jax.random.PRNGKey(0), (n, n), jnp.float32)
  mm = jax.jit(lambda a: a @ a)
  gemm = []
  for r in range(1 + args.encoder_rounds):
    t = time.perf_counter()
    mm(a).block_until_ready()
    gemm.append(time.perf_counter() - t)
    for s, (texts, bs) in shapes.items():
      t = time.perf_counter()
      vecs = enc.encode(texts, batch_size=bs)
      times[s]["jax"].append(time.perf_counter() - t)
      for p, other in reduced.items():
        t = time.perf_counter()
        low = other.encode(texts, batch_size=bs)
        times[s][p].append(time.perf_counter() - t)
        cosines[s][p] = float(np.min(np.sum(low * vecs, 1) / (
            np.linalg.norm(low, axis=1) * np.linalg.norm(vecs, axis=1))))
      if worker is None:
        continue
      seconds, ref = worker.encode(texts, bs)
      diffs[s] = float(np.abs(ref - vecs).max())
      times[s]["torch"].append(seconds)
      for b in times[s]["torch_by_bs"]:
        times[s]["torch_by_bs"][b].append(worker.encode(texts, b)[0])
  drop_warmup = lambda v: v[1:] if isinstance(v, list) else {b: x[1:] for b, x in v.items()}
  return ({s: {k: drop_warmup(v) for k, v in t.items()} for s, t in times.items()},
          diffs, cosines, max(2 * n**3 / t / 1e9 for t in gemm[1:]))


def _encoder_row(times: dict, flops: float, peak: float, bs: int) -> dict:
  """ms, fraction of the float32 roofline and speed against torch (same batch size and
  its best batch size) from one shape's timings (medians over the rounds)."""
  jax_s = float(np.median(times["jax"]))
  row = {"jax_ms": 1e3 * jax_s, "fraction_of_roofline": flops / (peak * 1e9) / jax_s}
  if times["torch"]:
    torch_s = float(np.median(times["torch"]))
    by_bs = {bs: torch_s, **{b: float(np.median(v)) for b, v in times["torch_by_bs"].items()}}
    best_bs = min(by_bs, key=by_bs.get)
    row.update(torch_ms=1e3 * torch_s, speed_vs_torch=torch_s / jax_s,
               torch_ms_by_batch_size={str(b): 1e3 * v for b, v in by_bs.items()},
               torch_best_batch_size=best_bs, speed_vs_torch_best=by_bs[best_bs] / jax_s)
  return row


def item_encoder(args, ctx) -> dict:
  out = {"models": {}, "note": "JAX and sentence-transformers timed in interleaved rounds on "
         "the same texts and thread count (torch in a separate process); medians"}
  for key, model_dir in (("minilm", MINILM), ("mpnet", MPNET)):
    if key not in args.encoder_models.split(","):
      continue
    if not (model_dir / "config.json").exists():
      out["models"][key] = None
      out.setdefault("missing", []).append(f"{model_dir} (python -m irt_jax fetch-encoder)")
      continue
    out["models"][key] = _encoder_model(args, model_dir, ctx.get("peaks"))
    print(f"  encoder[{key}]: " + ", ".join(
        f"{s}: {r['jax_ms']:.0f} ms, {r.get('speed_vs_torch') or 0:.2f}x torch "
        f"({r.get('speed_vs_torch_best') or 0:.2f}x its best batch size), "
        f"{r['fraction_of_roofline'] or 0:.2f} of roofline" + "".join(
            f"; {p} {low['jax_ms']:.0f} ms, {low.get('speed_vs_torch_best') or 0:.2f}x torch's "
            f"best, min cosine {low['min_cosine_vs_float32']:.5f}"
            for p, low in (r.get("by_precision") or {}).items())
        for s, r in out["models"][key]["shapes"].items()), flush=True)
  return out


def _llmrouter_run(args) -> str | None:
  """The llmrouter run the text items route with (trained with logreg when missing)."""
  run = args.llmrouter_run
  if not os.path.isdir(os.path.join(run, "checkpoints")):
    import subprocess
    cmd = [sys.executable, str(REPO / "train.py"), "--config=configs/logreg.py",
           f"--config.data.dir={LLMROUTER}", f"--workdir={run}"]
    print("  training " + " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True, cwd=REPO)
  return run


def item_route_text(args, ctx) -> dict:
  """One short text query routed end to end (tokenise, MPNet, route) by Router.route."""
  if not (MPNET / "config.json").exists():
    return {"route_text_latency_ms": None, "note": f"{MPNET} missing"}
  from irt_jax.routing.router import Router
  router = Router.from_checkpoint(_llmrouter_run(args), str(MPNET))
  texts = _short_prompts(router.encoder, 60)
  for t in texts[:10]:
    router.route([t])  # warm-up: loads the encoder, compiles the batch-1 buckets
  ms = []
  for t in texts[10:]:
    start = time.perf_counter()
    router.route([t])
    ms.append(1e3 * (time.perf_counter() - start))
  return {"route_text_latency_ms": float(np.median(ms)), "p90_ms": float(np.percentile(ms, 90)),
          "queries": len(ms), "encoder": "all-mpnet-base-v2 (JAX, float32)",
          "run": args.llmrouter_run, "max_tokens": 32}


def item_serve(args, ctx) -> dict:
  """POST /route with a real encoder: MPNet (the llmrouter run) and MiniLM (a paper-sized
  router on 384-d input), short and llmrouter queries, 1/4/16 clients in another process."""
  from experiments.bench import bench_serve
  from irt_jax.encoder import load_encoder
  from irt_jax.routing.router import Router
  routers = {}
  if (MPNET / "config.json").exists():
    routers["mpnet"] = Router.from_checkpoint(_llmrouter_run(args), str(MPNET))
  if (MINILM / "config.json").exists():
    config = paper_config.get_config()
    tspec = model_lib.ModelSpec.from_config(config.model, 112, 384)
    predictor = make_predictor(jax.device_put(model_lib.init_params(jax.random.PRNGKey(0), tspec)), tspec)
    routers["minilm"] = Router.from_predictor(predictor, load_encoder(str(MINILM)))
  n = 24 if args.quick else 64
  out = {"requests_per_pass": n, "serve_routes_per_s": {}, "detail": {}}
  for name, router in routers.items():
    enc = router.encoder
    sets = {"short": _short_prompts(enc, n + 16), "llmrouter": bench_serve.queries(
        str(LLMROUTER / "question_order.csv"), n + 16)}
    for qset, texts in sets.items():
      for clients in (1, 4, 16):
        # Steady state, as a service that has been up a while: two warm-up passes over
        # the measured texts compile the (rows, length) shapes their batches meet, so the
        # measured pass times serving, not XLA compiles (shapes_compiled_in_pass says so).
        r = bench_serve.measure(router, texts, clients, serving.Limits().max_batch_queries,
                                passes={"warmup": texts[:n], "warmup2": texts[:n],
                                        "measured": texts[:n]},
                                loader=bench_serve.load_in_subprocess)["measured"]
        out["detail"][f"{name}/{qset}/{clients}"] = r
        out["serve_routes_per_s"][f"{name}/{qset}/{clients}"] = r["routes_per_s"]
        print(f"  serve[{name}/{qset}/{clients}]: {r['routes_per_s']:.1f} routes/s, "
              f"p50 {r['p50_ms']:.0f} ms, p99 {r['p99_ms']:.0f} ms, errors {r['errors']}, "
              f"{r['queries_per_encoder_call']:.1f} queries/encoder call, "
              f"{r['shapes_compiled_in_pass']} shapes compiled while measured", flush=True)
  return out


def item_paper_train(args, ctx) -> dict:
  """experiments/bench/paper_data.py's 112 x 35,673 generated set trained on query blocks to its best
  checkpoint, then evaluated: test accuracy and the Spearman correlation of the learned
  difficulties with the generating model's."""
  from experiments.bench import paper_data
  from scipy import stats
  scale = 0.1 if args.quick else 1.0
  folder = os.path.join(args.scratch, f"paper_data_{scale:g}")
  paper_data.write(folder, scale=scale)
  config = paper_config.get_config()
  config.data.dir = folder
  config.train.batching = "blocks"
  config.train.num_epochs = args.paper_epochs
  workdir = os.path.join(args.scratch, f"paper_train_{scale:g}_{args.paper_epochs}")
  t = time.perf_counter()
  summary = training.train_and_evaluate(config, workdir)
  train_s = time.perf_counter() - t
  t = time.perf_counter()
  run = predictors.load(workdir)
  data = data_cache.load_and_cache(folder, os.path.join(args.scratch, "paper_cache"))
  true = np.load(os.path.join(folder, "truth.npz"))
  test = data.split("test")
  emb = np.asarray(data.embeddings[test.queries], np.float32)
  _, learned_b = model_lib.query_difficulty(run.predictor.params, jnp.asarray(emb),
                                            run.predictor.spec)
  proba = run.predictor.proba(emb)
  known = test.labels >= 0
  accuracy = float(((proba > 0.5) == (test.labels == 1))[known].mean())
  spearman = float(stats.spearmanr(np.asarray(learned_b), true["b"][test.queries]).statistic)
  best = summary.get("best") or {}
  epochs = len(summary["history"])
  steps_per_s = float(np.median([h["steps_per_second"] for h in summary["history"]]))
  return {"paper_scale_train_s": train_s, "evaluate_s": time.perf_counter() - t,
          "epochs_run": epochs, "epochs_cap": args.paper_epochs, "best_epoch": best.get("epoch"),
          "best_val_accuracy": best.get("val_accuracy"), "test_accuracy": accuracy,
          "difficulty_spearman_test": spearman, "best_step": best.get("step"),
          "steps_per_s": steps_per_s, "history": summary["history"],
          "dataset": f"112 x {data.n_queries} generated (experiments/bench/paper_data.py, truth.npz)",
          "workdir": workdir}


def item_train(args, ctx) -> dict:
  out = {"released_code_s": RELEASED_CODE_LLMROUTER_S, "goal_s": RELEASED_CODE_LLMROUTER_S / 30}
  steps = ctx.get("steps", {}).get("llmrouter")
  if steps:  # an estimate from the measured llmrouter step; the full run measures it
    train_q = int(0.8 * SHAPES["llmrouter"]["n_queries"])
    per_epoch = math.ceil(train_q / steps["rows_per_block"]) * steps["blocks_from_host_step_ms"] / 1e3
    out["estimate_s_per_epoch"] = per_epoch
    out["estimate_s_20_epochs"] = 20 * per_epoch
  if args.quick:
    out["time_to_train_llmrouter_s"] = None
    out["note"] = ("skipped in --quick (run without it to measure); estimate_s_20_epochs = 20 "
                   "epochs (where the paper config stopped on llmrouter) x train blocks per epoch x "
                   "measured llmrouter blocks step, without evaluation and checkpoints")
    return out
  config = paper_config.get_config()
  config.data.dir = str(LLMROUTER)
  # Query blocks, the layout the speed goal is about; the paper config's own pairs
  # are timed per step above (steps[*].pairs) and per run in the README's table.
  config.train.batching = "blocks"
  with tempfile.TemporaryDirectory(dir=args.scratch) as workdir:
    t = time.perf_counter()
    summary = training.train_and_evaluate(config, workdir)
    out["time_to_train_llmrouter_s"] = time.perf_counter() - t
  best = summary.get("best") or {}
  out.update(epochs=len(summary["history"]), best_epoch=best.get("epoch"),
             best_val_accuracy=best.get("val_accuracy"),
             fraction_of_released_code=out["time_to_train_llmrouter_s"] / RELEASED_CODE_LLMROUTER_S)
  return out


ITEMS = {"peak": item_peak, "steps": item_steps, "route": item_route, "load": item_load,
         "encoder": item_encoder, "route_text": item_route_text, "serve": item_serve,
         "train": item_train, "paper_train": item_paper_train}


# ---------------------------------------------------------------------------
# Summary.

def headline(results: dict) -> dict:
  """The issue's keys, flat, from the items' results."""
  r = results["items"]
  get = lambda *path: _dig(r, path)
  flat = {
      "peak_matmul_gflops": get("peak", "peak_matmul_gflops"),
      "peak_memory_gbps": get("peak", "peak_memory_gbps"),
      "epoch_speedup_vs_per_pair": get("steps", "epoch_speedup_vs_per_pair"),
      "time_to_train_llmrouter_s": get("train", "time_to_train_llmrouter_s"),
      "route_queries_per_s": get("route", "route_queries_per_s"),
      "route_latency_ms": get("route", "route_latency_ms"),
      "route_text_latency_ms": get("route_text", "route_text_latency_ms"),
      "serve_routes_per_s": get("serve", "serve_routes_per_s"),
      "paper_scale_train_s": get("paper_train", "paper_scale_train_s"),
      "paper_scale_difficulty_spearman": get("paper_train", "difficulty_spearman_test"),
      "route_http_latency_ms": get("route", "route_http_latency_ms"),
      "csv_load_s": get("load", "csv_load_s"),
      "csv_load_and_blocks_s": get("load", "csv_load_and_blocks_s"),
      "cached_load_s": get("load", "cached_load_s"),
  }
  for model in ("minilm", "mpnet"):
    for shape, row in (get("encoder", "models", model, "shapes") or {}).items():
      flat[f"encoder_{model}_{shape}_fraction_of_roofline"] = row.get("fraction_of_roofline")
      flat[f"encoder_speed_vs_torch.{model}.{shape}"] = row.get("speed_vs_torch")
      flat[f"encoder_speed_vs_torch_best.{model}.{shape}"] = row.get("speed_vs_torch_best")
      for p, low in (row.get("by_precision") or {}).items():
        flat[f"encoder_speed_vs_torch_best.{model}.{shape}.{p}"] = low.get("speed_vs_torch_best")
  for shape in SHAPES:
    for layout in ("blocks", "pairs"):
      for key in ("step_ms", "cells_per_s", "flops", "bytes", "roofline_ms",
                  "step_fraction_of_roofline"):
        flat[f"{shape}.{layout}.{key}"] = get("steps", shape, layout, key)
  flat["peak_rss_mb"] = {k: v.get("peak_rss_mb") for k, v in r.items() if isinstance(v, dict)}
  return flat


def _dig(d, path):
  for p in path:
    if not isinstance(d, dict) or p not in d:
      return None
    d = d[p]
  return d


def _fmt(v) -> str:
  if v is None:
    return "null"
  if isinstance(v, float):
    return f"{v:,.3g}" if abs(v) < 100 else f"{v:,.0f}"
  if isinstance(v, dict):
    return ", ".join(f"{k}: {_fmt(x)}" for k, x in v.items())
  return str(v)


def print_table(flat: dict) -> None:
  goals = {"paper.blocks.step_fraction_of_roofline": GOALS["step_fraction_of_roofline"],
           "llmrouter.blocks.step_fraction_of_roofline": GOALS["step_fraction_of_roofline"],
           **{k: v for k, v in GOALS.items() if k != "step_fraction_of_roofline"}}
  rows = []
  for k, v in flat.items():
    goal = ""
    if k in goals:
      g, op = goals[k]
      goal = f"{op} {g:g}"
    if k == "route_queries_per_s":
      g, op = goals["route_queries_per_s[64]"]
      goal = f"[64] {op} {g:g}"
    rows.append((k, _fmt(v), goal))
  width = max(len(r[0]) for r in rows)
  print(f"\n{'key':<{width}}  {'value':<60}  goal")
  for k, v, g in rows:
    print(f"{k:<{width}}  {v:<60}  {g}")


def machine() -> dict:
  cpu = platform.processor()
  try:
    with open("/proc/cpuinfo") as f:
      cpu = re.search(r"model name\s*:\s*(.*)", f.read()).group(1)
  except (OSError, AttributeError):
    pass
  dev = jax.devices()[0]
  return {"cpu": cpu, "cpus": os.cpu_count(), "platform": dev.platform,
          "device_kind": dev.device_kind, "jax": jax.__version__, "python": platform.python_version(),
          "loadavg_at_start": os.getloadavg()}


def parse_args() -> argparse.Namespace:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--quick", action="store_true", help="CI-sized: fewer steps, 1/10 load data, "
                      "no end-to-end training")
  parser.add_argument("--only", default="", help=f"comma-separated items of {list(ITEMS)}")
  parser.add_argument("--out", default=str(REPO / "docs" / "results" / "bench" / "results.json"))
  parser.add_argument("--scratch", default=os.path.join(tempfile.gettempdir(), "irt_jax_bench"),
                      help="generated data and temporary workdirs (kept between runs)")
  parser.add_argument("--torch_python", default=os.environ.get("IRT_JAX_TORCH_PYTHON", ""),
                      help="a Python with torch and sentence-transformers, for "
                      "encoder_speed_vs_torch (default: $IRT_JAX_TORCH_PYTHON; skipped when "
                      "unset or missing)")
  parser.add_argument("--encoder_models", default="minilm,mpnet", help="encoders the encoder "
                      "item measures")
  parser.add_argument("--encoder_rounds", type=int, default=3,
                      help="interleaved JAX / torch timing rounds per encoder shape")
  parser.add_argument("--encoder_shapes", default="", help="comma-separated subset of the "
                      "encoder item's shapes (batch1, batch64, len<max_length>); default all")
  parser.add_argument("--encoder_precisions", default="float32",
                      type=lambda v: [p.strip() for p in v.split(",") if p.strip()],
                      help="encoder precisions timed (float32 always; bfloat16 / int8 also, "
                      "in the same rounds, with their min cosine to float32)")
  parser.add_argument("--torch_batch_sizes", default="8,32",
                      type=lambda v: [int(b) for b in v.split(",") if b.strip()],
                      help="smaller sentence-transformers batch sizes also timed on each shape "
                      "(speed_vs_torch_best compares with torch's best of them)")
  parser.add_argument("--llmrouter_run", default=str(REPO / "runs" / "logreg_llmrouter"),
                      help="the llmrouter run route_text and serve use (trained with "
                      "configs/logreg.py when missing)")
  parser.add_argument("--paper_epochs", type=int, default=10,
                      help="epoch cap of the paper-scale training (early stopping may end sooner)")
  args = parser.parse_args()
  only = [s.strip() for s in args.only.split(",") if s.strip()] or list(ITEMS)
  unknown = sorted(set(only) - set(ITEMS))
  if unknown:
    parser.error(f"unknown item(s) {unknown}; known: {list(ITEMS)}")
  args.only = only
  args.block_steps = 3 if args.quick else 10
  args.pair_steps = 2 if args.quick else 3
  return args


def run_items(args) -> dict:
  """Every item --only names, in ITEMS' order, each with its seconds and peak memory."""
  results = {"quick": args.quick, "machine": machine(), "command": " ".join(sys.argv),
             "started_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "items": {}}
  ctx: dict = {}
  start = time.perf_counter()
  for name in (n for n in ITEMS if n in args.only):
    reset = rss_reset()
    rss_start = rss_now_mb()
    print(f"[{time.perf_counter() - start:6.0f}s] {name} ...", flush=True)
    t = time.perf_counter()
    try:
      out = ITEMS[name](args, ctx)
    except Exception as e:  # one failing item must not lose the others' figures
      out = {"error": f"{type(e).__name__}: {e}"}
      print(f"  {name} failed: {out['error']}", flush=True)
    out["seconds"] = time.perf_counter() - t
    out["peak_rss_mb"] = rss_peak_mb() if reset else None
    out["rss_at_start_mb"] = rss_start  # what earlier items left resident is in the peak too
    results["items"][name] = out
  results["total_s"] = time.perf_counter() - start
  results["machine"]["loadavg_at_end"] = os.getloadavg()
  results["summary"] = headline(results)
  return results


def main() -> None:
  args = parse_args()
  os.makedirs(args.scratch, exist_ok=True)
  results = run_items(args)
  with open(args.out, "w") as f:
    json.dump(results, f, indent=1, default=float)
  print_table(results["summary"])
  print(f"\n{results['machine']['cpu']}, {results['machine']['cpus']} CPUs, "
        f"{results['machine']['platform']}; load average {results['machine']['loadavg_at_start']} -> "
        f"{results['machine']['loadavg_at_end']}; {results['total_s']:.0f} s; wrote {args.out}")


if __name__ == "__main__":
  main()
