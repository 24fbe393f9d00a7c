"""Benchmark-score estimators: an LLM's accuracy on a benchmark from a model's
logits on its queries and a few labels.

Pure functions of arrays (no training; benchmarks.leave_benchmark_out runs the
training that produces the logits):

* zero-shot (k = 0): the mean predicted P over the benchmark's queries the LLM answered;
* few-shot: k of the benchmark's queries per LLM are labelled, chosen at random or
  adaptively (largest Fisher information p(1-p)|a_q|^2 of the 2PL, where a_q is
  the kind's discrimination and p includes the LLM's current offset; kinds
  without an IRT view use |a|^2 = 1). The combined estimator refits logit
  offsets by MAP, hierarchically: one benchmark-wide offset delta_B on every
  LLM's k labels pooled (prior N(0, SHARED_PRIOR_SD^2)), then one per LLM,
  delta_m ~ N(delta_B, PRIOR_SD^2), on its own k labels; it averages the k
  observed labels with sigmoid(logit + delta_m) on the LLM's other queries.
  The naive estimator, the plain mean of the k labels, is reported beside it.

Metrics over LLMs per benchmark (then averaged over benchmarks): MAE and signed
bias of the predicted accuracy (fractions), Spearman and Kendall (tau-b) rank
correlations; and the zero-shot correctness accuracy on the benchmark's cells.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import stats

from irt_jax import numerics
from irt_jax.data import io as data_lib
from irt_jax.data import splits as data_splits

KS = (10, 25, 50, 100)
PRIOR_SD = 1.0        # prior sd of each LLM's logit offset around the benchmark's
SHARED_PRIOR_SD = 3.0  # prior sd of the benchmark-wide offset (pooled over LLMs)
RANDOM_REPEATS = 5    # random draws per LLM; metrics averaged over them
SELECTIONS = ("random", "adaptive", "naive")
RESULT_FILE = "benchmark_prediction.json"
PREDICTIONS_FILE = "predictions.npz"


# ----------------------------------------------------------------------------
# Metrics of predicted vs true scores over LLMs.

def kendall(x, y) -> float:
  """Kendall's tau-b (ties in either variable corrected); NaN if undefined."""
  x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
  if len(x) < 2 or np.ptp(x) == 0 or np.ptp(y) == 0:
    return float("nan")
  return float(stats.kendalltau(x, y, variant="b").statistic)


def spearman(x, y) -> float:
  """Spearman's rho on average ranks (ties shared); NaN if a side is constant."""
  from irt_jax import metrics
  return metrics.spearman(x, y)


def score_metrics(predicted, true) -> dict[str, float]:
  """MAE and signed bias (predicted - true, fractions), Spearman, Kendall."""
  p, t = np.asarray(predicted, np.float64), np.asarray(true, np.float64)
  return {"mae": float(np.abs(p - t).mean()), "bias": float((p - t).mean()),
          "spearman": spearman(p, t), "kendall": kendall(p, t)}


# ----------------------------------------------------------------------------
# Estimators and query selection for one LLM on one benchmark.

def fit_offset(logits, labels, prior_sd: float = PRIOR_SD, prior_mean: float = 0.0,
               iters: int = 100) -> float:
  """MAP logit offset: max sum log Bernoulli(y | sigmoid(l + delta)) - (delta - mu)^2/(2 sd^2).

  The objective is strictly concave, so its gradient g(delta) is strictly
  decreasing and the MAP is its one root. Plain Newton from the prior mean can
  oscillate without converging when P saturates (many pooled labels against
  logits far from them: the step jumps by about n * sd^2 and back), so the root
  is bracketed, then found by Newton steps that fall back to bisection
  whenever a step leaves the bracket.
  """
  logits, labels = np.asarray(logits, np.float64), np.asarray(labels, np.float64)
  mu, inv_var = float(prior_mean), 1.0 / prior_sd ** 2

  def grad_hess(d):
    p = numerics.sigmoid(logits + d)
    return (labels - p).sum() - (d - mu) * inv_var, -(p * (1 - p)).sum() - inv_var

  # g(delta) = S - (delta - mu) / sd^2 with |S| <= n, so the root lies within n * sd^2 of mu.
  width = len(labels) / inv_var + 1.0
  lo, hi = mu - width, mu + width
  delta = mu
  for _ in range(iters):
    g, h = grad_hess(delta)
    if g == 0.0:
      return float(delta)
    if g > 0:  # the root is above delta
      lo = delta
    else:
      hi = delta
    candidate = delta - g / h
    if not lo < candidate < hi:  # Newton left the bracket: bisect instead
      candidate = 0.5 * (lo + hi)
    if abs(candidate - delta) < 1e-10:
      return float(candidate)
    delta = candidate
  return float(delta)


