r"""Three estimators of the benchmark-prediction grid that earn the model's place
against the naive mean of the k labels (benchmarks.held_out wires them in).

diff: the difference (model-assisted, GREG-style) estimator, design-unbiased
---------------------------------------------------------------------------

For one LLM with known answers U (n of them) on the new benchmark, true accuracy
T = (1/n) sum_U y. The design cuts U into groups g (one group for random picks;
the strata of stratified picks; the clusters of anchors) and draws k_g picks S_g
in each by simple random sampling (stratified: k_g = 1). If p were a fixed
prediction, independent of which queries were drawn, then

    T^ = (1/n) sum_g [ sum_{U_g} p + N_g * mean_{S_g}(y - p) ]

is exactly unbiased over the draws (the mean of a simple random sample of the
residuals y - p is unbiased for their group mean), whatever p is: a wrong p
costs variance, never bias. Its variance is that of the residuals y - p within
groups, not of y: below the naive mean's whenever p tracks y within the groups.
With p constant it *is* the design-weighted naive mean.

But p is the item side refitted on the labels (irt's s, c, delta_m), which
depends on the draw. Cross-fitting keeps the estimator exactly unbiased: the
picks are dealt into folds (whole queries, fold_ids), p^(-f) is refitted
without fold f, and, since given the picks outside fold f (S_{g,-f}) the fold-f
picks of group g are a simple random sample of the rest of the group,

    T^_{g,f} = sum_{S_{g,-f}} y + sum_{U_g minus S_{g,-f}} p^(-f)
               + (N_g - |S_{g,-f}|) * mean_{S_g in fold f}(y - p^(-f))

is conditionally, hence unconditionally, unbiased for sum_{U_g} y. The labels
already seen count as themselves (the finite-population correction: at k = n
the estimate is the truth). T^_g averages T^_{g,f} over the folds holding
picks of g, weighted by their share of the picks (weights that do not depend
on the labels keep it unbiased; with these a constant p gives the naive mean
exactly, whatever the fold sizes). T^ = (1/n) sum_g T^_g. One pick per stratum
(stratified) reduces T^_g to sum_{U_g} p^(-f) + N_g (y_q - p^(-f)_q).

Unbiased holds for random and stratified picks: exactly under shared labels
(one set of picks, dealt into folds, for every LLM); under per-LLM labels up to
the queries another LLM happened to pick too (folds are dealt per query, so
whether that LLM's label there enters p^(-f) is tied to this LLM's pick), a
small dependence the argument above ignores. Anchors are not random picks
(each is its cluster's most central query), adaptive and fluid picks depend on
the answers, so for them the same formula is a model-assisted plug-in, not
design-unbiased; an LLM with no label in a group (shared labels on a sparse
fleet) has that group predicted by p plus its mean cross-fitted residual.

blend: inverse-variance weights of the naive mean and the model
----------------------------------------------------------------

For one LLM with n known answers on the new benchmark, true accuracy T (the mean
of its n labels) and k labelled queries L, there are two estimates of T:

* N, the (design-weighted) mean of its k labels. Its error N - T comes from
  which queries were drawn. For k of n drawn at random without replacement, with
  normalised design weights w_q (1/k each for random picks), the finite-
  population variance is  V_N = (1 - k/n) * sum_q w_q^2 * S^2,  S^2 the
  population variance of the labels: S^2 = T(1-T) n/(n-1) for 0/1 labels,
  estimated with T~ = (k N + 1) / (k + 2) (a 0 of 10 is not a zero variance).
  At k = n it is 0: the labels are the answer.
* P, the model's estimate: the observed labels plus, on the n - k other
  queries, the item side refitted jointly over all LLMs (discrimination scale s,
  difficulty offset c; no per-LLM offset, so P leans on this LLM's own labels
  only through its 1/M share of the pooled fit and its error is, to that order,
  independent of N's). P - T = (1 - k/n) * (mean of p - y over the unlabelled
  queries), which for large n is (1 - k/n) times the model's bias for this LLM
  on this benchmark, beta: V_P = (1 - k/n)^2 * (beta^2 + s_r^2 / (n - k)), s_r^2
  the residuals' item-level variance.

With independent errors the combination w N + (1 - w) P has the least variance
at  w = V_P / (V_P + V_N)  (the labels' share grows as their variance shrinks
like 1/k while the model's bias stays), so its mean square error is at most
min(V_N, V_P): it cannot lose much to the naive mean unless the variances are
estimated badly.

beta^2 is measured on the labelled queries themselves by cross-fitting: the
labelled queries are split into folds, the item side is refitted without each
fold and its P on that fold gives residuals r = y - p that no fit has seen. The
LLM's weighted mean residual D = sum_q w_q r_q has E[D^2] = beta^2 + (1 - k/n)
sum_q w_q^2 s_r^2, so B^2 = mean over LLMs of (D^2 - that noise) (floored) is
the spread of the biases over the fleet, and each LLM's beta^2 is its posterior
expectation given its own D under beta ~ N(0, B^2) (one LLM's k labels cannot
tell its bias from noise alone, but one the model is far off for must not be
given the fleet's average: the blend would then lean on a model that is wrong
for it).

Shared labels (one set of queries for every LLM): the draw's luck is common to
all LLMs: an easy draw raises every N, and it raises the refitted offset c, so
P too, by about the same amount. Write each error as the fleet's common part
plus the LLM's own: e_N = e_bar + e~_N, e_P = e_bar + e~_P (c matches the pooled
labels, so P inherits e_bar). No weight changes e_bar; the weight only trades
e~_N against e~_P, so both variances are those of the *relative* errors: the
naive side's S^2 is the variance over queries of z_qm = y_qm - (mean label of
query q over the LLMs), the LLM's label relative to the fleet's, and the model
side's D and residuals are centred over the LLMs the same way. Forgetting this
(the binomial S^2 of the LLM's own labels) counts the common draw noise, which
the weights cannot remove, as the labels' noise, and trusts them too little
when the fleet's queries vary in difficulty (tests/test_benchmark_grid.py
checks both on generated data).

kernel: labelled residuals spread to similar queries
----------------------------------------------------

The per-LLM item-side refit (held_out's `irt`) leaves residuals y - p on
the labelled cells; where the model is wrong about a kind of query, queries of
that kind nearby in embedding space share the error. Each unlabelled query u
gets r^_um = sum_q K(u, q) r_qm / (sum_q K(u, q) + kappa) over LLM m's labelled
q, K Gaussian in the embedding (principal components) distance with bandwidth
h; kappa is a pseudo-count at residual 0, so a query far from every labelled
one keeps the model's P. (h, kappa) is chosen by leave-one-out on the labelled
cells only (each labelled residual predicted from the LLM's other labelled
ones), against "no correction"; the held-out benchmark's unlabelled answers
are never read.
"""

