"""inspect_ai evaluation logs, read with the standard library (zip + JSON).

Two files hold the same log: `.eval`, a zip with `header.json` (or, for a log
still being written, `_journal/start.json`) and one `samples/<id>_epoch_<n>.json`
per sample and epoch; `.json`, one document with `eval` and `samples`. A row per
(sample, epoch): the model is `eval.model`, the benchmark `eval.task` (its last
path part), the text the sample's `input` (a string, or the user messages'
text), the score the sample's score under the scorer named by `--metric` (default:
the log's first scorer). Epochs are merged afterwards like any repeated answer
(majority vote, ties correct). A log whose samples carry no score is refused.
"""

from __future__ import annotations

import json
import os
import zipfile

import pandas as pd

from irt_jax.data.io import DataError
from irt_jax.data.sources import rows as rows_lib


def is_log(obj) -> bool:
  return (isinstance(obj, dict) and isinstance(obj.get("eval"), dict)
          and "model" in obj["eval"] and ("samples" in obj or "status" in obj))


def is_eval_zip(path: str) -> bool:
  try:
    with zipfile.ZipFile(path) as z:
      names = set(z.namelist())
  except (zipfile.BadZipFile, OSError):
    return False
  return "header.json" in names or "_journal/start.json" in names


def _input_text(value) -> str:
  if isinstance(value, str):
    return value
  parts = []
  for message in value or []:
    if not isinstance(message, dict) or message.get("role", "user") != "user":
      continue
    content = message.get("content")
    if isinstance(content, str):
      parts.append(content)
    else:
      parts += [c.get("text", "") for c in content or [] if isinstance(c, dict)
                and c.get("type") == "text"]
  return "\n".join(parts)


def _scorer(log: dict, samples: list[dict], path: str, options) -> str:
  names = [s.get("name") for s in ((log.get("results") or {}).get("scores") or [])]
  seen = list(dict.fromkeys(k for s in samples for k in (s.get("scores") or {})))
  if not seen:
    raise DataError(f"{path}: the log has no scores (the run had no scorer or was not "
                    f"scored); score it first (`inspect score {os.path.basename(path)}`)")
  if options.metric:
    if options.metric not in seen:
      raise DataError(f"{path}: no scorer {options.metric!r} (scorers there: {seen}); "
                      f"pass --metric= one of them")
    return options.metric
  return next((n for n in names if n in seen), seen[0])


def _rows(log: dict, samples: list[dict], path: str, options) -> pd.DataFrame:
  scorer = _scorer(log, samples, path, options)
  model = log["eval"]["model"]
  task = str(log["eval"].get("task", "")).rsplit("/", 1)[-1]
  records = []
  for s in samples:
    if s.get("error"):
      continue  # a sample that failed has no answer to score
    score = (s.get("scores") or {}).get(scorer)
    value = score.get("value") if isinstance(score, dict) else None
    records.append({"model": model, "prompt": _input_text(s.get("input")),
                    "score": rows_lib.to_score(value, path, f"score {scorer!r}"),
                    "benchmark": task})
  if not records:
    raise DataError(f"{path}: no sample without an error; nothing to import")
  return rows_lib.frame(records, path)


def _read_zip_json(z: zipfile.ZipFile, name: str, path: str):
  try:
    return json.loads(z.read(name))
  except (json.JSONDecodeError, UnicodeError, KeyError) as e:
    raise DataError(f"{path}: {name} inside the .eval archive is not valid JSON ({e})") from e


def read_eval(path: str, options) -> pd.DataFrame:
  try:
    with zipfile.ZipFile(path) as z:
      names = z.namelist()
      head = "header.json" if "header.json" in names else "_journal/start.json"
      log = _read_zip_json(z, head, path)
      samples = [_read_zip_json(z, n, path) for n in sorted(names)
                 if n.startswith("samples/") and n.endswith(".json")]
  except zipfile.BadZipFile as e:
    raise DataError(f"{path}: not a readable .eval archive ({e})") from e
  if not samples:
    raise DataError(f"{path}: the log holds no samples; rerun with log_samples on")
  return _rows(log, samples, path, options)


def read_json(path: str, log: dict, options) -> pd.DataFrame:
  samples = log.get("samples") or []
  if not samples:
    raise DataError(f"{path}: the log holds no samples; rerun with log_samples on")
  return _rows(log, samples, path, options)
