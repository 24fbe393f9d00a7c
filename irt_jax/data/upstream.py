"""The public llmrouter matrix rebuilt from its upstream repository, as the shared folder was.

ulab-uiuc/LLMRouter (MIT) at the commit below: answers and scores from
`data/dcrouter_preprocessed/train.json` and `test.json` (each item `question`,
`scores` {model: score in [0, 1]}), label score >= 0.5; a prompt's benchmark is the
`task_name` of the last record whose `query` equals it in
`data/example_data/query_data/default_query_train.jsonl` then `..._test.jsonl`
("unknown" when none); `model_prices.csv` from
`data/example_data/llm_candidates/default_llm.json`. The join, ids and split are
`irt_jax.data.assemble`'s, with the folder name `llmrouter` as the split's seed.
"""

from __future__ import annotations

import json
import os
import tempfile

import pandas as pd

from irt_jax.data import assemble, build, layout
from irt_jax.data.io import DataError

LLMROUTER_REPO = "ulab-uiuc/LLMRouter"
LLMROUTER_COMMIT = "4e7a796942ce26e9d5f2b93191c7c2585c99c2e3"
LLMROUTER_THRESHOLD = 0.5
ANSWERS = ("data/dcrouter_preprocessed/train.json", "data/dcrouter_preprocessed/test.json")
QUERIES = ("data/example_data/query_data/default_query_train.jsonl",
           "data/example_data/query_data/default_query_test.jsonl")
PRICES = "data/example_data/llm_candidates/default_llm.json"
FILES = ANSWERS + QUERIES + (PRICES,)


def _path(source_dir: str, rel: str) -> str:
  path = os.path.join(source_dir, *rel.split("/"))
  if not os.path.isfile(path):
    raise DataError(f"{path}: not found; --source_dir must be a copy of {LLMROUTER_REPO} at "
                    f"{LLMROUTER_COMMIT[:8]} (it needs {', '.join(FILES)})")
  return path


def _load(path: str):
  try:
    with open(path, encoding="utf-8") as f:
      if path.endswith(".jsonl"):
        return [json.loads(line) for line in f if line.strip()]
      return json.load(f)
  except (json.JSONDecodeError, UnicodeError) as e:
    raise DataError(f"{path}: not valid JSON ({e})") from e


def task_names(source_dir: str) -> dict[str, str]:
  """{query text: task_name}, the last record of the train then test query files."""
  out = {}
  for rel in QUERIES:
    for record in _load(_path(source_dir, rel)):
      out[record.get("query")] = record.get("task_name")
  return out


def llmrouter_rows(source_dir: str) -> pd.DataFrame:
  """One row per (question, model) of the upstream answer files, train then test."""
  tasks = task_names(source_dir)
  records = []
  for rel in ANSWERS:
    path = _path(source_dir, rel)
    for item in _load(path):
      bench = tasks.get(item["question"]) or "unknown"
      records += [(model, item["question"], float(score), bench, path)
                  for model, score in item["scores"].items()]
  return pd.DataFrame(records, columns=["model", "prompt", "score", "benchmark", "file"])


def llmrouter_prices(source_dir: str) -> pd.DataFrame:
  """model_name, input / output price per million tokens, size; sorted by model name."""
  spec = _load(_path(source_dir, PRICES))
  rows = [(name, float(v["input_price"]), float(v["output_price"]), v.get("size", ""))
          for name, v in spec.items()]
  return pd.DataFrame(sorted(rows), columns=["model_name", "input_price_per_mtok",
                                             "output_price_per_mtok", "size"])


def fetch_llmrouter(dest: str) -> str:
  """Downloads the files listed in FILES at LLMROUTER_COMMIT into `dest` (needs
  internet: raw.githubusercontent.com); returns `dest`."""
  import httpx  # only with internet
  for rel in FILES:
    url = f"https://raw.githubusercontent.com/{LLMROUTER_REPO}/{LLMROUTER_COMMIT}/{rel}"
    reply = httpx.get(url, timeout=120, follow_redirects=True)
    reply.raise_for_status()
    path = os.path.join(dest, *rel.split("/"))
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
      f.write(reply.content)
  return dest


def build_llmrouter(out: str, source_dir: str | None = None, *, encoder_dir: str | None = None,
                    overwrite: bool = False, batch_size: int = 64, encoder=None) -> str:
  """Builds the llmrouter folder at `out` from a local copy of the upstream repository
  (`source_dir`) or, without one, from the files fetched at the pinned commit; the
  split is seeded by the name `llmrouter` whatever `out` is called. Returns the summary."""
  out = build.check_out(out, overwrite)
  if encoder is None:
    build.check_encoder(encoder_dir)
  with tempfile.TemporaryDirectory() as scratch:
    source = source_dir or fetch_llmrouter(scratch)
    matrix = assemble.join([llmrouter_rows(source)], LLMROUTER_THRESHOLD)
    prices = llmrouter_prices(source)
  prices = prices[prices["model_name"].isin(set(matrix.models))]
  split = assemble.split_of_queries(matrix, "llmrouter")
  build.write_folder(matrix, split, out, encoder_dir=encoder_dir, batch_size=batch_size,
                     encoder=encoder, extra={"model_prices.csv": prices})
  return layout.summary(matrix, split, out)
