"""Leave-one-benchmark-out splits: train on every benchmark but B, predict B.

`leave_out(data, b)` returns a ResponseData whose train and val hold only other
benchmarks' cells, and B's cells (from every split: none of them is trained on)
as the target; training takes it as it is (`training.run(config, workdir, data)`):
the query table and embeddings stay whole and row-aligned (B's query texts are
what the model predicts from; only their labels are withheld).
`without_models(data, names)` is the leave-models-out subset.
"""

from __future__ import annotations

import dataclasses

import numpy as np

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


def without_models(data: data_lib.ResponseData, drop) -> data_lib.ResponseData:
  """`data` without some models' columns (leave-models-out trains on the rest).

  Every split loses the columns of `drop` and then the query rows with no known
  cell left, as loading a folder without those models' rows would give; queries,
  embeddings and benchmarks stay whole and row-aligned.
  """
  unknown = sorted(set(drop) - set(data.model_names))
  if unknown:
    raise data_lib.DataError(f"{data.name}: no model(s) {unknown} to leave out")
  keep = np.array([i for i, n in enumerate(data.model_names) if n not in set(drop)], np.int64)
  if not len(keep):
    raise data_lib.DataError(f"{data.name}: leaving out {len(drop)} model(s) leaves none")
  splits = {}
  for name, part in data.splits.items():
    labels = part.labels[:, keep]
    rows = (labels >= 0).any(axis=1)
    splits[name] = data_lib.Split(queries=part.queries[rows], labels=labels[rows])
  return dataclasses.replace(data, model_names=tuple(data.model_names[i] for i in keep),
                             splits=splits)
