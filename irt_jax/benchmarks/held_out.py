"""One held-out benchmark (`Bench`: the model's view of its queries and the
fleet's labels) and every estimator of each LLM's accuracy on it from one
labelled design (`estimates`); benchmarks.grid draws the designs.

Estimators of each LLM's accuracy over the benchmark's queries it answered
(all but `naive` keep the observed labels and predict only the rest):
* naive: the design-weighted mean of the LLM's k labels (1/k each for random picks);
* offset: the earlier estimator, scores.shared_offset then one MAP
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
  common draw under shared labels (derived in benchmarks.grid_estimators);
* kernel: `irt`'s P plus its labelled residuals y - p spread to the unlabelled
  queries by embedding similarity (bandwidth by leave-one-out on the labelled
  cells; benchmarks.grid_estimators);
* diff: the difference (model-assisted) estimator, design-unbiased for random
  and stratified picks: the sum of `irt`'s P over the benchmark plus each design
  group's mean residual y - p over its picks, P cross-fitted (refitted without
  the fold of picks it corrects), the labels already seen counted as
  themselves (derived in benchmarks.grid_estimators). The naive mean is its
  special case with a constant P.
Kinds without an item-response view use a_q . theta_m = their logit, b_q = 0.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from irt_jax import numerics
from irt_jax.benchmarks import grid_estimators
from irt_jax.benchmarks import query_choice
from irt_jax.benchmarks import scores

ESTIMATORS = ("naive", "offset", "irt", "gp_irt", "blend", "kernel", "diff")
SCALE_PRIOR_SD = 0.5   # a priori: the discrimination of a new benchmark within a factor ~2
GP_FLOOR = 1e-4        # b^2 floor: a model that looks perfect on k labels is not trusted fully


@dataclasses.dataclass(frozen=True)
class Priors:
  per_llm_sd: float = scores.PRIOR_SD
  shared_sd: float = scores.SHARED_PRIOR_SD
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
  mu = scores.shared_offset(pieces, priors.shared_sd)
  delta = np.full(labelled.shape[1], mu)
  for m, (l, ym) in zip(cols, pieces):
    delta[m] = scores.fit_offset(l, ym, priors.per_llm_sd, mu)
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
  folds = grid_estimators.fold_ids(labelled, rng)
  p_cross = p0.copy()  # in-sample only if there are too few labelled queries to fold
  for f in range(folds.max() + 1):
    held = (folds == f)[:, None] & labelled
    s, c, _ = fit_item_side(bench, y, labelled & ~held, priors, per_llm=False)
    p_cross = np.where(held, _item_side_p(bench, s, c, np.zeros(labelled.shape[1])), p_cross)
  s2_resid, beta2 = grid_estimators.model_bias_sq(y, p_cross, labelled, weights, n_known, shared)
  v_naive = grid_estimators.naive_variance(y, labelled, weights, n_known, shared)
  w = grid_estimators.blend_weight(v_naive, beta2, s2_resid, k, n_known)
  return w * naive + (1 - w) * _fill(p0, y, labelled, known)


def kernel_estimate(bench: Bench, y, labelled, p) -> np.ndarray:
  """The per-LLM refit's P (`irt`) plus its labelled residuals spread to similar
  queries (grid_estimators.spread_residuals, bandwidth by leave-one-out on the
  labelled cells); NaN without embeddings."""
  known = bench.labels >= 0
  if bench.embeddings is None:
    return np.full(labelled.shape[1], np.nan)
  resid = np.where(labelled, y - p, 0.0)
  chosen = grid_estimators.choose_kernel(bench.embeddings, resid, labelled)
  if chosen is not None:
    p = np.clip(p + grid_estimators.spread_residuals(bench.embeddings, resid, labelled, *chosen), 0, 1)
  return _fill(p, y, labelled, known)


def diff_estimate(bench: Bench, y, labelled, groups, priors: Priors, p_irt, rng) -> np.ndarray:
  """grid_estimators.difference_estimate with `irt`'s item side (s, c, delta)
  refitted without each fold of the labelled queries (p_irt, the in-sample fit,
  only if there are too few labelled queries to fold)."""
  known = bench.labels >= 0
  folds = grid_estimators.fold_ids(labelled, rng)
  present = sorted(set(folds[labelled.any(axis=1)].tolist()))
  p_folds = {}
  for f in present:
    if f < 0:
      p_folds[f] = p_irt
      continue
    s, c, delta = fit_item_side(bench, y, labelled & (folds != f)[:, None], priors, per_llm=True)
    p_folds[f] = _item_side_p(bench, s, c, delta)
  return grid_estimators.difference_estimate(y, known, labelled, groups, folds, p_folds)


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
