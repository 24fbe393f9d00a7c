"""Pure-JAX forward passes of the two transformer encoders used for query embeddings.

Both networks take a parameter pytree (nested dicts of arrays, built by
``irt_jax.encoder.weights``) plus ``input_ids`` and ``attention_mask`` of shape
``[batch, length]`` and return the last hidden states ``[batch, length, hidden]``.

The layer parameters are stacked along a leading ``layer`` axis and the layers are
run with ``jax.lax.scan``: one layer is traced and compiled, whatever the depth,
which keeps compile times short for the handful of padded shapes the encoder uses.

All matrix products run at float32 ``HIGHEST`` precision so that CPU (and GPU)
results agree with the PyTorch reference to ~1e-6.

Layout of the parameters (``H`` hidden size, ``I`` intermediate size, ``N`` layers)::

    embed:  word [V, H], position [P, H], token_type [T, H] (BERT only),
            ln_scale [H], ln_bias [H]
    layers: qkv_w [N, H, 3H], qkv_b [N, 3H], out_w [N, H, H], out_b [N, H],
            attn_ln_scale / attn_ln_bias [N, H],
            ffn_in_w [N, H, I], ffn_in_b [N, I], ffn_out_w [N, I, H], ffn_out_b [N, H],
            ffn_ln_scale / ffn_ln_bias [N, H]
    rel_bias: [buckets, heads] (MPNet only)

Weights are stored input-major (``x @ w``), i.e. transposed from PyTorch's ``nn.Linear``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

Params = dict[str, Any]

PRECISION = jax.lax.Precision.HIGHEST

ACTIVATIONS: dict[str, Callable[[jax.Array], jax.Array]] = {
    "gelu": lambda x: jax.nn.gelu(x, approximate=False),
    "gelu_new": lambda x: jax.nn.gelu(x, approximate=True),
    "gelu_pytorch_tanh": lambda x: jax.nn.gelu(x, approximate=True),
    "gelu_fast": lambda x: jax.nn.gelu(x, approximate=True),
    "relu": jax.nn.relu,
    "silu": jax.nn.silu,
    "swish": jax.nn.silu,
}


@dataclass(frozen=True)
class NetConfig:
  """The architecture facts the forward pass needs (hashable: a jit static argument)."""

  arch: str  # "bert" or "mpnet"
  hidden_size: int
  num_heads: int
  num_layers: int
  layer_norm_eps: float
  hidden_act: str = "gelu"
  pad_token_id: int = 0
  relative_buckets: int = 32  # MPNet only
  relative_max_distance: int = 128  # MPNet only

  @property
  def head_dim(self) -> int:
    return self.hidden_size // self.num_heads


def layer_norm(x: jax.Array, scale: jax.Array, bias: jax.Array, eps: float) -> jax.Array:
  """LayerNorm over the last axis with the biased variance, as torch.nn.LayerNorm."""
  mean = jnp.mean(x, axis=-1, keepdims=True)
  centred = x - mean
  var = jnp.mean(centred * centred, axis=-1, keepdims=True)
  return centred * jax.lax.rsqrt(var + eps) * scale + bias


PRECISIONS = ("float32", "bfloat16", "int8")


def dense(x: jax.Array, w, b: jax.Array) -> jax.Array:
  """x @ w + b in the precision the weight was prepared for (``prepare_weights``):
  float32 at HIGHEST; bfloat16 weights take bfloat16 inputs with float32 accumulation;
  an int8 weight ({"q", "scale"}) takes the input quantised per token (dynamic, symmetric)
  and accumulates in int32, then rescales by both scales."""
  if isinstance(w, dict):
    scale_x = jnp.maximum(jnp.max(jnp.abs(x), axis=-1, keepdims=True), 1e-12) / 127.0
    xq = jnp.clip(jnp.round(x / scale_x), -127, 127).astype(jnp.int8)
    acc = jnp.matmul(xq, w["q"], preferred_element_type=jnp.int32)
    return acc.astype(jnp.float32) * scale_x * w["scale"] + b
  if w.dtype == jnp.bfloat16:
    return jnp.matmul(x.astype(jnp.bfloat16), w, preferred_element_type=jnp.float32) + b
  return jnp.matmul(x, w, precision=PRECISION) + b


MATMUL_WEIGHTS = ("qkv_w", "out_w", "ffn_in_w", "ffn_out_w")


def _int8_weight(w: np.ndarray) -> dict[str, np.ndarray]:
  """Symmetric per-output-column int8: w ~= q * scale, scale = max|column| / 127."""
  scale = np.maximum(np.abs(w).max(axis=-2, keepdims=True), 1e-12) / 127.0
  q = np.clip(np.round(w / scale), -127, 127).astype(np.int8)
  return {"q": q, "scale": scale.astype(np.float32)}


def prepare_weights(params: Params, precision: str) -> Params:
  """The parameters in the form ``dense`` runs at ``precision``: the four matmul weights
  of every layer cast to bfloat16 or quantised to int8; embeddings, biases and layer
  norms stay float32 (they are a small share of the FLOPs and set the numerics)."""
  if precision not in PRECISIONS:
    raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
  if precision == "float32":
    return params
  layers = dict(params["layers"])
  for key in MATMUL_WEIGHTS:
    w = np.asarray(layers[key], np.float32)
    layers[key] = (jnp.asarray(w, jnp.bfloat16) if precision == "bfloat16" else _int8_weight(w))
  return {**params, "layers": layers}


def unstack_layers(layers: Params, num_layers: int) -> list[Params]:
  """Stacked [N, ...] layer parameters -> one dict per layer (done once, on the host),
  so the unrolled stack reads each layer's weights in place instead of slicing them."""
  return [jax.tree.map(lambda a, i=i: a[i], layers) for i in range(num_layers)]


