"""Score tables: CSV, JSON lines, a JSON array of records, or Parquet, read with pyarrow.

Long tables have one row per answer: a model column, a prompt column (the query
text; a prompt id column is taken as the text when there is none), a label or
score column, and optionally a benchmark and a split column. Columns are found by
common names (`model`/`llm`/`llm_selected`, `prompt`/`question`/`query`,
`label`/`correct`/`score`, `benchmark`/`category`/`task`) unless the
`--*_column` flags name them; nested JSON objects are flattened to dotted names
(`evaluation_result.score`), and a name matches its last dotted part.
Wide tables have no model column: every other numeric or true/false column is one
model's score (a nested `scores: {model: score}` object flattens to such columns).
Cost, token, price, latency and id columns are never taken as models; a long
table's numeric `cost` (or `inference_cost`) column is kept: the cost of each answer.
String columns are kept as categoricals: a table of millions of rows holds one
copy of each distinct prompt.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.json as pajson
import pyarrow.parquet as pq

from irt_jax.data.io import DataError
from irt_jax.data.sources import rows as rows_lib

MODEL = ("model", "model_name", "llm", "llm_selected", "model_id")
PROMPT = ("prompt", "question", "query", "input", "prompt_text", "text")
PROMPT_ID = ("prompt_id", "question_id", "query_id", "id")
SCORE = ("label", "correct", "is_correct", "score", "accuracy", "acc")
BENCHMARK = ("benchmark", "category", "task", "task_name", "dataset")
COST = ("cost", "inference_cost", "cost_usd")
NOT_MODELS = ("cost", "token", "price", "latency", "time", "index", "_id", "split")


def read_arrow(path: str, kind: str) -> pa.Table:
  """The file as an arrow table with nested objects flattened to dotted columns."""
  try:
    if kind == "parquet":
      table = pq.read_table(path)
    elif kind == "csv":
      table = pacsv.read_csv(path, parse_options=pacsv.ParseOptions(newlines_in_values=True),
                             convert_options=pacsv.ConvertOptions(
                                 auto_dict_encode=True, auto_dict_max_cardinality=2**31 - 1))
    elif kind == "jsonl":
      table = _read_jsonl(path)
    else:
      with open(path, encoding="utf-8") as f:
        table = pa.Table.from_pylist(json.load(f))
  except (pa.ArrowInvalid, json.JSONDecodeError, UnicodeError, TypeError) as e:
    raise DataError(f"{path}: cannot be read as a {kind} table: {str(e).splitlines()[0][:200]}") from e
  while any(pa.types.is_struct(t) for t in table.schema.types):
    table = table.flatten()
  if table.num_rows == 0:
    raise DataError(f"{path}: the table has no rows")
  return table


def _read_jsonl(path: str) -> pa.Table:
  try:
    return pajson.read_json(path)
  except pa.ArrowInvalid:  # rows whose types differ: parse them one by one
    with open(path, encoding="utf-8") as f:
      return pa.Table.from_pylist([json.loads(line) for line in f if line.strip()])


def _find(columns: list[str], given: str | None, names: tuple[str, ...], path: str,
          what: str) -> str | None:
  if given:
    if given not in columns:
      raise DataError(f"{path}: no column {given!r} for the {what} (columns: {columns[:20]})")
    return given
  lower = {c.lower(): c for c in columns}
  last = {c.rsplit(".", 1)[-1].lower(): c for c in reversed(columns)}
  for name in names:
    for table in (lower, last):
      if name in table:
        return table[name]
  return None


def _strings(values: pd.Series) -> pd.Categorical:
  if isinstance(values.dtype, pd.CategoricalDtype):
    return values.cat.rename_categories(values.cat.categories.astype(str)).array
  return pd.Categorical(values.astype(str))


def _scores(values: pd.Series, path: str, what: str) -> np.ndarray:
  if pd.api.types.is_bool_dtype(values) or pd.api.types.is_numeric_dtype(values):
    return values.to_numpy(dtype=float, na_value=np.nan)
  codes, uniques = pd.factorize(values, use_na_sentinel=True)
  parsed = np.array([rows_lib.to_score(u, path, what) for u in uniques] + [np.nan])
  return parsed[codes]


def _is_model_column(name: str, series: pd.Series) -> bool:
  if any(word in name.lower() for word in NOT_MODELS):
    return False
  return pd.api.types.is_bool_dtype(series) or pd.api.types.is_numeric_dtype(series)


def read_table(path: str, kind: str, options) -> pd.DataFrame:
  data = read_arrow(path, kind).to_pandas()
  columns = list(data.columns)
  prompt = (_find(columns, options.prompt_column, PROMPT, path, "prompt text")
            or _find(columns, None, PROMPT_ID, path, "prompt id"))
  if prompt is None:
    raise DataError(f"{path}: no prompt column (looked for {list(PROMPT + PROMPT_ID)}); "
                    f"pass --prompt_column")
  benchmark = _find(columns, options.benchmark_column, BENCHMARK, path, "benchmark")
  model = _find(columns, options.model_column, MODEL, path, "model")
  base = {"prompt": _strings(data[prompt]),
          "benchmark": (_strings(data[benchmark]) if benchmark
                        else pd.Categorical([""] * len(data)))}
  if "split" in columns:
    base["split"] = _strings(data["split"])
  if model is not None:
    score = _find(columns, options.score_column, SCORE, path, "score")
    if score is None:
      raise DataError(f"{path}: no label or score column (looked for {list(SCORE)}); "
                      f"pass --score_column")
    out = pd.DataFrame({**base, "model": _strings(data[model]),
                        "score": _scores(data[score], path, f"column {score!r}")})
    cost = _find(columns, None, COST, path, "cost")
    if cost is not None and pd.api.types.is_numeric_dtype(data[cost]):
      out["cost"] = data[cost].to_numpy(dtype=float, na_value=np.nan)
  else:
    out = _melt(data, base, [prompt, benchmark], path)
  out["file"] = pd.Categorical.from_codes(np.zeros(len(out), np.int8), [path])
  return out


def _melt(data: pd.DataFrame, base: dict, used: list, path: str) -> pd.DataFrame:
  """A wide table's model columns as long rows (one per row and model)."""
  models = [c for c in data.columns if c not in used and _is_model_column(c, data[c])]
  if not models:
    raise DataError(f"{path}: no model column (looked for {list(MODEL)}) and no numeric "
                    f"column to read as one model's scores; pass --model_column")
  prefix = _common_prefix(models)
  names = [m[len(prefix):] for m in models]
  n = len(data)
  parts = {k: pd.Categorical.from_codes(np.tile(v.codes, len(models)), v.categories)
           for k, v in base.items()}
  parts["model"] = pd.Categorical.from_codes(np.repeat(np.arange(len(names)), n), names)
  parts["score"] = np.concatenate([_scores(data[m], path, f"column {m!r}") for m in models])
  return pd.DataFrame(parts)


def _common_prefix(columns: list[str]) -> str:
  """'scores.' when every model column is a flattened 'scores.<model>'."""
  heads = {c.split(".", 1)[0] for c in columns}
  if len(heads) == 1 and all("." in c for c in columns):
    return heads.pop() + "."
  return ""
