"""Writes a joined matrix as a data folder in the EmbedLLM/IrtNet CSV layout (compact form).

`train.csv`, `val.csv`, `test.csv` (`prompt_id, model_id, category, label, score,
model_name`, sorted by (prompt_id, model_id)), `model_order.csv`,
`question_order.csv` (`prompt_id, prompt, category`), written with pyarrow's CSV
writer (quoted text with newlines reads back through `irt_jax.data.io`).
`summary(...)` is the report printed after a build.
"""

from __future__ import annotations

import os

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from irt_jax.data.assemble import Matrix
from irt_jax.data.io import SPLITS


def _write(table: pa.Table, path: str) -> None:
  pacsv.write_csv(table, path, write_options=pacsv.WriteOptions(quoting_style="needed"))


def write_csvs(matrix: Matrix, split: np.ndarray, folder: str) -> None:
  """The five CSV files of the layout into `folder` (which must exist)."""
  models = pa.array(matrix.models.tolist(), pa.string())
  categories = pa.array(matrix.categories.tolist(), pa.string())
  _write(pa.table({"model_id": np.arange(len(models)), "model_name": models}),
         os.path.join(folder, "model_order.csv"))
  _write(pa.table({"prompt_id": np.arange(len(matrix.prompts)),
                   "prompt": pa.array(matrix.prompts.tolist(), pa.string()),
                   "category": categories}),
         os.path.join(folder, "question_order.csv"))
  cell_split = split[matrix.cell_prompt]
  for i, name in enumerate(SPLITS):
    rows = np.flatnonzero(cell_split == i)
    p, m = matrix.cell_prompt[rows], matrix.cell_model[rows]
    _write(pa.table({"prompt_id": p, "model_id": m,
                     "category": pc.take(categories, pa.array(p)),
                     "label": matrix.label[rows], "score": matrix.score[rows],
                     "model_name": pc.take(models, pa.array(m))}),
           os.path.join(folder, f"{name}.csv"))


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