from __future__ import annotations

import numpy as np

FOLDS = 5                      # cross-fitting folds of the labelled queries (blend, diff)
BIAS_FLOOR = 1e-4              # beta^2 floor: k labels never prove the model exact
BANDWIDTH_SCALES = (0.25, 0.5, 1.0, 2.0)  # x the median distance among labelled queries
PSEUDO_COUNTS = (1.0, 4.0)     # kappa candidates


def _norm_weights(labelled, weights) -> np.ndarray:
  """Design weights normalised to sum to 1 over each LLM's labelled cells."""
  w = np.where(labelled, weights, 0.0)
  total = w.sum(0)
  return np.divide(w, total, out=np.zeros_like(w), where=total > 0)


def _fleet_centred(x, labelled) -> np.ndarray:
  """x [n, M] minus, per query, its mean over the LLMs labelled on it."""
  count = labelled.sum(1, keepdims=True)
  mean = np.where(labelled, x, 0.0).sum(1, keepdims=True) / np.maximum(count, 1)
  return np.where(labelled, x - mean, 0.0)


def _weighted_var(x, omega, labelled) -> np.ndarray:
  """Per LLM the design-weighted variance over its labelled cells, k/(k-1)
  corrected (0 with fewer than 2 labels)."""
  k = labelled.sum(0)
  mean = (omega * x).sum(0)
  var = (omega * (x - mean) ** 2).sum(0)
  return np.where(k > 1, var * k / np.maximum(k - 1, 1), 0.0)


