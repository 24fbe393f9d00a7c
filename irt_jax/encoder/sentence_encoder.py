"""Loading a sentence-transformers model folder and encoding texts with it in JAX.

A model folder is what sentence-transformers saves (or a Hugging Face snapshot of a
sentence-transformers model): ``config.json``, ``model.safetensors``, the tokenizer
files, ``modules.json`` (Transformer -> Pooling [-> Normalize]),
``1_Pooling/config.json`` and ``sentence_bert_config.json``. A plain Hugging Face
encoder folder without ``modules.json`` is read as mean pooling without normalisation.

transformers is used only for ``AutoTokenizer`` and ``AutoConfig``; the network runs in
JAX (``irt_jax.encoder.networks``) on weights read with safetensors' numpy loader. The
folder is read by ``irt_jax.encoder.folders``; texts are checked and cut into row
chunks by ``irt_jax.encoder.texts``.
"""

from __future__ import annotations

import functools
import hashlib
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from irt_jax.encoder import folders, networks, static
from irt_jax.encoder.folders import EncoderError
from irt_jax.encoder.texts import checked_texts, row_chunks
from irt_jax.encoder.weights import WeightError, build_params, load_safetensors
from irt_jax.utils import update_hash


# Token lengths the batches are padded to (capped at, and completed by, max_length):
# jit compiles one program per (rows, bucket) shape actually used. Steps of 16 up to
# 128, 32 up to 256 and 64 beyond keep padding to ~20% of the tokens on real queries
# with about a dozen compiled shapes.
DEFAULT_BUCKETS = (16, 32, 48, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320, 384, 448, 512)

def _fast_backend(tokenizer, max_length: int):
  """The Rust ``tokenizers.Tokenizer`` behind a fast Hugging Face tokenizer, set to
  truncate at ``max_length`` and not to pad (a copy: the wrapper is left as it was).
  Calling it with ``encode_batch`` skips the wrapper's per-call Python work, a third of
  a short query's tokenising time; None for a slow (pure Python) tokenizer."""
  backend = getattr(tokenizer, "backend_tokenizer", None) if getattr(tokenizer, "is_fast",
                                                                     False) else None
  if backend is None:
    return None
  from tokenizers import Tokenizer
  backend = Tokenizer.from_str(backend.to_str())
  backend.no_padding()
  backend.enable_truncation(max_length)
  return backend


