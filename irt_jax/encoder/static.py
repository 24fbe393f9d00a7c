"""A static query encoder distilled from a transformer: a query is a lookup and a weighted mean.

Each vocabulary token has one vector, taken from the transformer once (its sentence
embedding of the one-token text ``[CLS] tok [SEP]``, reduced by PCA), and one weight
(low for frequent tokens). A text's embedding is the weighted mean of its tokens'
vectors, L2-normalised:

    e(text) = normalize( sum_t w[t] * V[t] / sum_t w[t] )   over the text's token ids t

so encoding costs the tokenizer and a few hundred multiply-adds per token instead of a
forward pass through twelve layers (model2vec's idea; built here by
``python -m irt_jax distill``).

A static encoder folder holds ``static_encoder.json`` (how it was built), the source
model's ``tokenizer.json`` and ``vectors.safetensors`` (``vectors`` [V, dim] and
``token_weights`` [V], float32): plain arrays, never pickle. ``load_encoder`` recognises
the folder by ``static_encoder.json``. Its embeddings mean nothing to a model trained on
the transformer's (nor the reverse): the run records the fingerprint of the folder's
safetensors file like any encoder's, so a Router refuses the wrong folder.
"""

from __future__ import annotations

import functools
import hashlib
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from irt_jax.encoder import texts as texts_lib

CONFIG_FILE = "static_encoder.json"
VECTORS_FILE = "vectors.safetensors"
FORMAT = "irt_jax.static_encoder"
VERSION = 1
WEIGHTINGS = ("uniform", "zipf", "sif")


def is_static_folder(model_dir: Path) -> bool:
  return (Path(model_dir) / CONFIG_FILE).is_file()


# ---------------------------------------------------------------- the arithmetic
def weighted_mean(vectors: np.ndarray, weights: np.ndarray,
                  token_ids: Sequence[Sequence[int]]) -> np.ndarray:
  """Row i = L2-normalised sum_t w[t] V[t] / sum_t w[t] over the ids of text i; a text
  whose tokens all weigh 0 (empty, or special tokens only) gets the zero vector."""
  out = np.zeros((len(token_ids), vectors.shape[1]), np.float32)
  for i, ids in enumerate(token_ids):
    if len(ids) == 0:
      continue
    ids = np.asarray(ids, np.int64)
    w = weights[ids]
    total = float(w.sum())
    if total <= 0:
      continue
    v = (w @ vectors[ids]) / total
    norm = float(np.linalg.norm(v))
    out[i] = v / norm if norm > 0 else v
  return out


def pca(x: np.ndarray, dim: int, fit_rows: np.ndarray | None = None) -> np.ndarray:
  """``x`` centred and projected on its first ``dim`` principal axes (fitted on
  ``fit_rows`` of x, all rows by default); the component signs are fixed (largest
  entry positive) so a rebuild gives the same vectors."""
  fit = x if fit_rows is None else x[fit_rows]
  if not 1 <= dim <= min(fit.shape):
    raise ValueError(f"PCA width must be in [1, {min(fit.shape)}], got {dim}")
  mean = fit.mean(0, dtype=np.float64)
  _, _, vt = np.linalg.svd(fit - mean, full_matrices=False)
  axes = vt[:dim]
  axes *= np.sign(axes[np.arange(dim), np.abs(axes).argmax(1)])[:, None]
  return ((x - mean) @ axes.T).astype(np.float32)


def sif_weights(counts: np.ndarray, a: float) -> np.ndarray:
  """Smooth inverse frequency: w[t] = a / (a + p(t)), p = counts / counts.sum() (tokens
  never seen weigh 1; the most frequent ones, 'the', '?', far less)."""
  counts = np.asarray(counts, np.float64)
  if counts.sum() <= 0:
    raise ValueError("no token counts to weight by (no training prompts?)")
  return (a / (a + counts / counts.sum())).astype(np.float32)


def zipf_weights(vocab_size: int, a: float) -> np.ndarray:
  """SIF weights with p(t) estimated from the token's id as its frequency rank
  (p proportional to 1 / (id + 1), Zipf's law): needs no text, assumes a
  frequency-ordered vocabulary."""
  p = 1.0 / np.arange(1, vocab_size + 1, dtype=np.float64)
  return (a / (a + p / p.sum())).astype(np.float32)


