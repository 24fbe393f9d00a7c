"""Finds the sources under the given paths and reads each with its reader, by content.

A file's format is decided by its bytes, never its extension: a zip holding
`header.json` is an inspect_ai `.eval` log, `PAR1` a Parquet table, a JSON
document with `eval` and `samples` an inspect_ai `.json` log, one with `results`
and `configs` an lm-eval results file (read with its samples), JSON lines with
`doc_id` and `doc` lm-eval samples, other JSON lines or a JSON array of records a
table, and comma- or tab-separated text a CSV table. A folder holding
`run_spec.json` is a HELM run. Inside folders, hidden files and notes (README,
SOURCE, LICENSE, *.md, *.txt) are passed over.
"""

from __future__ import annotations

import json
import os

import pandas as pd

from irt_jax.data.io import DataError
from irt_jax.data.sources import helm, inspect_logs, lm_eval, table
from irt_jax.data.sources.rows import apply_overrides

HEAD_BYTES = 1 << 16
_NOTES = ("readme", "source", "license", "licence", "notice")
_HELM_PARTS = {"scenario_state.json", "per_instance_stats.json", "run_spec.json", "stats.json",
               "scenario.json", "instances.json", "display_predictions.json",
               "display_requests.json"}
UNKNOWN = ("not a table (CSV, JSON lines, JSON records, Parquet), lm-eval samples, an "
           "inspect_ai log or a HELM run folder; remove it or convert it to a long CSV "
           "with columns model,prompt,score")


def _first_json_line(text: str):
  line = text.lstrip("\ufeff").lstrip().split("\n", 1)[0]
  try:
    return json.loads(line)
  except json.JSONDecodeError:
    return None


def _whole_json(path: str):
  try:
    with open(path, encoding="utf-8") as f:
      return json.load(f)
  except (json.JSONDecodeError, UnicodeError):
    return None


def _json_kind(path: str, obj) -> str | None:
  if inspect_logs.is_log(obj):
    return "inspect_json"
  if lm_eval.is_results(obj):
    return "lm_results"
  if os.path.basename(path) in _HELM_PARTS:
    return "helm_part"
  return None


def sniff(path: str) -> str:
  with open(path, "rb") as f:
    head = f.read(HEAD_BYTES)
  if head.startswith(b"PK\x03\x04"):
    return "inspect_eval" if inspect_logs.is_eval_zip(path) else "unknown"
  if head.startswith(b"PAR1"):
    return "parquet"
  text = head.decode("utf-8", errors="ignore").lstrip("\ufeff").lstrip()
  if text.startswith("{"):
    first = _first_json_line(text)
    if isinstance(first, dict):
      kind = _json_kind(path, first)
      return kind or ("lm_samples" if lm_eval.is_sample(first) else "jsonl")
    return _json_kind(path, _whole_json(path)) or "unknown"
  if text.startswith("["):
    return "helm_part" if os.path.basename(path) in _HELM_PARTS else "json"
  first_line = text.split("\n", 1)[0]
  return "csv" if ("," in first_line or "\t" in first_line) else "unknown"


def _is_note(name: str) -> bool:
  lower = name.lower()
  return (name.startswith(".") or lower.startswith(_NOTES)
          or lower.endswith((".md", ".txt", ".rst")))


def collect(paths: list[str]) -> list[tuple[str, str]]:
  """[(kind, path)] of every source under `paths`, in a stable order."""
  found = []
  for path in paths:
    if not os.path.exists(path):
      raise DataError(f"{path}: not found; pass evaluation files or folders")
    if os.path.isfile(path):
      found.append((sniff(path), path))
      continue
    for folder, dirs, files in os.walk(path):
      dirs[:] = sorted(d for d in dirs if not d.startswith("."))
      if helm.is_run_folder(folder):
        found.append(("helm", folder))
        dirs[:] = []
        continue
      found += [(sniff(os.path.join(folder, f)), os.path.join(folder, f))
                for f in sorted(files) if not _is_note(f)]
  return found


def _check(found: list[tuple[str, str]]) -> None:
  for kind, path in found:
    if kind == "unknown":
      raise DataError(f"{path}: unknown format: {UNKNOWN}")
    if kind == "helm_part":
      raise DataError(f"{path}: one file of a HELM run; pass the run folder that holds "
                      f"run_spec.json, scenario_state.json and per_instance_stats.json")
  for kind, path in found:
    if kind == "lm_results":
      folder = os.path.dirname(path)
      if not any(k == "lm_samples" and os.path.dirname(p) == folder for k, p in found):
        raise DataError(f"{path}: lm-eval results without samples files beside it (aggregate "
                        f"scores only); rerun lm-eval with --log_samples")


def read_one(kind: str, path: str, options) -> pd.DataFrame:
  if kind == "helm":
    return helm.read_run(path, options)
  if kind == "lm_samples":
    return lm_eval.read_samples(path, options)
  if kind == "inspect_eval":
    return inspect_logs.read_eval(path, options)
  if kind == "inspect_json":
    return inspect_logs.read_json(path, _whole_json(path), options)
  return table.read_table(path, kind, options)


def read_inputs(paths: list[str], options) -> list[pd.DataFrame]:
  """One rows frame per source found under `paths`."""
  found = collect(paths)
  _check(found)
  frames = [apply_overrides(read_one(kind, path, options), options)
            for kind, path in found if kind != "lm_results"]
  if not frames:
    raise DataError(f"{', '.join(paths)}: no evaluation files found")
  return frames
