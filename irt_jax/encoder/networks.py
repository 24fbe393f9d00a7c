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


def dense(x: jax.Array, w: jax.Array, b: jax.Array) -> jax.Array:
  return jnp.matmul(x, w, precision=PRECISION) + b


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


def _encoder_stack(
    cfg: NetConfig,
    layers: Params,
    hidden: jax.Array,
    attention_mask: jax.Array,
    attn_bias: jax.Array | None,
) -> jax.Array:
  """Runs the post-LN transformer layers; ``attn_bias`` [1 or B, heads, L, L] is added
  to the attention logits of every layer (MPNet's shared relative position bias)."""
  batch, length, _ = hidden.shape
  heads, head_dim = cfg.num_heads, cfg.head_dim
  act = ACTIVATIONS[cfg.hidden_act]
  scale = 1.0 / math.sqrt(head_dim)

  # Additive mask: 0 for real keys, the most negative float for padded keys, so that
  # padded keys get exactly zero attention weight (the reference's convention).
  neg = jnp.finfo(hidden.dtype).min
  mask_bias = jnp.where(attention_mask[:, None, None, :] > 0, 0.0, neg).astype(hidden.dtype)
  if attn_bias is not None:
    mask_bias = mask_bias + attn_bias

  def split_heads(t: jax.Array) -> jax.Array:
    return t.reshape(batch, length, heads, head_dim)

  def layer(x: jax.Array, p: Params) -> tuple[jax.Array, None]:
    qkv = dense(x, p["qkv_w"], p["qkv_b"])
    q, k, v = jnp.split(qkv, 3, axis=-1)
    q, k, v = split_heads(q), split_heads(k), split_heads(v)
    logits = jnp.einsum("bqhd,bkhd->bhqk", q, k, precision=PRECISION) * scale
    weights = jax.nn.softmax(logits + mask_bias, axis=-1)
    context = jnp.einsum("bhqk,bkhd->bqhd", weights, v, precision=PRECISION)
    context = context.reshape(batch, length, heads * head_dim)
    attn_out = layer_norm(
        dense(context, p["out_w"], p["out_b"]) + x, p["attn_ln_scale"], p["attn_ln_bias"],
        cfg.layer_norm_eps)
    ffn = act(dense(attn_out, p["ffn_in_w"], p["ffn_in_b"]))
    out = layer_norm(
        dense(ffn, p["ffn_out_w"], p["ffn_out_b"]) + attn_out,
        p["ffn_ln_scale"],
        p["ffn_ln_bias"],
        cfg.layer_norm_eps,
    )
    return out, None

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
