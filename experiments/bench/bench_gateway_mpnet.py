r"""MPNet through the service against MPNet alone, on the same prompts: one command.

  nice -n 10 .venv/bin/python -m experiments.bench.bench_gateway_mpnet [--precision=bfloat16] \
      [--clients=64] [--seconds=30] [--rounds=2] [--prompts=256] \
      [--out=docs/results/bench/gateway_mpnet.jsonl]

Two measurements on the same prompts, alternating --rounds times (A B A B):
  * the encoder alone: `encode(prompts)` as the Router calls it (batches of 64,
    sorted by length), repeated for --seconds: prompts per second;
  * the service: `serving.create_app` under uvicorn, one worker (the encoder's
    XLA computation already uses every core), a Router over this encoder and a
    fixed linear predictor over twelve models, every model's upstream the gateway
    bench's instant fake one; --clients closed-loop clients send chat
    completions whose user message cycles through the prompts, for --seconds:
    completions per second.
The ratio (service / encoder alone) is what the service's HTTP, JSON, batching and
upstream work leave of the encoder's throughput. Before the rounds the service
is loaded until its rate settles (every batch shape it meets compiles once).
The prompts are the first
--prompts of ../shared/data/llmrouter when that folder is there, else a fixed set
built here; MPNet's weights must be in .models/all-mpnet-base-v2
(`python -m irt_jax fetch-encoder --model=mpnet --out=.models`).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from experiments.bench import bench_gateway as gw

MODULE = "experiments.bench.bench_gateway_mpnet"
SHARED_PROMPTS = gw.REPO.parent / "shared" / "data" / "llmrouter" / "question_order.csv"


def prompts(n: int) -> tuple[list[str], str]:
  """(n prompts, where they came from)."""
  if SHARED_PROMPTS.is_file():
    import pandas as pd
    texts = pd.read_csv(SHARED_PROMPTS)["prompt"].astype(str).tolist()[:n]
    return texts, "llmrouter"
  subjects = ("a prime number", "the French Revolution", "photosynthesis", "binary search",
              "a haiku about rain", "the derivative of x^3", "TCP handshakes", "Kant's ethics")
  forms = ("Explain {} briefly.", "Write a short answer about {}.",
           "Give three facts about {}, then a one-line summary.",
           "A student asks about {}. Answer step by step, with an example.")
  texts = [forms[i % len(forms)].format(subjects[(i // len(forms)) % len(subjects)]) +
           " " * (i % 3) for i in range(n)]
  return texts, "generated"


def encoder_rate(encoder, texts: list[str], seconds: float) -> dict:
  done, start = 0, time.perf_counter()
  while time.perf_counter() - start < seconds:
    encoder.encode(texts)
    done += len(texts)
  took = time.perf_counter() - start
  return {"prompts": done, "seconds": took, "rate": done / took}


def run_service(port: int, upstream_port: int, precision: str) -> None:
  import uvicorn
  from irt_jax.encoder.sentence_encoder import load_encoder
  from irt_jax.routing.router import Router
  from irt_jax.serving import app as serving
  encoder = load_encoder(gw.MPNET, precision=precision)
  router = Router.from_predictor(gw.Linear(encoder.dim), encoder, name="irtnet")
  upstreams = serving.parse_upstreams(
      {m: {"base_url": f"http://127.0.0.1:{upstream_port}/v1"} for m in gw.MODELS})
  app = serving.create_app(router, upstreams, serving.Limits(upstream_timeout_s=60))
  uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", loop="uvloop")


def service_rate(port: int, requests: list[bytes], clients: int, seconds: float) -> dict:
  """The gateway bench's closed loop, the requests sent in turn: rate and latencies."""
  served = gw.summary(asyncio.run(gw.closed_loop(port, requests, clients, seconds)))
  return {"rate": served["rps"], "errors": served["errors"], "p50_ms": served["p50_ms"],
          "p99_ms": served["p99_ms"]}


def warm_up(port: int, requests: list[bytes], clients: int, window: float = 10.0,
            most: float = 180.0) -> None:
  """Load the service until its rate settles (two windows within 10%): each new
  (rows, length) batch shape compiles once, for seconds with MPNet."""
  last, start = 0.0, time.perf_counter()
  while time.perf_counter() - start < most:
    rate = service_rate(port, requests, clients, window)["rate"]
    print(f"warm-up: {rate:.1f} completions/s", flush=True)
    if last and abs(rate - last) <= 0.1 * last:
      return
    last = rate


def chat_requests(port: int, texts: list[str]) -> list[bytes]:
  return [gw.request_bytes(port, "/v1/chat/completions", {
      "model": "router-irtnet", "messages": [{"role": "user", "content": t}]}) for t in texts]


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--role", default="bench", choices=["bench", "service"])
  parser.add_argument("--port", type=int)
  parser.add_argument("--upstream_port", type=int)
  parser.add_argument("--precision", default="bfloat16")
  parser.add_argument("--clients", type=int, default=64)
  parser.add_argument("--seconds", type=float, default=30.0)
  parser.add_argument("--rounds", type=int, default=2)
  parser.add_argument("--prompts", type=int, default=256)
  parser.add_argument("--out")
  args = parser.parse_args()
  if args.role == "service":
    return run_service(args.port, args.upstream_port, args.precision)
  if not gw.MPNET.is_dir():
    sys.exit(f"bench_gateway_mpnet: no MPNet weights in {gw.MPNET}; fetch them with "
             "`python -m irt_jax fetch-encoder --model=mpnet --out=.models`")
  from irt_jax.encoder.sentence_encoder import load_encoder
  texts, source = prompts(args.prompts)
  upstream_port, port = gw.free_port(), gw.free_port()
  upstream = subprocess.Popen([sys.executable, "-m", gw.MODULE, "--role=upstream",
                               f"--port={upstream_port}"])
  service = subprocess.Popen([sys.executable, "-m", MODULE, "--role=service", f"--port={port}",
                              f"--upstream_port={upstream_port}", f"--precision={args.precision}"])
  rows = []
  try:
    requests = chat_requests(port, texts)
    gw.wait_ready(port, requests[0])
    encoder = load_encoder(gw.MPNET, precision=args.precision)
    encoder.encode(texts)                                   # compile every batch shape once
    warm_up(port, requests, args.clients)
    for r in range(args.rounds):
      alone = encoder_rate(encoder, texts, args.seconds)
      served = service_rate(port, requests, args.clients, args.seconds)
      row = {"round": r, "precision": args.precision, "prompts": len(texts),
             "prompt_source": source, "clients": args.clients, "encoder_rate": alone["rate"],
             "service_rate": served["rate"], "ratio": served["rate"] / alone["rate"],
             "service_p50_ms": served["p50_ms"], "service_p99_ms": served["p99_ms"],
             "errors": served["errors"]}
      rows.append(row)
      print(f"round {r}: encoder alone {alone['rate']:.1f} prompts/s, service "
            f"{served['rate']:.1f} completions/s, ratio {row['ratio']:.2f} (p50 "
            f"{served['p50_ms']:.0f} ms, p99 {served['p99_ms']:.0f} ms, errors {served['errors']})",
            flush=True)
  finally:
    for proc in (service, upstream):
      proc.terminate()
      proc.wait(timeout=30)
  if args.out:
    with open(args.out, "a", encoding="utf-8") as f:
      for row in rows:
        f.write(json.dumps(row) + "\n")


if __name__ == "__main__":
  main()
