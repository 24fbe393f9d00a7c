"""Benchmark-score prediction on a held-out benchmark: every protocol x query
choice x estimator x label budget k, over several random draws.

Protocols (who is labelled):
* shared: one set of k queries of the new benchmark, labelled for every LLM
  (what a user running a new benchmark on their fleet does);
* per_llm: k queries per LLM, each LLM its own (the earlier protocol).
Query choices: evaluation.query_choice (anchors only under shared, adaptive
and fluid only under per_llm: an anchor set is one set for all, adaptive picks
are one LLM's own).

Estimators of each LLM's accuracy over the benchmark's queries it answered
(all but `naive` keep the observed labels and predict only the rest):
* naive: the design-weighted mean of the LLM's k labels (1/k each for random picks);
* offset: the earlier estimator, benchmark_scores.shared_offset then one MAP
  logit offset per LLM around it, on the model's logits as they are;
* irt: the new benchmark's item side refitted jointly over all LLMs with the
  abilities fixed: logit = s * (a_q . theta_m) - b_q + c + delta_m, a
  discrimination scale s ~ N(1, scale_sd^2), a difficulty offset c ~ N(0,
  shared_sd^2) and per-LLM offsets delta_m ~ N(0, per_llm_sd^2), one MAP fit
  on every labelled cell (coldstart.ability.fit_ability does the Newton steps);
* gp_irt: tinyBenchmarks' idea of trusting the labels as much as they earn:
  lambda_m * naive + (1 - lambda_m) * p-IRT, where p-IRT is the estimate from
  the item side alone (s, c, no delta) and lambda_m = b^2 / (b^2 + v_m), with v_m
  the sampling variance of the LLM's label mean under the model and b^2 the
  spread of the LLMs' label-mean residuals beyond that variance (how far the
  model is off for an LLM), both measured on this draw's labels only;
* blend: the naive mean and the p-IRT estimate weighted by inverse variances,
  the naive side's from its finite-population sampling, the model's bias
  cross-fitted on folds of the labelled queries, both relative to the fleet's
  common draw under shared labels (derived in evaluation.grid_estimators);
* kernel: `irt`'s P plus its labelled residuals y - p spread to the unlabelled
  queries by embedding similarity (bandwidth by leave-one-out on the labelled
  cells; evaluation.grid_estimators);
* diff: the difference (model-assisted) estimator, design-unbiased for random
  and stratified picks: the sum of `irt`'s P over the benchmark plus each design
  group's mean residual y - p over its picks, P cross-fitted (refitted without
  the fold of picks it corrects), the labels already seen counted as
  themselves (derived in evaluation.grid_estimators). The naive mean is its
  special case with a constant P.
Kinds without an item-response view use a_q . theta_m = their logit, b_q = 0.
"""

from __future__ import annotations

import dataclasses

import numpy as np
from absl import logging

from irt_jax import numerics
from irt_jax.evaluation import benchmark_scores as scores_lib
from irt_jax.evaluation import grid_estimators as grid_est
from irt_jax.evaluation import query_choice

PROTOCOLS = ("shared", "per_llm")
ESTIMATORS = ("naive", "offset", "irt", "gp_irt", "blend", "kernel", "diff")
SCALE_PRIOR_SD = 0.5   # a priori: the discrimination of a new benchmark within a factor ~2
DRAWS = 5
GP_FLOOR = 1e-4        # b^2 floor: a model that looks perfect on k labels is not trusted fully


@dataclasses.dataclass(frozen=True)
class Priors:
  per_llm_sd: float = scores_lib.PRIOR_SD
  shared_sd: float = scores_lib.SHARED_PRIOR_SD
  scale_sd: float = SCALE_PRIOR_SD

  def check(self) -> None:
    for name, v in dataclasses.asdict(self).items():
      if not v > 0:
        raise ValueError(f"prior {name} must be positive, got {v}")


@dataclasses.dataclass(frozen=True)
class Bench:
  """One held-out benchmark: logits, labels [n, M] (-1 unknown), the ability term
  a_q . theta_m [n, M], difficulties b_q [n], |a_q|^2 [n], embeddings [n, D] or None."""
  logits: np.ndarray
  labels: np.ndarray
  ability_term: np.ndarray
  difficulty: np.ndarray
  a_sq: np.ndarray
  embeddings: np.ndarray | None = None