def combined_estimate(logits, labels, observed, prior_sd: float = PRIOR_SD,
                      prior_mean: float = 0.0) -> float:
  """Accuracy over all queries: observed labels where labelled, refitted P elsewhere.

  The refitted P is sigmoid(logit + delta), delta the MAP offset on the observed
  labels under the prior N(prior_mean, prior_sd^2).
  """
  logits, labels = np.asarray(logits, np.float64), np.asarray(labels, np.float64)
  observed = np.asarray(observed, np.int64)
  if len(observed) == 0:
    return float(numerics.sigmoid(logits + prior_mean).mean())
  delta = fit_offset(logits[observed], labels[observed], prior_sd, prior_mean)
  rest = np.ones(len(logits), bool)
  rest[observed] = False
  return float((labels[observed].sum() + numerics.sigmoid(logits[rest] + delta).sum()) / len(logits))


def shared_offset(pieces, prior_sd: float = SHARED_PRIOR_SD) -> float:
  """One benchmark-wide logit offset from every LLM's labelled queries pooled:
  the held-out benchmark's difficulty level, which no training label could teach.
  pieces: [(logits, labels)] per LLM."""
  pieces = [(l, y) for l, y in pieces if len(l)]
  if not pieces:
    return 0.0
  return fit_offset(np.concatenate([l for l, _ in pieces]),
                    np.concatenate([y for _, y in pieces]), prior_sd)


def information(logits, a_sq, delta: float = 0.0) -> np.ndarray:
  """Fisher information of each query about the LLM: p(1-p)|a|^2 (trace of p(1-p) a a^T)."""
  p = numerics.sigmoid(np.asarray(logits, np.float64) + delta)
  return p * (1 - p) * np.asarray(a_sq, np.float64)


def adaptive_order(logits, a_sq, labels, k_max: int, prior_sd: float = PRIOR_SD,
                   start=()) -> np.ndarray:
  """Queries in the order an adaptive test asks them: each time the most informative
  unasked one given the offset refitted on the answers so far (nested prefixes).
  `start`: queries asked first (e.g. one random pick, so repeated draws differ)."""
  logits = np.asarray(logits, np.float64)
  asked: list[int] = [int(q) for q in start][:k_max]
  free = np.ones(len(logits), bool)
  free[asked] = False
  delta = fit_offset(logits[asked], np.asarray(labels)[asked], prior_sd) if asked else 0.0
  for _ in range(min(k_max, len(logits)) - len(asked)):
    info = np.where(free, information(logits, a_sq, delta), -np.inf)
    q = int(np.argmax(info))
    asked.append(q)
    free[q] = False
    delta = fit_offset(logits[asked], np.asarray(labels)[asked], prior_sd)
  return np.asarray(asked, np.int64)


# Gauss-Hermite nodes (probabilists') for E[f(delta)] under delta ~ N(m, v).
_GH_NODES, _GH_WEIGHTS = np.polynomial.hermite_e.hermegauss(7)
_GH_WEIGHTS = _GH_WEIGHTS / _GH_WEIGHTS.sum()


def expected_information(logits, delta: float, var: float) -> np.ndarray:
  """E[p(1-p)] over delta ~ N(delta, var), p = sigmoid(logit + delta): the Fisher
  information about the LLM's offset that a query is expected to give while the
  offset is still uncertain. With a wide posterior (the first picks) it is
  spread over a range of logits instead of peaking at one, so the first picks
  are not all at the current point estimate."""
  x = np.asarray(logits, np.float64)[:, None] + delta + np.sqrt(var) * _GH_NODES[None, :]
  p = numerics.sigmoid(x)
  return (p * (1 - p)) @ _GH_WEIGHTS


