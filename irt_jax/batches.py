"""Query blocks: a batch is B query rows with all their models and a mask.

The query network then runs once per query row, not once per (model, query)
pair. The last block of a split is padded with masked rows, never dropped.
"""

from __future__ import annotations

import math
from typing import Iterator

import numpy as np

from irt_jax.data import Split


def block(split: Split, embeddings: np.ndarray, positions: np.ndarray) -> dict[str, np.ndarray]:
  """Arrays for split rows `positions` (-1 = padding row, fully masked)."""
  pad = positions < 0
  safe = np.where(pad, 0, positions)
  labels = split.labels[safe]
  mask = (labels >= 0) & ~pad[:, None]
  query_index = split.queries[safe]
  emb = embeddings[query_index]
  emb[pad] = 0.0
  return {"query_index": query_index.astype(np.int32),
          "embeddings": emb.astype(np.float32),
          "labels": np.where(mask, labels, 0).astype(np.float32),
          "mask": mask}


def n_blocks(split: Split, rows_per_block: int) -> int:
  return math.ceil(len(split.queries) / rows_per_block)


def epoch_order(n_rows: int, seed: int | None, epoch: int) -> np.ndarray:
  """Row order of one epoch: a permutation fixed by (seed, epoch), or as stored."""
  if seed is None:
    return np.arange(n_rows)
  return np.random.default_rng([seed, epoch]).permutation(n_rows)


def iterate(split: Split, embeddings: np.ndarray, rows_per_block: int, *,
            seed: int | None = None, epoch: int = 0, start: int = 0,
            process_index: int = 0, process_count: int = 1) -> Iterator[dict[str, np.ndarray]]:
  """Blocks of a split from block `start` on; each process gets its own rows.

  `rows_per_block` is the global block size; it must divide by process_count.
  """
  if rows_per_block % process_count:
    raise ValueError(f"{rows_per_block} rows per block do not divide over "
                     f"{process_count} processes")
  order = epoch_order(len(split.queries), seed, epoch)
  total = n_blocks(split, rows_per_block)
  padded = np.full(total * rows_per_block, -1, np.int64)
  padded[:len(order)] = order
  per_process = rows_per_block // process_count
  for i in range(start, total):
    rows = padded[i * rows_per_block:(i + 1) * rows_per_block]
    yield block(split, embeddings, rows[process_index * per_process:(process_index + 1) * per_process])
