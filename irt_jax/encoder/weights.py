"""Turns a Hugging Face ``model.safetensors`` state dict into the parameter pytree of
``irt_jax.encoder.networks`` (numpy only: nothing here imports torch).

Tensor names are matched after stripping whatever prefix the checkpoint puts in front
of ``embeddings.word_embeddings.weight`` (``""``, ``"bert."``, ``"mpnet."``, ...), so
bare encoders and checkpoints saved from a task model load alike.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np
from safetensors.numpy import load_file

from irt_jax.errors import UserError


class WeightError(UserError, ValueError):
  """A checkpoint lacks a tensor the network needs (or has an unexpected shape)."""


ANCHOR = "embeddings.word_embeddings.weight"


def load_safetensors(files: list[Path]) -> dict[str, np.ndarray]:
  """Merges one or more (sharded) safetensors files into one name -> array dict."""
  tensors: dict[str, np.ndarray] = {}
  for f in files:
    tensors.update(load_file(str(f)))
  return tensors


def strip_prefix(tensors: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
  """Removes the model prefix (e.g. ``"mpnet."``) found in front of the word embeddings."""
  anchors = [k for k in tensors if k == ANCHOR or k.endswith("." + ANCHOR)]
  if not anchors:
    raise WeightError(f"no tensor named '*{ANCHOR}' in the checkpoint")
  prefix = min(anchors, key=len)[:-len(ANCHOR)]
  return {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}


def _getter(tensors: Mapping[str, np.ndarray]) -> Callable[[str], np.ndarray]:

  def get(name: str) -> np.ndarray:
    # Very old BERT checkpoints call the LayerNorm parameters gamma / beta.
    candidates = [name]
    if name.endswith("LayerNorm.weight"):
      candidates.append(name[:-len("weight")] + "gamma")
    if name.endswith("LayerNorm.bias"):
      candidates.append(name[:-len("bias")] + "beta")
    for c in candidates:
      if c in tensors:
        return np.asarray(tensors[c], dtype=np.float32)
    raise WeightError(f"checkpoint has no tensor {name!r}")

  return get


def _linear(get: Callable[[str], np.ndarray], name: str) -> tuple[np.ndarray, np.ndarray]:
  """PyTorch Linear (weight [out, in]) -> (w [in, out], b [out])."""
  return get(name + ".weight").T, get(name + ".bias")


# Per-architecture names of the tensors of layer i (PyTorch naming).
_LAYER_NAMES = {
    "bert": {
        "q": "encoder.layer.{i}.attention.self.query",
        "k": "encoder.layer.{i}.attention.self.key",
        "v": "encoder.layer.{i}.attention.self.value",
        "out": "encoder.layer.{i}.attention.output.dense",
        "attn_ln": "encoder.layer.{i}.attention.output.LayerNorm",
        "ffn_in": "encoder.layer.{i}.intermediate.dense",
        "ffn_out": "encoder.layer.{i}.output.dense",
        "ffn_ln": "encoder.layer.{i}.output.LayerNorm",
    },
    "mpnet": {
        "q": "encoder.layer.{i}.attention.attn.q",
        "k": "encoder.layer.{i}.attention.attn.k",
        "v": "encoder.layer.{i}.attention.attn.v",
        "out": "encoder.layer.{i}.attention.attn.o",
        "attn_ln": "encoder.layer.{i}.attention.LayerNorm",
        "ffn_in": "encoder.layer.{i}.intermediate.dense",
        "ffn_out": "encoder.layer.{i}.output.dense",
        "ffn_ln": "encoder.layer.{i}.output.LayerNorm",
    },
}


def build_params(arch: str, tensors: Mapping[str, np.ndarray], num_layers: int) -> dict:
  """Builds the (numpy) parameter pytree for ``arch`` from a PyTorch-named state dict.

  Q, K and V projections are fused into one [H, 3H] matrix (one matmul per layer
  instead of three) and every layer's tensors are stacked on a leading axis.
  """
  if arch not in _LAYER_NAMES:
    raise WeightError(f"unsupported architecture {arch!r}")
  get = _getter(strip_prefix(tensors))
  names = _LAYER_NAMES[arch]

  embed = {
      "word": get("embeddings.word_embeddings.weight"),
      "position": get("embeddings.position_embeddings.weight"),
      "ln_scale": get("embeddings.LayerNorm.weight"),
      "ln_bias": get("embeddings.LayerNorm.bias"),
  }
  if arch == "bert":
    try:
      embed["token_type"] = get("embeddings.token_type_embeddings.weight")
    except WeightError:  # some BERT-family encoders have no token types
      embed["token_type"] = np.zeros((1, embed["word"].shape[1]), np.float32)

  per_layer: dict[str, list[np.ndarray]] = {}

  def add(key: str, value: np.ndarray) -> None:
    per_layer.setdefault(key, []).append(value)

  for i in range(num_layers):
    n = {k: v.format(i=i) for k, v in names.items()}
    (qw, qb), (kw, kb), (vw, vb) = (_linear(get, n[x]) for x in ("q", "k", "v"))
    add("qkv_w", np.concatenate([qw, kw, vw], axis=1))
    add("qkv_b", np.concatenate([qb, kb, vb]))
    for key in ("out", "ffn_in", "ffn_out"):
      w, b = _linear(get, n[key])
      add(key + "_w", w)
      add(key + "_b", b)
    for key in ("attn_ln", "ffn_ln"):
      add(key + "_scale", get(n[key] + ".weight"))
      add(key + "_bias", get(n[key] + ".bias"))

  params = {
      "embed": embed,
      "layers": {
          k: np.ascontiguousarray(np.stack(v)) for k, v in per_layer.items()
      },
  }
  if arch == "mpnet":
    params["rel_bias"] = get("encoder.relative_attention_bias.weight")
  return params