def bench_from_predictions(pred: dict, embeddings=None) -> Bench:
  """A Bench from a held-out run's predictions.npz arrays (the embeddings reduced
  to their principal components, which is all the anchors use)."""
  logits = np.asarray(pred["logits"], np.float64)
  if "item_a" in pred:
    term = np.asarray(pred["item_a"], np.float64) @ np.asarray(pred["theta"], np.float64).T
    diff = np.asarray(pred["item_b"], np.float64)
  else:
    term, diff = logits, np.zeros(len(logits))
  return Bench(logits, np.asarray(pred["labels"]), term, diff, np.asarray(pred["a_sq"], np.float64),
               None if embeddings is None else query_choice.principal_components(embeddings))


def true_scores(labels) -> np.ndarray:
  known = labels >= 0
  with np.errstate(invalid="ignore"):
    return np.where(known, labels == 1, 0).sum(0) / known.sum(0)


# ----------------------------------------------------------------------------
# Estimators: one labelled design -> each LLM's estimated accuracy.

def _fill(p, y, labelled, known) -> np.ndarray:
  """Per LLM: (sum of observed labels + sum of p on its other known queries) / known."""
  rest = known & ~labelled
  with np.errstate(invalid="ignore"):
    return (np.where(labelled, y, 0).sum(0) + np.where(rest, p, 0).sum(0)) / known.sum(0)


def weighted_mean(y, labelled, weights) -> np.ndarray:
  """Per LLM: the design-weighted mean of its labels (NaN with none)."""
  w = np.where(labelled, weights, 0.0)
  with np.errstate(invalid="ignore", divide="ignore"):
    return (w * y).sum(0) / w.sum(0)


def fit_item_side(bench: Bench, y, labelled, priors: Priors, per_llm: bool):
  """MAP (s, c, delta [M]) of logit = s * ability_term - b + c + delta_m on the
  labelled cells; delta is zeros when per_llm is False."""
  from irt_jax.coldstart import ability
  q, m = np.nonzero(labelled)
  n_models = labelled.shape[1]
  cols = [bench.ability_term[q, m], np.ones(len(q))]
  mean, sds = [1.0, 0.0], [priors.scale_sd, priors.shared_sd]
  if per_llm:
    cols += list(np.eye(n_models)[m].T)
    mean += [0.0] * n_models
    sds += [priors.per_llm_sd] * n_models
  x = np.stack(cols, axis=1)
  prior = ability.Prior(mean=np.asarray(mean), precision=np.diag(1.0 / np.asarray(sds) ** 2))
  beta, _ = ability.fit_ability(x, bench.difficulty[q], y[q, m].astype(np.float64), prior)
  delta = beta[2:] if per_llm else np.zeros(n_models)
  return float(beta[0]), float(beta[1]), delta


def _item_side_p(bench: Bench, s: float, c: float, delta) -> np.ndarray:
  return numerics.sigmoid(s * bench.ability_term - bench.difficulty[:, None] + c + delta[None, :])


def offset_estimate(bench: Bench, y, labelled, known, priors: Priors) -> np.ndarray:
  """The earlier estimator: a benchmark-wide offset, then per-LLM offsets around it."""
  cols = [m for m in range(labelled.shape[1]) if labelled[:, m].any()]
  pieces = [(bench.logits[labelled[:, m], m], y[labelled[:, m], m]) for m in cols]
  mu = scores_lib.shared_offset(pieces, priors.shared_sd)
  delta = np.full(labelled.shape[1], mu)
  for m, (l, ym) in zip(cols, pieces):
    delta[m] = scores_lib.fit_offset(l, ym, priors.per_llm_sd, mu)
  return _fill(numerics.sigmoid(bench.logits + delta[None, :]), y, labelled, known)


def gp_blend(naive, p_irt, p, labelled, weights) -> np.ndarray:
  """lambda_m * naive + (1 - lambda_m) * p_irt with lambda_m = b^2 / (b^2 + v_m):
  v_m the variance of the weighted label mean if the model's P were true, b^2
  the residuals' mean square beyond v (floored at GP_FLOOR)."""
  w = np.where(labelled, weights, 0.0)
  with np.errstate(invalid="ignore", divide="ignore"):
    total = w.sum(0)
    v = (w ** 2 * p * (1 - p)).sum(0) / total ** 2
    resid = naive - (w * p).sum(0) / total
  ok = np.isfinite(resid) & np.isfinite(v)
  b2 = max(float(np.mean(resid[ok] ** 2) - np.mean(v[ok])), GP_FLOOR) if ok.any() else GP_FLOOR
  lam = b2 / (b2 + v)
  return lam * naive + (1 - lam) * p_irt


