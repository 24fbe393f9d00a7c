"""IrtNet without the mixture of experts (kind `irtnet_linear`): the ablation.

a_q = v W_a + c_a and b_q = v . w_b + c_b are linear in the query embedding v;
everything else (free abilities theta_m, P = sigmoid(a_q . theta_m - b_q), input
noise in training, PyTorch-default or LeCun init) is IrtNet's. Comparing it with
`irtnet` shows what the MoE query network adds.
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
  ability_dim: int
  input_noise: float
  init: str


def init(key: jax.Array, spec: Spec) -> base.Params:
  if spec.init not in ("torch", "lecun"):
    raise ValueError(f"model.init={spec.init!r}: expected 'torch' or 'lecun'")
  D, d = spec.input_dim, spec.ability_dim
  k_a, k_b, k_ab, k_bb, k_t = jax.random.split(key, 5)
  if spec.init == "torch":
    u = lambda k, shape: irtnet._uniform(k, shape, D)
    params = {"a_w": u(k_a, (D, d)), "a_b": u(k_ab, (d,)), "b_w": u(k_b, (D,)), "b_b": u(k_bb, ())}
    theta_std = 1.0
  else:
    n = lambda k, shape: jax.random.normal(k, shape, jnp.float32) / jnp.sqrt(D)
    params = {"a_w": n(k_a, (D, d)), "a_b": jnp.zeros((d,)), "b_w": n(k_b, (D,)),
              "b_b": jnp.zeros(())}
    theta_std = 1.0 / jnp.sqrt(d)
  params["theta"] = theta_std * jax.random.normal(k_t, (spec.n_models, d), jnp.float32)
  return params


def items(params: base.Params, embeddings: jax.Array, spec: Spec):
  v = embeddings.astype(jnp.float32)
  return v @ params["a_w"] + params["a_b"], v @ params["b_w"] + params["b_b"]


def logits(params, embeddings, spec: Spec, *, train=False, rng=None, query_index=None):
  v = embeddings.astype(jnp.float32)
  if train and spec.input_noise > 0:
    if rng is None or query_index is None:
      raise ValueError("training-mode prediction needs rng and query_index")
    noise = jax.vmap(lambda i: jax.random.normal(jax.random.fold_in(rng, i), (spec.input_dim,))
                     )(query_index)
    v = v + spec.input_noise * noise
  a, b = items(params, v, spec)
  return a @ params["theta"].T - b[:, None]


KIND = base.Kind(
    name="irtnet_linear", spec_cls=Spec, init=init, logits=logits,
    irt=base.IrtView(abilities=lambda p: p["theta"], items=items,
                     with_abilities=lambda p, theta: {**p, "theta": jnp.asarray(theta,
                                                                                jnp.float32)}),
    description="IrtNet ablation: a_q, b_q linear in the embedding (no mixture of experts)")
