r"""The service's own cost per call, measured as gateways measure theirs: one command.

  PYTHONPATH=. nice -n 10 .venv/bin/python -m experiments.bench.bench_gateway [--workers=1,2] [--seconds=3] \
      [--concurrency=1,4,16,64,256] [--rate=300] [--out=docs/results/bench_gateway.jsonl]
  PYTHONPATH=. .venv/bin/python -m experiments.bench.bench_gateway --table_from=docs/results/bench_gateway.jsonl
  PYTHONPATH=. nice -n 10 .venv/bin/python -m experiments.bench.bench_gateway --compare_clients

Processes on 127.0.0.1: an instant fake OpenAI upstream (a canned chat completion over
raw asyncio, keep-alive), the service (serving.create_app under uvicorn: a Router over a
static encoder, twelve models, every model's upstream the fake one; --workers processes
on one socket, as `irt-jax serve --workers` runs them), and this process as the load generator.
The same load goes (a) straight to the fake upstream and (b) through the service,
alternating level by level in one run: closed-loop clients at each --concurrency (each
sends its next request when the last is answered) and an open-loop fixed --rate (a
request every 1/rate s whatever the answers, latency counted from when it was due).
Per level: requests/s, client latency p50/p95/p99, the service's added latency (the
client's latency through the service less straight to the upstream at the same level;
and the x-irt-jax-overhead-ms header), the service's CPU-ms per request and its resident
memory (all its processes, from /proc).

The load generator is a tuned asyncio client (uvloop, one connection per client,
pre-encoded request bytes, responses parsed by content-length): wrk from Debian's
packages has no open-loop mode (that is wrk2, not packaged) and cannot hand each reply's
overhead header back without a Lua table per thread; this client does both and costs
about 30 microseconds of CPU per request.

The static encoder is built here with random vectors over MiniLM's tokenizer (the
encoding cost of a distilled static encoder: tokenize and a weighted mean; what it
routes to does not matter for overhead). The service's garbage collector is set as
`irt-jax serve` sets it (serving/gc_tuning.py; --service_gc=default leaves Python's), and
BENCH_GATEWAY_GC=1 prints each full collection's pause. MPNet figures need its weights in
.models/all-mpnet-base-v2: the bench says so and skips them when they are not there.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
MODULE = "experiments.bench.bench_gateway"

MODELS = tuple(f"model-{i}" for i in range(12))
TOKENIZER = REPO / ".models" / "all-MiniLM-L6-v2" / "tokenizer.json"
MPNET = REPO / ".models" / "all-mpnet-base-v2"
PROMPT = "Which of these is a prime number: 21, 27, 29 or 33? Explain briefly."
REPLY = json.dumps({
    "id": "c1", "object": "chat.completion", "created": 1, "model": "m",
    "choices": [{"index": 0, "finish_reason": "stop",
                 "message": {"role": "assistant", "content": "29 is prime."}}],
    "usage": {"prompt_tokens": 20, "completion_tokens": 5, "total_tokens": 25}}).encode()
OVERHEAD = b"x-irt-jax-overhead-ms"


# ----------------------------------------------------------------- the fake upstream
class Upstream(asyncio.Protocol):
  """Answers every POST at once with REPLY (HTTP/1.1, keep-alive)."""
  head = (b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: "
          + str(len(REPLY)).encode() + b"\r\n\r\n")

  def connection_made(self, transport):
    self.transport, self.buf = transport, b""

  def data_received(self, data):
    self.buf += data
    while True:
      end = self.buf.find(b"\r\n\r\n")
      if end < 0:
        return
      length = 0
      for line in self.buf[:end].split(b"\r\n")[1:]:
        if line[:15].lower() == b"content-length:":
          length = int(line[15:])
      if len(self.buf) < end + 4 + length:
        return
      self.buf = self.buf[end + 4 + length:]
      self.transport.write(self.head + REPLY)


def run_upstream(port: int) -> None:
  import uvloop
  async def main():
    server = await asyncio.get_running_loop().create_server(Upstream, "127.0.0.1", port,
                                                            backlog=4096)
    await server.serve_forever()
  uvloop.run(main())


# ----------------------------------------------------------------- the service
def static_encoder(folder: Path, dim: int = 256) -> Path:
  from irt_jax.encoder import static
  tokenizer_json = TOKENIZER.read_text(encoding="utf-8")
  vocab = len(json.loads(tokenizer_json)["model"]["vocab"])
  rng = np.random.default_rng(0)
  return static.save(folder, rng.normal(size=(vocab, dim)).astype(np.float32),
                     np.ones(vocab, np.float32),
                     {"source": "random (bench)", "weighting": "uniform", "max_length": 128,
                      "do_lower_case": True}, tokenizer_json)


class Linear:
  """A predictor: a fixed random linear map embeddings -> logits over MODELS."""

  def __init__(self, dim: int):
    self.model_names, self.input_dim = MODELS, dim
    self.w = np.random.default_rng(1).normal(size=(dim, len(MODELS))).astype(np.float32)

  def logits(self, embeddings):
    return np.asarray(embeddings, np.float32) @ self.w


def log_full_collections() -> None:
  """BENCH_GATEWAY_GC=1: each full (generation 2) collection's pause, printed as it ends."""
  import gc
  started = [0.0]

  def callback(phase, info):
    if phase == "start":
      started[0] = time.perf_counter()
    elif info["generation"] == 2:
      print(f"service {os.getpid()}: full collection {(time.perf_counter() - started[0]) * 1e3:.1f} ms",
            file=sys.stderr, flush=True)
  gc.callbacks.append(callback)


