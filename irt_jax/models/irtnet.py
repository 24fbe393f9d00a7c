"""IrtNet (the paper's model, kind `irtnet`) as pure functions of an explicit parameter pytree.

A query embedding v goes through a mixture of experts (shared experts plus
softmax-gated routed experts, each Linear -> ReLU -> Dropout -> Linear) to a
representation h, from which two heads read the query's discrimination a_q and
difficulty b_q. Each LLM has a free ability vector theta_m, and

    P(m answers q correctly) = sigmoid(a_q . theta_m - b_q).

The query network runs once per query: a batch is a block of queries with all
their models, so the MoE cost does not scale with the number of LLMs.

Parameter layout (E routed + S shared experts; shared ones come first):
  experts.w1 [D, S+E, H]  experts.b1 [S+E, H]  experts.w2 [S+E, H, O]  experts.b2 [S+E, O]
  gate.w [D, E]  gate.b [E]   heads.a_w [O, d]  heads.a_b [d]  heads.b_w [O]  heads.b_b []
  theta [M, d]
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from irt_jax.models import base
from irt_jax.models import masks

Params = base.Params


@dataclasses.dataclass(frozen=True)
class ModelSpec:
  """Static shape and regularisation settings (hashable, closed over by jit).

  No defaults here: configs/irtnet.py is their one home (base.spec_from_config).
  """
  n_models: int
  input_dim: int
  n_experts: int
  n_shared: int
  top_k: int
  hidden_dim: int
  output_dim: int
  ability_dim: int
  dropout: float
  input_noise: float
  init: str

  @classmethod
  def from_config(cls, model_config, n_models: int, input_dim: int) -> "ModelSpec":
    return base.spec_from_config(cls, model_config, n_models, input_dim)


# ----------------------------------------------------------------------------
# Initialisation.

def _uniform(key, shape, fan_in):
  bound = 1.0 / jnp.sqrt(fan_in)
  return jax.random.uniform(key, shape, jnp.float32, -bound, bound)


def init_params(key: jax.Array, spec: ModelSpec) -> Params:
  """'torch': PyTorch defaults (Linear U(+-1/sqrt(fan_in)), Embedding N(0,1));
  'lecun': LeCun-normal weights, zero biases, theta N(0, 1/d)."""
  if spec.top_k < 1 or spec.top_k > spec.n_experts:
    raise ValueError(f"model.top_k={spec.top_k} must be in 1..n_experts={spec.n_experts}")
  if spec.init not in ("torch", "lecun"):
    raise ValueError(f"model.init={spec.init!r}: expected 'torch' or 'lecun'")
  n_all = spec.n_shared + spec.n_experts
  D, H, O, d = spec.input_dim, spec.hidden_dim, spec.output_dim, spec.ability_dim
  shapes = {  # name: (shape, fan_in, is_bias)
      ("experts", "w1"): ((D, n_all, H), D, False),
      ("experts", "b1"): ((n_all, H), D, True),
      ("experts", "w2"): ((n_all, H, O), H, False),
      ("experts", "b2"): ((n_all, O), H, True),
      ("gate", "w"): ((D, spec.n_experts), D, False),
      ("gate", "b"): ((spec.n_experts,), D, True),
      ("heads", "a_w"): ((O, d), O, False),
      ("heads", "a_b"): ((d,), O, True),
      ("heads", "b_w"): ((O,), O, False),
      ("heads", "b_b"): ((), O, True),
  }
  keys = jax.random.split(key, len(shapes) + 1)
  params: Params = {"experts": {}, "gate": {}, "heads": {}}
  for k, ((group, name), (shape, fan_in, is_bias)) in zip(keys, shapes.items()):
    if spec.init == "torch":
      value = _uniform(k, shape, fan_in)
    elif is_bias:
      value = jnp.zeros(shape, jnp.float32)
    else:
      value = jax.random.normal(k, shape, jnp.float32) / jnp.sqrt(fan_in)
    params[group][name] = value
  theta_std = 1.0 if spec.init == "torch" else 1.0 / jnp.sqrt(d)
  params["theta"] = theta_std * jax.random.normal(keys[-1], (spec.n_models, d), jnp.float32)
  return params


count_params = base.count_params


# ----------------------------------------------------------------------------
# The query network.

def expert_hidden(experts: Params, v: jax.Array, keep_mask: jax.Array | None = None,
                  keep_prob: float = 1.0) -> jax.Array:
  """Every expert's hidden layer on a block of queries: [B, D] -> [B, S+E, H].

  The first layers of all experts run as one 2-D [D, (S+E)*H] matmul over the
  reshaped weight: written as an einsum over [D, S+E, H], XLA's CPU backend
  computes the weight gradient transposed and transposes 63 MB back at the
  paper's shape. `keep_mask` [B, S+E, H] applies inverted dropout.
  """
  d, n_experts, hidden_dim = experts["w1"].shape
  hidden = (v @ experts["w1"].reshape(d, n_experts * hidden_dim)).reshape(
      v.shape[:-1] + (n_experts, hidden_dim))
  hidden = jax.nn.relu(hidden + experts["b1"])
  if keep_mask is not None:
    hidden = jnp.where(keep_mask, hidden / keep_prob, 0.0)
  return hidden


def gate_weights(gate: Params, v: jax.Array, top_k: int) -> jax.Array:
  """Softmax gate over routed experts, [B, E]; with top_k < E, the k largest
  weights are kept and renormalised (the rest are exactly zero)."""
  weights = jax.nn.softmax(v @ gate["w"] + gate["b"], axis=-1)
  n_experts = weights.shape[-1]
  if top_k >= n_experts:
    return weights
  kth = jax.lax.top_k(weights, top_k)[0][..., -1:]
  kept = jnp.where(weights >= kth, weights, 0.0)
  return kept / kept.sum(axis=-1, keepdims=True)


def query_representation(params: Params, v: jax.Array, spec: ModelSpec,
                         keep_mask: jax.Array | None = None) -> jax.Array:
  """h = sum of shared experts + sum_i gate_i(v) * routed_i(v), [B, O].

  With c_e = 1 (shared) or the gate weight (routed), h = sum_e c_e (hidden_e
  W2_e + b2_e): one contraction of the gate-scaled hidden layer [B, (S+E)*H]
  with the stacked second layers [(S+E)*H, O]. Per-expert outputs [B, S+E, O]
  and a matmul batched over experts would make XLA transpose the hidden layer
  to put the expert axis first (a third of the step at llmrouter's shape).
  """
  experts = params["experts"]
  hidden = expert_hidden(experts, v, keep_mask, 1.0 - spec.dropout)
  c = expert_weights(gate_weights(params["gate"], v, spec.top_k), spec.n_shared)
  flat = (hidden * c[..., None]).reshape(v.shape[:-1] + (-1,))
  return flat @ experts["w2"].reshape(flat.shape[-1], -1) + c @ experts["b2"]


def expert_weights(gates: jax.Array, n_shared: int) -> jax.Array:
  """[B, E] gate weights -> [B, S+E] weights of every expert (shared ones: 1)."""
  ones = jnp.ones(gates.shape[:-1] + (n_shared,), gates.dtype)
  return jnp.concatenate([ones, gates], axis=-1)


def query_parameters(params: Params, h: jax.Array) -> tuple[jax.Array, jax.Array]:
  """Discrimination a [B, d] and difficulty b [B] from the representation."""
  heads = params["heads"]
  return h @ heads["a_w"] + heads["a_b"], h @ heads["b_w"] + heads["b_b"]


def irt_logit(theta_m: jax.Array, a_q: jax.Array, b_q: jax.Array) -> jax.Array:
  """The multidimensional 2PL item response: logit of P(correct) for one pair."""
  return jnp.dot(a_q, theta_m) - b_q


# [B] queries x [M] models -> [B, M]; XLA lowers the double vmap to one matmul.
irt_logits = jax.vmap(jax.vmap(irt_logit, in_axes=(0, None, None)), in_axes=(None, 0, 0))


# ----------------------------------------------------------------------------
# Whole-model entry points.

def regularisation_noise(rng: jax.Array, query_index: jax.Array, spec: ModelSpec
                         ) -> tuple[jax.Array, jax.Array]:
  """Per-query input noise [B, D] and dropout keep-mask [B, S+E, H].

  Each query's randomness is keyed by (step rng, its global row index), so the
  numbers do not depend on how a batch is split across devices.
  """
  shape = (spec.n_shared + spec.n_experts, spec.hidden_dim)
  keys = jax.vmap(lambda idx: jax.random.split(jax.random.fold_in(rng, idx)))(query_index)
  k_noise, k_drop = keys[:, 0], keys[:, 1]
  noise = spec.input_noise * jax.vmap(
      lambda k: jax.random.normal(k, (spec.input_dim,)))(k_noise)
  # = vmap(jax.random.bernoulli) over k_drop, bit for bit, in one fused pass.
  return noise, masks.bernoulli_rows(k_drop, 1.0 - spec.dropout, shape)


def predict_logits(params: Params, embeddings: jax.Array, spec: ModelSpec, *,
                   train: bool = False, rng: jax.Array | None = None,
                   query_index: jax.Array | None = None) -> jax.Array:
  """Logits [B, M] for a block of query embeddings [B, D] against every model."""
  v = embeddings.astype(jnp.float32)
  keep_mask = None
  if train and (spec.dropout > 0 or spec.input_noise > 0):
    if rng is None or query_index is None:
      raise ValueError("training-mode prediction needs rng and query_index")
    noise, keep_mask = regularisation_noise(rng, query_index, spec)
    v = v + noise
    if spec.dropout <= 0:
      keep_mask = None
  h = query_representation(params, v, spec, keep_mask)
  a, b = query_parameters(params, h)
  return irt_logits(params["theta"], a, b)


def fold_for_prediction(params: Params, spec: ModelSpec) -> Params:
  """Everything after the experts' ReLU folded into one matrix, for prediction.

  Without dropout the map from the gated hidden activations to the logits is
  linear: h = sum_e c_e (hidden_e W2_e + b2_e) with c_e = 1 (shared) or the
  gate weight, a = h A + a_b, b = h w_b + b_b, logit_m = a . theta_m - b. So
  with C = [A theta^T, -w_b] ([O, M+1]), the second expert layer becomes
  W2_e C ([H, M+1] instead of [H, O]), and the heads and theta disappear: at
  M + 1 < O that is fewer FLOPs and fewer weight bytes per query.
  """
  experts, heads, theta = params["experts"], params["heads"], params["theta"]
  cols = jnp.concatenate([heads["a_w"] @ theta.T, -heads["b_w"][:, None]], axis=1)
  return {"w1": experts["w1"], "b1": experts["b1"], "gate": params["gate"],
          "w2": jnp.einsum("eho,om->ehm", experts["w2"], cols),
          "b2": experts["b2"] @ cols,
          "const": jnp.concatenate([heads["a_b"] @ theta.T, -heads["b_b"][None]])}


def folded_logits(folded: Params, embeddings: jax.Array, spec: ModelSpec) -> jax.Array:
  """`predict_logits` (no dropout, no noise) from `fold_for_prediction`'s output."""
  v = embeddings.astype(jnp.float32)
  hidden = expert_hidden(folded, v)
  c = expert_weights(gate_weights(folded["gate"], v, spec.top_k), spec.n_shared)
  out = jnp.einsum("beh,ehm->bm", hidden * c[:, :, None], folded["w2"])
  out = out + c @ folded["b2"] + folded["const"]
  return out[:, :-1] + out[:, -1:]


def query_difficulty(params: Params, embeddings: jax.Array, spec: ModelSpec
                     ) -> tuple[jax.Array, jax.Array]:
  """Interpretable (a_q, difficulty_q) with abilities centred at zero.

  IRT is identified only up to a shift of every theta_m; fixing mean ability to
  zero gives difficulty_q = b_q - a_q . mean(theta), the logit by which the
  average model falls short on q.
  """
  h = query_representation(params, embeddings.astype(jnp.float32), spec)
  a, b = query_parameters(params, h)
  return a, b - a @ params["theta"].mean(axis=0)


def _with_abilities(params: Params, theta) -> Params:
  return {**params, "theta": jnp.asarray(theta, jnp.float32)}


def _items(params: Params, embeddings: jax.Array, spec: ModelSpec):
  return query_parameters(params, query_representation(params, embeddings.astype(jnp.float32),
                                                       spec))


KIND = base.Kind(
    name="irtnet", spec_cls=ModelSpec, init=init_params, logits=predict_logits,
    irt=base.IrtView(abilities=lambda params: params["theta"], items=_items,
                     with_abilities=_with_abilities,
                     gate=lambda params, v, spec: gate_weights(params["gate"],
                                                               v.astype(jnp.float32),
                                                               spec.top_k)),
    prepare=fold_for_prediction, prepared_logits=folded_logits,
    description="IrtNet: MoE query network -> (a_q, b_q), free abilities theta_m")
