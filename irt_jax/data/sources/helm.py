"""HELM run folders (`helm-run` output under `benchmark_output/runs/<suite>/`).

A run folder holds `run_spec.json` (the model: `adapter_spec.model`; the
benchmark: the run name before ':'), `scenario_state.json` (per request the
instance: id, input text, perturbation) and `per_instance_stats.json` (per
instance and train trial, the metric values). One row per (instance, train
trial): the text is the instance's input, the score the stat named by `--metric`
(default `exact_match`). Perturbed instances and perturbed stats (robustness and
fairness variants of an instance) are skipped: they repeat an instance with an
altered text.
"""

from __future__ import annotations

import json
import os

import pandas as pd

from irt_jax.data.io import DataError
from irt_jax.data.sources import rows as rows_lib

FILES = ("run_spec.json", "scenario_state.json", "per_instance_stats.json")
DEFAULT_METRIC = "exact_match"


def is_run_folder(folder: str) -> bool:
  return os.path.isfile(os.path.join(folder, "run_spec.json"))


def _load(folder: str, name: str):
  path = os.path.join(folder, name)
  if not os.path.isfile(path):
    raise DataError(f"{folder}: a HELM run folder without {name}; copy the whole run folder")
  try:
    with open(path, encoding="utf-8") as f:
      return json.load(f)
  except (json.JSONDecodeError, UnicodeError) as e:
    raise DataError(f"{path}: not valid JSON ({e})") from e


def _texts(state: dict) -> dict[str, str]:
  """{instance id: input text} of the unperturbed instances."""
  out = {}
  for request in state.get("request_states", []):
    instance = request.get("instance", {})
    if instance.get("perturbation"):
      continue
    out.setdefault(instance.get("id"), (instance.get("input") or {}).get("text", ""))
  return out


def _stat_value(stats: list[dict], metric: str):
  for stat in stats:
    name = stat.get("name", {})
    if name.get("name") == metric and not name.get("perturbation"):
      if stat.get("count"):
        return stat.get("sum", 0.0) / stat["count"]
      return stat.get("mean")
  return None


def read_run(folder: str, options) -> pd.DataFrame:
  spec, state, per_instance = (_load(folder, name) for name in FILES)
  model = (spec.get("adapter_spec") or {}).get("model")
  if not model:
    raise DataError(f"{os.path.join(folder, FILES[0])}: no adapter_spec.model; pass --model")
  benchmark = str(spec.get("name", os.path.basename(folder))).split(":")[0]
  metric = options.metric or DEFAULT_METRIC
  texts = _texts(state)
  stats_file = os.path.join(folder, FILES[2])
  records, named = [], set()
  for entry in per_instance:
    if entry.get("perturbation") or entry.get("instance_id") not in texts:
      continue
    named.update(s.get("name", {}).get("name") for s in entry.get("stats", []))
    value = _stat_value(entry.get("stats", []), metric)
    if value is None:
      continue
    records.append({"model": model, "prompt": texts[entry["instance_id"]],
                    "score": rows_lib.to_score(value, stats_file, f"stat {metric!r}"),
                    "benchmark": benchmark})
  if not records:
    raise DataError(f"{stats_file}: no instance has the stat {metric!r} (stats there: "
                    f"{sorted(n for n in named if n)[:12]}); pass --metric= one of them")
  return rows_lib.frame(records, stats_file)