# --------------------------------------------------------------------------------------
# MPNet relative position buckets (T5-style, bidirectional)
# --------------------------------------------------------------------------------------


def relative_position_buckets(length: int,
                              num_buckets: int = 32,
                              max_distance: int = 128) -> np.ndarray:
  """Bucket index of every (query i, key j) pair for a sequence of ``length`` tokens.

  Half of the buckets hold keys to the right of the query, half those to the left.
  Within a half, distances below ``num_buckets // 4`` each get their own bucket;
  larger distances share logarithmically wider buckets up to ``max_distance``.
  The logarithm is evaluated in float32 and truncated, exactly as the reference
  PyTorch implementation does, so that borderline distances land in the same bucket.
  Computed on the host once per padded length (it depends on nothing else).
  """
  pos = np.arange(length, dtype=np.int64)
  rel = pos[None, :] - pos[:, None]  # key - query
  n = -rel
  half = num_buckets // 2
  bucket = (n < 0).astype(np.int64) * half
  n = np.abs(n)
  max_exact = half // 2
  with np.errstate(divide="ignore"):
    scaled = np.log(n.astype(np.float32) / np.float32(max_exact))
  scaled = scaled / np.float32(math.log(max_distance / max_exact))
  scaled = scaled * np.float32(half - max_exact)
  large = max_exact + np.where(n < max_exact, 0, scaled).astype(np.int64)
  large = np.minimum(large, half - 1)
  bucket += np.where(n < max_exact, n, large)
  return bucket.astype(np.int32)


# --------------------------------------------------------------------------------------
# Shared transformer stack (post-LayerNorm, as BERT and MPNet)
# --------------------------------------------------------------------------------------


