r"""Fetches the paper's dataset from Hugging Face and makes it ready to train on.

  irt-jax download --dataset=irtnet --out=data/irtnet [--model_dir=.models/all-mpnet-base-v2]
  irt-jax download --dataset=llmrouter --out=data/llmrouter [--source_dir=LLMRouter]

`--dataset=llmrouter` is not downloaded ready-made: it is rebuilt from its upstream
repository at the pinned commit (`irt_jax.data.upstream`; `--source_dir` reads a local
copy of it instead of the network), giving the shared folder's files.

Downloads the dataset repository (huggingface_hub), finds the folder holding
`train.csv`, writes `model_order.csv` / `question_order.csv` from the split files
if the repository lacks them, and with --model_dir encodes the queries into
`question_embeddings.npy`. The download itself needs internet (untested on the
machines this project is built on); everything after it is tested on local files.
"""

from __future__ import annotations

import os

import numpy as np
import pandas as pd
from absl import logging

from irt_jax.data import io as data_lib

DATASETS = {"irtnet": "JianhaoNJU/IrtNet-Dataset", "embedllm": "RZ412/EmbedLLM"}
UPSTREAM = ("llmrouter",)  # rebuilt from the upstream repository (irt_jax.data.upstream)


def find_data_folder(root: str) -> str:
  """The shallowest folder under `root` that holds a train.csv."""
  hits = sorted((dirpath.count(os.sep), dirpath)
                for dirpath, _, files in os.walk(root) if "train.csv" in files)
  if not hits:
    raise data_lib.DataError(f"{root}: no train.csv anywhere in the download")
  return hits[0][1]


def write_index_files(folder: str) -> None:
  """Derives model_order.csv / question_order.csv from the splits when absent."""
  need_models = not os.path.exists(os.path.join(folder, "model_order.csv"))
  need_queries = not os.path.exists(os.path.join(folder, "question_order.csv"))
  if not (need_models or need_queries):
    return
  frames = [data_lib.read_table(os.path.join(folder, f"{s}.csv"), ["model_id", "prompt_id"],
                                "split")
            for s in data_lib.SPLITS if os.path.exists(os.path.join(folder, f"{s}.csv"))]
  rows = pd.concat(frames, ignore_index=True)
  if need_models:
    cols = ["model_id"] + (["model_name"] if "model_name" in rows.columns else [])
    models = rows[cols].drop_duplicates("model_id")
    models = models.iloc[np.argsort(_natural_keys(models["model_id"]), kind="stable")]
    models.to_csv(os.path.join(folder, "model_order.csv"), index=False)
    logging.info("wrote model_order.csv (%d models)", len(models))
  if need_queries:
    cols = ["prompt_id"] + [c for c in ("prompt", "category") if c in rows.columns]
    queries = rows[cols].drop_duplicates("prompt_id")
    queries = queries.iloc[np.argsort(_natural_keys(queries["prompt_id"]), kind="stable")]
    queries.to_csv(os.path.join(folder, "question_order.csv"), index=False)
    logging.info("wrote question_order.csv (%d queries)", len(queries))


def _natural_keys(ids: pd.Series) -> np.ndarray:
  """Integer order when every id is an integer, else string order."""
  numeric = pd.to_numeric(ids, errors="coerce")
  if numeric.notna().all():
    return numeric.to_numpy()
  return ids.to_numpy(dtype=str)


def prepare(root: str, model_dir: str | None = None, batch_size: int = 64) -> str:
  """Makes a downloaded snapshot loadable (and encoded, given an encoder folder);
  returns the data folder."""
  folder = find_data_folder(root)
  write_index_files(folder)
  if model_dir and not os.path.exists(os.path.join(folder, "question_embeddings.npy")):
    from irt_jax.data import encode  # heavy: only when text must be encoded
    encode.encode_question_order(folder, model_dir, batch_size=batch_size)
  return folder


def download(dataset: str, out: str) -> str:
  from huggingface_hub import snapshot_download  # only needed with internet
  if dataset not in DATASETS:
    raise data_lib.DataError(f"--dataset={dataset!r}: expected one of {sorted(DATASETS)}")
  return snapshot_download(repo_id=DATASETS[dataset], repo_type="dataset", local_dir=out)