def blend_estimate(bench: Bench, y, labelled, weights, priors: Priors, p0, naive, shared: bool,
                   rng) -> np.ndarray:
  """grid_estimators' inverse-variance blend of the naive mean and the p-IRT fill
  (item side s, c; p0 its P), the model's bias cross-fitted on folds of the
  labelled queries; shared: both variances relative to the fleet's common draw."""
  known = bench.labels >= 0
  n_known, k = known.sum(0), labelled.sum(0)
  folds = grid_est.fold_ids(labelled, rng)
  p_cross = p0.copy()  # in-sample only if there are too few labelled queries to fold
  for f in range(folds.max() + 1):
    held = (folds == f)[:, None] & labelled
    s, c, _ = fit_item_side(bench, y, labelled & ~held, priors, per_llm=False)
    p_cross = np.where(held, _item_side_p(bench, s, c, np.zeros(labelled.shape[1])), p_cross)
  s2_resid, beta2 = grid_est.model_bias_sq(y, p_cross, labelled, weights, n_known, shared)
  v_naive = grid_est.naive_variance(y, labelled, weights, n_known, shared)
  w = grid_est.blend_weight(v_naive, beta2, s2_resid, k, n_known)
  return w * naive + (1 - w) * _fill(p0, y, labelled, known)


def kernel_estimate(bench: Bench, y, labelled, p) -> np.ndarray:
  """The per-LLM refit's P (`irt`) plus its labelled residuals spread to similar
  queries (grid_estimators.spread_residuals, bandwidth by leave-one-out on the
  labelled cells); NaN without embeddings."""
  known = bench.labels >= 0
  if bench.embeddings is None:
    return np.full(labelled.shape[1], np.nan)
  resid = np.where(labelled, y - p, 0.0)
  chosen = grid_est.choose_kernel(bench.embeddings, resid, labelled)
  if chosen is not None:
    p = np.clip(p + grid_est.spread_residuals(bench.embeddings, resid, labelled, *chosen), 0, 1)
  return _fill(p, y, labelled, known)


def diff_estimate(bench: Bench, y, labelled, groups, priors: Priors, p_irt, rng) -> np.ndarray:
  """grid_estimators.difference_estimate with `irt`'s item side (s, c, delta)
  refitted without each fold of the labelled queries (p_irt, the in-sample fit,
  only if there are too few labelled queries to fold)."""
  known = bench.labels >= 0
  folds = grid_est.fold_ids(labelled, rng)
  present = sorted(set(folds[labelled.any(axis=1)].tolist()))
  p_folds = {}
  for f in present:
    if f < 0:
      p_folds[f] = p_irt
      continue
    s, c, delta = fit_item_side(bench, y, labelled & (folds != f)[:, None], priors, per_llm=True)
    p_folds[f] = _item_side_p(bench, s, c, delta)
  return grid_est.difference_estimate(y, known, labelled, groups, folds, p_folds)


def estimates(bench: Bench, labelled, weights, priors: Priors, shared: bool = False,
              rng=None, groups=None) -> dict[str, np.ndarray]:
  """Every estimator's accuracy per LLM [M] from one labelled design: labelled
  [n, M] bool (a subset of the known cells), weights [n, M] each pick's share;
  shared: one set of queries for every LLM (the blend's variances depend on it);
  rng deals the cross-fitting folds; groups [n, M] the design group of each
  cell (the stratum or cluster its picks stand for; default one group: random
  picks)."""
  known = bench.labels >= 0
  y = (bench.labels == 1).astype(np.float64)
  rng = np.random.default_rng(0) if rng is None else rng
  groups = np.zeros(known.shape, np.int64) if groups is None else groups
  naive = weighted_mean(y, labelled, weights)
  s, c, delta = fit_item_side(bench, y, labelled, priors, per_llm=True)
  s0, c0, _ = fit_item_side(bench, y, labelled, priors, per_llm=False)
  p0 = _item_side_p(bench, s0, c0, np.zeros(labelled.shape[1]))
  p_irt = _item_side_p(bench, s, c, delta)
  out = {"naive": naive,
         "offset": offset_estimate(bench, y, labelled, known, priors),
         "irt": _fill(p_irt, y, labelled, known),
         "gp_irt": gp_blend(naive, _fill(p0, y, labelled, known), p0, labelled, weights),
         "blend": blend_estimate(bench, y, labelled, weights, priors, p0, naive, shared, rng),
         "kernel": kernel_estimate(bench, y, labelled, p_irt),
         "diff": diff_estimate(bench, y, labelled, groups, priors, p_irt, rng)}
  none = ~labelled.any(axis=0)
  return {name: np.where(none, np.nan, v) for name, v in out.items()}


# ----------------------------------------------------------------------------
# Designs: which cells are labelled under each protocol and choice.

