"""Which k queries of a new benchmark to label: the choices benchmark-score
prediction compares (evaluation.benchmark_grid scores every choice with every
estimator).

Each choice returns the picked query indices and a design weight per pick: the
share of the benchmark that pick stands for, so the weighted mean of the k
labels is the choice's own unbiased-by-design estimate of the accuracy (1/k each
for random picks; a stratum's or cluster's size / n for the others).

* random: k queries uniformly without replacement.
* stratified: the queries sorted by predicted difficulty (the mean predicted P
  over the LLMs), cut into k contiguous strata of near-equal size, one query drawn
  at random from each, so the labelled set spans the whole difficulty range
  (random picks can miss the hardest or easiest tail at small k).
* anchors: k-means with k clusters on a representation of the queries (the
  model's logit vector over the LLMs, i.e. the item parameters as the LLMs
  see them, or the sentence embeddings); the query nearest each centroid is
  labelled and stands for its cluster (tinyBenchmarks' anchor points: one set
  for every LLM). The draw's seed seeds k-means, so draws differ. Embeddings
  are clustered on their first EMBEDDING_DIMS principal components.
* adaptive (per LLM): each next query the most informative one for that LLM's
  ability offset given its answers so far (benchmark_scores.adaptive_order),
  after one random first pick so draws differ.
* fluid (per LLM): adaptive on the ability scale, after Fluid Benchmarking
  (benchmark_scores.fluid_orders): the offset refitted each round as the
  `offset` estimator fits it (the benchmark's level pooled over the fleet, in
  lockstep), the next query the one with the largest expected information
  about that offset under its posterior.
"""

from __future__ import annotations

import numpy as np

SHARED_CHOICES = ("random", "stratified", "anchors_items", "anchors_embeddings")
PER_LLM_CHOICES = ("random", "stratified", "adaptive", "fluid")
EMBEDDING_DIMS = 32   # embeddings are clustered on their first 32 principal components


def random_pick(n: int, k: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
  """k of n queries uniformly at random; weights 1/k."""
  _check(n, k)
  return np.sort(rng.choice(n, size=k, replace=False)), np.full(k, 1.0 / k)


def stratified_pick(difficulty, k: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
  """One query at random from each of k equal-size strata of `difficulty` [n]
  (sorted); each pick weighs its stratum's share of the n queries."""
  difficulty = np.asarray(difficulty, np.float64)
  _check(len(difficulty), k)
  strata = np.array_split(np.argsort(difficulty, kind="stable"), k)
  picks = np.array([s[rng.integers(len(s))] for s in strata], np.int64)
  weights = np.array([len(s) for s in strata], np.float64) / len(difficulty)
  return picks, weights


def anchor_pick(features, k: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
  """k anchor queries: k-means on `features` [n, f], the member of each cluster
  nearest its centroid; each anchor weighs its cluster's share of the n queries."""
  from sklearn.cluster import KMeans
  x = np.asarray(features, np.float64)
  _check(len(x), k)
  km = KMeans(n_clusters=k, n_init=1, random_state=seed, max_iter=100).fit(x)
  dist = ((x - km.cluster_centers_[km.labels_]) ** 2).sum(axis=1)
  picks, weights = [], []
  for c in range(k):
    members = np.flatnonzero(km.labels_ == c)
    if not len(members):  # k-means can leave a cluster empty on duplicate points
      continue
    picks.append(int(members[np.argmin(dist[members])]))
    weights.append(len(members) / len(x))
  return np.asarray(picks, np.int64), np.asarray(weights, np.float64)


def principal_components(x, dims: int = EMBEDDING_DIMS) -> np.ndarray:
  """x [n, D] projected on its first `dims` principal axes: k-means on 768-d
  sentence embeddings costs about D / dims times more per iteration, and the
  clusters follow the main directions of variation anyway."""
  x = np.asarray(x, np.float64)
  centred = x - x.mean(axis=0)
  if x.shape[1] <= dims:
    return centred
  _, _, vt = np.linalg.svd(centred, full_matrices=False)
  return centred @ vt[:dims].T


def _check(n: int, k: int) -> None:
  if not 0 < k <= n:
    raise ValueError(f"cannot pick k={k} of {n} queries")
