"""Embeddings/s of irt_jax's JAX encoder vs sentence-transformers (PyTorch) on CPU.

Both encoders embed the same fixed sample of queries (default: 1,000 rows of
routerdc's question_order.csv drawn with seed 0) in the same process, on the same
CPU, with the same batch size. Run it from a venv that has torch (CPU build),
sentence-transformers and irt_jax's own requirements, e.g.:

    PYTHONPATH=. .venv-bench/bin/python bench/bench_encoder.py \
        --models .models/all-MiniLM-L6-v2 .models/all-mpnet-base-v2

Reported per model: embeddings/s of a warm run (programs already compiled / first
call done) for each library, the JAX run's first (cold, compiling) call, the ratio
JAX / torch, and the largest absolute difference between the two libraries' vectors.
torch is not a dependency of irt_jax: only this script imports it.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from irt_jax.encode import read_question_order
from irt_jax.encoder import load_encoder


def sample_queries(path: Path, n: int, seed: int) -> list[str]:
  _, prompts, _ = read_question_order(path)
  rng = np.random.default_rng(seed)
  idx = rng.choice(len(prompts), size=min(n, len(prompts)), replace=False)
  return [prompts[i] for i in idx]


def timed(fn, *args, **kwargs):
  t = time.perf_counter()
  out = fn(*args, **kwargs)
  return out, time.perf_counter() - t


def main() -> None:
  ap = argparse.ArgumentParser(
      description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  ap.add_argument(
      "--models",
      nargs="+",
      default=[str(REPO / ".models/all-MiniLM-L6-v2"),
               str(REPO / ".models/all-mpnet-base-v2")])
  ap.add_argument(
      "--questions", default=str(REPO.parent / "shared/data/routerdc/question_order.csv"))
  ap.add_argument("--n", type=int, default=1000)
  ap.add_argument("--seed", type=int, default=0)
  ap.add_argument("--batch_size", type=int, default=64)
  ap.add_argument("--threads", type=int, default=os.cpu_count(), help="torch intra-op threads")
  args = ap.parse_args()

  import torch
  from sentence_transformers import SentenceTransformer

  torch.set_num_threads(args.threads)
  texts = sample_queries(Path(args.questions), args.n, args.seed)
  print(f"{len(texts)} queries from {args.questions} (seed {args.seed}), batch {args.batch_size}, "
        f"{os.cpu_count()} CPUs, torch {torch.__version__} ({torch.get_num_threads()} threads)")

  rows = []
  for model_dir in args.models:
    name = Path(model_dir).name
    # JAX: first call compiles one program per padded shape, second call is warm.
    enc = load_encoder(model_dir)
    jax_vecs, jax_cold = timed(enc.encode, texts, batch_size=args.batch_size)
    _, jax_warm = timed(enc.encode, texts, batch_size=args.batch_size)

    st = SentenceTransformer(model_dir, device="cpu")
    st.max_seq_length = enc.max_length
    st.encode(texts[:args.batch_size], batch_size=args.batch_size)  # warm-up
    with torch.inference_mode():
      st_vecs, st_warm = timed(
          st.encode,
          texts,
          batch_size=args.batch_size,
          convert_to_numpy=True,
          show_progress_bar=False)
    diff = float(np.abs(np.asarray(st_vecs, np.float32) - jax_vecs).max())
    rows.append((name, len(texts) / st_warm, len(texts) / jax_warm, len(texts) / jax_cold, diff))

  header = f"{'model':<20} {'torch emb/s':>12} {'jax emb/s':>10} {'jax cold emb/s':>15} {'jax/torch':>10} {'max|diff|':>10}"
  print(header)
  print("-" * len(header))
  for name, st_rate, jax_rate, cold_rate, diff in rows:
    print(
        f"{name:<20} {st_rate:>12.1f} {jax_rate:>10.1f} {cold_rate:>15.1f} {jax_rate / st_rate:>10.2f} {diff:>10.1e}"
    )


if __name__ == "__main__":
  main()