def attention(cfg: NetConfig, p: Params, x: jax.Array, mask_bias: jax.Array) -> jax.Array:
  """Multi-head self-attention with the residual and post-LayerNorm. The score and
  context products run in bfloat16 (float32 accumulation) when the weights do."""
  batch, length, _ = x.shape
  heads, head_dim = cfg.num_heads, cfg.head_dim
  qkv = dense(x, p["qkv_w"], p["qkv_b"]).reshape(batch, length, 3, heads, head_dim)
  q, k, v = qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2]
  low = not isinstance(p["qkv_w"], dict) and p["qkv_w"].dtype == jnp.bfloat16
  if low:
    q, k, v = q.astype(jnp.bfloat16), k.astype(jnp.bfloat16), v.astype(jnp.bfloat16)
  q = q * jnp.asarray(1.0 / math.sqrt(head_dim), q.dtype)
  logits = jnp.einsum("bqhd,bkhd->bhqk", q, k, precision=PRECISION,
                      preferred_element_type=jnp.float32)
  weights = jax.nn.softmax(logits + mask_bias, axis=-1)
  context = jnp.einsum("bhqk,bkhd->bqhd", weights.astype(v.dtype), v, precision=PRECISION,
                       preferred_element_type=jnp.float32)
  context = context.reshape(batch, length, heads * head_dim)
  return layer_norm(dense(context, p["out_w"], p["out_b"]) + x, p["attn_ln_scale"],
                    p["attn_ln_bias"], cfg.layer_norm_eps)


def feed_forward(cfg: NetConfig, p: Params, x: jax.Array) -> jax.Array:
  """The position-wise MLP with the residual and post-LayerNorm."""
  hidden = ACTIVATIONS[cfg.hidden_act](dense(x, p["ffn_in_w"], p["ffn_in_b"]))
  return layer_norm(dense(hidden, p["ffn_out_w"], p["ffn_out_b"]) + x, p["ffn_ln_scale"],
                    p["ffn_ln_bias"], cfg.layer_norm_eps)


def _encoder_stack(
    cfg: NetConfig,
    layers: Params | list[Params],
    hidden: jax.Array,
    attention_mask: jax.Array,
    attn_bias: jax.Array | None,
) -> jax.Array:
  """Runs the post-LN transformer layers; ``attn_bias`` [1 or B, heads, L, L] is added
  to the attention logits of every layer (MPNet's shared relative position bias).

  ``layers`` is either a list of per-layer dicts (unrolled: each layer's weights are
  read in place, and XLA schedules across layers) or one stacked dict, run with
  ``lax.scan`` (one layer compiled, but every step copies its weight slice)."""
  # Additive mask: 0 for real keys, the most negative float for padded keys, so that
  # padded keys get exactly zero attention weight (the reference's convention).
  neg = jnp.finfo(jnp.float32).min
  mask_bias = jnp.where(attention_mask[:, None, None, :] > 0, 0.0, neg).astype(jnp.float32)
  if attn_bias is not None:
    mask_bias = mask_bias + attn_bias

  def layer(x: jax.Array, p: Params) -> tuple[jax.Array, None]:
    return feed_forward(cfg, p, attention(cfg, p, x, mask_bias)), None

  if isinstance(layers, (list, tuple)):
    for p in layers:
      hidden, _ = layer(hidden, p)
    return hidden
  hidden, _ = jax.lax.scan(layer, hidden, layers)
  return hidden


# --------------------------------------------------------------------------------------
# BERT
# --------------------------------------------------------------------------------------


def bert_forward(cfg: NetConfig, params: Params, input_ids: jax.Array,
                 attention_mask: jax.Array) -> jax.Array:
  """BERT encoder: word + absolute position + token-type (all zeros) embeddings."""
  emb = params["embed"]
  length = input_ids.shape[1]
  hidden = emb["word"][input_ids] + emb["position"][:length][None] + emb["token_type"][0][None,
                                                                                          None]
  hidden = layer_norm(hidden, emb["ln_scale"], emb["ln_bias"], cfg.layer_norm_eps)
  return _encoder_stack(cfg, params["layers"], hidden, attention_mask, None)


# --------------------------------------------------------------------------------------
# MPNet
# --------------------------------------------------------------------------------------


def mpnet_position_ids(input_ids: jax.Array, pad_token_id: int) -> jax.Array:
  """RoBERTa-style positions: real tokens count from pad_token_id + 1, pads get pad_token_id."""
  real = (input_ids != pad_token_id).astype(jnp.int32)
  return jnp.cumsum(real, axis=1) * real + pad_token_id


