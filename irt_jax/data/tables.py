"""Reading one CSV file of the layout strictly: a missing, unreadable, ragged or
empty file, a repeated or missing column, or a repeated id, is a DataError naming
the file. `io` builds the in-memory form from these tables.
"""

from __future__ import annotations

import csv
import os
from typing import Sequence

import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv

from irt_jax.errors import UserError


class DataError(UserError, ValueError):
  """Input data that cannot be used as it is; the message names file and problem."""


def _header(path: str) -> list[str]:
  """The header row (a UTF-8 BOM skipped); [] for an empty file."""
  with open(path, newline="", encoding="utf-8-sig") as f:
    return next(csv.reader(f), [])


def _ragged_line(path: str) -> str | None:
  """The first row whose field count differs from the header's, as a message
  (None if every row fits). Slow (Python's csv): only to explain a failed read."""
  with open(path, newline="", encoding="utf-8-sig") as f:
    rows = csv.reader(f)
    header = next(rows, [])
    for row in rows:
      if row and len(row) != len(header):
        return f"line {rows.line_num} has {len(row)} field(s) but the header has {len(header)}"
  return None


def read_table(path: str, required: Sequence[str], what: str, *,
               columns: Sequence[str] | None = None) -> pd.DataFrame:
  """A CSV as strings; a missing, unreadable or ragged file, a repeated or
  missing column, or no rows, is a DataError naming the file.

  Read with pyarrow's CSV reader (multi-threaded, quoted newlines allowed),
  which is strict where pandas is not: a row with more or fewer fields than the
  header is an error, where pandas would shift every column by one (rows one
  field longer become an index) or pad short rows with ''. `columns`, if given,
  are the only ones converted (others, such as a split's prompt text, are
  skipped without making a string per row).
  """
  if not os.path.exists(path):
    raise DataError(f"{path}: file not found ({what})")
  if not os.path.isfile(path):
    raise DataError(f"{path}: not a regular file ({what})")
  try:
    header = _header(path)
  except (UnicodeError, csv.Error, OSError) as e:
    raise DataError(f"{path}: cannot be parsed as UTF-8 CSV ({what}): {e}") from e
  if not header:
    raise DataError(f"{path}: is empty (no header row)")
  repeated = sorted({c for c in header if header.count(c) > 1})
  if repeated:
    raise DataError(f"{path}: header repeats column(s) {repeated}")
  missing = [c for c in required if c not in header]
  if missing:
    raise DataError(f"{path}: missing column(s) {missing}; found {header}")
  keep = [c for c in header if columns is None or c in columns]
  if not keep:
    raise DataError(f"{path}: none of the columns {list(columns)} is in its header {header}")
  try:
    table = pacsv.read_csv(
        path, parse_options=pacsv.ParseOptions(newlines_in_values=True),
        convert_options=pacsv.ConvertOptions(
            include_columns=keep, column_types={c: pa.string() for c in keep},
            strings_can_be_null=False, quoted_strings_can_be_null=False))
  except (pa.ArrowInvalid, OSError) as e:
    try:
      reason = _ragged_line(path)
    except (UnicodeError, csv.Error, OSError):
      reason = None
    detail = reason or str(e).splitlines()[0][:200]
    raise DataError(f"{path}: cannot be parsed as UTF-8 CSV ({what}): {detail}") from e
  frame = table.to_pandas()
  if frame.empty:
    raise DataError(f"{path}: has a header but no rows ({what} is empty)")
  return frame


def unique_index(ids: pd.Series, path: str, column: str) -> dict[str, int]:
  dup = ids[ids.duplicated()]
  if len(dup):
    raise DataError(f"{path}: column {column!r} repeats id(s) {list(dup[:5])}")
  return {v: i for i, v in enumerate(ids)}


def read_model_order(path: str) -> tuple[list[str], list[str]]:
  """Returns (model ids, model names) in row order."""
  frame = read_table(path, ["model_id"], "model index")
  names = frame["model_name"] if "model_name" in frame.columns else frame["model_id"]
  unique_index(frame["model_id"], path, "model_id")
  unique_index(names, path, "model_name")
  return list(frame["model_id"]), list(names)


def read_question_order(path: str) -> tuple[list[str], list[str] | None, list[str] | None]:
  """Returns (prompt ids, prompts or None, categories or None) in row order."""
  frame = read_table(path, ["prompt_id"], "query index")
  unique_index(frame["prompt_id"], path, "prompt_id")
  prompts = list(frame["prompt"]) if "prompt" in frame.columns else None
  categories = list(frame["category"]) if "category" in frame.columns else None
  return list(frame["prompt_id"]), prompts, categories
