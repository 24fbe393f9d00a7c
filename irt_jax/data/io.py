"""Response matrices: read the EmbedLLM/IrtNet CSV layout into one in-memory form.

Every consumer (training, evaluation, routing) reads `ResponseData`; nothing
downstream knows which file layout it came from. Unknown cells of a sparse
matrix are stored as -1 and masked everywhere, never read as 0.

Two layouts are accepted:
  * compact (../shared/data/*): split rows `prompt_id, model_id, category, label,
    score, model_name`, prompt text only in `question_order.csv`;
  * full (the paper's Hugging Face datasets): split rows also carry `prompt`.
Ids may be integers or strings; they are matched as strings against
`model_order.csv` and `question_order.csv`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
from typing import Mapping, Sequence

import numpy as np
import pandas as pd
from absl import logging

from irt_jax.data.tables import DataError  # noqa: F401  (io.DataError, its home for callers)
from irt_jax.data.tables import read_model_order, read_question_order, read_table  # noqa: F401

SPLITS = ("train", "val", "test")
UNKNOWN = -1  # label value of a cell whose answer is not known

# The paper maps its 80 categories onto 10 benchmarks by substring.
IRTNET_BENCHMARKS = ("asdiv", "mmlu", "gpqa", "truthfulqa", "logiqa", "medmcqa",
                     "mathqa", "piqa", "social_iqa", "gsm8k")


@dataclasses.dataclass(frozen=True)
class Split:
  """The cells of one split: rows of the query table and their labels."""
  queries: np.ndarray  # int32 [n]: row indices into ResponseData.embeddings
  labels: np.ndarray   # int8 [n, M]: 1 correct, 0 wrong, -1 unknown

  @property
  def mask(self) -> np.ndarray:
    return self.labels >= 0

  @property
  def n_cells(self) -> int:
    return int(self.mask.sum())


@dataclasses.dataclass(frozen=True)
class ResponseData:
  """One response matrix: who answered what, query embeddings, benchmarks."""
  name: str
  model_names: tuple[str, ...]
  query_ids: tuple[str, ...]
  prompts: tuple[str, ...] | None
  embeddings: np.ndarray        # float32 [N, D], row i = query_ids[i]
  benchmark: np.ndarray         # int32 [N]: index into benchmark_names
  benchmark_names: tuple[str, ...]
  splits: Mapping[str, Split]

  @property
  def n_models(self) -> int:
    return len(self.model_names)

  @property
  def n_queries(self) -> int:
    return len(self.query_ids)

  @property
  def embed_dim(self) -> int:
    return int(self.embeddings.shape[1])

  def split(self, name: str) -> Split:
    if name not in self.splits:
      raise DataError(f"dataset {self.name!r} has no {name!r} split "
                      f"(it has: {', '.join(self.splits)})")
    return self.splits[name]

  def index_maps(self) -> dict:
    """What a checkpoint must remember to interpret its parameters."""
    return {"dataset": self.name, "model_names": list(self.model_names),
            "benchmark_names": list(self.benchmark_names),
            "embed_dim": self.embed_dim}


# ----------------------------------------------------------------------------
def _codes(column: pd.Series) -> tuple[np.ndarray, np.ndarray]:
  """(per-row codes, distinct strings) of a column: lookups and checks then run once
  per distinct value (a paper-sized split has 4M rows but 112 model ids)."""
  codes, values = pd.factorize(column.to_numpy(dtype=object))
  return codes, values


def _parse_labels(frame: pd.DataFrame, path: str) -> np.ndarray:
  codes, values = _codes(frame["label"])
  raw = pd.Series(values, dtype=str).str.strip().str.lower().replace({"true": "1", "false": "0"})
  parsed = pd.to_numeric(raw, errors="coerce").to_numpy(dtype=np.float64)
  bad_value = ~np.isfinite(parsed) | ((parsed != 0) & (parsed != 1))
  bad = bad_value[codes]
  if bad.any():
    first = int(np.flatnonzero(bad)[0])
    raise DataError(f"{path}: label must be 0 or 1; row {first + 2} has "
                    f"{values[codes[first]]!r} ({int(bad.sum())} bad row(s))")
  return np.nan_to_num(parsed).astype(np.int8)[codes]


def _lookup(ids: pd.Series, index: Mapping[str, int], path: str, column: str,
            index_file: str) -> np.ndarray:
  codes, values = _codes(ids)
  rows_of_value = np.array([index.get(v, -1) for v in values], np.int64)
  rows = rows_of_value[codes]
  unknown = rows < 0
  if unknown.any():
    examples = list(dict.fromkeys(values[codes[unknown]]))[:5]
    raise DataError(f"{path}: {int(unknown.sum())} row(s) name a {column} that is not in "
                    f"{index_file}, e.g. {examples}")
  return rows


def _last_per_query(queries: np.ndarray, column: pd.Series) -> dict[int, str]:
  """{query row: the column's value on its last split row} (one value per query)."""
  uniq, first_from_end = np.unique(queries[::-1], return_index=True)
  last = len(queries) - 1 - first_from_end
  return dict(zip(uniq.tolist(), column.iloc[last].astype(str).tolist()))


def read_split(path: str, model_index: Mapping[str, int], model_names: Sequence[str],
               query_index: Mapping[str, int], *, model_file: str,
               query_file: str, need_text: bool = True
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray, pd.DataFrame]:
  """Reads one split file into (query rows, model columns, labels, frame).

  Only the columns this reader uses are kept: `prompt` and `category` only when
  `need_text` (question_order.csv lacks them); `score` never.
  """
  wanted = ["prompt_id", "model_id", "label", "model_name"]
  frame = read_table(path, wanted[:3], "split",
                     columns=wanted + (["category", "prompt"] if need_text else []))
  labels = _parse_labels(frame, path)
  models = _lookup(frame["model_id"], model_index, path, "model_id", model_file)
  if "model_name" in frame.columns:
    name_index = {n: i for i, n in enumerate(model_names)}
    named = _lookup_or_missing(frame["model_name"], name_index)
    wrong = named != models
    if wrong.any():
      i = int(np.flatnonzero(wrong)[0])
      raise DataError(f"{path}: row {i + 2} gives model_id {frame['model_id'].iloc[i]!r} the "
                      f"name {frame['model_name'].iloc[i]!r}, but {model_file} calls it "
                      f"{model_names[models[i]]!r}")
  queries = _lookup(frame["prompt_id"], query_index, path, "prompt_id", query_file)
  return queries, models, labels, frame


def _lookup_or_missing(ids: pd.Series, index: Mapping[str, int]) -> np.ndarray:
  codes, values = _codes(ids)
  return np.array([index.get(v, -1) for v in values], np.int64)[codes]


def majority_vote(keys: np.ndarray, labels: np.ndarray):
  """The layout's rule for duplicate answers: one label per distinct key, 1 when at
  least half of its labels are 1 (majority, ties correct). Returns (distinct keys,
  each row's index into them, answers per key, merged int8 labels)."""
  uniq, inverse = np.unique(keys, return_inverse=True)
  counts = np.bincount(inverse, minlength=len(uniq))
  votes = np.bincount(inverse, weights=labels, minlength=len(uniq))
  return uniq, inverse, counts, (2 * votes >= counts).astype(np.int8)


def merge_cells(queries: np.ndarray, models: np.ndarray, labels: np.ndarray,
                n_models: int) -> Split:
  """Dense split from cell lists; duplicate cells by majority vote, ties correct."""
  key = queries.astype(np.int64) * n_models + models
  uniq, _, _, merged = majority_vote(key, labels)
  cell_query, cell_model = uniq // n_models, uniq % n_models
  rows, row_of_cell = np.unique(cell_query, return_inverse=True)
  dense = np.full((len(rows), n_models), UNKNOWN, np.int8)
  dense[row_of_cell, cell_model] = merged
  return Split(queries=rows.astype(np.int32), labels=dense)


def map_benchmarks(categories: Sequence[str], benchmarks: str | Sequence[str] | None,
                   source: str) -> tuple[np.ndarray, tuple[str, ...]]:
  """Benchmark index per query: the category itself, or the first listed substring in it.

  `benchmarks` is '' (category = benchmark), 'irtnet' (the paper's 10 names) or a
  comma-separated list / sequence of substrings.
  """
  if isinstance(benchmarks, str):
    benchmarks = IRTNET_BENCHMARKS if benchmarks == "irtnet" else [
        b.strip() for b in benchmarks.split(",") if b.strip()]
  if not benchmarks:
    names = tuple(sorted(set(categories)))
    lookup = {n: i for i, n in enumerate(names)}
    return np.array([lookup[c] for c in categories], np.int32), names
  names = tuple(benchmarks)
  mapped = {}
  for cat in set(categories):
    hit = [i for i, b in enumerate(names) if b.lower() in cat.lower()]
    mapped[cat] = hit[0] if hit else -1
  unmatched = sorted(c for c, i in mapped.items() if i < 0)
  if unmatched:
    raise DataError(f"{source}: categories {unmatched[:10]} match none of the benchmark "
                    f"names {list(names)}")
  return np.array([mapped[c] for c in categories], np.int32), names


def load_embeddings(path: str, n_rows: int, index_file: str) -> np.ndarray:
  """Reads an [N, D] float array, refusing pickles, NaN and a wrong shape.

  The file is memory-mapped first, so a header that promises more data than the
  file holds (truncated, or absurd shapes) is refused before anything is allocated.
  """
  if not os.path.exists(path):
    raise DataError(f"{path}: file not found (query embeddings)")
  if not os.path.isfile(path):
    raise DataError(f"{path}: not a regular file (query embeddings)")
  try:
    mapped = np.load(path, allow_pickle=False, mmap_mode="r")
  except ValueError as e:
    raise DataError(f"{path}: not a plain numeric .npy array (pickled objects are "
                    f"refused): {e}") from e
  except (OSError, EOFError) as e:
    raise DataError(f"{path}: cannot be read as .npy: {e}") from e
  if not isinstance(mapped, np.ndarray):  # an .npz archive under an .npy name
    getattr(mapped, "close", lambda: None)()
    raise DataError(f"{path}: not a .npy array file (got {type(mapped).__name__}); save "
                    f"the embeddings with numpy.save")
  if mapped.ndim != 2 or not np.issubdtype(mapped.dtype, np.floating) or mapped.shape[1] == 0:
    raise DataError(f"{path}: expected a 2-D float array with at least one column, got "
                    f"shape {mapped.shape} dtype {mapped.dtype}")
  if mapped.shape[0] != n_rows:
    raise DataError(f"{path}: has {mapped.shape[0]} rows but {index_file} lists "
                    f"{n_rows} queries; they must be aligned row by row")
  array = np.array(mapped, dtype=np.float32)
  del mapped
  bad = ~np.isfinite(array).all(axis=1)
  if bad.any():
    raise DataError(f"{path}: {int(bad.sum())} row(s) hold NaN or infinity, "
                    f"first at row {int(np.flatnonzero(bad)[0])}")
  return array


def load_dataset(data_dir: str, *, benchmarks: str | Sequence[str] | None = "",
                 embeddings_file: str = "question_embeddings.npy",
                 embeddings_cache: str | None = None,
                 splits: Sequence[str] = SPLITS,
                 require: Sequence[str] = ("train", "val")) -> ResponseData:
  """Reads a dataset folder in either CSV layout.

  Embeddings come from `data_dir/embeddings_file`, else from `embeddings_cache`
  (where `irt_jax.data.encode` wrote them for a text-only folder that is read-only).
  """
  model_file = os.path.join(data_dir, "model_order.csv")
  query_file = os.path.join(data_dir, "question_order.csv")
  model_ids, model_names = read_model_order(model_file)
  query_ids, prompts, categories = read_question_order(query_file)
  model_index = {m: i for i, m in enumerate(model_ids)}
  query_index = {q: i for i, q in enumerate(query_ids)}

  result, row_categories, row_prompts = {}, {}, {}
  for name in splits:
    path = os.path.join(data_dir, f"{name}.csv")
    if not os.path.exists(path) and name not in require:
      continue
    q, m, y, frame = read_split(path, model_index, model_names, query_index,
                                model_file=model_file, query_file=query_file,
                                need_text=prompts is None or categories is None)
    result[name] = merge_cells(q, m, y, len(model_ids))
    if categories is None and "category" in frame.columns:
      row_categories.update(_last_per_query(q, frame["category"]))
    if prompts is None and "prompt" in frame.columns:
      row_prompts.update(_last_per_query(q, frame["prompt"]))
  _check_disjoint(result, data_dir)

  if categories is None:
    categories = [row_categories.get(i, "unknown") for i in range(len(query_ids))]
  if prompts is None and row_prompts:
    prompts = [row_prompts.get(i, "") for i in range(len(query_ids))]
  benchmark, benchmark_names = map_benchmarks(categories, benchmarks, query_file)

  emb_path = os.path.join(data_dir, embeddings_file)
  if not os.path.exists(emb_path) and embeddings_cache and os.path.exists(embeddings_cache):
    emb_path = embeddings_cache
  if not os.path.exists(emb_path):
    raise DataError(f"{emb_path}: file not found (query embeddings); run "
                    f"`python -m irt_jax encode --data_dir={data_dir} --model_dir=...` or "
                    f"set --config.encoder.model_dir to encode the prompts")
  embeddings = load_embeddings(emb_path, len(query_ids), query_file)

  return ResponseData(
      name=os.path.basename(os.path.normpath(data_dir)),
      model_names=tuple(model_names), query_ids=tuple(query_ids),
      prompts=tuple(prompts) if prompts is not None else None,
      embeddings=embeddings, benchmark=benchmark, benchmark_names=benchmark_names,
      splits=result)


def _check_disjoint(splits: Mapping[str, Split], data_dir: str) -> None:
  """A (query, model) cell in two splits would leak labels: refuse it.

  Queries shared between splits (with different models) are allowed but logged,
  since the paper's protocol splits by query.
  """
  names = list(splits)
  for i, a in enumerate(names):
    for b in names[i + 1:]:
      shared, ia, ib = np.intersect1d(splits[a].queries, splits[b].queries,
                                      return_indices=True)
      if not len(shared):
        continue
      both = splits[a].mask[ia] & splits[b].mask[ib]
      if both.any():
        raise DataError(f"{data_dir}: {int(both.sum())} (query, model) cell(s) appear in both "
                        f"{a}.csv and {b}.csv, e.g. query row {int(shared[both.any(1)][0])}")
      logging.warning("%s: %d queries appear in both %s.csv and %s.csv (different models)",
                      data_dir, len(shared), a, b)


def _digest(*parts) -> str:
  h = hashlib.sha256()
  for part in parts:
    if isinstance(part, np.ndarray):
      h.update(f"{part.dtype.str}{part.shape}".encode())
      h.update(np.ascontiguousarray(part).tobytes())
    else:
      h.update(repr(part).encode("utf-8"))
  return h.hexdigest()[:16]


def fingerprint(data: ResponseData) -> dict[str, str]:
  """sha256 (16 hex digits) of each part of the loaded data a trained run depends
  on: comparing two fingerprints says which part changed. Taken over the arrays
  as loaded, so it covers every layout and the generated synthetic data alike."""
  out = {"models": _digest(data.model_names), "queries": _digest(data.query_ids),
         "embeddings": _digest(data.embeddings),
         "benchmarks": _digest(data.benchmark_names, data.benchmark)}
  for name, split in data.splits.items():
    out[f"{name} split"] = _digest(split.queries, split.labels)
  return out


def describe(data: ResponseData) -> str:
  parts = [f"{k}: {v.n_cells} cells / {len(v.queries)} queries" for k, v in data.splits.items()]
  return (f"{data.name}: {data.n_models} models x {data.n_queries} queries, "
          f"{len(data.benchmark_names)} benchmarks, embeddings {data.embeddings.shape}; "
          + "; ".join(parts))

