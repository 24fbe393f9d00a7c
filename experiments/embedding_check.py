r"""How close the JAX encoder's embeddings of a data folder's prompts are to the folder's own
(sentence-transformers, stored as float16): a sample of rows re-encoded and compared.

  python -m experiments.embedding_check --data_dir=../shared/data/llmrouter \
      --model_dir=.models/all-mpnet-base-v2 [--rows=256]
"""

import argparse
import json

import numpy as np

from irt_jax.data import io as data_lib
from irt_jax.encoder.sentence_encoder import load_encoder


def compare(ours: np.ndarray, stored: np.ndarray) -> dict:
  """Distance of float32 embeddings `ours` from `stored` (float16), in float16's own unit:
  half an ulp of the stored value is what rounding to float16 can move a value by."""
  ref = stored.astype(np.float32)
  diff = np.abs(ours - ref)
  half_ulp = np.abs(ref) * 2.0 ** -11 + 2.0 ** -25
  cos = (ours * ref).sum(1) / np.linalg.norm(ours, axis=1) / np.linalg.norm(ref, axis=1)
  return {"rows": int(len(ours)), "max_abs_diff": float(diff.max()),
          "max_diff_in_half_ulps": float((diff / half_ulp).max()),
          "share_within_half_ulp": float((diff <= half_ulp).mean()),
          "share_equal_as_float16": float((ours.astype(np.float16) == stored).mean()),
          "min_cosine": float(cos.min())}


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--data_dir", required=True)
  parser.add_argument("--model_dir", required=True)
  parser.add_argument("--rows", type=int, default=256, help="rows sampled evenly over the folder")
  args = parser.parse_args()
  _, prompts, _ = data_lib.read_question_order(f"{args.data_dir}/question_order.csv")
  stored = np.load(f"{args.data_dir}/question_embeddings.npy")
  rows = np.linspace(0, len(prompts) - 1, min(args.rows, len(prompts))).astype(int)
  ours = np.asarray(load_encoder(args.model_dir).encode([prompts[i] for i in rows]), np.float32)
  print(json.dumps(compare(ours, stored[rows])))


if __name__ == "__main__":
  main()
