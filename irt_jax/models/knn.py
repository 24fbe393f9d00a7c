"""Nearest-neighbour vote (kind `knn`): the floor a learned router must clear.

P(model m answers q) is the smoothed mean of m's labels over the k training
queries most similar to q (cosine of the embeddings) among those where m's
answer is known: (sum of w * labels + s * prior_m) / (sum of w + s), prior_m
being m's train accuracy, so an empty neighbourhood falls back to the prior and
no logit is infinite. The weights w are 1 (`uniform`) or the inverse cosine
distance 1 / max(1 - cos, 1e-6) (`distance`, scikit-learn's weights='distance'
on that distance); s is the smoothing pseudo-count. k, the weighting and s are
chosen together on the validation split (lowest log loss) from `k_grid`,
`weighting_grid` and `smoothing_grid`, as a well-tuned kNN router is tuned
(arXiv 2505.12601); the predictor holds the normalised training embeddings and
labels. Runs saved before the weighting and smoothing were tuned read as uniform
with s = 1.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from irt_jax.models import base


@dataclasses.dataclass(frozen=True)
class Spec:
  n_models: int
  input_dim: int
  k_grid: tuple
  weighting_grid: tuple = ("uniform",)
  smoothing_grid: tuple = (1.0,)


def _normalise(x):
  return x / jnp.maximum(jnp.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def logits(params, embeddings, spec: Spec, *, train=False, rng=None, query_index=None):
  del train, rng, query_index
  k_max = min(max(spec.k_grid), params["train_emb"].shape[0])
  sims = _normalise(embeddings.astype(jnp.float32)) @ params["train_emb"].T    # [B, N]
  top, idx = jax.lax.top_k(sims, k_max)                                        # [B, k_max]
  within = (jnp.arange(k_max) < params["k"])[None, :, None]                    # rank < k
  inverse = 1.0 / jnp.maximum(1.0 - top, 1e-6)
  w = jnp.where(params.get("distance", 0) > 0, inverse, jnp.ones_like(top))[..., None]
  mask = params["mask"][idx] * within * w                                      # [B, k_max, M]
  votes = (params["labels"][idx] * mask).sum(1)
  s = params.get("smoothing", 1.0)
  p = (votes + s * params["prior"]) / (mask.sum(1) + s)
  return base.sigmoid_logit(p)


WEIGHTINGS = ("uniform", "distance")


def _params(train_emb, labels, mask, k, weighting="uniform", smoothing=1.0):
  if weighting not in WEIGHTINGS:
    raise base.ConfigError(f"config.model.weighting_grid: unknown weighting {weighting!r}; "
                           f"valid: {', '.join(WEIGHTINGS)}")
  prior = (labels * mask).sum(0) / np.maximum(mask.sum(0), 1.0)
  return {"train_emb": train_emb, "labels": labels, "mask": mask,
          "prior": prior.astype(np.float32), "k": np.int32(k),
          "distance": np.int32(weighting == "distance"), "smoothing": np.float32(smoothing)}


def fit(spec: Spec, data, config, rng) -> base.Params:
  del config, rng
  from irt_jax import metrics
  train, val = data.split("train"), data.split("val")
  emb = np.asarray(_normalise(jnp.asarray(data.embeddings[train.queries])))
  labels = np.where(train.mask, train.labels, 0).astype(np.float32)
  mask = train.mask.astype(np.float32)
  best = None
  score = jax.jit(lambda p, v: logits(p, v, spec))
  grid = [(k, w, s) for k in spec.k_grid for w in spec.weighting_grid
          for s in spec.smoothing_grid]
  for setting in grid:
    params = _params(emb, labels, mask, *setting)
    lg = np.asarray(score(params, data.embeddings[val.queries]))
    p = 1.0 / (1.0 + np.exp(-lg[val.mask].astype(np.float64)))
    loss = metrics.binary_metrics(p, val.labels[val.mask])["log_loss"]
    if best is None or loss < best[0]:
      best = (loss, setting)
  return _params(emb, labels, mask, *best[1])


KIND = base.Kind(name="knn", spec_cls=Spec, fit=fit, logits=logits,
                 description="mean label of the k nearest training queries (cosine)")
