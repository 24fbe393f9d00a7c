"""Synthetic response matrices with known ground truth, in the compact CSV layout.

The truth is an IRT model of the same form as IrtNet's, so training can be
checked for recovering it: model families share skill profiles, benchmarks
differ in difficulty and in which skills they test, and each query's true
discrimination a_q and difficulty b_q are nonlinear functions of its embedding.
"""

from __future__ import annotations

import dataclasses
import os

import numpy as np
import pandas as pd

TRUTH_FILE = "truth.npz"


@dataclasses.dataclass(frozen=True)
class SyntheticSpec:
  """The generator's shape. No defaults here: `configs/common.py`
  (`data.synthetic`) is their one home."""
  n_models: int
  n_families: int
  n_queries: int
  n_benchmarks: int
  embed_dim: int
  true_dim: int
  missing_frac: float
  seed: int


def _normalise(x: np.ndarray) -> np.ndarray:
  return x / np.linalg.norm(x, axis=-1, keepdims=True)


def generate(spec: SyntheticSpec) -> dict:
  """Draws a response matrix and its truth; returns arrays (no files)."""
  rng = np.random.default_rng(spec.seed)
  n, m, k, d, e = (spec.n_queries, spec.n_models, spec.n_benchmarks, spec.true_dim,
                   spec.embed_dim)
  latent = 12
  benchmark = rng.integers(0, k, size=n)
  centres = rng.normal(size=(k, e))
  mixing = rng.normal(size=(latent, e)) / np.sqrt(latent)
  z = rng.normal(size=(n, latent))
  embeddings = _normalise(_normalise(centres)[benchmark] + 0.8 * _normalise(z @ mixing))

  # Truth as a nonlinear function of the embedding: a random tanh feature layer.
  feats = np.tanh(1.5 * embeddings @ rng.normal(size=(e, 32)))
  bench_offset = np.linspace(-1.5, 1.5, k)[rng.permutation(k)]
  b = bench_offset[benchmark] + feats @ rng.normal(size=32) * 0.25
  skill_mix = rng.normal(size=(k, d)) * 1.2          # what each benchmark tests
  a = np.log1p(np.exp(skill_mix[benchmark] + feats @ rng.normal(size=(32, d)) * 0.2))

  family = np.arange(m) % spec.n_families
  family_mean = rng.normal(size=(spec.n_families, d)) * 0.8
  theta = family_mean[family] + 0.35 * rng.normal(size=(m, d))
  theta -= theta.mean(axis=0)  # IRT is identified only up to a shift of abilities
  logits = a @ theta.T - b[:, None]
  labels = (rng.random((n, m)) < 1.0 / (1.0 + np.exp(-logits))).astype(np.int8)
  if spec.missing_frac > 0:
    labels[rng.random((n, m)) < spec.missing_frac] = -1

  split = np.zeros(n, np.int8)
  order = rng.permutation(n)
  split[order[int(0.8 * n):int(0.9 * n)]] = 1
  split[order[int(0.9 * n):]] = 2
  return dict(embeddings=embeddings.astype(np.float32), benchmark=benchmark, a=a, b=b,
              theta=theta, difficulty=b, logits=logits, labels=labels, split=split,
              family=family)


def write(out_dir: str, spec: SyntheticSpec) -> str:
  """Writes the compact layout plus `truth.npz`; returns out_dir."""
  os.makedirs(out_dir, exist_ok=True)
  t = generate(spec)
  n, m = t["labels"].shape
  model_names = [f"family{f}-model{i}" for i, f in enumerate(t["family"])]
  categories = [f"bench{j}" for j in t["benchmark"]]
  pd.DataFrame({"model_id": range(m), "model_name": model_names}).to_csv(
      os.path.join(out_dir, "model_order.csv"), index=False)
  pd.DataFrame({"prompt_id": range(n),
                "prompt": [f"synthetic query {q} of {c}" for q, c in enumerate(categories)],
                "category": categories}).to_csv(
                    os.path.join(out_dir, "question_order.csv"), index=False)
  q, mm = np.nonzero(t["labels"] >= 0)
  cells = pd.DataFrame({"prompt_id": q, "model_id": mm,
                        "category": np.asarray(categories)[q],
                        "label": t["labels"][q, mm],
                        "score": t["labels"][q, mm].astype(float),
                        "model_name": np.asarray(model_names)[mm]})
  for code, name in enumerate(("train", "val", "test")):
    cells[t["split"][q] == code].to_csv(os.path.join(out_dir, f"{name}.csv"), index=False)
  np.save(os.path.join(out_dir, "question_embeddings.npy"), t["embeddings"])
  np.savez(os.path.join(out_dir, TRUTH_FILE), **{k: t[k] for k in (
      "a", "b", "theta", "difficulty", "benchmark", "split", "family")})
  return out_dir


def load_truth(data_dir: str) -> dict:
  with np.load(os.path.join(data_dir, TRUTH_FILE), allow_pickle=False) as f:
    return {k: f[k] for k in f.files}