def shared_design(bench: Bench, choice: str, k: int, rng, seed: int):
  """(labelled [n, M], weights [n, M], groups [n, M]): one set of k queries for
  every LLM; groups: the design group (stratum, cluster) of each known cell."""
  known = bench.labels >= 0
  pool = np.flatnonzero(known.any(axis=1))
  if choice == "random":
    idx, w, g = query_choice.random_pick(len(pool), k, rng)
  elif choice == "stratified":
    idx, w, g = query_choice.stratified_pick(-numerics.sigmoid(bench.logits[pool]).mean(1), k, rng)
  elif choice == "anchors_items":
    idx, w, g = query_choice.anchor_pick(bench.logits[pool], k, seed)
  elif choice == "anchors_embeddings":
    if bench.embeddings is None:
      raise ValueError("anchors_embeddings needs the queries' embeddings")
    idx, w, g = query_choice.anchor_pick(bench.embeddings[pool], k, seed)
  else:
    raise ValueError(f"unknown shared choice {choice!r}; choose from {query_choice.SHARED_CHOICES}")
  labelled = np.zeros_like(known)
  labelled[pool[idx]] = known[pool[idx]]
  weights = np.zeros(known.shape)
  weights[pool[idx]] = w[:, None]
  groups = np.full(known.shape, -1, np.int64)
  groups[pool] = g[:, None]
  return labelled, weights, np.where(known, groups, -1)


def per_llm_design(bench: Bench, choice: str, k: int, rng, orders=None):
  """(labelled, weights, groups): k queries per LLM among its own known ones;
  LLMs with no more than k known answers get none (they are not scored at this
  k). Each LLM draws from its own child of rng (rng.spawn), so a choice that
  draws more numbers for one LLM does not shift the next LLM's draw: random and
  stratified picks made from the same rng state stay coupled LLM by LLM."""
  known = bench.labels >= 0
  labelled, weights = np.zeros_like(known), np.zeros(known.shape)
  groups = np.full(known.shape, -1, np.int64)
  for m, child in enumerate(rng.spawn(known.shape[1])):
    rows = np.flatnonzero(known[:, m])
    if len(rows) <= k:
      continue
    if choice == "random":
      idx, w, g = query_choice.random_pick(len(rows), k, child)
    elif choice == "stratified":
      idx, w, g = query_choice.stratified_pick(-bench.logits[rows, m], k, child)
    elif choice in ("adaptive", "fluid"):
      idx, w, g = orders[m][:k], np.full(k, 1.0 / k), np.zeros(len(rows), np.int64)
    else:
      raise ValueError(f"unknown per-LLM choice {choice!r}; choose from "
                       f"{query_choice.PER_LLM_CHOICES}")
    labelled[rows[idx], m] = True
    weights[rows[idx], m] = w
    groups[rows, m] = g
  return labelled, weights, groups


def adaptive_orders(bench: Bench, k_max: int, rng, prior_sd: float) -> list:
  """Per LLM the adaptive order (indices into its known rows) after a random first pick."""
  known = bench.labels >= 0
  out = []
  for m in range(known.shape[1]):
    rows = np.flatnonzero(known[:, m])
    if len(rows) < 2:
      out.append(np.zeros(0, np.int64))
      continue
    first = int(rng.integers(len(rows)))
    out.append(scores_lib.adaptive_order(
        bench.logits[rows, m], bench.a_sq[rows], (bench.labels[rows, m] == 1).astype(float),
        min(k_max, len(rows) - 1), prior_sd, start=(first,)))
  return out


# ----------------------------------------------------------------------------
# The grid for one benchmark, and its metrics.

def cells(protocols=PROTOCOLS, choices=None) -> list[tuple[str, str]]:
  """(protocol, choice) pairs to run: `choices` filters each protocol's own list."""
  known = set(query_choice.SHARED_CHOICES) | set(query_choice.PER_LLM_CHOICES)
  unknown = [c for c in (choices or ()) if c not in known]
  if unknown:
    raise ValueError(f"unknown query choice(s) {unknown}; choose from {sorted(known)}")
  out = []
  for protocol in protocols:
    if protocol not in PROTOCOLS:
      raise ValueError(f"unknown label protocol {protocol!r}; choose from {list(PROTOCOLS)}")
    own = query_choice.SHARED_CHOICES if protocol == "shared" else query_choice.PER_LLM_CHOICES
    out += [(protocol, c) for c in own if choices is None or c in choices]
  if not out:
    raise ValueError(f"no query choice of {list(choices or ())} runs under the label "
                     f"protocol(s) {list(protocols)} (anchors: shared only; adaptive, "
                     f"fluid: per_llm only)")
  return out


