"""Writes a joined matrix as a data folder in the EmbedLLM/IrtNet CSV layout (compact form).

`train.csv`, `val.csv`, `test.csv` (`prompt_id, model_id, category, label, score,
model_name`, sorted by (prompt_id, model_id)), `model_order.csv`,
`question_order.csv` (`prompt_id, prompt, category`), formatted as pandas' `to_csv`
formats them (the shared folders' files), fields quoted only where needed; and
`costs.csv` (`prompt_id, model_id, cost`, for cost-aware routing) when the sources
gave costs.
`summary(...)` is the report printed after a build.
"""

from __future__ import annotations

import csv
import io
import os

import numpy as np
import pandas as pd

from irt_jax.data.assemble import Matrix
from irt_jax.data.io import SPLITS


CHUNK_ROWS = 1 << 19


def field(value: str) -> str:
  """One CSV field as Python's csv module (and pandas' to_csv) writes it: quoted only
  when it holds a comma, a quote or a line break."""
  if value == "":
    return ""
  buf = io.StringIO()
  csv.writer(buf, lineterminator="\n").writerow([value])
  return buf.getvalue()[:-1]


def _strings(values) -> np.ndarray:
  return np.array(list(values), dtype=object)


def _write_lines(path: str, header: str, parts) -> None:
  """Writes `header` and one line per row, a row being the concatenation of `parts`
  (object arrays of equal length), a chunk of rows at a time."""
  n = len(parts[0])
  with open(path, "w", encoding="utf-8", newline="") as f:
    f.write(header + "\n")
    for lo in range(0, n, CHUNK_ROWS):
      line = parts[0][lo:lo + CHUNK_ROWS]
      for part in parts[1:]:
        line = line + part[lo:lo + CHUNK_ROWS]
      f.write("\n".join(line.tolist()) + ("\n" if len(line) else ""))


def write_csvs(matrix: Matrix, split: np.ndarray, folder: str) -> None:
  """The five CSV files of the layout into `folder` (which must exist), byte for byte
  as pandas' `to_csv(index=False)` would write them, in a fraction of its time: every
  distinct string and score is formatted once, rows are joined from those pieces."""
  n, k = len(matrix.prompts), len(matrix.models)
  names = _strings(field(m) for m in matrix.models)
  cats = _strings(field(c) for c in matrix.categories)
  _write_lines(os.path.join(folder, "model_order.csv"), "model_id,model_name",
               [_strings(f"{j}," for j in range(k)), names])
  _write_lines(os.path.join(folder, "question_order.csv"), "prompt_id,prompt,category",
               [_strings(f"{i}," for i in range(n)), _strings(field(p) + "," for p in matrix.prompts),
                cats])
  score_code, scores = pd.factorize(matrix.score)
  label_score = _strings(f"{lab},{float(s)!r}," for lab in (0, 1) for s in scores)
  pieces = [_strings(f"{i}," for i in range(n)), _strings(f"{j}," for j in range(k)),
            _strings(c + "," for c in cats), label_score, names]
  cell_split = split[matrix.cell_prompt]
  for i, name in enumerate(SPLITS):
    rows = np.flatnonzero(cell_split == i)
    p, m = matrix.cell_prompt[rows], matrix.cell_model[rows]
    ls = matrix.label[rows].astype(np.int64) * len(scores) + score_code[rows]
    _write_lines(os.path.join(folder, f"{name}.csv"),
                 "prompt_id,model_id,category,label,score,model_name",
                 [pieces[0][p], pieces[1][m], pieces[2][p], pieces[3][ls], pieces[4][m]])
  if matrix.cost is not None:
    rows = np.flatnonzero(~np.isnan(matrix.cost))
    pd.DataFrame({"prompt_id": matrix.cell_prompt[rows], "model_id": matrix.cell_model[rows],
                  "cost": matrix.cost[rows]}).to_csv(os.path.join(folder, "costs.csv"), index=False)


def summary(matrix: Matrix, split: np.ndarray, folder: str) -> str:
  """Models x queries, known share, cells per split, per-benchmark counts, per-model accuracy."""
  n, k = len(matrix.prompts), len(matrix.models)
  known = len(matrix.label)
  lines = [f"{folder}: {k} models x {n} queries, {known} of {n * k} cells known "
           f"({100 * known / (n * k):.1f}%)"]
  cell_split = split[matrix.cell_prompt]
  lines.append("splits: " + ", ".join(
      f"{name} {int((split == i).sum())} queries / {int((cell_split == i).sum())} cells"
      for i, name in enumerate(SPLITS)))
  lines.append("per benchmark (queries, cells, accuracy):")
  bench, names = pd.factorize(matrix.categories, sort=True)
  queries = np.bincount(bench, minlength=len(names))
  cell_bench = bench[matrix.cell_prompt]
  cells = np.bincount(cell_bench, minlength=len(names))
  right = np.bincount(cell_bench, weights=matrix.label, minlength=len(names))
  for i, name in enumerate(names):
    lines.append(f"  {name}: {int(queries[i])} queries, {int(cells[i])} cells, "
                 f"{100 * right[i] / max(cells[i], 1):.1f}%")
  lines.append("per model (cells, accuracy):")
  counts = np.bincount(matrix.cell_model, minlength=k)
  right = np.bincount(matrix.cell_model, weights=matrix.label, minlength=k)
  for i, name in enumerate(matrix.models):
    lines.append(f"  {name}: {int(counts[i])} cells, {100 * right[i] / max(counts[i], 1):.1f}%")
  return "\n".join(lines)
