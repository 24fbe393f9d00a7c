"""Paired bootstrap intervals: is run B better than run A on the same test queries?

Two runs scored on the same queries make errors on the same hard queries, so
their difference varies far less than either figure alone; comparing two
intervals computed separately would call most real differences noise. Here the
test queries are resampled with replacement (each query with all its models'
cells, since routing is decided per query), every statistic of both runs is
recomputed on the same resample, and the 2.5th and 97.5th percentiles of the
differences B - A form the 95% interval (the percentile bootstrap). A
difference counts as a win or loss only when that interval excludes 0.

Resamples are drawn as multinomial query counts, so one resample is a vector of
query weights and every statistic is a weighted one: routing micro (weighted
mean of per-query success), macro (mean over benchmarks of their weighted
means), AUC (weighted Mann-Whitney over the known cells, each cell weighted by
its query's count, ties counted half) and log loss (weighted mean over cells).
With unit weights each equals the plain figure `evaluators` reports.

Seeds: a side may hold several runs (seeds of one config); its statistic is the
mean over them on each resample, so the interval is about the test queries,
and the seed spread is reported beside it, as before.

scipy.stats.bootstrap resamples observations of arrays; AUC over cells grouped
by query is not a statistic of per-query vectors, so the resampling is done
here with numpy (a seeded generator) and the routing interval is checked
against scipy's in tests/test_paired.py.
"""

from __future__ import annotations

import dataclasses
import glob
import os
import re
import zipfile

import numpy as np

from irt_jax import metrics
from irt_jax import numerics
from irt_jax.routing import rules

STATISTICS = ("routing_micro", "routing_macro", "auc", "log_loss")
LOWER_IS_BETTER = {"log_loss"}
N_RESAMPLES = 2000
CHUNK = 200  # resamples scored at once (memory: CHUNK x known cells floats)


@dataclasses.dataclass(frozen=True)
class Scored:
  """One run's test predictions reduced to what the statistics need."""
  success: np.ndarray       # [n] 1.0 where the routed model answered correctly
  cell_query: np.ndarray    # [c] query of each known cell
  cell_logit: np.ndarray    # [c]
  cell_label: np.ndarray    # [c] 0/1
  benchmark: np.ndarray     # [n]


def score(logits: np.ndarray, labels: np.ndarray, benchmark: np.ndarray) -> Scored:
  """Routing success per query and the known cells of one run on one split.

  Queries with no known label are dropped (they route nowhere, as in
  evaluators.routing_summary); a split with none known is an error.
  """
  logits, labels = np.asarray(logits, np.float64), np.asarray(labels)
  if logits.shape != labels.shape:
    raise ValueError(f"logits {logits.shape} and labels {labels.shape} differ in shape")
  rows = (labels >= 0).any(axis=1)
  if not rows.any():
    raise ValueError("no query has a known label: nothing to compare")
  logits, labels, benchmark = logits[rows], labels[rows], np.asarray(benchmark)[rows]
  known = labels >= 0
  choice = rules.choose_by_score(logits, known)
  success = (labels[np.arange(len(labels)), choice] == 1).astype(np.float64)
  q, m = np.nonzero(known)
  return Scored(success=success, cell_query=q, cell_logit=logits[q, m],
                cell_label=labels[q, m].astype(np.float64), benchmark=np.asarray(benchmark))


def save(path: str, logits: np.ndarray, labels: np.ndarray, benchmark: np.ndarray) -> None:
  """One run's predictions on a split (float32 logits, int8 labels with -1
  unknown, benchmark ids), compressed: what `compare` needs, kept beside a record."""
  os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
  np.savez_compressed(path, logits=np.asarray(logits, np.float32),
                      labels=np.asarray(labels, np.int8), benchmark=np.asarray(benchmark, np.int16))


def load(path: str) -> Scored:
  """A file written by `save`, scored; a bad file is a ValueError naming it."""
  try:
    with np.load(path, allow_pickle=False) as f:
      return score(f["logits"], f["labels"], f["benchmark"])
  except (OSError, EOFError, KeyError, ValueError, zipfile.BadZipFile) as e:
    raise ValueError(f"{path}: not a predictions file of paired.save ({e})") from None


def files_for(preds_dir: str, dataset: str, name: str) -> list[str]:
  """The seeds' prediction files of one run name: PREDS_DIR/DATASET/NAME-s<seed>.npz."""
  pattern = os.path.join(preds_dir, dataset, f"{glob.escape(name)}-s*.npz")
  return sorted(p for p in glob.glob(pattern)
                if re.fullmatch(re.escape(name) + r"-s\d+\.npz", os.path.basename(p)))