def fluid_orders(logits, labels, known, k_max: int, rng, prior_sd: float = PRIOR_SD,
                 shared_sd: float = SHARED_PRIOR_SD) -> list[np.ndarray]:
  """Adaptive picks on the ability scale (after Fluid Benchmarking), per LLM, in
  lockstep over the fleet: each round every LLM's ability offset on the new
  benchmark is refitted as the `offset` estimator fits it (a benchmark-wide
  offset on every LLM's answers so far, prior N(0, shared_sd^2), then the LLM's
  own around it, prior sd prior_sd), and its next query is the unasked one with
  the largest expected information E[p(1-p)] under the offset's Laplace
  posterior. The information is about the offset (the parameter the estimate
  rests on), so it has no |a_q|^2 factor; the pooled level keeps the first picks
  from aiming at the wrong difficulty when the whole benchmark is off.
  One random first pick per LLM, so draws differ. Returns per LLM indices into
  its known rows (as adaptive_order)."""
  logits, labels = np.asarray(logits, np.float64), np.asarray(labels, np.float64)
  rows = [np.flatnonzero(known[:, m]) for m in range(known.shape[1])]
  asked = [[int(rng.integers(len(r)))] if len(r) >= 2 else [] for r in rows]
  limit = [min(k_max, max(len(r) - 1, 0)) for r in rows]
  for _ in range(1, max(limit, default=0)):
    idx = [r[np.asarray(a, np.int64)] for r, a in zip(rows, asked)]
    pieces = [(logits[i, m], labels[i, m]) for m, i in enumerate(idx)]
    mu = shared_offset(pieces, shared_sd)
    for m, (r, a) in enumerate(zip(rows, asked)):
      if len(a) >= limit[m]:
        continue
      l_asked, y_asked = pieces[m]
      delta = fit_offset(l_asked, y_asked, prior_sd, mu)
      p = numerics.sigmoid(l_asked + delta)
      var = 1.0 / ((p * (1 - p)).sum() + 1.0 / prior_sd ** 2)
      info = expected_information(logits[r, m], delta, var)
      info[a] = -np.inf
      a.append(int(np.argmax(info)))
  return [np.asarray(a, np.int64) for a in asked]


# ----------------------------------------------------------------------------
# One held-out benchmark: every LLM, every k and selection.

def benchmark_scores(logits: np.ndarray, a_sq: np.ndarray, labels: np.ndarray,
                     ks=KS, repeats: int = RANDOM_REPEATS, seed: int = 0,
                     prior_sd: float = PRIOR_SD) -> dict:
  """Per-LLM true and predicted accuracies on one benchmark.

  logits [n, M] (zero-shot model), a_sq [n], labels [n, M] int8 (-1 unknown).
  Returns {"true": [M], "n": [M], "0": {"zero_shot": [M]}, "k": {"random":
  [R, M], "adaptive": [M], "naive_random": [R, M], "naive_adaptive": [M]}};
  NaN where an LLM has no more than k known answers.
  """
  n_models = labels.shape[1]
  rng = np.random.default_rng(seed)
  out = {"true": np.full(n_models, np.nan), "n": np.zeros(n_models, np.int64),
         "0": {"zero_shot": np.full(n_models, np.nan)}}
  for k in ks:
    out[str(k)] = {"random": np.full((repeats, n_models), np.nan),
                   "naive_random": np.full((repeats, n_models), np.nan),
                   "adaptive": np.full(n_models, np.nan),
                   "naive_adaptive": np.full(n_models, np.nan)}
  k_max = max(ks) if ks else 0
  per_llm = []  # (rows' logits, labels, random orders, adaptive order) per LLM
  for m in range(n_models):
    rows = np.flatnonzero(labels[:, m] >= 0)
    if not len(rows):
      per_llm.append(None)
      continue
    lm, ym = logits[rows, m].astype(np.float64), labels[rows, m].astype(np.float64)
    out["true"][m], out["n"][m] = ym.mean(), len(rows)
    out["0"]["zero_shot"][m] = numerics.sigmoid(lm).mean()
    orders = [rng.permutation(len(rows))[:k_max] for _ in range(repeats)]
    adaptive = adaptive_order(lm, a_sq[rows], ym, min(k_max, len(rows) - 1), prior_sd)
    per_llm.append((lm, ym, orders, adaptive))
  for k in ks:
    cell = out[str(k)]
    usable = [m for m, x in enumerate(per_llm) if x is not None and k < len(x[0])]
    for r in range(repeats):
      picks = {m: per_llm[m][2][r][:k] for m in usable}
      mu = shared_offset([(per_llm[m][0][picks[m]], per_llm[m][1][picks[m]]) for m in usable])
      for m in usable:
        lm, ym = per_llm[m][0], per_llm[m][1]
        cell["random"][r, m] = combined_estimate(lm, ym, picks[m], prior_sd, mu)
        cell["naive_random"][r, m] = ym[picks[m]].mean()
    picks = {m: per_llm[m][3][:k] for m in usable}
    mu = shared_offset([(per_llm[m][0][picks[m]], per_llm[m][1][picks[m]]) for m in usable])
    for m in usable:
      lm, ym = per_llm[m][0], per_llm[m][1]
      cell["adaptive"][m] = combined_estimate(lm, ym, picks[m], prior_sd, mu)
      cell["naive_adaptive"][m] = ym[picks[m]].mean()
  return out


