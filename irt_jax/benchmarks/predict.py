"""Your own benchmark's score: per LLM of a trained run, its accuracy on a new
benchmark predicted from the queries alone (k = 0) or with a few labelled answers
(one shared set of queries or each LLM its own), and which queries to label.

* Queries: JSON lines, one per query, {"id": ..., "text": ...} (encoded with the
  run's encoder) or {"id": ..., "embedding": [...]} (the run's input width).
* Labels: CSV with columns query_id, model, correct (0 or 1), one row per answer.
* Zero-shot: the mean predicted P over the queries. With labels: every grid
  estimator on the labelled cells (benchmarks.held_out, the queries without a
  label predicted, the labelled ones counted as they are), and the one kept is
  the estimator with the lowest MAE in the grid's records at that label budget
  (the records' largest k not above it; the smallest k below them).
* Interval: score +- 1.96 sigma, sigma = MAE * sqrt(pi / 2) (the sd of a normal
  error with that mean absolute value), MAE read from the records where the
  estimator was chosen (k = 0: the result's zero-shot MAE); clipped to [0, 1].
* Propose: the anchor choice, k-means on the run's predicted logits of each query
  over the LLMs, one query per cluster (query_choice.anchor_pick); labels of
  exactly those queries are then read as that design (cluster weights).
"""

from __future__ import annotations

import csv
import dataclasses
import json
import math
import os

import numpy as np

from irt_jax.errors import UserError
from irt_jax import numerics
from irt_jax.benchmarks import grid
from irt_jax.benchmarks import query_choice
from irt_jax.benchmarks import scores

Z95 = 1.959963984540054
FALLBACK_ESTIMATOR = "irt"  # without records: the item side refitted, per-LLM offsets
ANCHOR_SEED = 0


class PredictError(UserError, ValueError):
  """Bad input to predict: the message names the file or field and what to do."""


@dataclasses.dataclass(frozen=True)
class Queries:
  ids: list[str]
  texts: list[str] | None        # when the lines give text
  embeddings: np.ndarray | None  # when the lines give embeddings


def read_queries(path: str) -> Queries:
  """The new benchmark's queries from JSON lines (all with text or all with embeddings)."""
  try:
    with open(path, encoding="utf-8") as f:
      lines = [(i, line) for i, line in enumerate(f, 1) if line.strip()]
  except OSError as e:
    raise PredictError(f"{path}: cannot read the queries ({e.strerror})") from e
  ids, texts, vectors = [], [], []
  for i, line in lines:
    try:
      row = json.loads(line)
    except json.JSONDecodeError:
      raise PredictError(f"{path}:{i}: not a JSON object; give one query per line, "
                         f'{{"id": ..., "text": ...}}') from None
    if not isinstance(row, dict) or not (("text" in row) ^ ("embedding" in row)):
      raise PredictError(f'{path}:{i}: give exactly one of "text" or "embedding"')
    ids.append(str(row.get("id", i)))
    (texts if "text" in row else vectors).append(row.get("text", row.get("embedding")))
  if not ids:
    raise PredictError(f"{path}: no queries; give one JSON object per line")
  if texts and vectors:
    raise PredictError(f'{path}: mixes "text" and "embedding" lines; give one kind')
  if len(set(ids)) != len(ids):
    dup = next(q for q in ids if ids.count(q) > 1)
    raise PredictError(f"{path}: query id {dup!r} appears twice; ids must be unique")
  if vectors:
    try:
      emb = np.asarray(vectors, np.float32)
    except ValueError:
      emb = None
    if emb is None or emb.ndim != 2 or not np.isfinite(emb).all():
      raise PredictError(f'{path}: every "embedding" must be a list of finite numbers of one '
                         f"length")
    return Queries(ids, None, emb)
  if not all(isinstance(t, str) and t.strip() for t in texts):
    raise PredictError(f'{path}: every "text" must be a non-empty string')
  return Queries(ids, texts, None)


def read_labels(path: str, query_ids, model_names) -> np.ndarray:
  """labels [n, M] int8 from a CSV of (query_id, model, correct); -1 unlabelled."""
  row_of = {q: i for i, q in enumerate(query_ids)}
  col_of = {m: j for j, m in enumerate(model_names)}
  out = np.full((len(query_ids), len(model_names)), -1, np.int8)
  try:
    with open(path, newline="", encoding="utf-8") as f:
      reader = csv.DictReader(f)
      missing = {"query_id", "model", "correct"} - set(reader.fieldnames or ())
      if missing:
        raise PredictError(f"{path}: needs the columns query_id, model, correct; missing "
                           f"{sorted(missing)}")
      for line, row in enumerate(reader, 2):
        q, m, y = row["query_id"], row["model"], (row["correct"] or "").strip()
        if q not in row_of:
          raise PredictError(f"{path}:{line}: query_id {q!r} is not in the queries file")
        if m not in col_of:
          raise PredictError(f"{path}:{line}: model {m!r} is not an LLM of the run; its LLMs: "
                             f"{', '.join(list(model_names)[:5])}...")
        if y not in ("0", "1"):
          raise PredictError(f"{path}:{line}: correct must be 0 or 1, got {y!r}")
        if out[row_of[q], col_of[m]] not in (-1, int(y)):
          raise PredictError(f"{path}:{line}: ({q!r}, {m!r}) is labelled twice, differently")
        out[row_of[q], col_of[m]] = int(y)
  except OSError as e:
    raise PredictError(f"{path}: cannot read the labels ({e.strerror})") from e
  return out