def mpnet_forward(cfg: NetConfig, params: Params, input_ids: jax.Array,
                  attention_mask: jax.Array) -> jax.Array:
  """MPNet encoder: word + RoBERTa-style position embeddings, and a relative position
  bias (computed once from the bucket table) added to the attention logits of every layer."""
  emb = params["embed"]
  length = input_ids.shape[1]
  positions = mpnet_position_ids(input_ids, cfg.pad_token_id)
  hidden = emb["word"][input_ids] + emb["position"][positions]
  hidden = layer_norm(hidden, emb["ln_scale"], emb["ln_bias"], cfg.layer_norm_eps)
  buckets = relative_position_buckets(length, cfg.relative_buckets, cfg.relative_max_distance)
  rel_bias = params["rel_bias"][jnp.asarray(buckets)]  # [L, L, heads]
  rel_bias = jnp.transpose(rel_bias, (2, 0, 1))[None]  # [1, heads, L, L]
  return _encoder_stack(cfg, params["layers"], hidden, attention_mask, rel_bias)


FORWARDS = {"bert": bert_forward, "mpnet": mpnet_forward}

# --------------------------------------------------------------------------------------
# Pooling and normalisation (sentence-transformers' Pooling / Normalize modules)
# --------------------------------------------------------------------------------------

POOLING_MODES = ("cls", "max", "mean", "mean_sqrt_len", "weightedmean", "lasttoken")


def pool(mode: str, hidden: jax.Array, attention_mask: jax.Array) -> jax.Array:
  """Pools token states [B, L, H] into sentence vectors [B, H] ignoring padding."""
  mask = attention_mask.astype(hidden.dtype)[..., None]  # [B, L, 1]
  if mode == "cls":
    return hidden[:, 0]
  if mode == "max":
    return jnp.max(jnp.where(mask > 0, hidden, -1e9), axis=1)
  if mode in ("mean", "mean_sqrt_len"):
    total = jnp.sum(hidden * mask, axis=1)
    count = jnp.sum(mask, axis=1)
    if mode == "mean":
      return total / jnp.maximum(count, 1e-9)
    return total / jnp.sqrt(jnp.maximum(count, 1e-9))
  if mode == "weightedmean":
    weights = mask * jnp.arange(1, hidden.shape[1] + 1, dtype=hidden.dtype)[None, :, None]
    return jnp.sum(hidden * weights, axis=1) / jnp.maximum(jnp.sum(weights, axis=1), 1e-9)
  if mode == "lasttoken":
    last = jnp.maximum(jnp.sum(attention_mask, axis=1).astype(jnp.int32) - 1, 0)
    return jnp.take_along_axis(hidden, last[:, None, None], axis=1)[:, 0]
  raise ValueError(f"unknown pooling mode {mode!r}; expected one of {POOLING_MODES}")


def l2_normalize(x: jax.Array, eps: float = 1e-12) -> jax.Array:
  """x / max(||x||, eps) along the last axis (torch.nn.functional.normalize)."""
  norm = jnp.sqrt(jnp.sum(x * x, axis=-1, keepdims=True))
  return x / jnp.maximum(norm, eps)


def embed(
    cfg: NetConfig,
    pooling: tuple[str, ...],
    normalize: bool,
    params: Params,
    input_ids: jax.Array,
    attention_mask: jax.Array,
) -> jax.Array:
  """Text ids -> sentence embeddings: network, pooling (modes concatenated in
  sentence-transformers' order), optional L2 normalisation."""
  hidden = FORWARDS[cfg.arch](cfg, params, input_ids, attention_mask)
  pooled = [pool(mode, hidden, attention_mask) for mode in pooling]
  out = pooled[0] if len(pooled) == 1 else jnp.concatenate(pooled, axis=-1)
  return l2_normalize(out) if normalize else out
