"""EmbedLLM's matrix factorisation (kind `mf`), as in its released `algorithm/mf.py`.

The frozen query embedding (plus N(0, noise) in training) goes through
Linear(D, d); it is multiplied elementwise with the model's embedding e_m
[d]; Linear(d, 2) gives two class scores, trained with cross-entropy. Two-class
cross-entropy equals the binary cross-entropy of the score difference, so the
kind's logit of P(correct) is class 1 minus class 0 and the default loss is exact.

It is also an item-response model: with w = W2[:, 1] - W2[:, 0] and
c = b2[1] - b2[0], logit = (q W1 + b1) . (w * e_m) + c, i.e. a_q = q W1 + b1,
theta_m = w * e_m and b = -c. `with_abilities` re-parameterises exactly (e_m <-
theta_m, W2 such that w = 1) so new abilities can be set for cold start.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from irt_jax.models import base
from irt_jax.models import irtnet


@dataclasses.dataclass(frozen=True)
class Spec:
  n_models: int
  input_dim: int
  embed_dim: int
  input_noise: float


def init(key: jax.Array, spec: Spec) -> base.Params:
  """PyTorch defaults, as the released code: Linear U(+-1/sqrt(fan_in)), Embedding N(0, 1)."""
  D, d = spec.input_dim, spec.embed_dim
  k = jax.random.split(key, 5)
  return {"proj_w": irtnet._uniform(k[0], (D, d), D), "proj_b": irtnet._uniform(k[1], (d,), D),
          "model_emb": jax.random.normal(k[2], (spec.n_models, d), jnp.float32),
          "cls_w": irtnet._uniform(k[3], (d, 2), d), "cls_b": irtnet._uniform(k[4], (2,), d)}


def _diff(params):
  return params["cls_w"][:, 1] - params["cls_w"][:, 0], params["cls_b"][1] - params["cls_b"][0]


def items(params, embeddings, spec: Spec):
  a = embeddings.astype(jnp.float32) @ params["proj_w"] + params["proj_b"]
  _, c = _diff(params)
  return a, -c * jnp.ones(a.shape[:1], jnp.float32)


def abilities(params):
  w, _ = _diff(params)
  return params["model_emb"] * w


def with_abilities(params, theta):
  cls_w = jnp.asarray(params["cls_w"]).at[:, 1].set(jnp.asarray(params["cls_w"])[:, 0] + 1.0)
  return {**params, "model_emb": jnp.asarray(theta, jnp.float32), "cls_w": cls_w}


def logits(params, embeddings, spec: Spec, *, train=False, rng=None, query_index=None):
  v = embeddings.astype(jnp.float32)
  if train and spec.input_noise > 0:
    if rng is None or query_index is None:
      raise ValueError("training-mode prediction needs rng and query_index")
    noise = jax.vmap(lambda i: jax.random.normal(jax.random.fold_in(rng, i), (spec.input_dim,))
                     )(query_index)
    v = v + spec.input_noise * noise
  q = v @ params["proj_w"] + params["proj_b"]                       # [B, d]
  scores = jnp.einsum("bd,md,dc->bmc", q, params["model_emb"], params["cls_w"]) + params["cls_b"]
  return scores[..., 1] - scores[..., 0]


KIND = base.Kind(
    name="mf", spec_cls=Spec, init=init, logits=logits,
    irt=base.IrtView(abilities=abilities, items=items, with_abilities=with_abilities),
    description="EmbedLLM matrix factorisation: (Linear(q) * e_m) -> Linear(d, 2)")