def naive_variance(y, labelled, weights, n_known, shared: bool) -> np.ndarray:
  """Per LLM [M] the variance of its naive mean's error that the blend weights
  against: the finite-population variance (1 - k/n) sum w^2 S^2; under shared
  labels, of its error relative to the fleet's (S^2 of the fleet-centred labels,
  with one pseudo-query at the binomial variance so a fleet that agreed on every
  labelled query does not claim zero noise)."""
  omega = _norm_weights(labelled, weights)
  k = labelled.sum(0)
  mean = (omega * y).sum(0)
  t = (k * mean + 1) / (k + 2)
  binomial = t * (1 - t) * n_known / np.maximum(n_known - 1, 1)
  if shared:
    z = _fleet_centred(y, labelled)
    s2 = (k * _weighted_var(z, omega, labelled) + binomial) / (k + 1)
  else:
    s2 = binomial
  fpc = np.clip(1 - k / np.maximum(n_known, 1), 0.0, 1.0)
  return fpc * (omega ** 2).sum(0) * s2


def fold_ids(labelled, rng, folds: int = FOLDS) -> np.ndarray:
  """A fold per query row [n] (-1 for rows nobody labelled): the labelled rows
  shuffled and dealt into min(folds, rows) folds, so every LLM's cells on one
  query sit in one fold (shared labels: a query is held out for the whole fleet)."""
  rows = np.flatnonzero(labelled.any(axis=1))
  out = np.full(labelled.shape[0], -1)
  if len(rows) < 2:
    return out
  out[rng.permutation(rows)] = np.arange(len(rows)) % min(folds, len(rows))
  return out


def model_bias_sq(y, p_cross, labelled, weights, n_known, shared: bool) -> tuple[np.ndarray,
                                                                                  np.ndarray]:
  """(s_r^2 [M], beta^2 [M]): the residuals' item-level variance per LLM and
  each LLM's expected squared model bias, from cross-fitted P on the labelled
  cells (relative to the fleet under shared labels).

  The LLM's mean residual D_m = beta_m + noise (variance sigma_m^2 = (1 - k/n)
  sum w^2 s_r^2). Pooled over LLMs, B^2 = mean(D^2 - sigma^2) (floored) is the
  spread of the biases; each LLM's own is then its posterior expectation under
  beta_m ~ N(0, B^2): E[beta_m^2 | D_m] = (D_m B^2 / (B^2 + sigma_m^2))^2 +
  B^2 sigma_m^2 / (B^2 + sigma_m^2). An LLM the model is far off for keeps a
  large beta^2 (its labels win) instead of the fleet's average."""
  omega = _norm_weights(labelled, weights)
  r = np.where(labelled, y - p_cross, 0.0)
  if shared:
    r = _fleet_centred(r, labelled)
  k = labelled.sum(0)
  d = (omega * r).sum(0)
  s2 = _weighted_var(r, omega, labelled)
  fpc = np.clip(1 - k / np.maximum(n_known, 1), 0.0, 1.0)
  noise = fpc * (omega ** 2).sum(0) * s2
  ok = k > 0
  pooled = float(np.mean(d[ok] ** 2 - noise[ok])) if ok.any() else 0.0
  b2 = max(pooled, BIAS_FLOOR)
  shrink = b2 / (b2 + noise)
  return s2, (d * shrink) ** 2 + noise * shrink


def blend_weight(v_naive, beta2, s2_resid, k, n_known) -> np.ndarray:
  """w = V_P / (V_P + V_N), the naive mean's share (1 where both are 0)."""
  rest = np.maximum(n_known - k, 1)
  v_model = (1 - k / np.maximum(n_known, 1)) ** 2 * (beta2 + s2_resid / rest)
  total = v_model + v_naive
  return np.divide(v_model, total, out=np.ones_like(total), where=total > 0)


def _group_sums(values, cells, groups, n_groups: int) -> np.ndarray:
  """[n_groups, M]: per LLM and group the sum of `values` [n, M] over `cells`."""
  m = values.shape[1]
  idx = (np.where(cells, groups, 0) * m + np.arange(m)[None, :])[cells]
  return np.bincount(idx, weights=values[cells], minlength=n_groups * m).reshape(n_groups, m)


