"""Nearest-neighbour vote (kind `knn`): the floor a learned router must clear.

P(model m answers q) is the smoothed mean of m's labels over the k training
queries most similar to q (cosine of the embeddings) among those where m's
answer is known: (sum of labels + prior_m) / (count + 1), prior_m being m's
train accuracy, so an empty neighbourhood falls back to the prior and no logit
is infinite. k is chosen on the validation split (lowest log loss) from
`k_grid`; the predictor holds the normalised training embeddings and labels.
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


def _normalise(x):
  return x / jnp.maximum(jnp.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def logits(params, embeddings, spec: Spec, *, train=False, rng=None, query_index=None):
  del train, rng, query_index
  k_max = min(max(spec.k_grid), params["train_emb"].shape[0])
  sims = _normalise(embeddings.astype(jnp.float32)) @ params["train_emb"].T    # [B, N]
  _, idx = jax.lax.top_k(sims, k_max)                                          # [B, k_max]
  within = (jnp.arange(k_max) < params["k"])[None, :, None]                    # rank < k
  mask = params["mask"][idx] * within                                          # [B, k_max, M]
  votes = (params["labels"][idx] * mask).sum(1)
  p = (votes + params["prior"]) / (mask.sum(1) + 1.0)
  return base.sigmoid_logit(p)


def _params(train_emb, labels, mask, k):
  prior = (labels * mask).sum(0) / np.maximum(mask.sum(0), 1.0)
  return {"train_emb": train_emb, "labels": labels, "mask": mask,
          "prior": prior.astype(np.float32), "k": np.int32(k)}


def fit(spec: Spec, data, config, rng) -> base.Params:
  del config, rng
  from irt_jax import metrics
  train, val = data.split("train"), data.split("val")
  emb = np.asarray(_normalise(jnp.asarray(data.embeddings[train.queries])))
  labels = np.where(train.mask, train.labels, 0).astype(np.float32)
  mask = train.mask.astype(np.float32)
  best = None
  for k in spec.k_grid:
    params = _params(emb, labels, mask, k)
    lg = np.asarray(jax.jit(lambda p, v: logits(p, v, spec))(params,
                                                            data.embeddings[val.queries]))
    p = 1.0 / (1.0 + np.exp(-lg[val.mask].astype(np.float64)))
    loss = metrics.binary_metrics(p, val.labels[val.mask])["log_loss"]
    if best is None or loss < best[0]:
      best = (loss, k)
  return _params(emb, labels, mask, best[1])


KIND = base.Kind(name="knn", spec_cls=Spec, fit=fit, logits=logits,
                 description="mean label of the k nearest training queries (cosine)")