def benchmark_grid(bench: Bench, ks, draws: int = DRAWS, seed: int = 0,
                   priors: Priors = Priors(), protocols=PROTOCOLS, choices=None) -> dict:
  """{(protocol, choice, k, estimator): [draws, M] estimated accuracies}.

  Every estimator of one draw sees the same labelled cells. An LLM with no more
  than k known answers is NaN at that k (all its answers would be labelled).
  """
  known = bench.labels >= 0
  enough = {k: known.sum(0) > k for k in ks}
  out = {}
  for cell, (protocol, choice) in enumerate(cells(protocols, choices)):
    logging.info("grid: %s labels, %s choice, %d draws x k in %s", protocol, choice, draws,
                 list(ks))
    for d in range(draws):
      rng = np.random.default_rng([seed, d, cell])
      orders = _orders(bench, choice, max(ks), rng, priors)
      for k in ks:
        # the design's generator depends on (draw, k) alone, not on the choice: random
        # and stratified picks of draw d come from the same numbers (query_choice)
        design_rng = np.random.default_rng([seed, d, k, PROTOCOLS.index(protocol)])
        if protocol == "shared":
          pool = int(known.any(axis=1).sum())
          if k >= pool:
            continue
          labelled, weights, groups = shared_design(bench, choice, k, design_rng,
                                                    seed * 1000 + d)
        else:
          labelled, weights, groups = per_llm_design(bench, choice, k, design_rng, orders)
        est = estimates(bench, labelled & enough[k][None, :], weights, priors,
                        shared=protocol == "shared", rng=rng, groups=groups)
        for name, v in est.items():
          out.setdefault((protocol, choice, k, name), np.full((draws, known.shape[1]), np.nan))
          out[(protocol, choice, k, name)][d] = np.where(enough[k], v, np.nan)
  return out


def _orders(bench: Bench, choice: str, k_max: int, rng, priors: Priors):
  """Per LLM its adaptive pick order (adaptive or fluid choices), else None."""
  if choice == "adaptive":
    return adaptive_orders(bench, k_max, rng, priors.per_llm_sd)
  if choice == "fluid":
    known = bench.labels >= 0
    return scores_lib.fluid_orders(bench.logits, (bench.labels == 1).astype(np.float64), known,
                                   k_max, rng, priors.per_llm_sd, priors.shared_sd)
  return None


def grid_metrics(grid: dict, true) -> dict:
  """"protocol/choice/k/estimator" -> per-draw metric dicts over LLMs (None where
  fewer than 2 LLMs are scored); JSON-ready, so a benchmark's grid is cached."""
  return {"/".join(map(str, key)): [scores_lib._metrics_over_llms(row, true) for row in pred]
          for key, pred in grid.items()}


METRICS = ("mae", "bias", "spearman", "kendall")


def summarize(per_benchmark: dict[str, dict]) -> list[dict]:
  """Over benchmarks: each draw's metric averaged over the benchmarks where it is
  defined, then mean, std and the per-draw values over draws; one row per cell."""
  def order(key):
    protocol, choice, k, estimator = key.split("/")
    return protocol, choice, int(k), estimator
  rows = []
  for key in sorted({key for bench in per_benchmark.values() for key in bench}, key=order):
    draws = max(len(b[key]) for b in per_benchmark.values() if key in b)
    protocol, choice, k, estimator = order(key)
    row = {"protocol": protocol, "choice": choice, "k": k, "estimator": estimator,
           "draws": draws}
    for metric in METRICS:
      per_draw = []
      for d in range(draws):
        vals = [b[key][d][metric] for b in per_benchmark.values()
                if key in b and b[key][d] is not None and b[key][d][metric] is not None]
        per_draw.append(float(np.mean(vals)) if vals else None)
      ok = [v for v in per_draw if v is not None]
      row[metric] = {"mean": float(np.mean(ok)) if ok else None,
                     "std": float(np.std(ok, ddof=1)) if len(ok) > 1 else None,
                     "per_draw": per_draw}
    row["n_benchmarks"] = sum(1 for b in per_benchmark.values() if key in b)
    rows.append(row)
  return rows


def records(result: dict) -> list[dict]:
  """A benchmark-prediction result's grid rows (one per protocol, choice, k and
  estimator), each naming the dataset, kind and training protocol: the records
  that tables are made from (report.benchmark_grid_markdown)."""
  tag = {"dataset": result["dataset"], "kind": result["setup"]["kind"],
         "training": result["setup"]["protocol"]}
  return [{**tag, **row} for row in result.get("grid", [])]
