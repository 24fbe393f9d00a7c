"""RouterDC's dual contrastive objective (kind `routerdc`) on frozen embeddings.

RouterDC (Chen et al., 2024) scores a query against each LLM by the cosine of
an encoded query and a learned LLM embedding, divided by a temperature, and
trains with two contrastive losses. Its released training script uses
temperature 1, the top-3 / last-3 LLMs of each query as positives / negatives,
sample-LLM loss weight 1 and cluster (sample-sample) loss weight 1. Here:

* the encoder is a trainable head on the frozen sentence embedding
  (Linear -> GELU -> Linear), since irt_jax routes from precomputed embeddings;
* sample-LLM loss: each query's known correct LLMs with the highest scores
  (up to `top_k`) are positives, its known wrong ones with the lowest labels...
  (up to `last_k`, those the router scores highest) are negatives, and each
  positive contributes -log(e^{s+} / (e^{s+} + sum_neg e^{s-}));
* sample-sample loss: RouterDC clusters the training queries with k-means and
  contrasts a query with one of its cluster against others; irt_jax trains on
  blocks without cluster ids, so each query's positive is its nearest
  neighbour within the batch by the frozen embedding (a stated deviation).

RouterDC outputs scores, not probabilities, and its loss only ranks LLMs within
a query, so its scores carry no base rate (pooled over cells their AUC is near
chance). The logit of P(correct) is `scale * score + bias_m`, one scale (> 0)
and a bias per LLM fitted by BCE on stop-gradient scores: the contrastive
objective alone shapes the scores, and the calibration adds each LLM's base
rate. Routing on these logits therefore differs from RouterDC's plain argmax of
the score where LLMs' base rates differ; `scores()` gives the raw score.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from irt_jax.models import losses
from irt_jax.models import base
from irt_jax.models import irtnet


@dataclasses.dataclass(frozen=True)
class Spec:
  n_models: int
  input_dim: int
  hidden_dim: int
  embed_dim: int
  temperature: float
  top_k: int
  last_k: int
  sample_llm_weight: float
  sample_sample_weight: float


def init(key, spec: Spec) -> base.Params:
  D, H, d = spec.input_dim, spec.hidden_dim, spec.embed_dim
  k = jax.random.split(key, 5)
  return {"w1": irtnet._uniform(k[0], (D, H), D), "b1": irtnet._uniform(k[1], (H,), D),
          "w2": irtnet._uniform(k[2], (H, d), H), "b2": irtnet._uniform(k[3], (d,), H),
          "llm": jax.random.normal(k[4], (spec.n_models, d), jnp.float32),
          "scale": jnp.zeros(()), "bias": jnp.zeros((spec.n_models,))}


def _unit(x):
  return x / jnp.maximum(jnp.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def scores(params, embeddings, spec: Spec):
  """Cosine(encoded query, LLM embedding) / temperature, [B, M]."""
  v = embeddings.astype(jnp.float32)
  h = jax.nn.gelu(v @ params["w1"] + params["b1"]) @ params["w2"] + params["b2"]
  return _unit(h) @ _unit(params["llm"]).T / spec.temperature


def _calibrate(params, s):
  return jax.nn.softplus(params["scale"]) * s + params["bias"]


def logits(params, embeddings, spec: Spec, *, train=False, rng=None, query_index=None):
  del train, rng, query_index
  return _calibrate(params, scores(params, embeddings, spec))


def _rank_mask(values, allowed, k):
  """Per row, the (at most) k allowed entries with the largest values."""
  big = jnp.where(allowed, values, -jnp.inf)
  order = jnp.argsort(-big, axis=1)
  rank = jnp.argsort(order, axis=1)
  return allowed & (rank < k)


def sample_llm_loss(s, labels, mask, top_k, last_k):
  """Summed over queries: each positive against the query's negatives."""
  pos = _rank_mask(s, mask & (labels > 0.5), top_k)
  neg = _rank_mask(s, mask & (labels < 0.5), last_k)  # the wrong LLMs scored highest
  neg_sum = jnp.where(neg, jnp.exp(s), 0.0).sum(1, keepdims=True)
  per_pos = -(s - jnp.log(jnp.exp(s) + neg_sum))
  valid = pos & neg.any(1, keepdims=True)
  return jnp.where(valid, per_pos, 0.0).sum()


def sample_sample_loss(h, v, rows, temperature):
  """Summed over real rows: InfoNCE with the in-batch nearest neighbour (by the
  frozen embedding v) as positive and every other row as negative."""
  n = h.shape[0]
  eye = jnp.eye(n, dtype=bool)
  valid = rows[:, None] & rows[None, :] & ~eye
  nearest = jnp.argmax(jnp.where(valid, _unit(v) @ _unit(v).T, -jnp.inf), axis=1)
  sim = jnp.where(valid, _unit(h) @ _unit(h).T / temperature, -jnp.inf)
  log_p = sim[jnp.arange(n), nearest] - jax.nn.logsumexp(sim, axis=1)
  ok = rows & (valid.sum(1) > 0)
  return jnp.where(ok, -log_p, 0.0).sum()


def loss_sum(params, batch, spec: Spec, rng):
  del rng
  v = batch["embeddings"].astype(jnp.float32)
  h = jax.nn.gelu(v @ params["w1"] + params["b1"]) @ params["w2"] + params["b2"]
  s = _unit(h) @ _unit(params["llm"]).T / spec.temperature
  labels, mask = batch["labels"], batch["mask"]
  rows = mask.any(1)
  # The contrastive terms are per query; scaled by the observed cells per query so
  # that the step's division by the batch's cell count leaves a per-query mean.
  per_query = jnp.maximum(mask.sum(), 1.0) / jnp.maximum(rows.sum(), 1.0)
  contrast = (spec.sample_llm_weight * sample_llm_loss(s, labels, mask, spec.top_k, spec.last_k)
              + spec.sample_sample_weight * sample_sample_loss(h, v, rows, spec.temperature))
  calibrated = _calibrate(params, jax.lax.stop_gradient(s))
  bce = losses.masked_bce_sum(calibrated, labels, mask)
  return contrast * per_query + bce, calibrated


KIND = base.Kind(name="routerdc", spec_cls=Spec, init=init, logits=logits, loss_sum=loss_sum,
                 description="RouterDC: dual contrastive scores of a head on frozen embeddings")