def read_grid(source: str) -> tuple[list[dict], float | None]:
  """The grid's records and the zero-shot MAE: `source` is a benchmark-prediction
  workdir (its benchmark_grid.jsonl, benchmark_prediction.json) or a records file.
  What is absent is empty / None."""
  from irt_jax import utils
  from irt_jax.benchmarks import grid_tables
  folder = os.path.isdir(source)
  path = os.path.join(source, "benchmark_grid.jsonl") if folder else source
  records = []
  if os.path.exists(path):
    try:
      records = utils.read_records(path, grid_tables.GRID_REQUIRED)
    except (OSError, ValueError) as e:
      raise PredictError(str(e)) from e
  elif not folder:
    raise PredictError(f"{source}: no such records file; give a benchmark_grid.jsonl or a "
                       f"benchmark-prediction workdir")
  zero = None
  result = os.path.join(source, scores.RESULT_FILE)
  if folder and os.path.exists(result):
    with open(result) as f:
      zero = (json.load(f).get("mean", {}).get("0", {}).get("zero_shot") or {}).get("mae")
  return records, zero


def choose(records: list[dict], protocol: str, choice: str, k: int, kind: str | None = None):
  """(estimator, MAE there, records' k) with the lowest MAE averaged over the records'
  datasets at (protocol, choice) and the largest recorded k <= k (else the smallest);
  the run's kind's records where there are any. (FALLBACK_ESTIMATOR, None, None)
  without records for that cell."""
  rows = [r for r in records if (r["protocol"], r["choice"]) == (protocol, choice)
          and r["mae"]["mean"] is not None]
  if any(r.get("kind") == kind for r in rows):
    rows = [r for r in rows if r.get("kind") == kind]
  if not rows:
    return FALLBACK_ESTIMATOR, None, None
  ks = sorted({r["k"] for r in rows})
  at = max((x for x in ks if x <= k), default=ks[0])
  mae: dict = {}
  for r in rows:
    if r["k"] == at:
      mae.setdefault(r["estimator"], []).append(r["mae"]["mean"])
  best = min(mae, key=lambda e: np.mean(mae[e]))
  return best, float(np.mean(mae[best])), at


def half_width(mae: float | None) -> float | None:
  """1.96 sigma of a normal error whose mean absolute value is `mae`."""
  return None if mae is None else Z95 * mae * math.sqrt(math.pi / 2)


def design(labels: np.ndarray, logits: np.ndarray):
  """(protocol, choice, weights [n, M], groups [n, M]) of the labelled cells: shared
  when every LLM has labels of the same queries (anchors_items when they are the
  anchors `propose` gives for that many, with their cluster weights), per_llm
  otherwise; random-pick weights 1/k_m unless anchors."""
  labelled = labels >= 0
  n, n_models = labels.shape
  weights = np.where(labelled, 1.0 / np.maximum(labelled.sum(0), 1), 0.0)
  groups = np.zeros((n, n_models), np.int64)
  sets = {tuple(np.flatnonzero(labelled[:, m])) for m in range(n_models)}
  if len(sets) != 1 or not sets.pop():
    return "per_llm", "random", weights, groups
  rows = np.flatnonzero(labelled[:, 0])
  if len(rows) < n:
    idx, w, g = query_choice.anchor_pick(logits, len(rows), ANCHOR_SEED)
    if np.array_equal(np.sort(idx), rows):
      weights = np.zeros((n, n_models))
      weights[idx] = w[:, None]
      return "shared", "anchors_items", weights, np.repeat(g[:, None], n_models, axis=1)
  return "shared", "random", weights, groups