def run_service(encoder_dir: str, upstream_port: int, fd: int, gc_mode: str = "settled") -> None:
  import uvicorn
  from irt_jax.encoder import EncoderError, static
  from irt_jax.routing.router import Router
  from irt_jax.serving import app as serving
  encoder = static.load(encoder_dir, None, EncoderError)
  router = Router.from_predictor(Linear(encoder.dim), encoder, name="irtnet")
  upstreams = serving.parse_upstreams(
      {m: {"base_url": f"http://127.0.0.1:{upstream_port}/v1"} for m in MODELS})
  app = serving.create_app(router, upstreams, serving.Limits(upstream_timeout_s=30),
                           settle_gc=gc_mode == "settled")      # as `irt-jax serve` runs it
  config = uvicorn.Config(app, log_level="warning", timeout_keep_alive=75, loop="uvloop")
  profile = os.environ.get("BENCH_GATEWAY_PROFILE")     # a file: cProfile of the event loop
  server = uvicorn.Server(config)
  if profile:
    import cProfile
    profiler = cProfile.Profile()

    class Profiled(uvicorn.Server):
      async def startup(self, sockets=None):
        await super().startup(sockets)
        profiler.enable()

      async def shutdown(self, sockets=None):
        profiler.disable()
        profiler.dump_stats(f"{profile}.{os.getpid()}")
        await super().shutdown(sockets)
    server = Profiled(config)
  if os.environ.get("BENCH_GATEWAY_GC"):
    log_full_collections()
  server.run(sockets=[socket.socket(fileno=fd)])


# ----------------------------------------------------------------- the load generator
def request_bytes(port: int, path: str, body: dict) -> bytes:
  raw = json.dumps(body).encode()
  return (f"POST {path} HTTP/1.1\r\nhost: 127.0.0.1:{port}\r\ncontent-type: application/json\r\n"
          f"content-length: {len(raw)}\r\n\r\n").encode() + raw