def _weighted_auc(s: Scored, cell_w: np.ndarray) -> np.ndarray:
  """AUC for each row of cell weights [R, c] (Mann-Whitney, ties half)."""
  order = np.argsort(s.cell_logit, kind="mergesort")
  sorted_logit = s.cell_logit[order]
  group = np.r_[0, np.cumsum(np.diff(sorted_logit) != 0)]  # tie groups, ascending
  pos = s.cell_label[order]
  w = cell_w[:, order]
  n_groups = group[-1] + 1
  out = np.empty(len(w))
  for r in range(len(w)):
    wp = np.bincount(group, w[r] * pos, n_groups)
    wn = np.bincount(group, w[r] * (1 - pos), n_groups)
    below = np.cumsum(wn) - wn
    out[r] = (wp * (below + 0.5 * wn)).sum() / (wp.sum() * wn.sum())
  return out


def statistics(s: Scored, weights: np.ndarray) -> dict[str, np.ndarray]:
  """Each statistic for each row of query weights [R, n] (unit weights: the plain figures)."""
  weights = np.atleast_2d(np.asarray(weights, np.float64))
  micro = weights @ s.success / weights.sum(1)
  per_bench = []
  for b in np.unique(s.benchmark):
    wb = weights[:, s.benchmark == b]
    total = wb.sum(1)
    with np.errstate(invalid="ignore"):  # a benchmark absent from a resample is skipped
      per_bench.append(np.where(total > 0, wb @ s.success[s.benchmark == b] / total, np.nan))
  cell_w = weights[:, s.cell_query]
  p = np.clip(numerics.sigmoid(s.cell_logit), metrics.EPS, 1 - metrics.EPS)
  cell_loss = -(s.cell_label * np.log(p) + (1 - s.cell_label) * np.log(1 - p))
  return {"routing_micro": micro, "routing_macro": np.nanmean(np.stack(per_bench), 0),
          "auc": _weighted_auc(s, cell_w), "log_loss": cell_w @ cell_loss / cell_w.sum(1)}


def _mean_over_runs(runs: list[Scored], weights: np.ndarray) -> dict[str, np.ndarray]:
  stats = [statistics(r, weights) for r in runs]
  return {k: np.mean([st[k] for st in stats], 0) for k in STATISTICS}


def compare(runs_a: list[Scored], runs_b: list[Scored], n_resamples: int = N_RESAMPLES,
            seed: int = 0, confidence: float = 0.95) -> dict[str, dict]:
  """B - A for each statistic: the point difference, its paired percentile
  interval and a verdict ('win' / 'loss' for B when the interval excludes 0,
  else 'tie'; for log loss lower is the win).

  Every run must hold the same queries in the same order (same benchmarks).
  """
  if not runs_a or not runs_b:
    raise ValueError("each side needs at least one run")
  first = runs_a[0]
  for r in runs_a + runs_b:
    if len(r.success) != len(first.success) or not np.array_equal(r.benchmark, first.benchmark):
      raise ValueError("runs compared by the paired bootstrap must cover the same queries "
                       f"({len(r.success)} vs {len(first.success)})")
  n = len(first.success)
  point_a = _mean_over_runs(runs_a, np.ones((1, n)))
  point_b = _mean_over_runs(runs_b, np.ones((1, n)))
  rng = np.random.default_rng(seed)
  diffs = {k: [] for k in STATISTICS}
  for start in range(0, n_resamples, CHUNK):
    size = min(CHUNK, n_resamples - start)
    picks = rng.integers(0, n, size=(size, n))
    weights = np.stack([np.bincount(p, minlength=n) for p in picks]).astype(np.float64)
    a, b = _mean_over_runs(runs_a, weights), _mean_over_runs(runs_b, weights)
    for k in STATISTICS:
      diffs[k].append(b[k] - a[k])
  alpha = (1 - confidence) / 2
  out = {}
  for k in STATISTICS:
    d = np.concatenate(diffs[k])
    low, high = np.quantile(d, [alpha, 1 - alpha])
    sign = -1.0 if k in LOWER_IS_BETTER else 1.0
    verdict = "tie"
    if low > 0 or high < 0:
      verdict = "win" if sign * (low + high) > 0 else "loss"
    out[k] = {"diff": float(point_b[k][0] - point_a[k][0]), "low": float(low),
              "high": float(high), "verdict": verdict}
  return out


def format_difference(entry: dict, scale: float = 1.0, fmt: str = "+.2f") -> str:
  """'+1.23 [+0.10, +2.40] win': a difference with its interval, for tables."""
  mark = {"win": " (B better)", "loss": " (B worse)", "tie": ""}[entry["verdict"]]
  d, lo, hi = (entry[k] * scale for k in ("diff", "low", "high"))
  return f"{d:{fmt}} [{lo:{fmt}}, {hi:{fmt}}]{mark}"
