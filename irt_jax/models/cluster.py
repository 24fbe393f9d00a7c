"""Cluster router (kind `cluster`): the training-free router of Avengers and
Avengers-Pro (Zhang et al., arXiv 2505.19797 and 2508.12631).

The training queries' embeddings, L2-normalised, are clustered by k-means
(scikit-learn's KMeans); each cluster keeps every model's smoothed accuracy on
its training queries, (right answers + s * prior_m) / (known answers + s), the
prior being the model's train accuracy and s = `smoothing` (so a cluster where a
model never answered falls back to its prior and no logit is infinite). A query
goes to its `top_k` nearest centres (squared Euclidean distance, as KMeans
assigns), weighted by softmax(-beta * distance / 2) (with unit vectors,
distance / 2 = 1 - cosine for unit centres: the published router's weighting);
P(m answers q) is the weighted mean of those clusters' accuracies, which the
routing rules, the cost frontier and the AUC read like any kind's.

The published router ranks models by the reciprocal of their rank in each near
cluster; averaging the accuracies instead keeps P a probability, and routes the
same with `top_k = 1`. The number of clusters is chosen on the validation split
(lowest log loss) from `k_grid`.

With costs, Avengers-Pro ranks the models of a cluster by
alpha * (normalised accuracy) + (1 - alpha) * (1 - normalised cost), accuracy
min-max normalised and cost divided by the largest, within the cluster:
`balance_scores` computes that score for one cluster (`numerics.balance_score`,
the one implementation). Routing a `cluster` run with the cost rule `balance`
(`routing/rules.py`, `Router.route(..., rule="balance", alpha=...)`) applies it
to each query's P(correct), which with `top_k = 1` is its cluster's accuracy:
that is Avengers-Pro's router.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from irt_jax import numerics
from irt_jax.models import base


@dataclasses.dataclass(frozen=True)
class Spec:
  n_models: int
  input_dim: int
  k_grid: tuple
  top_k: int
  beta: float
  smoothing: float
  n_init: int


def normalise(x):
  x = np.asarray(x, np.float32)
  return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def weights_and_clusters(params, embeddings, spec: Spec):
  """The `top_k` nearest centres of each query [B, t] and their softmax weights."""
  x = embeddings.astype(jnp.float32)
  x = x / jnp.maximum(jnp.linalg.norm(x, axis=-1, keepdims=True), 1e-12)
  centres = params["centres"]
  dist = (centres ** 2).sum(-1)[None, :] - 2.0 * x @ centres.T + 1.0   # squared, [B, K]
  t = min(spec.top_k, centres.shape[0])
  neg, idx = jax.lax.top_k(-dist, t)
  return jax.nn.softmax(spec.beta * neg / 2.0, axis=-1), idx


def logits(params, embeddings, spec: Spec, *, train=False, rng=None, query_index=None):
  del train, rng, query_index
  w, idx = weights_and_clusters(params, embeddings, spec)
  p = (w[..., None] * params["accuracy"][idx]).sum(1)                   # [B, M]
  return base.sigmoid_logit(p)


def cluster_accuracy(assign, train, k: int, smoothing: float) -> np.ndarray:
  """[k, M] smoothed accuracy of each model on each cluster's training queries."""
  mask = train.mask.astype(np.float64)
  right = np.where(train.mask, train.labels, 0).astype(np.float64)
  prior = right.sum(0) / np.maximum(mask.sum(0), 1.0)
  onehot = np.eye(k)[assign]                                            # [n, k]
  return ((onehot.T @ right + smoothing * prior) /
          (onehot.T @ mask + smoothing)).astype(np.float32)


def fit_k(x, train, k: int, spec: Spec, seed: int) -> base.Params:
  """k-means with k clusters on the normalised train embeddings x, and the table."""
  from sklearn.cluster import KMeans
  km = KMeans(n_clusters=k, random_state=seed, n_init=spec.n_init).fit(x)
  return {"centres": km.cluster_centers_.astype(np.float32),
          "accuracy": cluster_accuracy(km.labels_, train, k, spec.smoothing)}


def fit(spec: Spec, data, config, rng) -> base.Params:
  del rng
  from irt_jax import metrics
  train, val = data.split("train"), data.split("val")
  x = normalise(data.embeddings[train.queries])
  best = None
  for k in spec.k_grid:
    if k > len(x):
      continue
    params = fit_k(x, train, k, spec, config.seed)
    lg = np.asarray(logits(params, jnp.asarray(data.embeddings[val.queries]), spec))
    p = 1.0 / (1.0 + np.exp(-lg[val.mask].astype(np.float64)))
    loss = metrics.binary_metrics(p, val.labels[val.mask])["log_loss"]
    if best is None or loss < best[0]:
      best = (loss, params)
  if best is None:
    raise base.ConfigError(f"config.model.k_grid={spec.k_grid}: every k exceeds the "
                           f"{len(x)} training queries")
  return best[1]


def balance_scores(accuracy: np.ndarray, cost: np.ndarray, alpha: float) -> np.ndarray:
  """Avengers-Pro's performance-cost score of each model in one cluster ([M]
  accuracy and cost): alpha * min-max normalised accuracy + (1 - alpha) *
  (1 - cost / largest cost); a cluster where all accuracies (costs) are equal
  scores that term 1. `numerics.balance_score` over all the models."""
  return numerics.balance_score(accuracy, cost, alpha)


KIND = base.Kind(name="cluster", spec_cls=Spec, fit=fit, logits=logits,
                 description="k-means clusters of queries, each model's smoothed "
                             "accuracy per cluster (Avengers-Pro)")
