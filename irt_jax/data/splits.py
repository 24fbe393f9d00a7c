"""Leave-one-benchmark-out splits: train on every benchmark but B, predict B.

`leave_out(data, b)` returns a ResponseData whose train and val hold only other
benchmarks' cells, and B's cells (from every split: none of them is trained on)
as the target. `write_folder` writes such a ResponseData in the compact CSV
layout, so the ordinary `training.train_and_evaluate` trains on it unchanged
(the query table and embeddings stay whole and row-aligned: B's query texts are
what the model predicts from; only their labels are withheld).
"""

from __future__ import annotations

import dataclasses
import os

import numpy as np
import pandas as pd

from irt_jax.data import io as data_lib

PROTOCOLS = ("ours", "paper")  # ours: other benchmarks' own train/val; paper: pooled, 90/10


def pooled_cells(data: data_lib.ResponseData, splits=None) -> data_lib.Split:
  """Every known cell of the given splits (default: all) as one dense split."""
  labels = np.full((data.n_queries, data.n_models), data_lib.UNKNOWN, np.int8)
  for name in splits or data.splits:
    part = data.split(name)
    rows, cols = np.nonzero(part.mask)
    labels[part.queries[rows], cols] = part.labels[rows, cols]
  keep = np.flatnonzero((labels >= 0).any(axis=1)).astype(np.int32)
  return data_lib.Split(queries=keep, labels=labels[keep])


def restrict(part: data_lib.Split, keep_rows: np.ndarray) -> data_lib.Split:
  return data_lib.Split(queries=part.queries[keep_rows], labels=part.labels[keep_rows])


def without_benchmark(part: data_lib.Split, benchmark: np.ndarray, b: int) -> data_lib.Split:
  return restrict(part, benchmark[part.queries] != b)


def random_cell_split(part: data_lib.Split, val_fraction: float,
                      seed: int) -> tuple[data_lib.Split, data_lib.Split]:
  """The paper's row split: known cells (query, model) drawn at random into val."""
  rng = np.random.default_rng(seed)
  to_val = part.mask & (rng.random(part.labels.shape) < val_fraction)
  train = np.where(to_val, data_lib.UNKNOWN, part.labels).astype(np.int8)
  val = np.where(to_val, part.labels, data_lib.UNKNOWN).astype(np.int8)
  keep_t, keep_v = (train >= 0).any(1), (val >= 0).any(1)
  return (data_lib.Split(part.queries[keep_t], train[keep_t]),
          data_lib.Split(part.queries[keep_v], val[keep_v]))


def leave_out(data: data_lib.ResponseData, b: int, protocol: str = "ours",
              seed: int = 0) -> tuple[data_lib.ResponseData, data_lib.Split]:
  """(training data without benchmark b, b's cells from every split).

  protocol 'ours': train/val are the other benchmarks' own train/val cells (their
  test cells stay unused); 'paper' (IrtNet's benchmark_prediction.py): every split
  of the other benchmarks pooled, then a random 90/10 split of cells.
  """
  if protocol not in PROTOCOLS:
    raise ValueError(f"benchmark-prediction protocol {protocol!r}: use one of {PROTOCOLS}")
  if not 0 <= b < len(data.benchmark_names):
    raise ValueError(f"benchmark index {b} out of range for {data.name!r} "
                     f"({len(data.benchmark_names)} benchmarks)")
  everything = pooled_cells(data)
  target = restrict(everything, data.benchmark[everything.queries] == b)
  if protocol == "ours":
    splits = {name: without_benchmark(data.split(name), data.benchmark, b)
              for name in ("train", "val")}
  else:
    train, val = random_cell_split(without_benchmark(everything, data.benchmark, b), 0.1, seed)
    splits = {"train": train, "val": val}
  for name, part in splits.items():
    if part.n_cells == 0:
      raise data_lib.DataError(f"{data.name}: without benchmark "
                               f"{data.benchmark_names[b]!r} the {name} split is empty")
  return dataclasses.replace(data, splits=splits), target


def write_folder(data: data_lib.ResponseData, folder: str, source_dir: str | None = None,
                 embeddings_file: str = "question_embeddings.npy") -> str:
  """Writes `data` in the compact layout (its splits only) for train_and_evaluate.

  Embeddings are linked from `source_dir` when it holds them (same rows, as the
  query table is written whole and in order), else saved. Files are written
  aside and renamed, so a folder with train.csv is complete.
  """
  os.makedirs(folder, exist_ok=True)
  names = np.asarray(data.model_names, dtype=object)
  categories = np.asarray(data.benchmark_names, dtype=object)[data.benchmark]
  ids = np.asarray(data.query_ids, dtype=object)
  tables = {"model_order.csv": pd.DataFrame({"model_id": np.arange(data.n_models),
                                             "model_name": names}),
            "question_order.csv": pd.DataFrame({"prompt_id": ids, "category": categories})}
  for name, part in data.splits.items():
    rows, cols = np.nonzero(part.mask)
    q = part.queries[rows]
    tables[f"{name}.csv"] = pd.DataFrame({
        "prompt_id": ids[q], "model_id": cols, "category": categories[q],
        "label": part.labels[rows, cols], "model_name": names[cols]})
  source = os.path.join(source_dir, embeddings_file) if source_dir else None
  target = os.path.join(folder, embeddings_file)
  if not os.path.exists(target):
    if source and os.path.exists(source):
      os.symlink(os.path.abspath(source), target)
    else:
      np.save(f"{target}.tmp.npy", data.embeddings.astype(np.float32))
      os.replace(f"{target}.tmp.npy", target)
  for name in sorted(tables, key=lambda n: n == "train.csv"):  # train.csv last
    tables[name].to_csv(f"{os.path.join(folder, name)}.tmp", index=False)
    os.replace(f"{os.path.join(folder, name)}.tmp", os.path.join(folder, name))
  return folder
