"""Joins the rows of several evaluation sources into one response matrix with a query split.

The layout's rules (the shared data folders were built by them):
  * a query is a prompt text: the same text (character for character) from two
    logs is one query; a model is a name, with `org__name` (how lm-eval names
    folders) read as `org/name`;
  * a score becomes a label: 0/1 (and true/false, C/I) as they are; any other
    score needs a threshold (label = score >= threshold), else it is an error;
  * repeated answers of one model to one query (epochs, repeated runs, several
    logs) are merged: label 1 when the mean of their labels is >= 0.5 (majority,
    ties correct), score the mean score, benchmark the first seen, cost (when a
    table gives one) the mean of the given costs;
  * prompts sorted by text (Python string order) get ids 0..N-1, models sorted by
    name 0..M-1; cells a model did not answer stay unknown (no row);
  * split by query: the sources' own `split` column when every row has one, else
    `numpy.random.default_rng([20261122, sum of the code points of the folder
    name]).permutation(N)`, the first N // 10 test, the next N // 10 val, the
    rest train.

Every step is a vectorised pass over integer codes (a 4-million-row table joins
in seconds); strings are touched once per distinct value.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd

from irt_jax.data.io import SPLITS, DataError, majority_vote

SEED = 20261122
MIN_QUERIES = 10  # N // 10 must leave at least one query in val and in test


@dataclasses.dataclass(frozen=True)
class Matrix:
  """Known cells sorted by (prompt id, model id), and the two index tables."""
  prompts: np.ndarray      # object [N], sorted
  categories: np.ndarray   # object [N], benchmark of each prompt
  models: np.ndarray       # object [M], sorted
  cell_prompt: np.ndarray  # int64 [C]
  cell_model: np.ndarray   # int64 [C]
  label: np.ndarray        # int8 [C]
  score: np.ndarray        # float64 [C]
  given_split: np.ndarray | None  # int8 [N] index into SPLITS, when the sources gave one
  cost: np.ndarray | None = None  # float64 [C]: mean cost of the cell's answers (NaN: none given)


def normalise_model(name: str) -> str:
  return str(name).strip().replace("__", "/")


def _categorical(column: pd.Series) -> pd.Categorical:
  if isinstance(column.dtype, pd.CategoricalDtype):
    return column.array
  return pd.Categorical(column.astype(object).where(column.notna(), None))


def global_codes(frames: list[pd.DataFrame], column: str, clean) -> tuple[np.ndarray, np.ndarray]:
  """(codes of every row over all frames, sorted distinct cleaned values); rows whose
  value is missing or cleans to '' get -1."""
  local = []
  for f in frames:
    cat = _categorical(f[column])
    values = np.array([clean(v) for v in cat.categories], dtype=object)
    local.append((np.asarray(cat.codes), values))
  distinct = np.unique(np.concatenate([v for _, v in local] + [np.array([""], object)]))
  distinct = distinct[distinct != ""]
  index = pd.Index(distinct)
  codes = []
  for c, values in local:
    lookup = np.append(index.get_indexer(values), -1)  # code -1 (missing) -> the appended -1
    codes.append(lookup[c])
  return np.concatenate(codes).astype(np.int64), distinct


def labels(scores: np.ndarray, file_of_row: np.ndarray, files: np.ndarray,
           threshold: float | None) -> np.ndarray:
  """0/1 labels; fractional scores without a threshold are an error naming the file."""
  if threshold is not None:
    return (scores >= threshold).astype(np.int8)
  fractional = (scores != 0) & (scores != 1)
  if fractional.any():
    i = int(np.flatnonzero(fractional)[0])
    raise DataError(f"{files[file_of_row[i]]}: scores are not 0/1 (e.g. {scores[i]:g}); pass "
                    f"--threshold=T to count score >= T as correct")
  return scores.astype(np.int8)


def _given_split(frames: list[pd.DataFrame], prompt_codes: np.ndarray, n: int) -> np.ndarray | None:
  has = [("split" in f.columns) for f in frames]
  if not any(has):
    return None
  if not all(has):
    missing = next(f["file"].iloc[0] for f, h in zip(frames, has) if not h)
    raise DataError(f"{missing}: has no split column while other inputs have one; give a "
                    f"split for every row or for none")
  codes, names = global_codes(frames, "split", lambda v: str(v).strip().lower())
  bad = [s for s in names if s not in SPLITS]
  if bad or (codes < 0).any():
    raise DataError(f"split column: values must be {list(SPLITS)}, found {bad or ['(empty)']}")
  split_of_row = np.array([SPLITS.index(s) for s in names], np.int8)[codes]
  valid = prompt_codes >= 0
  out = np.full(n, -1, np.int8)
  out[prompt_codes[valid][::-1]] = split_of_row[valid][::-1]  # the first seen wins
  return out


def join(frames: list[pd.DataFrame], threshold: float | None = None,
         default_benchmark: str = "unknown") -> Matrix:
  """One matrix from the rows of every source (see the module docstring for the rules)."""
  p, prompts = global_codes(frames, "prompt", str)
  m, models = global_codes(frames, "model", normalise_model)
  b, benchmarks = global_codes(frames, "benchmark", lambda v: str(v).strip())
  file_of_row, files = global_codes(frames, "file", str)
  scores = np.concatenate([f["score"].to_numpy(dtype=float) for f in frames])
  costs = np.concatenate([f["cost"].to_numpy(dtype=float) if "cost" in f.columns
                          else np.full(len(f), np.nan) for f in frames])
  keep = (p >= 0) & (m >= 0) & ~np.isnan(scores)
  given = _given_split(frames, p, len(prompts))
  p, m, b, scores, costs = p[keep], m[keep], b[keep], scores[keep], costs[keep]
  file_of_row = file_of_row[keep]
  if len(models) < 2 or len(np.unique(m)) < 2:
    raise DataError(f"{', '.join(files[:3]) or 'inputs'}: scores of "
                    f"{len(np.unique(m))} model(s) only ({', '.join(models[:1])}); a router "
                    f"needs answers of two or more models: add their logs")
  y = labels(scores, file_of_row, files, threshold)
  used_p, p = np.unique(p, return_inverse=True)
  used_m, m = np.unique(m, return_inverse=True)
  n_models = len(used_m)
  key = p * n_models + m
  cells, inverse, counts, label = majority_vote(key, y)
  mean_score = np.bincount(inverse, weights=scores) / counts
  _, first = np.unique(p, return_index=True)
  names = np.append(benchmarks, default_benchmark).astype(object)
  categories = names[np.where(b[first] >= 0, b[first], len(benchmarks))]
  return Matrix(prompts=prompts[used_p], categories=categories, models=models[used_m],
                cell_prompt=cells // n_models, cell_model=cells % n_models,
                label=label, score=mean_score,
                given_split=None if given is None else given[used_p],
                cost=_mean_cost(costs, inverse, len(cells)))


def _mean_cost(costs: np.ndarray, inverse: np.ndarray, n_cells: int) -> np.ndarray | None:
  """Per cell, the mean of its answers' given costs (NaN when none); None without costs."""
  given = ~np.isnan(costs)
  if not given.any():
    return None
  total = np.bincount(inverse, weights=np.where(given, costs, 0.0), minlength=n_cells)
  count = np.bincount(inverse, weights=given, minlength=n_cells)
  with np.errstate(invalid="ignore", divide="ignore"):
    return np.where(count > 0, total / np.maximum(count, 1), np.nan)


def split_of_queries(matrix: Matrix, name: str) -> np.ndarray:
  """int8 [N]: 0 train, 1 val, 2 test (indices into SPLITS)."""
  n = len(matrix.prompts)
  if matrix.given_split is not None:
    empty = [SPLITS[i] for i in (0, 1) if not (matrix.given_split == i).any()]
    if empty:
      raise DataError(f"split column: no query is in {empty}; train and val need queries")
    return matrix.given_split
  if n < MIN_QUERIES:
    raise DataError(f"only {n} distinct queries in the inputs; a train/val/test split needs "
                    f"at least {MIN_QUERIES}: add more evaluation items")
  order = np.random.default_rng([SEED, sum(map(ord, name))]).permutation(n)
  out = np.zeros(n, np.int8)
  out[order[:n // 10]] = 2
  out[order[n // 10:2 * (n // 10)]] = 1
  return out