def predict(logits: np.ndarray, bench_arrays: dict, labels: np.ndarray, records: list[dict],
            zero_mae: float | None, kind: str | None = None, embeddings=None) -> list[dict]:
  """Per LLM: {k, estimator, score, low, high, grid_k}. logits [n, M] of the run on
  the new queries; bench_arrays: the run's item view of them (a_sq, and item_a,
  item_b, theta for kinds with an IRT view); labels [n, M], -1 unlabelled."""
  labelled = labels >= 0
  k = labelled.sum(0)
  zero = numerics.sigmoid(np.asarray(logits, np.float64)).mean(0)
  rows = [_row(0, "zero_shot", float(z), half_width(zero_mae), None) for z in zero]
  if not labelled.any():
    return rows
  protocol, choice, weights, groups = design(labels, logits)
  # Every query is in the population (known); only the labelled cells' labels are
  # read by the estimators, the rest stand in as 0.
  pred = {"logits": logits, "labels": np.where(labelled, labels, 0).astype(np.int8),
          **bench_arrays}
  bench = grid.bench_from_predictions(pred, embeddings)
  est = grid.estimates(bench, labelled, weights, grid.Priors(), shared=protocol == "shared",
                       rng=np.random.default_rng(0), groups=groups)
  for m in np.flatnonzero(k):
    name, mae, at = choose(records, protocol, choice, int(k[m]), kind)
    rows[m] = _row(int(k[m]), f"{protocol}/{choice}/{name}", float(est[name][m]),
                   half_width(mae), at)
  return rows


def _row(k: int, estimator: str, score: float, half: float | None, grid_k) -> dict:
  low, high = (None, None) if half is None else (max(0.0, score - half), min(1.0, score + half))
  return {"k": k, "estimator": estimator, "score": score, "low": low, "high": high,
          "grid_k": grid_k}


def propose(logits: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
  """(query indices, weights): the k anchors to label, one per k-means cluster of
  the queries' predicted logits over the LLMs, each weighing its cluster's share."""
  if not 0 < k <= len(logits):
    raise PredictError(f"--propose={k}: choose between 1 and the {len(logits)} queries")
  idx, w, _ = query_choice.anchor_pick(logits, k, ANCHOR_SEED)
  return idx, w


def markdown(rows: list[dict], model_names) -> str:
  """One line per LLM: labels used, estimator, predicted score and interval (points)."""
  pct = lambda x: "n/a" if x is None else f"{100 * x:.1f}"
  out = ["| LLM | labels | estimator | predicted score | 95% interval |", "|---|---|---|---|---|"]
  for name, r in zip(model_names, rows):
    interval = "n/a" if r["low"] is None else f"[{pct(r['low'])}, {pct(r['high'])}]"
    out.append(f"| {name} | {r['k']} | {r['estimator']} | {pct(r['score'])} | {interval} |")
  return "\n".join(out) + "\n"


def _embeddings(run, queries: Queries, workdir: str, encoder_dir: str | None) -> np.ndarray:
  width = run.predictor.input_dim
  if queries.embeddings is not None:
    emb = queries.embeddings
  else:
    from irt_jax.routing import router
    try:
      emb = router.Router.from_checkpoint(workdir, encoder_dir=encoder_dir).embed(queries.texts)
    except router.RouterError as e:
      raise PredictError(str(e)) from e
  if emb.shape[1] != width:
    raise PredictError(f"the queries' embeddings are {emb.shape[1]}-d but the run reads "
                       f"{width}-d ones; embed them with the run's encoder (or give text)")
  return np.asarray(emb, np.float32)


def run(workdir: str, queries_path: str, labels_path: str | None = None, propose_k: int = 0,
        grid_source: str | None = None, encoder_dir: str | None = None) -> str:
  """The text predict prints: the queries to label (propose_k > 0), else per LLM
  its predicted score on the new benchmark with an interval."""
  from irt_jax import predictors
  from irt_jax.benchmarks import leave_benchmark_out
  queries = read_queries(queries_path)
  labels = None
  trained = predictors.load(workdir, "best")
  names = list(trained.model_names)
  if labels_path:  # checked before anything is computed
    labels = read_labels(labels_path, queries.ids, names)
  emb = _embeddings(trained, queries, workdir, encoder_dir)
  logits = np.asarray(trained.predictor.logits(emb), np.float64)
  if propose_k:
    idx, w = propose(logits, propose_k)
    return "\n".join(["| query_id | weight (share of the queries it stands for) |", "|---|---|"] +
                     [f"| {queries.ids[i]} | {x:.3f} |" for i, x in zip(idx, w)]) + "\n"
  records, zero_mae = read_grid(grid_source or workdir)
  arrays = {"a_sq": leave_benchmark_out.item_strength(trained, emb),
            **leave_benchmark_out.irt_parameters(trained, emb)}
  rows = predict(logits, arrays, labels if labels is not None else np.full(logits.shape, -1,
                                                                            np.int8),
                 records, zero_mae, trained.kind.name, emb)
  note = "" if records else ("\nNo grid records: the estimator is the fallback (irt) and only "
                             "the zero-shot interval is given where a result has one.\n")
  return markdown(rows, names) + note
