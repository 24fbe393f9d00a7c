"""The rows every source reader returns, and the options they share.

A rows frame has one row per answer: `model`, `prompt` (the query text), `score`
(float; NaN where the source has no score for that answer), `benchmark`, `file`
(the source file, for error messages) and optionally `split` (train / val / test,
when the source gives one). String columns may be pandas categoricals (tables of
millions of rows keep one copy of each distinct string).
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pandas as pd

from irt_jax.data.io import DataError

COLUMNS = ("model", "prompt", "score", "benchmark", "file")
SPLIT_NAMES = ("train", "val", "test")

# inspect_ai's letter grades (its value_to_float): correct, incorrect, partial, no answer.
GRADES = {"C": 1.0, "I": 0.0, "P": 0.5, "N": 0.0}


@dataclasses.dataclass(frozen=True)
class Options:
  """What the user told the build about the sources (flags of the build command)."""
  metric: str | None = None        # lm-eval metric / inspect scorer / HELM stat name
  lm_eval_filter: str | None = None  # lm-eval filter; default 'none' or the first in the file
  model: str | None = None         # overrides the model name of every source
  benchmark: str | None = None     # benchmark of sources that name none (irt_jax.data.assemble)
  model_column: str | None = None  # tables: column names, found by common names when unset
  prompt_column: str | None = None
  score_column: str | None = None
  benchmark_column: str | None = None


def to_score(value, file: str, what: str) -> float:
  """A per-answer score as a float: numbers, booleans, numeric strings and inspect's
  letter grades; None is NaN (no score). Anything else is a DataError naming the file."""
  if value is None:
    return math.nan
  if isinstance(value, bool):
    return float(value)
  if isinstance(value, (int, float)):
    return float(value)
  if isinstance(value, str):
    text = value.strip()
    if text in GRADES:
      return GRADES[text]
    if text.lower() in ("true", "false"):
      return float(text.lower() == "true")
    try:
      return float(text)
    except ValueError:
      pass
  raise DataError(f"{file}: {what} is {str(value)[:60]!r}, not a per-answer score (a number, "
                  f"true/false or a C/I/P/N grade); pick another with --metric")


def frame(records: list[dict], file: str) -> pd.DataFrame:
  """Rows from a list of {model, prompt, score, benchmark} dicts of one file."""
  out = pd.DataFrame.from_records(records, columns=list(COLUMNS[:4]))
  out["score"] = out["score"].astype(float)
  out["file"] = file
  return out


def apply_overrides(rows: pd.DataFrame, options: Options) -> pd.DataFrame:
  """`--model` names the model of every source (logs that name none, or a wrong one)."""
  if options.model:
    rows = rows.assign(model=pd.Categorical.from_codes(np.zeros(len(rows), np.int8),
                                                       [options.model]))
  return rows