class SentenceEncoder:
  """Texts -> float32 sentence embeddings, matching sentence-transformers' output.

  Texts are tokenised, sorted by length, grouped into a few padded lengths
  (``buckets``) and run in batches through one jitted function per shape; padding
  is masked out everywhere, so a text's vector does not depend on its batch.
  ``precision`` ("float32", "bfloat16", "int8") sets the layers' matmuls
  (``networks.prepare_weights``); anything but float32 changes the embeddings (a few
  1e-3 in cosine) and is recorded in the fingerprint, so runs never mix them.
  """

  def __init__(
      self,
      name: str,
      model_dir: Path,
      net_cfg: networks.NetConfig,
      params: dict,
      tokenizer,
      pooling: tuple[str, ...],
      normalize: bool,
      max_length: int,
      do_lower_case: bool = False,
      buckets: Sequence[int] = DEFAULT_BUCKETS,
      precision: str = "float32",
      unroll: bool = True,
  ):
    self.name = name
    self.model_dir = model_dir
    self.net_cfg = net_cfg
    self.pooling = pooling
    self.normalize = normalize
    self.max_length = int(max_length)
    self.do_lower_case = do_lower_case
    self.precision = precision
    self.dim = net_cfg.hidden_size * len(pooling)
    self.buckets = tuple(sorted({b for b in buckets if b < self.max_length} | {self.max_length}))
    self.tokenizer = tokenizer
    self._backend = _fast_backend(tokenizer, self.max_length)
    params = networks.prepare_weights(params, precision)
    if unroll:
      params = {**params, "layers": networks.unstack_layers(params["layers"], net_cfg.num_layers)}
    self.params = jax.device_put(params)
    self._embed = jax.jit(functools.partial(networks.embed, net_cfg, pooling, normalize))
    self._fingerprint: str | None = None
    self.last_rate: float | None = None  # embeddings/s of the last encode() call

  def __repr__(self) -> str:
    return (f"SentenceEncoder(name={self.name!r}, arch={self.net_cfg.arch}, dim={self.dim}, "
            f"max_length={self.max_length}, pooling={self.pooling}, normalize={self.normalize}, "
            f"precision={self.precision})")

  @property
  def compiled_shapes(self) -> int:
    """How many (rows, length) programs jit has compiled so far (its cache size): steady
    traffic should stop adding to it once each bucket has been seen."""
    return self._embed._cache_size()

  @property
  def fingerprint(self) -> str:
    """sha256 over the folder's configs and weights, plus max_length (and the precision
    when it is not float32): identifies which embeddings this encoder produces (used to
    refuse mixing runs). float32 keeps the fingerprint it always had."""
    if self._fingerprint is None:
      h = hashlib.sha256()
      h.update(f"{self.net_cfg}|{self.pooling}|{self.normalize}|{self.max_length}".encode())
      if self.precision != "float32":
        h.update(f"|precision={self.precision}".encode())
      suffixes = (".json", ".safetensors", ".txt", ".model")
      files = sorted(p for p in self.model_dir.rglob("*") if p.is_file() and p.suffix in suffixes)
      for p in files:
        h.update(str(p.relative_to(self.model_dir)).encode())
        update_hash(h, p)
      self._fingerprint = h.hexdigest()
    return self._fingerprint

  # ---------------------------------------------------------------- tokenising
  def tokenize(self, texts: Sequence[str]) -> list[list[int]]:
    """Token ids of each text (special tokens added, truncated to max_length)."""
    if self.do_lower_case:
      texts = [t.lower() for t in texts]
    if self._backend is not None:
      return [e.ids for e in self._backend.encode_batch(list(texts), add_special_tokens=True)]
    out = self.tokenizer(
        list(texts),
        add_special_tokens=True,
        truncation=True,
        max_length=self.max_length,
        padding=False,
        return_attention_mask=False,
        return_token_type_ids=False,
    )
    return out["input_ids"]

  def bucket_for(self, length: int) -> int:
    for b in self.buckets:
      if length <= b:
        return b
    return self.buckets[-1]

  def _plan(self, lengths: np.ndarray, batch_size: int) -> list[tuple[np.ndarray, int, int]]:
    """Batches as (text indices, padded length, padded rows).

    Texts are sorted longest first and cut into consecutive batches, so texts of
    similar length share a batch; each batch is padded to the smallest bucket that
    holds its longest text. A batch is also closed early when the next text would
    fit in half of the batch's bucket (so a few long texts do not make a small
    input pad everything to their length). A short batch runs as ``row_chunks``:
    power-of-two rows, a few extra shapes rather than one per remainder.
    """
    order = np.argsort(-lengths, kind="stable")
    groups: list[list[int]] = []
    current: list[int] = []
    for i in order:
      if current and (len(current) == batch_size or 2 * self.bucket_for(int(lengths[i]))
                      <= self.bucket_for(int(lengths[current[0]]))):
        groups.append(current)
        current = []
      current.append(int(i))
    groups.append(current)
    plan = []
    for group in groups:
      start = 0
      for take, rows in row_chunks(len(group), batch_size):
        chunk = group[start:start + take]
        start += take
        plan.append((np.asarray(chunk), self.bucket_for(int(lengths[chunk[0]])), rows))
    return plan

  def _padded(self, ids: list[list[int]], idx: np.ndarray, length: int,
              rows: int) -> tuple[np.ndarray, np.ndarray]:
    """(input ids, attention mask) [rows, length] for the texts ``idx``; filler rows
    beyond len(idx) get one visible pad token (their results are dropped)."""
    batch_ids = np.full((rows, length), self.net_cfg.pad_token_id, np.int32)
    mask = np.zeros((rows, length), np.int32)
    for r, i in enumerate(idx):
      seq = ids[i]
      batch_ids[r, :len(seq)] = seq
      mask[r, :len(seq)] = 1
    mask[len(idx):, 0] = 1
    return batch_ids, mask

  def warm_up(self, max_tokens: int, batch_size: int = 64) -> int:
    """Compiles, before traffic arrives, every program ``encode`` can meet for texts of
    up to ``max_tokens`` tokens: each length bucket up to the one holding max_tokens, at
    each row count ``row_chunks`` uses (powers of two up to batch_size, and batch_size).
    A service otherwise compiles each new (rows, length) shape on the request that
    first needs it (seconds for MPNet, on the request path). Returns how many programs
    this call compiled; a persistent compilation cache makes a restart's call cheap."""
    before = self.compiled_shapes
    top = self.bucket_for(max(1, int(max_tokens)))
    rows = sorted({min(batch_size, 1 << k) for k in range(batch_size.bit_length() + 1)})
    for length in (b for b in self.buckets if b <= top):
      for n in rows:
        ids, mask = self._padded([], np.zeros(0, np.int64), length, n)  # filler rows only
        self._embed(self.params, jnp.asarray(ids), jnp.asarray(mask)).block_until_ready()
    return self.compiled_shapes - before

  def lowered(self, texts: Sequence[str], batch_size: int = 64) -> list:
    """The XLA programs ``encode(texts, batch_size)`` runs, one per planned batch, lowered
    and not run (``.compile().cost_analysis()`` gives their FLOPs)."""
    ids = self.tokenize(texts)
    plan = self._plan(np.asarray([len(x) for x in ids]), batch_size)
    return [self._embed.lower(self.params, *self._padded(ids, idx, length, rows))
            for idx, length, rows in plan]

  # ---------------------------------------------------------------- encoding
  def encode(self,
             texts: Sequence[str],
             batch_size: int = 64,
             progress: bool = False) -> np.ndarray:
    """Embeds ``texts``; returns float32 [len(texts), dim] in the order given."""
    texts = checked_texts(texts, batch_size)
    out = np.zeros((len(texts), self.dim), np.float32)
    if not texts:
      return out
    start = time.perf_counter()
    ids = self.tokenize(texts)
    lengths = np.fromiter((len(x) for x in ids), dtype=np.int64, count=len(ids))
    bar = None
    if progress:
      from tqdm.auto import tqdm
      bar = tqdm(total=len(texts), unit="emb", desc=f"encode[{self.name}]", dynamic_ncols=True)
    self._run_plan(ids, self._plan(lengths, batch_size), out, bar)
    elapsed = time.perf_counter() - start
    self.last_rate = len(texts) / elapsed if elapsed > 0 else float("inf")
    if bar is not None:
      bar.close()
      print(f"[{self.name}] {len(texts)} embeddings in {elapsed:.1f} s "
            f"({self.last_rate:.1f} embeddings/s)", file=sys.stderr)
    return out

  def _run_plan(self, ids, plan, out: np.ndarray, bar) -> None:
    """Runs the batches, building batch k+1 on the host while batch k computes
    (jax dispatch is asynchronous), and writes each result into ``out``'s rows."""
    start = time.perf_counter()
    pending: tuple[np.ndarray, jax.Array] | None = None

    def collect(item: tuple[np.ndarray, jax.Array]) -> None:
      idx, result = item
      out[idx] = np.asarray(result)[:len(idx)]
      if bar is not None:
        bar.update(len(idx))
        bar.set_postfix(emb_s=f"{bar.n / (time.perf_counter() - start):.1f}")

    for idx, length, rows in plan:
      batch_ids, mask = self._padded(ids, idx, length, rows)
      result = self._embed(self.params, jnp.asarray(batch_ids), jnp.asarray(mask))
      if pending is not None:
        collect(pending)
      pending = (idx, result)
    if pending is not None:
      collect(pending)