def token_vectors(encoder, token_ids: np.ndarray, cls_id: int, sep_id: int) -> np.ndarray:
  """The transformer ``encoder``'s (a ``SentenceEncoder``) mean-pooled, unnormalised
  output for each one-token text ``[cls_id, t, sep_id]``, float32 [len(token_ids), H].

  Three tokens is the shortest text the model was trained on: its output pooled the
  way it pools sentences lies in the space its sentence embeddings live in, and a
  token seen with its specials is what a text's token is seen with."""
  import jax.numpy as jnp

  fn = _token_program(encoder.net_cfg)
  ids = np.stack([np.full(len(token_ids), cls_id), token_ids, np.full(len(token_ids), sep_id)],
                 axis=1).astype(np.int32)
  out = fn(encoder.params, jnp.asarray(ids), jnp.ones(ids.shape, jnp.int32))
  return np.asarray(out, np.float32)


@functools.lru_cache(maxsize=4)
def _token_program(net_cfg):
  import jax
  from irt_jax.encoder import networks
  return jax.jit(functools.partial(networks.embed, net_cfg, ("mean",), False))


def open_tokenizer(path: Path | None = None, text: str | None = None):
  """The Rust tokenizer of a ``tokenizer.json`` file (or its ``text``), set to neither
  pad nor truncate."""
  from tokenizers import Tokenizer
  tokenizer = Tokenizer.from_file(str(path)) if text is None else Tokenizer.from_str(text)
  tokenizer.no_padding()
  tokenizer.no_truncation()
  return tokenizer


def tokenize(tokenizer, texts: Sequence[str], max_length: int,
             do_lower_case: bool) -> list[list[int]]:
  """Token ids without special tokens, cut where the source transformer cuts a text
  (``max_length`` tokens with its two specials), so both see the same words."""
  if do_lower_case:
    texts = [t.lower() for t in texts]
  keep = max(max_length - 2, 1)
  return [e.ids[:keep] for e in tokenizer.encode_batch(list(texts), add_special_tokens=False)]


# ---------------------------------------------------------------- the encoder
class StaticEncoder:
  """Texts -> float32 [N, dim] by lookup and weighted mean (see the module docstring).
  Same surface as ``SentenceEncoder`` where callers use it: name, model_dir, dim,
  max_length, fingerprint, precision, encode()."""

  precision = "float32"

  def __init__(self, name: str, model_dir: Path, vectors: np.ndarray, weights: np.ndarray,
               tokenizer, max_length: int, do_lower_case: bool, config: dict):
    self.name = name
    self.model_dir = Path(model_dir)
    self.vectors = vectors
    self.weights = weights
    self.tokenizer = tokenizer
    self.max_length = int(max_length)
    self.do_lower_case = do_lower_case
    self.config = config
    self.dim = int(vectors.shape[1])
    self._fingerprint: str | None = None
    self.last_rate: float | None = None

  def __repr__(self) -> str:
    return (f"StaticEncoder(name={self.name!r}, dim={self.dim}, vocab={len(self.weights)}, "
            f"weighting={self.config.get('weighting')}, max_length={self.max_length})")

  @property
  def fingerprint(self) -> str:
    """sha256 over the config, the vectors file and max_length: which embeddings this
    encoder makes (the partial-work check of ``irt_jax.data.encode``)."""
    if self._fingerprint is None:
      from irt_jax.utils import update_hash
      h = hashlib.sha256(f"static|{self.max_length}".encode())
      for name in (CONFIG_FILE, VECTORS_FILE):
        h.update(name.encode())
        update_hash(h, self.model_dir / name)
      self._fingerprint = h.hexdigest()
    return self._fingerprint

  def tokenize(self, texts: Sequence[str]) -> list[list[int]]:
    return tokenize(self.tokenizer, texts, self.max_length, self.do_lower_case)

  def encode(self, texts: Sequence[str], batch_size: int = 64,
             progress: bool = False) -> np.ndarray:
    """Embeds ``texts``; float32 [len(texts), dim] in the order given (``batch_size`` is
    the texts tokenised at a time)."""
    texts = texts_lib.checked_texts(texts, batch_size)
    start = time.perf_counter()
    out = np.zeros((len(texts), self.dim), np.float32)
    step = max(batch_size, 1024)
    for lo in range(0, len(texts), step):
      out[lo:lo + step] = weighted_mean(self.vectors, self.weights,
                                        self.tokenize(texts[lo:lo + step]))
    elapsed = time.perf_counter() - start
    self.last_rate = len(texts) / elapsed if elapsed > 0 else float("inf")
    if progress:
      print(f"[{self.name}] {len(texts)} embeddings in {elapsed:.1f} s", file=sys.stderr)
    return out


