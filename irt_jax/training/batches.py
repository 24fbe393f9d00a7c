"""Training batches in two layouts, both as rows of [queries x models] + mask.

'blocks' (default): a batch is B query rows with all their models; the query
network runs once per query row, not once per (model, query) pair.
'pairs': a batch is B random observed (query, model) cells, as in the paper's
released code; each row holds one cell (one unmasked column), so the query
network runs once per pair with its own noise and dropout draw.

Both feed the same step. The last batch of a split is padded with masked rows,
never dropped.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Iterator

import numpy as np

from irt_jax.training import parallel
from irt_jax.data.io import Split
from irt_jax.utils import ConfigError


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


def observed_cells(split: Split) -> tuple[np.ndarray, np.ndarray]:
  """(split row, model column) of every observed cell, in row-major order."""
  return np.nonzero(split.mask)


def iterate_pairs(split: Split, embeddings: np.ndarray, cells_per_batch: int, *,
                  seed: int | None = None, epoch: int = 0, start: int = 0,
                  process_index: int = 0, process_count: int = 1
                  ) -> Iterator[dict[str, np.ndarray]]:
  """Batches of `cells_per_batch` observed cells in random order (one per row).

  `query_index` holds each cell's index in the split's cell list, so the
  noise and dropout draws are per pair (the released code's sampling), and
  still independent of how a batch is split over devices.
  """
  if cells_per_batch % process_count:
    raise ValueError(f"{cells_per_batch} cells per batch do not divide over "
                     f"{process_count} processes")
  rows, cols = observed_cells(split)
  order = epoch_order(len(rows), seed, epoch)
  total = math.ceil(len(rows) / cells_per_batch)
  padded = np.full(total * cells_per_batch, -1, np.int64)
  padded[:len(order)] = order
  per_process = cells_per_batch // process_count
  n_models = split.labels.shape[1]
  for i in range(start, total):
    cells = padded[i * cells_per_batch:(i + 1) * cells_per_batch]
    cells = cells[process_index * per_process:(process_index + 1) * per_process]
    pad = cells < 0
    safe = np.where(pad, 0, cells)
    r, c = rows[safe], cols[safe]
    mask = np.zeros((len(cells), n_models), bool)
    mask[np.arange(len(cells)), c] = ~pad
    labels = np.where(mask, split.labels[r], 0).astype(np.float32)
    emb = embeddings[split.queries[r]].astype(np.float32)
    emb[pad] = 0.0
    yield {"query_index": safe.astype(np.int32), "embeddings": emb, "labels": labels,
           "mask": mask}


@dataclasses.dataclass(frozen=True)
class Layout:
  """How a run cuts a split into global batches (`config.train.batching`)."""
  name: str            # 'blocks' or 'pairs'
  rows: int            # rows of one global batch (divides over every device)

  def n_batches(self, split: Split) -> int:
    if self.name == "pairs":
      return math.ceil(split.n_cells / self.rows)
    return n_blocks(split, self.rows)

  def iterate(self, split: Split, embeddings: np.ndarray, **kwargs):
    fn = iterate_pairs if self.name == "pairs" else iterate
    return fn(split, embeddings, self.rows, **kwargs)


LAYOUTS = ("blocks", "pairs")


def layout(name: str, batch_cells: int, n_models: int, n_devices: int) -> Layout:
  """About `batch_cells` cells per global batch, in whole query rows ('blocks')
  or as single cells ('pairs'); rows rounded up to a multiple of the devices."""
  if name not in LAYOUTS:
    raise ConfigError(f"config.train.batching={name!r}: expected one of {', '.join(LAYOUTS)}")
  if name == "pairs":
    return Layout(name, math.ceil(batch_cells / n_devices) * n_devices)
  return Layout(name, parallel.queries_per_batch(batch_cells, n_models, n_devices))