def load_encoder(
    model_dir: str | Path,
    max_length: int | None = None,
    buckets: Sequence[int] = DEFAULT_BUCKETS,
    precision: str = "float32",
):
  """Loads a local sentence-transformers model folder as a JAX ``SentenceEncoder``, or
  a static encoder folder (``static_encoder.json``, made by ``irt_jax.data.distill``)
  as a ``static.StaticEncoder``.

  ``max_length`` overrides ``sentence_bert_config.json``'s ``max_seq_length`` (it is
  capped at what the position table covers). ``precision`` is one of
  ``networks.PRECISIONS``. Raises ``EncoderError`` when the folder lacks safetensors
  weights, a tokenizer or config.json, or uses unsupported parts.
  """
  if precision not in networks.PRECISIONS:
    raise EncoderError(f"precision must be one of {networks.PRECISIONS}, got {precision!r}")
  model_dir = Path(model_dir).expanduser()
  if not model_dir.is_dir():
    raise EncoderError(f"model folder {model_dir} does not exist")
  if static.is_static_folder(model_dir):
    if precision != "float32":
      raise EncoderError(f"{model_dir} is a static encoder (a lookup, no matmuls): "
                         f"precision {precision!r} does not apply to it")
    return static.load(model_dir, max_length, EncoderError)
  modules = folders.read_modules(model_dir)
  transformer_dir = folders.transformer_dir_of(model_dir, modules)
  weight_files = folders.check_files(model_dir, transformer_dir)
  pooling, normalize = folders.resolve_pipeline(model_dir, modules)
  hf_cfg, tokenizer = folders.load_hf(transformer_dir, model_dir)
  net_cfg = folders.net_config(hf_cfg, model_dir)
  st_cfg_file = transformer_dir / "sentence_bert_config.json"
  st_cfg = folders.read_json(st_cfg_file) if st_cfg_file.is_file() else {}
  limit = folders.position_limit(net_cfg, int(hf_cfg.max_position_embeddings))
  max_length = folders.max_length_for(max_length, st_cfg, limit, tokenizer, model_dir)
  try:
    params = build_params(net_cfg.arch, load_safetensors(weight_files), net_cfg.num_layers)
  except WeightError as e:
    raise EncoderError(f"{model_dir}: {e}") from e
  name = model_dir.resolve().name or getattr(hf_cfg, "_name_or_path", "encoder")
  return SentenceEncoder(name=name, model_dir=model_dir, net_cfg=net_cfg, params=params,
                         tokenizer=tokenizer, pooling=pooling, normalize=normalize,
                         max_length=max_length, do_lower_case=bool(st_cfg.get("do_lower_case",
                                                                                False)),
                         buckets=buckets, precision=precision)
