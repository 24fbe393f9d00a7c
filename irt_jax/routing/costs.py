"""What calling each LLM costs, so a router can trade quality for money.

Three sources, in order of preference (`for_data_dir` picks the first present):

  * `costs.csv` (`prompt_id, model_id, cost`): the measured cost of each
    (query, model) call, in whatever unit the file uses (e.g. USD);
  * `model_prices.csv` (`model_name, input_price_per_mtok,
    output_price_per_mtok`): USD per million input / output tokens. A query's
    cost is input_tokens * input_price + output_tokens * output_price (/1e6).
    Input tokens are counted with a local tokenizer (e.g. all-MiniLM-L6-v2's
    WordPiece, loaded with transformers' AutoTokenizer, local files only): an
    approximation, since each LLM has its own tokenizer. Without one, the
    common rule of thumb of 4 characters per token is used. The data holds no
    response lengths, so every answer is assumed to be OUTPUT_TOKENS long;
  * parameter count as a proxy (billions, parsed from names like "7b" /
    "8x7B" / "70B", or the prices file's `size` column): not money, but the
    convention of published cold-start routers on data that has no prices.

Arrays come back in the run's model order: [M] per model, or [N, M] per
(query, model). Bad input (an unknown model, a negative or NaN cost, a model
with no price) is a DataError naming the file, the row and the problem.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import os
import re
from collections.abc import Mapping
from typing import Sequence

import numpy as np
import pandas as pd

from irt_jax.data import io as data_lib
from irt_jax.data.io import DataError
from irt_jax.numerics import non_negative

PRICES_FILE = "model_prices.csv"
COSTS_FILE = "costs.csv"
# Assumed answer length (tokens) when pricing by tokens: the data has no
# response lengths. With equal input and output prices (llmrouter's) it only
# scales every cost by the same factor per query.
OUTPUT_TOKENS = 256
CHARS_PER_TOKEN = 4  # fallback token count: ceil(len(text) / 4)
# The tokenizer evaluation counts with when none is named and this folder exists: the
# checkout's .models/ (where `python -m irt_jax fetch-encoder` puts it), found from this
# file, not the working directory, so a price does not depend on where a tool runs.
DEFAULT_TOKENIZER = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
                                 ".models", "all-MiniLM-L6-v2")


@dataclasses.dataclass(frozen=True)
class Costs:
  """Costs in the run's model order and where they came from."""
  values: np.ndarray      # float64 [M] or [N, M]
  source: str             # 'costs.csv' | 'model_prices.csv' | 'parameter count'
  unit: str               # 'USD' or 'B params'
  note: str = ""          # assumptions (tokenizer, output tokens)

  def per_model(self) -> np.ndarray:
    """[M]: the mean over queries of an [N, M] table (NaN cells skipped)."""
    if self.values.ndim == 1:
      return self.values
    return np.nanmean(self.values, axis=0)


def _number(frame: pd.DataFrame, column: str, path: str) -> np.ndarray:
  values = pd.to_numeric(frame[column].str.strip(), errors="coerce").to_numpy(np.float64)
  bad = ~np.isfinite(values) | (values < 0)
  if bad.any():
    i = int(np.flatnonzero(bad)[0])
    raise DataError(f"{path}: row {i + 2}: {column} must be a finite number >= 0, got "
                    f"{frame[column].iloc[i]!r}")
  return values


@dataclasses.dataclass(frozen=True)
class Prices:
  """USD per million tokens, one entry per model in the run's order."""
  input_per_mtok: np.ndarray    # [M]
  output_per_mtok: np.ndarray   # [M]
  size_b: np.ndarray            # [M] billions of parameters (NaN where unknown)


def read_prices(path: str, model_names: Sequence[str]) -> Prices:
  """Reads model_prices.csv for `model_names`; every model must have a row."""
  frame = data_lib.read_table(
      path, ["model_name", "input_price_per_mtok", "output_price_per_mtok"], "model prices")
  names = frame["model_name"].str.strip()
  dup = names[names.duplicated()]
  if len(dup):
    raise DataError(f"{path}: model_name {dup.iloc[0]!r} appears twice")
  inp = _number(frame, "input_price_per_mtok", path)
  out = _number(frame, "output_price_per_mtok", path)
  row = {n: i for i, n in enumerate(names)}
  missing = [m for m in model_names if m not in row]
  if missing:
    raise DataError(f"{path}: no price for model(s) {missing[:5]} "
                    f"({len(missing)} of {len(model_names)}); it lists {list(names)[:5]}...")
  idx = np.array([row[m] for m in model_names])
  if "size" in frame.columns:
    size = np.array([parse_size(s) for s in frame["size"]])[idx]
  else:
    size = np.full(len(model_names), np.nan)
  return Prices(input_per_mtok=inp[idx], output_per_mtok=out[idx], size_b=size)


