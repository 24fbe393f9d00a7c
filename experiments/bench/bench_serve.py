"""Latency and throughput of the routing service's POST /route (prints figures; not a test).

Starts the service (serving.create_app under uvicorn, in this process, on a free
127.0.0.1 port, no upstreams), warms it up, then sends --requests single-query
/route requests from --concurrency concurrent clients (the load generator runs in another
process unless --in_process), twice (cold: the encoder compiles
each new (rows, token length) shape; warm: the same traffic again), and reports p50/p99
latency, routes/s and how many queries each encoder call took (micro-batching). Run once per
--max_batch_queries to see what batching buys (1 = no batching):

    PYTHONPATH=. .venv/bin/python -m experiments.bench.bench_serve --workdir=runs/routerdc \
        --encoder_dir=.models/all-mpnet-base-v2 --requests=2000 --concurrency=32
    PYTHONPATH=. .venv/bin/python -m experiments.bench.bench_serve --workdir=runs/routerdc \
        --encoder_dir=.models/all-mpnet-base-v2 --max_batch_queries=1

Queries are drawn (seed 0) from --queries (a question_order.csv) or made up.
--fake_encoder replaces the encoder by a hash of the text, to measure the service
and the predictor alone.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]

from irt_jax.serving import app as serving  # noqa: E402
from irt_jax.routing.router import Router  # noqa: E402


class HashEncoder:
  def __init__(self, dim):
    self.dim = dim

  def encode(self, texts, batch_size=64, progress=False):
    out = np.empty((len(texts), self.dim), np.float32)
    for i, t in enumerate(texts):
      seed = int.from_bytes(hashlib.sha256(t.encode()).digest()[:8], "little")
      out[i] = np.random.default_rng(seed).normal(size=self.dim)
    return out


def queries(path: str | None, n: int) -> list[str]:
  rng = np.random.default_rng(0)
  if path:
    from irt_jax.data.io import read_question_order
    prompts = read_question_order(path)[1]
    return [prompts[i] for i in rng.integers(0, len(prompts), n)]
  words = "what is the capital sum of prove that write a poem about rain sort list in python".split()
  return [" ".join(rng.choice(words, rng.integers(5, 40))) for _ in range(n)]


async def load(url: str, texts: list[str], concurrency: int) -> tuple[list[float], float, int]:
  import httpx
  limit = asyncio.Semaphore(concurrency)
  latencies, errors = [], 0

  async with httpx.AsyncClient(base_url=url, timeout=300,
                               limits=httpx.Limits(max_connections=concurrency)) as client:
    async def one(text):
      nonlocal errors
      async with limit:
        t = time.perf_counter()
        try:
          r = await client.post("/route", json={"queries": [text]})
          errors += r.status_code != 200
        except httpx.HTTPError:
          errors += 1
        latencies.append(time.perf_counter() - t)

    start = time.perf_counter()
    await asyncio.gather(*(one(t) for t in texts))
    return latencies, time.perf_counter() - start, errors


def load_in_process(url: str, texts: list[str], concurrency: int):
  """The load generator in this process (the service's event loop shares the GIL with it)."""
  return asyncio.run(load(url, texts, concurrency))


def load_in_subprocess(url: str, texts: list[str], concurrency: int):
  """The load generator in another Python process, as real clients would be: the
  service's process spends its CPU on serving alone. Texts go in and latencies come
  back as JSON over the pipes."""
  cmd = [sys.executable, "-m", "experiments.bench.bench_serve", "--load_url", url,
         "--concurrency", str(concurrency)]
  proc = subprocess.run(cmd, input=json.dumps(texts), capture_output=True, text=True,
                        check=False)
  if proc.returncode != 0:
    raise RuntimeError(f"load generator failed: {proc.stderr[-2000:]}")
  r = json.loads(proc.stdout.strip().splitlines()[-1])
  return r["latencies"], r["elapsed"], r["errors"]


def _serve(app):
  """Starts uvicorn on a free 127.0.0.1 port in a thread; returns (server, thread, url)."""
  import uvicorn
  sock = socket.socket()
  sock.bind(("127.0.0.1", 0))
  server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
  thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
  thread.start()
  for _ in range(6000):
    if server.started:
      break
    time.sleep(0.05)
  return server, thread, f"http://127.0.0.1:{sock.getsockname()[1]}"


def measure(router, texts: list[str], concurrency: int, max_batch_queries: int,
            passes=("cold", "warm"), loader=load_in_process) -> dict:
  """Serves `router` (no upstreams) on a free 127.0.0.1 port and sends each text
  as one single-query POST /route, `concurrency` at a time, once per pass.
  Per pass: p50/p99 latency (ms), routes/s, errors, queries per encoder call.
  `passes` may also map a pass's label to its own texts (e.g. a short warm-up)."""
  app = serving.create_app(router, {}, serving.Limits(max_batch_queries=max_batch_queries))
  server, thread, url = _serve(app)
  batcher = app.state.batcher
  passes = passes if isinstance(passes, dict) else {label: texts for label in passes}
  out = {}
  try:
    # Pass 1 (cold): compiles each (rows, token length) shape the traffic meets.
    # Pass 2 (warm): the same queries again, in batches mostly of shapes seen.
    for label, pass_texts in passes.items():
      b0, r0 = batcher.batches, batcher.rows
      shapes0 = getattr(router.encoder, "compiled_shapes", None)
      latencies, elapsed, errors = loader(url, pass_texts, concurrency)
      ms = np.asarray(latencies) * 1e3
      out[label] = {"p50_ms": float(np.percentile(ms, 50)), "p99_ms": float(np.percentile(ms, 99)),
                    "routes_per_s": len(pass_texts) / elapsed, "errors": int(errors),
                    "requests": len(pass_texts),
                    "queries_per_encoder_call": (batcher.rows - r0) / max(batcher.batches - b0, 1),
                    "shapes_compiled_in_pass": (None if shapes0 is None
                                                else router.encoder.compiled_shapes - shapes0)}
  finally:
    server.should_exit = True
    thread.join(timeout=30)
  return out


def _load_main(url: str, concurrency: int) -> None:
  """--load_url mode: texts (JSON list) on stdin, one JSON line of results on stdout."""
  texts = json.loads(sys.stdin.read())
  latencies, elapsed, errors = load_in_process(url, texts, concurrency)
  print(json.dumps({"latencies": latencies, "elapsed": elapsed, "errors": errors}))


def main() -> None:
  ap = argparse.ArgumentParser(description=__doc__,
                               formatter_class=argparse.RawDescriptionHelpFormatter)
  ap.add_argument("--workdir", default=None, help="the run to serve (required unless --load_url)")
  ap.add_argument("--encoder_dir", default=None)
  ap.add_argument("--fake_encoder", action="store_true")
  ap.add_argument("--queries", default=None, help="question_order.csv to draw queries from")
  ap.add_argument("--requests", type=int, default=1000)
  ap.add_argument("--concurrency", type=int, default=16)
  ap.add_argument("--max_batch_queries", type=int, default=serving.Limits().max_batch_queries)
  ap.add_argument("--load_url", default=None, help="internal: be the load generator for a "
                  "service at this URL (texts on stdin)")
  ap.add_argument("--in_process", action="store_true",
                  help="run the load generator in the service's process (the old way)")
  args = ap.parse_args()
  if args.load_url:
    _load_main(args.load_url, args.concurrency)
    return
  if not args.workdir:
    ap.error("--workdir is required")

  if args.fake_encoder:
    from irt_jax import predictors
    predictor = predictors.load(args.workdir).predictor
    router = Router.from_predictor(predictor, HashEncoder(predictor.input_dim))
  else:
    router = Router.from_checkpoint(args.workdir, args.encoder_dir)
  import jax
  print(f"device={jax.devices()[0].platform} "
        f"encoder={'hash' if args.fake_encoder else router.encoder.name} "
        f"requests={args.requests} concurrency={args.concurrency} "
        f"max_batch_queries={args.max_batch_queries}")
  result = measure(router, queries(args.queries, args.requests), args.concurrency,
                   args.max_batch_queries,
                   loader=load_in_process if args.in_process else load_in_subprocess)
  for label, r in result.items():
    print(f"{label}: p50={r['p50_ms']:.1f} ms  p99={r['p99_ms']:.1f} ms  "
          f"routes/s={r['routes_per_s']:.1f}  errors={r['errors']}  "
          f"queries/encoder call={r['queries_per_encoder_call']:.1f}")


if __name__ == "__main__":
  main()
