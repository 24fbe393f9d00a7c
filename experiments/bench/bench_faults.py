r"""The routing service under load and faults (prints figures and appends a record; not a test).

    PYTHONPATH=. .venv/bin/python -m experiments.bench.bench_faults --workdir=runs/llmrouter_small \
        --fake_encoder --record=docs/results/bench_faults.jsonl

One command, three processes, 127.0.0.1 only:
  * this one serves the run (serving.create_app under uvicorn, API and admin keys,
    fallbacks 2) with three upstreams: the run's three most-routed models, whose
    stub endpoints (a second process) fail 30% of calls with 503 (the most routed),
    answer after --slow_ms (the second) or answer at once (the third);
  * a third process sends --requests chat requests (queries drawn from
    --queries, a question_order.csv, seed 0) from --concurrency concurrent clients
    and, once half have been answered, POST /admin/reload (the same run, loaded
    again from disk) while the rest are in flight.
Reports client-visible errors, fallbacks seen by clients (x-irt-jax-failed-models)
against those counted in /metrics, latency p50/p99, and this process's resident
memory after warm-up, at the end and at its peak (sampled every 0.2 s).
--reloads=N instead reloads N times in a row (20 /route requests after each) and
prints resident memory after each: a reload must not keep the Router it replaced.
--fake_encoder routes on a hash of the text instead of the run's sentence
encoder (the service, the predictor and the faults alone; the real encoder on
2 shared CPU cores measures the encoder).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import socket
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


# ------------------------------------------------------------ process 2: stub upstreams

class StubHandler(BaseHTTPRequestHandler):
  """An OpenAI-compatible upstream; its port decides how it behaves."""
  behaviour: dict = {}        # port -> ("flaky", p) | ("slow", seconds) | ("ok", 0)
  rng = random.Random(0)

  def log_message(self, *args):
    pass

  def do_POST(self):
    body = json.loads(self.rfile.read(int(self.headers["content-length"])))
    kind, value = StubHandler.behaviour[self.server.server_address[1]]
    if kind == "flaky" and StubHandler.rng.random() < value:
      return self._send(503, {"error": {"message": "overloaded"}})
    if kind == "slow":
      time.sleep(value)
    self._send(200, {"id": "up-1", "object": "chat.completion", "created": 1,
                     "model": body["model"], "choices": [{"index": 0, "finish_reason": "stop",
                     "message": {"role": "assistant", "content": "an answer"}}]})

  def _send(self, status, obj):
    payload = json.dumps(obj).encode()
    self.send_response(status)
    self.send_header("content-type", "application/json")
    self.send_header("content-length", str(len(payload)))
    self.end_headers()
    self.wfile.write(payload)


def run_stubs(spec: str) -> None:
  """Serves 'port:kind:value,...' until stdin closes (the parent's exit)."""
  servers = []
  for item in spec.split(","):
    port, kind, value = item.split(":")
    StubHandler.behaviour[int(port)] = (kind, float(value))
    server = ThreadingHTTPServer(("127.0.0.1", int(port)), StubHandler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    servers.append(server)
  print("ready", flush=True)
  sys.stdin.read()


# ------------------------------------------------------------ process 3: the load

async def load(url: str, key: str, admin_key: str, texts: list[str], concurrency: int,
               model: str) -> dict:
  """Every text as one chat request; a reload once half are answered."""
  import httpx
  limit, answered, half = asyncio.Semaphore(concurrency), [0], asyncio.Event()
  latencies, errors, failed, routed = [], [], 0, {}
  auth = {"authorization": f"Bearer {key}"}
  async with httpx.AsyncClient(base_url=url, timeout=120,
                               limits=httpx.Limits(max_connections=concurrency + 4)) as client:
    async def one(text):
      nonlocal failed
      async with limit:
        start = time.perf_counter()
        try:
          r = await client.post("/v1/chat/completions", headers=auth, json={
              "model": model, "messages": [{"role": "user", "content": text}]})
          status = r.status_code
        except httpx.HTTPError as e:
          status, r = f"{type(e).__name__}", None
        latencies.append(time.perf_counter() - start)
      if status != 200:
        errors.append(status if r is None else f"{status}: {r.text[:200]}")
      else:
        names = r.headers.get("x-irt-jax-failed-models")
        failed += len(names.split(",")) if names else 0
        who = r.headers["x-irt-jax-routed-model"]
        routed[who] = routed.get(who, 0) + 1
      answered[0] += 1
      if answered[0] == len(texts) // 2:
        half.set()

    async def reload():
      await half.wait()
      start = time.perf_counter()
      r = await client.post("/admin/reload", headers={"authorization": f"Bearer {admin_key}"})
      return {"status": r.status_code, "seconds": time.perf_counter() - start,
              "answered_when_done": answered[0]}

    start = time.perf_counter()
    *_, reloaded = await asyncio.gather(*(one(t) for t in texts), reload())
    elapsed = time.perf_counter() - start
  latencies.sort()
  pick = lambda q: 1e3 * latencies[min(int(q * len(latencies)), len(latencies) - 1)]
  return {"requests": len(texts), "errors": len(errors), "error_examples": errors[:5],
          "client_seen_fallbacks": failed, "routed": routed, "p50_ms": pick(0.50),
          "p99_ms": pick(0.99), "requests_per_s": len(texts) / elapsed, "reload": reloaded}


def run_load(args) -> None:
  texts = json.loads(Path(args.texts_file).read_text())
  print(json.dumps(asyncio.run(load(args.url, args.key, args.admin_key, texts,
                                    args.concurrency, args.model))), flush=True)


# ------------------------------------------------------------ process 1: the service

def rss_mb() -> float:
  with open("/proc/self/status", encoding="ascii") as f:
    for line in f:
      if line.startswith("VmRSS:"):
        return int(line.split()[1]) / 1024
  return float("nan")


def free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def make_router(args, workdir: str):
  from irt_jax import predictors
  from irt_jax.routing import router as router_lib
  if not args.fake_encoder:
    return router_lib.load(workdir, args.encoder_dir)
  from experiments.bench.bench_serve import HashEncoder
  run = predictors.load(workdir)
  router = router_lib.Router(run.predictor, HashEncoder(run.predictor.input_dim),
                             name=run.kind.name, workdir=workdir)
  return router


def texts_for(args) -> list[str]:
  from experiments.bench.bench_serve import queries
  return queries(args.queries if os.path.exists(args.queries or "") else None, args.requests)


def start_service(args, router, upstreams, folder: str):
  """uvicorn in a thread; returns (url, server, thread, app, keys)."""
  import uvicorn
  from irt_jax.routing import router as router_lib
  from irt_jax.serving import app as serving
  from irt_jax.serving.keys import KeyFile
  Path(folder, "keys.txt").write_text("sk-bench\n")
  Path(folder, "admin.txt").write_text("sk-bench-admin\n")
  access = serving.Access(keys=KeyFile(str(Path(folder, "keys.txt"))),
                          admin_keys=KeyFile(str(Path(folder, "admin.txt"))))
  reloader = (lambda workdir, old: make_router(args, workdir or old.workdir)) if (
      args.fake_encoder) else (lambda workdir, old: router_lib.load(
          workdir or old.workdir, args.encoder_dir, reuse=old))
  app = serving.create_app(router, serving.parse_upstreams(upstreams),
                           serving.Limits(upstream_timeout_s=10),
                           fallbacks=serving.Fallbacks(fallbacks=2, cooldown_s=args.cooldown_s),
                           access=access, reloader=reloader)
  sock = socket.socket()
  sock.bind(("127.0.0.1", 0))
  # Idle connections outlive the clients' (httpx: 5 s), so a client never reuses one the
  # server is closing at that moment (uvicorn's default is also 5 s: a ReadError race).
  server = uvicorn.Server(uvicorn.Config(app, log_level="warning", timeout_keep_alive=75))
  thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
  thread.start()
  for _ in range(6000):                          # bounded: up to 5 minutes for the encoder
    if server.started or not thread.is_alive():
      break
    time.sleep(0.05)
  if not server.started:
    sys.exit("bench_faults: the service did not start")
  return f"http://127.0.0.1:{sock.getsockname()[1]}", server, thread, app


def metric_sums(url: str) -> dict:
  import httpx
  from prometheus_client.parser import text_string_to_metric_families
  text = httpx.get(url + "/metrics", headers={"authorization": "Bearer sk-bench"}).text
  sums: dict = {}
  for family in text_string_to_metric_families(text):
    for s in family.samples:
      if s.name in ("irt_fallbacks_total", "irt_upstream_errors_total", "irt_reloads_total"):
        sums[s.name] = sums.get(s.name, 0) + s.value
      if s.name == "irt_encoder_batch_queries_sum" or s.name == "irt_encoder_batch_queries_count":
        sums[s.name] = s.value
  return sums


def bench(args) -> dict:
  router = make_router(args, args.workdir)
  texts = texts_for(args)
  counts = {}
  for r in router.route(texts[:256]):
    counts[r.model] = counts.get(r.model, 0) + 1
  top = sorted(router.model_names, key=lambda m: -counts.get(m, 0))[:3]
  ports = [free_port() for _ in top]
  plan = [("flaky", args.fail_rate), ("slow", args.slow_ms / 1e3), ("ok", 0)]
  spec = ",".join(f"{p}:{k}:{v}" for p, (k, v) in zip(ports, plan))
  stubs = subprocess.Popen([sys.executable, "-m", "experiments.bench.bench_faults", "--role=stubs", f"--spec={spec}"],
                           stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
  assert stubs.stdout.readline().strip() == "ready"
  upstreams = {m: {"base_url": f"http://127.0.0.1:{p}/v1"} for m, p in zip(top, ports)}
  samples: list[float] = []
  with tempfile.TemporaryDirectory() as folder:
    url, server, thread, app = start_service(args, router, upstreams, folder)
    start_rss = rss_mb()
    stop = threading.Event()

    def sample():
      while not stop.wait(0.2):
        samples.append(rss_mb())
    threading.Thread(target=sample, daemon=True).start()
    texts_file = Path(folder, "texts.json")
    texts_file.write_text(json.dumps(texts))
    load = subprocess.run([sys.executable, "-m", "experiments.bench.bench_faults", "--role=load", f"--url={url}",
                           "--key=sk-bench", "--admin_key=sk-bench-admin",
                           f"--texts_file={texts_file}", f"--concurrency={args.concurrency}",
                           f"--model=router-{router.name}"],
                          capture_output=True, text=True, timeout=3600)
    if load.returncode:
      sys.exit(f"bench_faults: the load process failed:\n{load.stderr[-3000:]}")
    result = json.loads(load.stdout.strip().splitlines()[-1])
    end_rss = rss_mb()
    stop.set()
    result["metrics"] = metric_sums(url)
    server.should_exit = True
    thread.join(timeout=30)
  stubs.stdin.close()
  stubs.wait(timeout=30)
  result.update({"bench": "faults", "workdir": args.workdir, "concurrency": args.concurrency,
                 "encoder": "hash (--fake_encoder)" if args.fake_encoder else args.encoder_dir,
                 "upstreams": {"flaky (503 at rate)": [top[0], args.fail_rate],
                               "slow (ms)": [top[1], args.slow_ms], "ok": top[2]},
                 "cooldown_s": args.cooldown_s, "rss_mb": {"after_warm_up": start_rss,
                 "end": end_rss, "peak": max(samples + [end_rss]),
                 "quartiles_of_run": [samples[int(q * (len(samples) - 1))]
                                      for q in (0.25, 0.5, 0.75)] if samples else []},
                 "machine": "2 CPU cores shared with other jobs", "date": time.strftime("%Y-%m-%d")})
  return result


def reload_memory(args) -> dict:
  """Resident memory after each of --reloads reloads in a row (each followed by 20
  /route requests), no upstreams: does a reload leak the Router it replaces?"""
  import httpx
  router = make_router(args, args.workdir)
  with tempfile.TemporaryDirectory() as folder:
    url, server, thread, _ = start_service(args, router, {}, folder)
    admin = {"authorization": "Bearer sk-bench-admin"}
    rss = [rss_mb()]
    for i in range(args.reloads):
      r = httpx.post(url + "/admin/reload", headers=admin, timeout=300)
      if r.status_code != 200:
        sys.exit(f"bench_faults: reload {i} failed: {r.text}")
      for j in range(20):
        httpx.post(url + "/route", json={"queries": [f"question {i} {j}"]},
                   headers={"authorization": "Bearer sk-bench"}, timeout=300)
      rss.append(rss_mb())
    import gc
    from irt_jax.routing.router import Router
    del router
    gc.collect()
    alive = sum(isinstance(o, Router) for o in gc.get_objects())   # 1: the one serving
    server.should_exit = True
    thread.join(timeout=30)
  return {"bench": "reload_memory", "workdir": args.workdir, "reloads": args.reloads,
          "rss_mb_after_each": rss, "routers_alive_at_end": alive,
          "date": time.strftime("%Y-%m-%d"),
          "encoder": "hash (--fake_encoder)" if args.fake_encoder else args.encoder_dir}


def print_table(records: list[dict]) -> None:
  """One markdown row per record (the serving docs' table)."""
  print("| requests | clients | encoder | client-visible errors | fallbacks seen by clients | "
        "in /metrics | p50 ms | p99 ms | requests/s | reload (s) | RSS MB: warm, 25/50/75% of run, end |")
  print("|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---|")
  for r in records:
    if r["bench"] == "reload_memory":
      continue
    rss = r["rss_mb"]
    steps = [rss["after_warm_up"], *rss["quartiles_of_run"], rss["end"]]
    print(f"| {r['requests']} | {r['concurrency']} | {r['encoder'].split(' ')[0]} | {r['errors']} | "
          f"{r['client_seen_fallbacks']} | {r['metrics'].get('irt_fallbacks_total', 0):g} | "
          f"{r['p50_ms']:.0f} | {r['p99_ms']:.0f} | {r['requests_per_s']:.0f} | "
          f"{r['reload']['seconds']:.1f} | {', '.join(f'{x:.0f}' for x in steps)} |")


def main() -> None:
  ap = argparse.ArgumentParser(description=__doc__,
                               formatter_class=argparse.RawDescriptionHelpFormatter)
  ap.add_argument("--role", default="bench", choices=["bench", "stubs", "load"])
  ap.add_argument("--workdir")
  ap.add_argument("--encoder_dir", default=None)
  ap.add_argument("--fake_encoder", action="store_true")
  ap.add_argument("--queries", default=str(REPO.parent / "shared/data/llmrouter/question_order.csv"))
  ap.add_argument("--requests", type=int, default=2000)
  ap.add_argument("--concurrency", type=int, default=32)
  ap.add_argument("--fail_rate", type=float, default=0.3)
  ap.add_argument("--slow_ms", type=float, default=200)
  ap.add_argument("--cooldown_s", type=float, default=2.0)
  ap.add_argument("--record", default=None, help="JSON-lines file to append the result to")
  ap.add_argument("--table_from", default=None, help="only print the table of a record file")
  ap.add_argument("--reloads", type=int, default=0, help="instead of the load: this many reloads "
                  "in a row, resident memory after each")
  ap.add_argument("--spec")                     # internal: the stubs process
  ap.add_argument("--url")                      # internal: the load process
  ap.add_argument("--key")
  ap.add_argument("--admin_key")
  ap.add_argument("--texts_file")
  ap.add_argument("--model")
  args = ap.parse_args()
  if args.role == "stubs":
    return run_stubs(args.spec)
  if args.role == "load":
    return run_load(args)
  if args.table_from:
    return print_table([json.loads(x) for x in Path(args.table_from).read_text().splitlines() if x])
  if not args.workdir:
    ap.error("--workdir is required")
  result = reload_memory(args) if args.reloads else bench(args)
  if args.record:
    with open(args.record, "a", encoding="utf-8") as f:
      f.write(json.dumps(result) + "\n")
  if args.reloads:
    return print("RSS MB after each reload: " +
                 ", ".join(f"{x:.0f}" for x in result["rss_mb_after_each"]) +
                 f"; Routers alive at the end: {result['routers_alive_at_end']}")
  m = result["metrics"]
  print(f"{result['requests']} chat requests at {args.concurrency} concurrent: "
        f"{result['errors']} client-visible errors; fallbacks seen by clients "
        f"{result['client_seen_fallbacks']}, in /metrics {m.get('irt_fallbacks_total', 0):g}; "
        f"p50 {result['p50_ms']:.0f} ms, p99 {result['p99_ms']:.0f} ms; "
        f"{result['requests_per_s']:.0f} requests/s; reload {result['reload']}; "
        f"RSS {result['rss_mb']['after_warm_up']:.0f} -> "
        f"{' -> '.join(f'{x:.0f}' for x in result['rss_mb']['quartiles_of_run'])} -> "
        f"{result['rss_mb']['end']:.0f} MB (peak {result['rss_mb']['peak']:.0f})")


if __name__ == "__main__":
  main()