class Conn:
  def __init__(self, reader, writer):
    self.reader, self.writer = reader, writer

  @classmethod
  async def open(cls, port: int) -> "Conn":
    return cls(*await asyncio.open_connection("127.0.0.1", port))

  async def call(self, request: bytes) -> tuple[int, float | None]:
    """(status, overhead header in ms or None)."""
    self.writer.write(request)
    head = await self.reader.readuntil(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status, length, overhead = int(lines[0].split()[1]), 0, None
    for line in lines[1:]:
      name, _, value = line.partition(b":")
      name = name.strip().lower()
      if name == b"content-length":
        length = int(value)
      elif name == OVERHEAD:
        overhead = float(value)
    await self.reader.readexactly(length)
    return status, overhead


async def closed_loop(port: int, request: bytes | list[bytes], clients: int,
                      seconds: float) -> dict:
  """`clients` connections, each sending its next request when the last is
  answered; a list of requests is sent in turn across all clients."""
  requests = [request] if isinstance(request, bytes) else list(request)
  conns = [await Conn.open(port) for _ in range(clients)]
  latencies, overheads, errors, sent = [], [], [0], [0]
  start = time.perf_counter()
  deadline = start + seconds

  async def loop(conn):
    while time.perf_counter() < deadline:
      t0 = time.perf_counter()
      sent[0] += 1
      status, overhead = await conn.call(requests[sent[0] % len(requests)])
      latencies.append(time.perf_counter() - t0)
      if status != 200:
        errors[0] += 1
      if overhead is not None:
        overheads.append(overhead)
  await asyncio.gather(*(loop(c) for c in conns))
  took = time.perf_counter() - start
  for c in conns:
    c.writer.close()
  return {"requests": len(latencies), "seconds": took, "latencies": latencies,
          "overheads": overheads, "errors": errors[0]}


async def open_loop(port: int, request: bytes, rate: float, seconds: float) -> dict:
  """A request due every 1/rate s; latency from when it was due (no coordinated omission)."""
  idle: list[Conn] = []
  latencies, overheads, errors = [], [], [0]

  async def one(due):
    conn = idle.pop() if idle else await Conn.open(port)
    status, overhead = await conn.call(request)
    latencies.append(time.perf_counter() - due)
    idle.append(conn)
    errors[0] += status != 200
    if overhead is not None:
      overheads.append(overhead)
  start, tasks = time.perf_counter(), []
  for i in range(int(rate * seconds)):
    due = start + i / rate
    delay = due - time.perf_counter()
    if delay > 0:
      await asyncio.sleep(delay)
    tasks.append(asyncio.ensure_future(one(due)))
  await asyncio.gather(*tasks)
  for c in idle:
    c.writer.close()
  return {"requests": len(latencies), "seconds": time.perf_counter() - start,
          "latencies": latencies, "overheads": overheads, "errors": errors[0]}


def cpu_and_rss(pids: list[int]) -> tuple[float, float]:
  """(CPU seconds used so far, resident MB) summed over pids."""
  tick, cpu, rss = os.sysconf("SC_CLK_TCK"), 0.0, 0.0
  for pid in pids:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    cpu += (int(fields[11]) + int(fields[12])) / tick
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
      if line.startswith("VmRSS:"):
        rss += int(line.split()[1]) / 1024
  return cpu, rss


def pct(values, q) -> float | None:
  return float(np.percentile(values, q)) if len(values) else None


def summary(result: dict) -> dict:
  ms = np.asarray(result["latencies"]) * 1e3
  out = {"requests": result["requests"], "rps": result["requests"] / result["seconds"],
         "errors": result["errors"], "p50_ms": pct(ms, 50), "p95_ms": pct(ms, 95),
         "p99_ms": pct(ms, 99)}
  if result["overheads"]:
    out.update({f"header_p{q}_ms": pct(result["overheads"], q) for q in (50, 95, 99)})
  return out


# ----------------------------------------------------------------- upstream clients
async def client_cpu(kind: str, port: int, calls: int = 2000, concurrent: int = 8) -> float:
  """CPU-ms per call of an async HTTP client (httpx or aiohttp) posting a chat request to
  the fake upstream, `concurrent` at a time (what the service's upstream client does)."""
  url = f"http://127.0.0.1:{port}/v1/chat/completions"
  body = json.dumps({"model": "m", "messages": [{"role": "user", "content": PROMPT}]}).encode()
  headers = {"content-type": "application/json"}
  if kind == "httpx":
    import httpx
    client = httpx.AsyncClient(limits=httpx.Limits(max_connections=256))
    async def call():
      json.loads((await client.post(url, content=body, headers=headers)).content)
  else:
    import aiohttp
    client = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=256))
    async def call():
      async with client.post(url, data=body, headers=headers) as r:
        json.loads(await r.read())
  async def worker(n):
    for _ in range(n):
      await call()
  await worker(50)                                     # connections open, code warm
  start = time.process_time()
  await asyncio.gather(*(worker(calls // concurrent) for _ in range(concurrent)))
  used = time.process_time() - start
  await (client.aclose() if kind == "httpx" else client.close())
  return used * 1e3 / (calls // concurrent * concurrent)


def compare_clients(upstream_port: int) -> None:
  import uvloop
  for kind in ("httpx", "aiohttp", "httpx", "aiohttp"):          # interleaved, twice
    print(f"{kind}: {uvloop.run(client_cpu(kind, upstream_port)):.3f} CPU-ms per call")


# ----------------------------------------------------------------- the run
def free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def wait_ready(port: int, request: bytes, seconds: float = 300) -> None:
  async def probe():
    conn = await Conn.open(port)
    status, _ = await conn.call(request)
    conn.writer.close()
    return status
  deadline = time.time() + seconds
  while time.time() < deadline:
    try:
      if asyncio.run(probe()) == 200:
        return
    except OSError:
      pass
    time.sleep(0.2)
  raise SystemExit(f"port {port} did not answer within {seconds:.0f} s")


def start_services(workers: int, encoder_dir: str, upstream_port: int, gc_mode: str):
  sock = socket.socket()
  sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
  sock.bind(("127.0.0.1", 0))
  sock.listen(4096)
  sock.set_inheritable(True)
  procs = [subprocess.Popen([sys.executable, "-m", MODULE, "--role=service",
                             f"--encoder_dir={encoder_dir}", f"--upstream_port={upstream_port}",
                             f"--socket_fd={sock.fileno()}", f"--service_gc={gc_mode}"],
                            pass_fds=(sock.fileno(),))
           for _ in range(workers)]
  return sock, procs


def measure(args, workers: int, encoder_dir: str, upstream_port: int, out: list) -> None:
  sock, procs = start_services(workers, encoder_dir, upstream_port, args.service_gc)
  port = sock.getsockname()[1]
  chat = {"model": "router-irtnet", "messages": [{"role": "user", "content": PROMPT}]}
  direct = request_bytes(upstream_port, "/v1/chat/completions", dict(chat, model="model-0"))
  routed = request_bytes(port, "/v1/chat/completions", chat)
  try:
    wait_ready(port, routed)
    asyncio.run(closed_loop(port, routed, 16, 2.0))                      # warm up
    pids = [p.pid for p in procs]
    levels = [("closed", c) for c in args.concurrency] + [("open", r) for r in args.rate]
    for mode, level in levels:
      row = {"workers": workers, "mode": mode, "level": level}
      for target, p, request in (("direct", upstream_port, direct), ("service", port, routed)):
        cpu0, _ = cpu_and_rss(pids)
        run = (closed_loop(p, request, level, args.seconds) if mode == "closed" else
               open_loop(p, request, level, args.seconds))
        row[target] = summary(asyncio.run(run))
        cpu1, rss = cpu_and_rss(pids)
        if target == "service":
          row["service"]["cpu_ms_per_request"] = (cpu1 - cpu0) * 1e3 / max(
              row["service"]["requests"], 1)
          row["service"]["rss_mb"] = rss
      row["added_p50_ms"] = row["service"]["p50_ms"] - row["direct"]["p50_ms"]
      row["added_p99_ms"] = row["service"]["p99_ms"] - row["direct"]["p99_ms"]
      row["rps_ratio"] = row["service"]["rps"] / row["direct"]["rps"]
      out.append(row)
      print(line(row), flush=True)
  finally:
    for p in procs:
      p.send_signal(signal.SIGTERM)
    for p in procs:
      p.wait(timeout=30)
    sock.close()


def line(row: dict) -> str:
  s, d = row["service"], row["direct"]
  return (f"| {row['workers']} | {row['mode']} {row['level']} | {d['rps']:.0f} | {s['rps']:.0f} "
          f"| {row['rps_ratio']:.2f} | {d['p50_ms']:.2f} / {d['p99_ms']:.2f} "
          f"| {s['p50_ms']:.2f} / {s['p95_ms']:.2f} / {s['p99_ms']:.2f} "
          f"| {s['header_p50_ms']:.2f} / {s['header_p95_ms']:.2f} / {s['header_p99_ms']:.2f} "
          f"| {s['cpu_ms_per_request']:.2f} | {s['rss_mb']:.0f} | {s['errors']} |")


HEADER = ("| workers | load | direct req/s | service req/s | ratio | direct p50 / p99 ms "
          "| service p50 / p95 / p99 ms | header p50 / p95 / p99 ms | service CPU-ms / req "
          "| service RSS MB | errors |\n|---|---|---:|---:|---:|---|---|---|---:|---:|---:|")


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--role", default="bench", choices=["bench", "upstream", "service"])
  parser.add_argument("--port", type=int)
  parser.add_argument("--encoder_dir")
  parser.add_argument("--upstream_port", type=int)
  parser.add_argument("--socket_fd", type=int)
  parser.add_argument("--workers", default="1,2")
  parser.add_argument("--concurrency", default="1,4,16,64,256")
  parser.add_argument("--rate", default="300")
  parser.add_argument("--seconds", type=float, default=3.0)
  parser.add_argument("--service_gc", default="settled", choices=["settled", "default"],
                      help="the service's garbage collector: as `irt-jax serve` sets it "
                           "(serving/gc_tuning.py) or Python's default, to measure the difference")
  parser.add_argument("--out")
  parser.add_argument("--table_from", help="print the table of a --out file and stop")
  parser.add_argument("--compare_clients", action="store_true",
                      help="only the upstream clients' CPU per call (httpx, aiohttp)")
  args = parser.parse_args()
  if args.table_from:
    print(HEADER)
    for row in open(args.table_from, encoding="utf-8"):
      print(line(json.loads(row)))
    return
  if args.role == "upstream":
    return run_upstream(args.port)
  if args.role == "service":
    return run_service(args.encoder_dir, args.upstream_port, args.socket_fd, args.service_gc)
  args.concurrency = [int(x) for x in args.concurrency.split(",")]
  args.rate = [float(x) for x in args.rate.split(",") if x]
  if not MPNET.is_dir():
    print(f"MPNet: no weights in {MPNET.relative_to(REPO)}; its rows are skipped",
          file=sys.stderr)
  upstream_port = free_port()
  upstream = subprocess.Popen([sys.executable, "-m", MODULE, "--role=upstream",
                               f"--port={upstream_port}"])
  rows: list[dict] = []
  try:
    if args.compare_clients:
      wait_ready(upstream_port, request_bytes(upstream_port, "/v1/chat/completions", {}))
      return compare_clients(upstream_port)
    with tempfile.TemporaryDirectory() as tmp:
      encoder_dir = str(static_encoder(Path(tmp) / "static"))
      print(HEADER)
      for workers in (int(x) for x in args.workers.split(",")):
        measure(args, workers, encoder_dir, upstream_port, rows)
  finally:
    upstream.terminate()
    upstream.wait(timeout=30)
  if args.out:
    with open(args.out, "a", encoding="utf-8") as f:
      for row in rows:
        f.write(json.dumps({"time": time.strftime("%Y-%m-%dT%H:%M:%S"), "encoder": "static",
                            "seconds": args.seconds, "service_gc": args.service_gc,
                            **row}) + "\n")


if __name__ == "__main__":
  main()
