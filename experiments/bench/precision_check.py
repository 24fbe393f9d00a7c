r"""The acceptance check of a reduced-precision encoder: cosine to float32 and routing micro.

  PYTHONPATH=. nice -n 10 .venv/bin/python -m experiments.bench.precision_check \
      --runs=runs/logreg_{dataset} [--precisions=bfloat16,int8] [--queries=150] \
      [--out=docs/results/encoder_precision.jsonl]

For each shared dataset (llmrouter, routerdc, zeroeval) it draws --queries test queries
(seed 0; --queries=0 takes all of them), embeds their prompts with the MPNet encoder at
each precision and compares them with the shipped float32 embeddings (sentence-transformers' all-mpnet-base-v2,
stored as float16; our float32 encoder matches them to within that rounding:
tests/test_encoder.py::test_encode_reproduces_shipped_routerdc_embeddings):
  cosine     min / median of each query's cosine to the float32 embedding;
  routing    micro accuracy of the run's argmax choice among the known models, on the
             float32 embeddings and on the reduced ones (same run, same queries), their
             difference in points, how many queries' outcome (right / wrong) changed, and
             a paired bootstrap 95% interval of the difference.
A precision is accepted when min cosine >= 0.999 and |micro difference| <= 0.2 points
on every dataset. One JSON line per (dataset, precision) is appended to --out; --table
prints the docs' table from all the records there.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]

from irt_jax import predictors  # noqa: E402
from irt_jax.data import io as data_lib  # noqa: E402
from irt_jax.encoder import load_encoder  # noqa: E402
from irt_jax.routing import rules  # noqa: E402

SHARED = REPO.parent / "shared" / "data"
MPNET = REPO / ".models" / "all-mpnet-base-v2"
DATASETS = ("llmrouter", "routerdc", "zeroeval")


def routed_success(logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
  """1.0 where the argmax-logit model among the known ones answered correctly."""
  known = labels >= 0
  choice = rules.choose_by_score(logits, known)
  return (labels[np.arange(len(labels)), choice] == 1).astype(np.float64)


def paired_interval(a: np.ndarray, b: np.ndarray, reps: int = 2000) -> tuple[float, float]:
  """95% bootstrap interval of mean(b - a) in points, resampling queries (paired)."""
  rng = np.random.default_rng(0)
  d = b - a
  means = [d[rng.integers(0, len(d), len(d))].mean() for _ in range(reps)]
  return tuple(100 * float(x) for x in np.percentile(means, [2.5, 97.5]))


def check(dataset: str, run_dir: str, encoders: dict, n: int) -> list[dict]:
  data = data_lib.load_dataset(str(SHARED / dataset), require=("train", "test"))
  _, prompts, _ = data_lib.read_question_order(str(SHARED / dataset / "question_order.csv"))
  test = data.split("test")
  keep = np.flatnonzero((test.labels >= 0).any(axis=1))
  pick = keep if n <= 0 or n >= len(keep) else np.sort(
      np.random.default_rng(0).choice(keep, size=n, replace=False))
  rows, labels = test.queries[pick], test.labels[pick]
  texts = [prompts[r] for r in rows]
  reference = np.asarray(data.embeddings[rows], np.float32)
  predictor = predictors.load(run_dir).predictor
  base = routed_success(predictor.logits(reference), labels)
  out = []
  for precision, enc in encoders.items():
    t = time.perf_counter()
    emb = enc.encode(texts, batch_size=64, progress=True)
    seconds = time.perf_counter() - t
    cos = np.sum(emb * reference, 1) / np.linalg.norm(emb, axis=1) / np.linalg.norm(reference,
                                                                                      axis=1)
    got = routed_success(predictor.logits(emb), labels)
    lo, hi = paired_interval(base, got)
    out.append({"dataset": dataset, "precision": precision, "queries": len(rows),
                "run": run_dir, "cosine_min": float(cos.min()),
                "cosine_median": float(np.median(cos)), "micro_float32": 100 * base.mean(),
                "micro": 100 * got.mean(), "micro_diff_points": 100 * (got.mean() - base.mean()),
                "micro_diff_ci95": [lo, hi], "changed_outcomes": int((got != base).sum()),
                "encode_s": seconds})
    print(json.dumps(out[-1]), flush=True)
  return out


def table(path: str) -> str:
  """The docs' markdown table from the records at ``path``."""
  rows = ["| dataset | precision | test queries | cosine min / median | routing micro, float32 -> "
          "reduced (points) | queries whose outcome changed | paired 95% interval | accepted |",
          "|---|---|---|---|---|---|---|---|"]
  with open(path) as f:
    for r in map(json.loads, f):
      lo, hi = r["micro_diff_ci95"]
      rows.append(f"| {r['dataset']} | {r['precision']} | {r['queries']} | {r['cosine_min']:.5f} / "
                  f"{r['cosine_median']:.6f} | {r['micro_float32']:.2f} -> {r['micro']:.2f} "
                  f"({r['micro_diff_points']:+.2f}) | {r['changed_outcomes']} | "
                  f"[{lo:+.2f}, {hi:+.2f}] | {'yes' if r['accepted'] else 'no'} |")
  return "\n".join(rows)


def main() -> None:
  ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  ap.add_argument("--runs", default="runs/logreg_{dataset}",
                  help="trained run per dataset ({dataset} is filled in)")
  ap.add_argument("--precisions", default="bfloat16,int8")
  ap.add_argument("--queries", type=int, default=150,
                  help="test queries drawn per dataset (0 = every test query)")
  ap.add_argument("--out", default=str(REPO / "docs" / "results" / "encoder_precision.jsonl"))
  ap.add_argument("--table", action="store_true", help="print the docs' table from --out and stop")
  args = ap.parse_args()
  if args.table:
    print(table(args.out))
    return
  encoders = {p: load_encoder(MPNET, precision=p) for p in args.precisions.split(",")}
  records = []
  for dataset in DATASETS:
    records += check(dataset, args.runs.format(dataset=dataset), encoders, args.queries)
  verdict = {p: all(r["cosine_min"] >= 0.999 and abs(r["micro_diff_points"]) <= 0.2
                    for r in records if r["precision"] == p) for p in encoders}
  with open(args.out, "a") as f:  # beside earlier checks (other sizes / precisions)
    for r in records:
      f.write(json.dumps({**r, "accepted": verdict[r["precision"]]}) + "\n")
  print(json.dumps({"accepted": verdict}))


if __name__ == "__main__":
  main()