def token_counts(texts: Sequence[str], tokenizer_dir: str | None = None) -> np.ndarray:
  """Input tokens per text: a local tokenizer's count (no special tokens, no
  truncation), or ceil(chars / 4) when `tokenizer_dir` is None."""
  if tokenizer_dir is None:
    return np.array([math.ceil(len(t) / CHARS_PER_TOKEN) for t in texts], np.int64)
  ids = _tokenizer(str(tokenizer_dir))(list(texts), add_special_tokens=False, truncation=False, verbose=False)["input_ids"]
  return np.array([len(x) for x in ids], np.int64)


@functools.lru_cache(maxsize=4)
def _tokenizer(tokenizer_dir: str):
  """A local tokenizer, loaded once per folder (a router prices every call)."""
  from irt_jax.encoder import hf
  AutoTokenizer = hf.transformers().AutoTokenizer
  try:
    return AutoTokenizer.from_pretrained(tokenizer_dir, local_files_only=True)
  except Exception as e:  # transformers raises OSError/ValueError/... for a bad folder
    raise DataError(f"{tokenizer_dir}: cannot load a tokenizer ({type(e).__name__}: {e})") from e


def token_costs(prices: Prices, input_tokens: np.ndarray,
                output_tokens: float = OUTPUT_TOKENS) -> np.ndarray:
  """USD per (query, model): [N, M] from input token counts [N]."""
  tokens = np.asarray(input_tokens, np.float64)[:, None]
  return (tokens * prices.input_per_mtok[None, :]
          + float(output_tokens) * prices.output_per_mtok[None, :]) / 1e6


def read_costs(path: str, query_ids: Sequence[str], model_ids: Sequence[str],
               model_names: Sequence[str]) -> np.ndarray:
  """costs.csv -> [N, M] (NaN where the file has no row). `model_id` may be a
  model's id (model_order.csv) or its name."""
  frame = data_lib.read_table(path, ["prompt_id", "model_id", "cost"], "per-query costs")
  values = _number(frame, "cost", path)
  by_key = {m: j for j, m in enumerate(model_names)}
  by_key.update({m: j for j, m in enumerate(model_ids)})
  qrow = {q: i for i, q in enumerate(query_ids)}
  mcol = frame["model_id"].map(by_key)
  if mcol.isna().any():
    i = int(np.flatnonzero(mcol.isna())[0])
    raise DataError(f"{path}: row {i + 2} names model {frame['model_id'].iloc[i]!r}, which is "
                    f"not one of this run's models {list(model_names)[:5]}...")
  qr = frame["prompt_id"].map(qrow)
  if qr.isna().any():
    i = int(np.flatnonzero(qr.isna())[0])
    raise DataError(f"{path}: row {i + 2} names prompt_id {frame['prompt_id'].iloc[i]!r}, "
                    f"which is not in question_order.csv")
  table = np.full((len(query_ids), len(model_names)), np.nan)
  table[qr.to_numpy(np.int64), mcol.to_numpy(np.int64)] = values
  return table


_SIZE = re.compile(r"(?:(\d+)\s*x\s*)?(\d+(?:\.\d+)?)\s*([bBmM])(?![a-zA-Z])")


def parse_size(text: str) -> float:
  """Billions of parameters in a name or size field ('7B', 'llama-3-70b',
  'Mixtral-8x7B' -> 56, '350m' -> 0.35); NaN when none is given."""
  hits = list(_SIZE.finditer(str(text)))
  if not hits:
    return float("nan")
  mult, num, unit = hits[-1].groups()
  size = float(num) * (int(mult) if mult else 1)
  return size / 1000.0 if unit in "mM" else size


def parameter_costs(model_names: Sequence[str], sizes: np.ndarray | None = None) -> np.ndarray:
  """[M] billions of parameters (a proxy for cost), from `sizes` where given,
  else parsed from the names; a model with neither is a DataError."""
  parsed = np.array([parse_size(m) for m in model_names])
  if sizes is not None:
    parsed = np.where(np.isfinite(sizes), sizes, parsed)
  missing = [m for m, s in zip(model_names, parsed) if not np.isfinite(s)]
  if missing:
    raise DataError(f"no parameter count in the name of model(s) {missing[:5]} "
                    f"({len(missing)} of {len(model_names)}); give {PRICES_FILE} or "
                    f"{COSTS_FILE} instead")
  return parsed


def default_tokenizer() -> str | None:
  """DEFAULT_TOKENIZER when that folder exists here, else None (chars/4)."""
  return DEFAULT_TOKENIZER if os.path.isdir(DEFAULT_TOKENIZER) else None


