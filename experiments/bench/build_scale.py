r"""Times `irt-jax build-data` on a generated long table of the paper's size, embeddings aside.

  .venv/bin/python -m experiments.bench.build_scale [--scale=1.0] [--format=csv|parquet] [--work=DIR]

Writes a long table (`model, prompt, correct, benchmark`, one row per answer) of
112 models x 35,673 queries (4.0 million rows; prompts of about 120 characters with
commas, quotes and a newline, 10 benchmarks, 3% of cells missing and 1% of rows
repeated, so the join merges duplicates and keeps unknown cells), then runs the build
command on it in a child process with `--encoder_dir=` and reports its wall time and
peak resident memory (the child's ru_maxrss). Generation is not timed.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

N_MODELS, N_QUERIES = 112, 35_673
BENCHMARKS = ("asdiv", "mmlu", "gpqa", "truthfulqa", "logiqa", "medmcqa", "mathqa", "piqa",
              "social_iqa", "gsm8k")
WORDS = np.array(["the", "model", "answer", "which", "of", "following", "is", "correct",
                  "question", "value", "\"quoted\"", "a, b", "number", "solve", "for", "x"])


def generate(path: str, scale: float, fmt: str, seed: int = 0) -> int:
  """Writes the table; returns its number of rows."""
  rng = np.random.default_rng(seed)
  n_q, n_m = max(10, int(N_QUERIES * scale)), N_MODELS
  words = WORDS[rng.integers(0, len(WORDS), size=(n_q, 20))]
  prompts = [f"Q{i}: " + " ".join(w[:8]) + "\n" + " ".join(w[8:]) for i, w in enumerate(words)]
  models = [f"org{j % 7}/model-{j:03d}" for j in range(n_m)]
  q = np.repeat(np.arange(n_q), n_m)
  m = np.tile(np.arange(n_m), n_q)
  keep = rng.random(len(q)) >= 0.03
  q, m = q[keep], m[keep]
  again = np.flatnonzero(rng.random(len(q)) < 0.01)
  q, m = np.concatenate([q, q[again]]), np.concatenate([m, m[again]])
  ability, difficulty = rng.normal(size=n_m), rng.normal(size=n_q)
  correct = (rng.random(len(q)) < 1 / (1 + np.exp(difficulty[q] - ability[m]))).astype(np.int8)
  table = pa.table({
      "model": pa.DictionaryArray.from_arrays(pa.array(m, pa.int32()), pa.array(models)),
      "prompt": pa.DictionaryArray.from_arrays(pa.array(q, pa.int32()), pa.array(prompts)),
      "correct": correct,
      "benchmark": pa.DictionaryArray.from_arrays(pa.array(q % len(BENCHMARKS), pa.int32()),
                                                  pa.array(BENCHMARKS))})
  if fmt == "parquet":
    pq.write_table(table, path)
  else:
    table = table.cast(pa.schema([(f.name, pa.string() if pa.types.is_dictionary(f.type) else f.type)
                                  for f in table.schema]))
    pacsv.write_csv(table, path)
  return table.num_rows


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--scale", type=float, default=1.0, help="Fraction of the paper's queries.")
  parser.add_argument("--format", choices=("csv", "parquet"), default="csv")
  parser.add_argument("--work", default=None, help="Scratch folder, removed after (default: a "
                      "new one in the system's temporary folder).")
  parser.add_argument("--out", default=None, help="Also append the result as a JSON line here.")
  args = parser.parse_args()
  args.work = args.work or tempfile.mkdtemp(prefix="build_scale.")
  os.makedirs(args.work, exist_ok=True)
  table = os.path.join(args.work, f"answers.{args.format}")
  out = os.path.join(args.work, "built")
  try:
    rows = generate(table, args.scale, args.format)
    size = os.path.getsize(table)
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "irt_jax", "build-data", f"--out={out}",
                           "--encoder_dir=", table], capture_output=True, text=True)
    wall = time.perf_counter() - start
    if done.returncode:
      sys.exit(f"build failed: {done.stderr.strip()}")
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024
    result = {"rows": rows, "format": args.format, "table_mb": round(size / 2**20, 1),
              "build_wall_s": round(wall, 1), "build_peak_rss_gb": round(peak / 2**30, 2),
              "cpus": os.cpu_count(), "load_avg_1m": round(os.getloadavg()[0], 1),
              "summary": done.stdout.splitlines()[0].replace(out, "OUT")}
    print(json.dumps(result, indent=1))
    if args.out:
      with open(args.out, "a", encoding="utf-8") as f:
        f.write(json.dumps(result) + "\n")
  finally:
    shutil.rmtree(args.work, ignore_errors=True)


if __name__ == "__main__":
  main()