def _metrics_over_llms(predicted, true) -> dict | None:
  ok = np.isfinite(predicted) & np.isfinite(true)
  if ok.sum() < 2:
    return None
  m = score_metrics(predicted[ok], true[ok])
  return {**{k: (v if math.isfinite(v) else None) for k, v in m.items()}, "n_llms": int(ok.sum())}


def _mean_metrics(draws: list[dict | None]) -> dict | None:
  draws = [d for d in draws if d is not None]
  if not draws:
    return None
  out = {}
  for key in draws[0]:
    values = [d[key] for d in draws if d[key] is not None]
    out[key] = draws[0][key] if key == "n_llms" else (float(np.mean(values)) if values else None)
  return out


def benchmark_metrics(scores: dict, ks=KS) -> dict:
  """The stable per-benchmark layout: k -> selection -> {mae, bias, spearman, kendall}.

  k = "0" holds `zero_shot` (the model alone, plus cell accuracy when given) and
  `train_mean` (the LLM's accuracy on the other benchmarks' training cells);
  few-shot k holds `random` and `adaptive` (combined estimator) and `naive`
  (plain mean of the k random labels) and `naive_adaptive` (of the adaptive ones).
  """
  true = scores["true"]
  out = {"0": {sel: _metrics_over_llms(pred, true) for sel, pred in scores["0"].items()}}
  for k in ks:
    cell = scores[str(k)]
    out[str(k)] = {
        "random": _mean_metrics([_metrics_over_llms(r, true) for r in cell["random"]]),
        "adaptive": _metrics_over_llms(cell["adaptive"], true),
        "naive": _mean_metrics([_metrics_over_llms(r, true) for r in cell["naive_random"]]),
        "naive_adaptive": _metrics_over_llms(cell["naive_adaptive"], true)}
  return out


def mean_over_benchmarks(per_benchmark: dict) -> dict:
  """Each metric averaged over the benchmarks where it is defined."""
  out: dict = {}
  for bench in per_benchmark.values():
    for k, selections in bench.items():
      for sel, m in selections.items():
        if m is None:
          continue
        slot = out.setdefault(k, {}).setdefault(sel, {})
        for key, v in m.items():
          if key != "n_llms" and v is not None and math.isfinite(v):
            slot.setdefault(key, []).append(v)
  return {k: {sel: {key: float(np.mean(v)) for key, v in m.items()} |
              {"n_benchmarks": max(len(v) for v in m.values())}
              for sel, m in sels.items()} for k, sels in out.items()}


def other_benchmarks_accuracy(data: data_lib.ResponseData, b: int) -> np.ndarray:
  """Each LLM's accuracy on the training cells of every other benchmark: the
  baseline that guesses B's score from how good the LLM is in general."""
  part = data_splits.without_benchmark(data.split("train"), data.benchmark, b)
  known = part.mask
  with np.errstate(invalid="ignore", divide="ignore"):
    return (np.where(known, part.labels == 1, 0).sum(0) / known.sum(0)).astype(np.float64)


def cell_accuracy(logits: np.ndarray, labels: np.ndarray) -> float:
  """Share of B's known cells where P > 0.5 agrees with the label."""
  known = labels >= 0
  return float(((logits[known] > 0) == (labels[known] == 1)).mean())


def _json_scores(s: dict, model_names) -> dict:
  """Per-LLM true and predicted accuracies (random averaged over draws), JSON-ready."""
  f = lambda v: [None if not np.isfinite(x) else float(x) for x in v]
  out = {"models": list(model_names), "true": f(s["true"]), "n": [int(x) for x in s["n"]],
         "0": {sel: f(v) for sel, v in s["0"].items()}}
  for k, cell in s.items():
    if k in ("true", "n", "0"):
      continue
    out[k] = {"random": f(_mean_rows(cell["random"])), "adaptive": f(cell["adaptive"]),
              "naive": f(_mean_rows(cell["naive_random"]))}
  return out


def _mean_rows(x: np.ndarray) -> np.ndarray:
  """Column means over finite entries; NaN where a column has none (no warning)."""
  ok = np.isfinite(x)
  count = ok.sum(axis=0)
  total = np.where(ok, x, 0.0).sum(axis=0)
  return np.where(count > 0, total / np.maximum(count, 1), np.nan)