def difference_estimate(y, known, labelled, groups, folds, p_folds) -> np.ndarray:
  """The cross-fitted difference estimator (derivation above), per LLM [M].

  y, known, labelled [n, M]; groups [n, M] the design group of each known cell;
  folds [n] each labelled query's fold (fold_ids); p_folds[f] [n, M] the model
  refitted without fold f's labels (the folds that hold picks). Cells outside
  every group (groups < 0: an LLM the design gave no picks) are left out."""
  known = known & (groups >= 0)
  labelled = labelled & known
  if not p_folds or not labelled.any():
    return np.full(y.shape[1], np.nan)
  n_groups = int(groups[known].max()) + 1 if known.any() else 1
  sums = lambda v, cells: _group_sums(v, cells, groups, n_groups)
  size = sums(np.ones(y.shape), known)
  total, weight = np.zeros(size.shape), np.zeros(size.shape)
  resid_sum, resid_count = np.zeros(y.shape[1]), np.zeros(y.shape[1])
  for f, p in p_folds.items():
    held = labelled & (folds == f)[:, None]
    seen = labelled & ~held
    n_held = sums(np.ones(y.shape), held)
    r = np.where(held, y - p, 0.0)
    part = (sums(y, seen) + sums(p, known & ~seen)
            + (size - sums(np.ones(y.shape), seen)) * sums(r, held) / np.maximum(n_held, 1))
    total += np.where(n_held > 0, n_held * part, 0.0)
    weight += n_held
    resid_sum += r.sum(0)
    resid_count += held.sum(0)
  mean_p = sum(p_folds.values()) / max(len(p_folds), 1)
  fallback = sums(mean_p, known) + size * (resid_sum / np.maximum(resid_count, 1))[None, :]
  by_group = np.where(weight > 0, total / np.maximum(weight, 1), fallback)
  with np.errstate(invalid="ignore", divide="ignore"):
    return np.where(size > 0, by_group, 0.0).sum(0) / known.sum(0)


# ----------------------------------------------------------------------------
# kernel: residuals spread by embedding similarity.

def _sq_dist(a, b) -> np.ndarray:
  return np.maximum((a ** 2).sum(1)[:, None] + (b ** 2).sum(1)[None, :] - 2 * a @ b.T, 0.0)


def choose_kernel(features, resid, labelled) -> tuple[float, float] | None:
  """(h, kappa) minimising the leave-one-out squared error of each labelled
  residual predicted from the same LLM's other labelled residuals; None when no
  candidate beats predicting 0 (no correction). Reads labelled cells only."""
  rows = np.flatnonzero(labelled.any(axis=1))
  if len(rows) < 3:
    return None
  d2 = _sq_dist(features[rows], features[rows])
  lab = labelled[rows].astype(np.float64)
  r = np.where(labelled[rows], resid[rows], 0.0)
  median = float(np.sqrt(np.median(d2[np.triu_indices(len(rows), 1)])))
  if median <= 0:
    return None
  best, best_err = None, float((r ** 2).sum())
  for scale in BANDWIDTH_SCALES:
    h = scale * median
    kern = np.exp(-d2 / (2 * h * h))
    np.fill_diagonal(kern, 0.0)  # leave one out
    num, den = kern @ r, kern @ lab
    for kappa in PSEUDO_COUNTS:
      err = float((np.where(lab > 0, r - num / (den + kappa), 0.0) ** 2).sum())
      if err < best_err:
        best, best_err = (h, kappa), err
  return best


def spread_residuals(features, resid, labelled, h: float, kappa: float) -> np.ndarray:
  """r^ [n, M]: each LLM's labelled residuals smoothed onto every query."""
  rows = np.flatnonzero(labelled.any(axis=1))
  kern = np.exp(-_sq_dist(features, features[rows]) / (2 * h * h))
  r = np.where(labelled[rows], resid[rows], 0.0)
  return (kern @ r) / (kern @ labelled[rows].astype(np.float64) + kappa)


# ----------------------------------------------------------------------------
# Exact design variances (what a choice of queries can gain, no draws needed).

def design_variance(values, groups, picks_per_group) -> float:
  """The exact variance over draws of the design-weighted mean of `values` [n]
  when each group g (groups [n], ids 0..G-1) gets picks_per_group[g] picks by
  simple random sampling within it, weighted by its share N_g / n:
  sum_g (N_g/n)^2 (1 - k_g/N_g) S_g^2 / k_g, S_g^2 the group's variance (n - 1
  denominator). One group with k picks is simple random sampling; one pick per
  stratum is stratified sampling, whose variance is the within-strata one."""
  values, groups = np.asarray(values, np.float64), np.asarray(groups)
  k = np.asarray(picks_per_group, np.float64)
  n, out = len(values), 0.0
  for g, k_g in enumerate(k):
    v = values[groups == g]
    if len(v) < 2:
      continue
    out += (len(v) / n) ** 2 * (1 - k_g / len(v)) * v.var(ddof=1) / k_g
  return float(out)
