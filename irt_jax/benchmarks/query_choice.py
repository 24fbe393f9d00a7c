"""Which k queries of a new benchmark to label: the choices benchmark-score
prediction compares (benchmarks.grid scores every choice with every
estimator).

Each choice returns the picked query indices, a design weight per pick (the
share of the benchmark that pick stands for, so the weighted mean of the k
labels is the choice's own unbiased-by-design estimate of the accuracy: 1/k each
for random picks; a stratum's or cluster's size / n for the others) and the
group of every query [n]: the part of the benchmark each pick stands for (one
group for random picks, the strata, the clusters), which the difference
estimator (benchmarks.grid) needs to correct each part by its own picks.

* random: k queries uniformly without replacement.
* stratified: the queries sorted by predicted difficulty (the mean predicted P
  over the LLMs, or one LLM's own P), cut into k contiguous strata of near-equal
  size, one query drawn at random from each, so the labelled set spans the whole
  difficulty range (random picks can miss the hardest or easiest tail at small
  k). The draw is coupled to random picks (common random numbers): the same
  generator first draws the random pick's k queries, and each stratum keeps one
  of those that fell in it (at random) or, if none did, a random member. Each
  stratum still gets a uniform pick independently of the others (so the design
  is exactly stratified sampling), while about 63% of the picks are shared with
  the random draw made from the same generator state, so "stratified minus
  random" can be read draw by draw (a paired gap) instead of across two
  independent sets of draws.
* anchors: k-means with k clusters on a representation of the queries (the
  model's logit vector over the LLMs, i.e. the item parameters as the LLMs
  see them, or the sentence embeddings); the query nearest each centroid is
  labelled and stands for its cluster (tinyBenchmarks' anchor points: one set
  for every LLM). The draw's seed seeds k-means, so draws differ. Embeddings
  are clustered on their first EMBEDDING_DIMS principal components.
* adaptive (per LLM): each next query the most informative one for that LLM's
  ability offset given its answers so far (scores.adaptive_order),
  after one random first pick so draws differ.
* fluid (per LLM): adaptive on the ability scale, after Fluid Benchmarking
  (scores.fluid_orders): the offset refitted each round as the
  `offset` estimator fits it (the benchmark's level pooled over the fleet, in
  lockstep), the next query the one with the largest expected information
  about that offset under its posterior.
"""

from __future__ import annotations

import numpy as np

SHARED_CHOICES = ("random", "stratified", "anchors_items", "anchors_embeddings")
PER_LLM_CHOICES = ("random", "stratified", "adaptive", "fluid")
# choices whose picks are drawn from the same random numbers as random picks (draw d of
# one is paired with draw d of random): their gap to random is read draw by draw
COUPLED_WITH_RANDOM = ("stratified",)
EMBEDDING_DIMS = 32   # embeddings are clustered on their first 32 principal components


def random_pick(n: int, k: int, rng: np.random.Generator):
  """k of n queries uniformly at random; weights 1/k; one group."""
  _check(n, k)
  return np.sort(rng.choice(n, size=k, replace=False)), np.full(k, 1.0 / k), np.zeros(n, np.int64)


def strata(difficulty, k: int) -> np.ndarray:
  """The stratum of each query [n]: `difficulty` sorted and cut into k contiguous
  strata of near-equal size (sizes differ by at most one)."""
  difficulty = np.asarray(difficulty, np.float64)
  _check(len(difficulty), k)
  out = np.empty(len(difficulty), np.int64)
  for h, members in enumerate(np.array_split(np.argsort(difficulty, kind="stable"), k)):
    out[members] = h
  return out


def stratified_pick(difficulty, k: int, rng: np.random.Generator):
  """One query from each of k equal-size strata of `difficulty` [n], coupled to
  random_pick: rng first draws the k queries random_pick would draw from the
  same state, then each stratum keeps one of them at random or, if none fell in
  it, a random member. Within a stratum the kept query is uniform (a uniform
  subset's random member is a uniform member) and the strata are independent,
  so this is exactly one-per-stratum stratified sampling. Each pick weighs its
  stratum's share of the n queries."""
  group = strata(difficulty, k)
  n = len(group)
  srs = rng.choice(n, size=k, replace=False)
  picks = np.empty(k, np.int64)
  for h in range(k):
    hit = srs[group[srs] == h]
    members = hit if len(hit) else np.flatnonzero(group == h)
    picks[h] = members[rng.integers(len(members))]
  weights = np.bincount(group, minlength=k)[group[picks]] / n
  return picks, weights.astype(np.float64), group


def anchor_pick(features, k: int, seed: int):
  """k anchor queries: k-means on `features` [n, f], the member of each cluster
  nearest its centroid; each anchor weighs its cluster's share of the n queries;
  the groups are the clusters."""
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
  return (np.asarray(picks, np.int64), np.asarray(weights, np.float64),
          np.asarray(km.labels_, np.int64))


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