# ---------------------------------------------------------------- files
def save(out_dir: Path, vectors: np.ndarray, weights: np.ndarray, config: dict,
         tokenizer_json: str) -> Path:
  """Writes a static encoder folder: the arrays (safetensors), the config (JSON) and
  the source's tokenizer (``tokenizer_json``: the text of a Rust tokenizer's
  ``tokenizer.json``, e.g. ``backend_tokenizer.to_str()`` of a fast HF tokenizer)."""
  from safetensors.numpy import save_file
  if vectors.ndim != 2 or weights.shape != (vectors.shape[0],):
    raise ValueError(f"vectors [V, d] and weights [V] expected, got {vectors.shape} and "
                     f"{weights.shape}")
  out_dir = Path(out_dir)
  out_dir.mkdir(parents=True, exist_ok=True)
  (out_dir / "tokenizer.json").write_text(tokenizer_json, encoding="utf-8")
  save_file({"vectors": np.ascontiguousarray(vectors, np.float32),
             "token_weights": np.ascontiguousarray(weights, np.float32)},
            str(out_dir / VECTORS_FILE))
  full = {"format": FORMAT, "version": VERSION, **config, "dim": int(vectors.shape[1]),
          "vocab_size": int(vectors.shape[0])}
  (out_dir / CONFIG_FILE).write_text(json.dumps(full, indent=2) + "\n", encoding="utf-8")
  return out_dir


def _read_config(model_dir: Path, error) -> dict:
  path = model_dir / CONFIG_FILE
  try:
    config = json.loads(path.read_text(encoding="utf-8"))
  except (OSError, ValueError) as e:
    raise error(f"{path}: not a readable JSON file ({e})") from None
  if not isinstance(config, dict) or config.get("format") != FORMAT:
    raise error(f"{path}: not a static encoder config (no \"format\": \"{FORMAT}\")")
  if config.get("version") != VERSION:
    raise error(f"{path}: version {config.get('version')!r}, this code reads {VERSION}")
  return config


def _read_arrays(model_dir: Path, error) -> tuple[np.ndarray, np.ndarray]:
  from safetensors.numpy import load_file
  path = model_dir / VECTORS_FILE
  if not path.is_file():
    raise error(f"static encoder folder {model_dir} lacks {VECTORS_FILE}")
  try:
    arrays = load_file(str(path))
  except Exception as e:  # safetensors raises its own error types for a damaged file
    raise error(f"{path}: cannot read it as safetensors ({e})") from None
  missing = [k for k in ("vectors", "token_weights") if k not in arrays]
  if missing:
    raise error(f"{path}: no tensor {missing[0]!r}")
  vectors, weights = arrays["vectors"], arrays["token_weights"]
  if vectors.ndim != 2 or weights.shape != (vectors.shape[0],):
    raise error(f"{path}: vectors {vectors.shape} and token_weights {weights.shape} do not "
                f"match ([V, d] and [V])")
  if not (np.isfinite(vectors).all() and np.isfinite(weights).all()) or (weights < 0).any():
    raise error(f"{path}: non-finite vectors or weights, or negative weights")
  return vectors.astype(np.float32), weights.astype(np.float32)


def load(model_dir: str | Path, max_length: int | None, error) -> StaticEncoder:
  """Reads a static encoder folder; any missing or damaged part raises ``error`` (the
  caller's EncoderError) naming the file."""
  model_dir = Path(model_dir)
  config = _read_config(model_dir, error)
  vectors, weights = _read_arrays(model_dir, error)
  tok_file = model_dir / "tokenizer.json"
  try:
    tokenizer = open_tokenizer(tok_file)
  except Exception as e:  # the tokenizers library raises its own exception type
    raise error(f"{tok_file}: cannot load the tokenizer ({e})") from None
  if tokenizer.get_vocab_size() > len(weights):
    raise error(f"{model_dir}: the tokenizer has {tokenizer.get_vocab_size()} tokens but "
                f"{VECTORS_FILE} only {len(weights)} vectors")
  max_length = int(max_length or config.get("max_length") or 512)
  if max_length < 2:
    raise error(f"max_length must be at least 2, got {max_length}")
  return StaticEncoder(name=model_dir.resolve().name, model_dir=model_dir, vectors=vectors,
                       weights=weights, tokenizer=tokenizer, max_length=max_length,
                       do_lower_case=bool(config.get("do_lower_case", False)), config=config)
