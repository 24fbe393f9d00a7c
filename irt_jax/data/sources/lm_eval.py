"""lm-evaluation-harness output run with `--log_samples`.

Two layouts, told apart by content:
  * v0.4 (including the v0.4.7+ rows that carry `filter`, `metrics` and hashes):
    a folder per model with `results_<time>.json` (the run's config: model name,
    each task's metric list) and `samples_<task>_<time>.jsonl` (one JSON object
    per (doc, filter): `doc_id`, `doc`, `target`, ..., and a value per metric);
  * the older (2023) output: one `<model_args>_<task>.jsonl` per task, the same
    sample lines without `filter`, and no results file.

A query's text is the document's question-like fields (`question`, `problem`,
`sentence`, ...) in the document's own order, so that one document evaluated by
several models (or with other few-shot prompts) is one query; the formatted
prompt (`arguments`) is the fallback. The score is the task's primary metric
(the first of its results file's `metric_list`) unless `--metric` names another.
"""

from __future__ import annotations

import glob
import json
import os
import re

import pandas as pd

from irt_jax.data.io import DataError
from irt_jax.data.sources import rows as rows_lib

PROMPT_KEYS = ("question", "query", "problem", "prompt", "input", "sentence", "ctx",
               "context", "passage", "body", "text", "premise", "hypothesis", "goal")
NOT_METRICS = {"doc_id", "doc", "target", "arguments", "resps", "filtered_resps", "filter",
               "metrics", "doc_hash", "prompt_hash", "target_hash"}
_SAMPLES_NAME = re.compile(r"^samples_(.+?)_(\d{4}-\d{2}-\d{2}T[\d.:-]+)\.jsonl$")
_OLD_NAME = re.compile(r"pretrained=([^,_]+(?:__[^,_]+)?)[^_]*_(.+)\.jsonl$")


def is_sample(obj) -> bool:
  return isinstance(obj, dict) and "doc_id" in obj and "doc" in obj


def is_results(obj) -> bool:
  return isinstance(obj, dict) and isinstance(obj.get("results"), dict) and (
      "configs" in obj or "versions" in obj)


def read_jsonl(path: str) -> list[dict]:
  out = []
  with open(path, encoding="utf-8") as f:
    for n, line in enumerate(f, 1):
      if line.strip():
        try:
          out.append(json.loads(line))
        except json.JSONDecodeError as e:
          raise DataError(f"{path}: line {n} is not JSON ({e.msg}); is the file cut short?") from e
  return out


def prompt_text(sample: dict) -> str:
  """The document's question-like fields, else the first formatted prompt."""
  doc = sample.get("doc")
  if isinstance(doc, dict):
    parts = [str(v) for k, v in doc.items() if k in PROMPT_KEYS and isinstance(v, str)]
    if parts:
      return "\n".join(parts)
  if isinstance(doc, str):
    return doc
  args = sample.get("arguments")
  if isinstance(args, dict) and args:  # v0.4.2+: {"gen_args_0": {"arg_0": context, ...}}
    first = next(iter(args.values()))
    args = list(first.values()) if isinstance(first, dict) else first
  while isinstance(args, list) and args:
    args = args[0]
  return args if isinstance(args, str) else json.dumps(doc, sort_keys=True)


def _sample_files_results(path: str) -> dict | None:
  """The results file written with a samples file: same time stamp, else the only one."""
  folder, name = os.path.split(path)
  match = _SAMPLES_NAME.match(name)
  if match:
    same = os.path.join(folder, f"results_{match.group(2)}.json")
    if os.path.isfile(same):
      return _load_json(same)
  others = sorted(glob.glob(os.path.join(folder, "results_*.json")))
  return _load_json(others[0]) if len(others) == 1 else None


def _load_json(path: str):
  try:
    with open(path, encoding="utf-8") as f:
      return json.load(f)
  except (json.JSONDecodeError, UnicodeError) as e:
    raise DataError(f"{path}: not valid JSON ({e})") from e


def _model_and_task(path: str, results: dict | None) -> tuple[str, str]:
  folder, name = os.path.split(path)
  match = _SAMPLES_NAME.match(name)
  if match:
    task = match.group(1)
    model = (results or {}).get("model_name") or _pretrained((results or {}).get("config", {}))
    return model or os.path.basename(os.path.abspath(folder)), task
  old = _OLD_NAME.search(name)
  if old:
    return old.group(1), old.group(2)
  raise DataError(f"{path}: lm-eval samples, but neither samples_<task>_<time>.jsonl nor "
                  f"<model_args>_<task>.jsonl names its model and task; pass --model")


def _pretrained(config: dict) -> str | None:
  args = str(config.get("model_args") or "")
  found = re.search(r"pretrained=([^,]+)", args)
  return found.group(1) if found else None


def _metric(task: str, results: dict | None, first: dict, path: str, options) -> str:
  if options.metric:
    return options.metric
  metric_list = ((results or {}).get("configs", {}).get(task) or {}).get("metric_list") or []
  if metric_list and isinstance(metric_list[0], dict) and metric_list[0].get("metric"):
    return str(metric_list[0]["metric"])
  candidates = [k for k, v in first.items() if k not in NOT_METRICS
                and isinstance(v, (int, float, bool, str))]
  if len(candidates) == 1:
    return candidates[0]
  raise DataError(f"{path}: no results file names the task's metric and the samples hold "
                  f"{candidates or 'none'}; pass --metric=NAME")


def _filtered(samples: list[dict], path: str, options) -> list[dict]:
  """One row per doc: the rows of the chosen filter ('none', else the first seen)."""
  filters = list(dict.fromkeys(s["filter"] for s in samples if "filter" in s))
  if not filters:
    return samples
  chosen = options.lm_eval_filter or ("none" if "none" in filters else filters[0])
  if chosen not in filters:
    raise DataError(f"{path}: no rows with filter {chosen!r} (filters there: {filters}); "
                    f"pass --lm_eval_filter= one of them")
  return [s for s in samples if s.get("filter") == chosen]


def read_samples(path: str, options, results: dict | None = None) -> pd.DataFrame:
  samples = read_jsonl(path)
  if not samples:
    raise DataError(f"{path}: no sample lines; run lm-eval with --log_samples")
  results = results if results is not None else _sample_files_results(path)
  model, task = _model_and_task(path, results)
  samples = _filtered(samples, path, options)
  metric = _metric(task, results, samples[0], path, options)
  records = []
  for n, s in enumerate(samples, 1):
    if metric not in s:
      present = [k for k in s if k not in NOT_METRICS]
      raise DataError(f"{path}: sample {n} has no {metric!r} score (it has {present}); "
                      f"pass --metric= one of them")
    records.append({"model": model, "prompt": prompt_text(s),
                    "score": rows_lib.to_score(s[metric], path, f"metric {metric!r}"),
                    "benchmark": task})
  return rows_lib.frame(records, path)
