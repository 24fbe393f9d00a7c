r"""A generated dataset of the paper's size in the full CSV layout, for load benchmarks.

The IrtNet dataset (112 LLMs x 35,673 queries, 10 benchmarks) cannot be
downloaded here, so this writes a stand-in of the same shape and file layout:
every split row carries the prompt text (`prompt_id, model_id, category, label,
score, model_name, prompt`), as in the Hugging Face files, about 4 million rows
and 1.8 GB. Labels are drawn from a known IRT model whose item parameters are
functions of the embeddings (``truth``: a_q = A e_q, b_q = w . e_q, theta_m ~ N(0, I),
P = sigmoid(a_q . theta_m - b_q)), written to ``truth.npz``, so that a model trained
on the folder can be scored on how well it recovers the generated difficulties.

  .venv/bin/python -m experiments.bench.paper_data --out=runs/paper_data [--scale=0.1]
"""

from __future__ import annotations

import argparse
import json
import os

import numpy as np

N_MODELS, N_QUERIES, EMBED_DIM = 112, 35_673, 768
BENCHMARKS = ("asdiv", "mmlu", "gpqa", "truthfulqa", "logiqa", "medmcqa", "mathqa", "piqa",
              "social_iqa", "gsm8k")
WORDS = ("the", "model", "answer", "which", "of", "following", "is", "correct", "question",
         "value", "\"quoted\"", "a, b", "number", "solve", "for", "x", "if", "then", "why")


def _prompt(rng: np.random.Generator) -> str:
  """About 450 characters of words, with commas, quotes and a newline (CSV quoting)."""
  words = rng.choice(WORDS, size=int(rng.integers(40, 110)))
  return " ".join(words[:10]) + "\n" + " ".join(words[10:])


def _quote(text: str) -> str:
  return '"' + text.replace('"', '""') + '"'


TRUTH_DIM = 8  # ability dimensions of the generating model


def truth(emb: np.ndarray, n_models: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
  """A known IRT model over the embeddings: discriminations and difficulties are linear
  in e_q (learnable from the embeddings, as the paper assumes), abilities are N(0, I);
  scaled so that difficulties spread over about +-2 logits and 60% of cells are correct."""
  dim = emb.shape[1]
  # e_q has unit norm, so e_q . w ~ N(0, 1) for w ~ N(0, I)
  a = emb @ rng.normal(size=(dim, TRUTH_DIM)) * 1.5 / np.sqrt(TRUTH_DIM)
  b = emb @ rng.normal(size=dim) * 1.2 - 0.5
  theta = rng.normal(size=(n_models, TRUTH_DIM))
  p = 1 / (1 + np.exp(-(a @ theta.T - b[:, None])))
  return {"a": a.astype(np.float32), "b": b.astype(np.float32),
          "theta": theta.astype(np.float32), "p": p.astype(np.float32)}


def write(out: str, scale: float = 1.0, seed: int = 0) -> dict:
  """Writes the folder (skipped when `out/spec.json` already records the same request)."""
  n_queries = max(30, int(round(N_QUERIES * scale)))
  spec = {"n_models": N_MODELS, "n_queries": n_queries, "seed": seed, "version": 2}
  spec_path = os.path.join(out, "spec.json")
  if os.path.exists(spec_path):
    with open(spec_path) as f:
      if json.load(f) == spec:
        return spec
  os.makedirs(out, exist_ok=True)
  rng = np.random.default_rng(seed)
  model_names = [f"llm-{i:03d}" for i in range(N_MODELS)]
  prompts = [_prompt(rng) for _ in range(n_queries)]
  categories = [f"{BENCHMARKS[i % len(BENCHMARKS)]}_{i % 8}" for i in range(n_queries)]
  with open(os.path.join(out, "model_order.csv"), "w") as f:
    f.write("model_id,model_name\n")
    f.writelines(f"{i},{n}\n" for i, n in enumerate(model_names))
  with open(os.path.join(out, "question_order.csv"), "w") as f:
    f.write("prompt_id,prompt,category\n")
    f.writelines(f"{i},{_quote(p)},{c}\n" for i, (p, c) in enumerate(zip(prompts, categories)))
  emb = rng.normal(size=(n_queries, EMBED_DIM)).astype(np.float32)
  emb /= np.linalg.norm(emb, axis=1, keepdims=True)
  np.save(os.path.join(out, "question_embeddings.npy"), emb.astype(np.float16))
  split_of = rng.choice(3, size=n_queries, p=(0.8, 0.1, 0.1))
  true = truth(emb, N_MODELS, rng)
  labels = rng.random((n_queries, N_MODELS)) < true["p"]
  np.savez(os.path.join(out, "truth.npz"), split=split_of, **true)
  for s, name in enumerate(("train", "val", "test")):
    with open(os.path.join(out, f"{name}.csv"), "w") as f:
      f.write("prompt_id,model_id,category,label,score,model_name,prompt\n")
      for q in np.flatnonzero(split_of == s):
        tail = f"{_quote(prompts[q])}\n"
        lab = labels[q]
        f.writelines(f"{q},{m},{categories[q]},{int(lab[m])},{float(lab[m])},"
                     f"{model_names[m]},{tail}" for m in range(N_MODELS))
  with open(spec_path, "w") as f:
    json.dump(spec, f)
  return spec


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--out", default="runs/paper_data")
  parser.add_argument("--scale", type=float, default=1.0, help="fraction of the 35,673 queries")
  parser.add_argument("--seed", type=int, default=0)
  args = parser.parse_args()
  print(write(args.out, args.scale, args.seed))


if __name__ == "__main__":
  main()