def check_costs(costs, model_names: Sequence[str] | int, n: int | None = None, *,
                where: str = "costs", missing_ok: bool = False) -> np.ndarray:
  """Costs as float64 [M] (per model) or [n, M] (per query and model), checked.

  The one check behind the Router, the command line, the service and
  evaluation. `costs`: an array, a `Costs`, or a mapping model name -> cost
  (every model of `model_names`, no other; it becomes [M]). `model_names` may be
  a count where no mapping can come. `n`, when known, is the number of queries
  a per-query table must have. `missing_ok` lets NaN through (cells a sparse
  data set has no cost for, which evaluation never chooses). Errors are
  DataErrors that start with `where` (a file name when the costs came from one).
  """
  if isinstance(costs, Costs):
    costs = costs.values
  m = model_names if isinstance(model_names, int) else len(model_names)
  if isinstance(costs, Mapping):
    costs = _costs_by_name(costs, model_names, where)
  try:
    arr = np.asarray(costs, np.float64)
  except (TypeError, ValueError) as e:
    raise DataError(f"{where}: costs must be numbers: {e}") from None
  if arr.ndim not in (1, 2) or arr.shape[-1] != m:
    raise DataError(f"{where}: cost of shape {arr.shape} does not fit {m} models: give [{m}] "
                    f"(per model) or [queries, {m}] (per query and model)")
  if arr.ndim == 2 and n is not None and arr.shape[0] != n:
    raise DataError(f"{where}: per-query costs have {arr.shape[0]} rows for {n} queries")
  values = arr[~np.isnan(arr)] if missing_ok else arr
  if not np.isfinite(values).all() or (values < 0).any():
    raise DataError(f"{where}: costs must be finite numbers >= 0")
  return arr


def _costs_by_name(costs: Mapping, model_names, where: str) -> list[float]:
  """[M] from a mapping model name -> cost, each value checked by its name."""
  if isinstance(model_names, int):
    raise DataError(f"{where}: a mapping model name -> cost needs the model names")
  for name, value in costs.items():
    try:
      non_negative(value, f"{where}: cost of {name!r}")
    except ValueError as e:
      raise DataError(str(e)) from None
  unknown = sorted(set(costs) - set(model_names))
  if unknown:
    raise DataError(f"{where}: unknown model(s) {unknown[:5]}; the run's models are "
                    f"{', '.join(model_names)}")
  missing = [k for k in model_names if k not in costs]
  if missing:
    raise DataError(f"{where}: no cost for model(s) {missing[:5]}; every one of the run's "
                    f"{len(model_names)} models needs one")
  return [float(costs[k]) for k in model_names]


def read_json_costs(path: str, model_names: Sequence[str]) -> np.ndarray:
  """[M] from a JSON object model name -> cost per query (every model, no other)."""
  import json
  try:
    with open(path, encoding="utf-8") as f:
      obj = json.load(f)
  except (OSError, ValueError) as e:
    raise DataError(f"{path}: cannot read costs: {e}") from None
  if not isinstance(obj, dict):
    raise DataError(f"{path}: costs must be a JSON object model name -> number")
  return check_costs(obj, model_names, where=path)


def for_routing(path: str, model_names: Sequence[str], *, tokenizer_dir: str | None = None,
                output_tokens: float = OUTPUT_TOKENS):
  """Costs for routing new text, from a file given by the user:

  * `*.json`: model name -> cost per query, any unit -> [M];
  * a `model_prices.csv` layout: a function texts -> [N, M] USD, each text
    priced by its input tokens (`tokenizer_dir`, else chars/4) plus
    `output_tokens` assumed per answer, as evaluation prices the data.
  """
  if path.lower().endswith(".json"):
    return read_json_costs(path, model_names)
  prices = read_prices(path, model_names)

  def price(texts: Sequence[str]) -> np.ndarray:
    return token_costs(prices, token_counts(texts, tokenizer_dir), output_tokens)
  return price


def available(data_dir: str) -> str | None:
  """Which cost file a data folder has (costs.csv first), or None."""
  for name in (COSTS_FILE, PRICES_FILE):
    if os.path.exists(os.path.join(data_dir, name)):
      return name
  return None


def for_data_dir(data_dir: str, model_names: Sequence[str], query_ids: Sequence[str],
                 texts: Sequence[str] | None, *, tokenizer_dir: str | None = None,
                 output_tokens: float = OUTPUT_TOKENS, proxy: bool = False) -> Costs | None:
  """[N, M] costs for all queries of a data folder, from its costs.csv or
  model_prices.csv; with `proxy`, parameter counts [M] where it has neither.
  None when there is nothing to price with."""
  costs_path = os.path.join(data_dir, COSTS_FILE)
  prices_path = os.path.join(data_dir, PRICES_FILE)
  if os.path.exists(costs_path):
    model_ids, names = data_lib.read_model_order(os.path.join(data_dir, "model_order.csv"))
    ids = [model_ids[names.index(m)] if m in names else m for m in model_names]
    return Costs(read_costs(costs_path, query_ids, ids, model_names), COSTS_FILE, "USD")
  if os.path.exists(prices_path):
    prices = read_prices(prices_path, model_names)
    if texts is None:
      raise DataError(f"{data_dir}: pricing by tokens needs the prompt text "
                      f"(question_order.csv has no prompt column)")
    counter = f"{os.path.basename(os.path.normpath(tokenizer_dir))} tokenizer" if (
        tokenizer_dir) else f"chars/{CHARS_PER_TOKEN}"
    note = f"input tokens by {counter}; {output_tokens:g} output tokens per answer (assumed)"
    return Costs(token_costs(prices, token_counts(texts, tokenizer_dir), output_tokens),
                 PRICES_FILE, "USD", note)
  if proxy:
    return Costs(parameter_costs(model_names), "parameter count", "B params",
                 "a proxy: parameters, not money")
  return None
