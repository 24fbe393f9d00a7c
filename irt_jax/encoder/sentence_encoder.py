"""Loading a sentence-transformers model folder and encoding texts with it in JAX.

A model folder is what sentence-transformers saves (or a Hugging Face snapshot of a
sentence-transformers model): ``config.json``, ``model.safetensors``, the tokenizer
files, ``modules.json`` (Transformer -> Pooling [-> Normalize]),
``1_Pooling/config.json`` and ``sentence_bert_config.json``. A plain Hugging Face
encoder folder without ``modules.json`` is read as mean pooling without normalisation.

transformers is used only for ``AutoTokenizer`` and ``AutoConfig``; the network runs in
JAX (``irt_jax.encoder.networks``) on weights read with safetensors' numpy loader.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from irt_jax.errors import UserError
from irt_jax.encoder import networks, static
from irt_jax.encoder.weights import WeightError, build_params, load_safetensors
from irt_jax.utils import update_hash

log = logging.getLogger(__name__)


class EncoderError(UserError, ValueError):
  """A model folder cannot be used (missing weights / tokenizer / config, unsupported parts)."""


# Token lengths the batches are padded to (capped at, and completed by, max_length):
# jit compiles one program per (rows, bucket) shape actually used. Steps of 16 up to
# 128, 32 up to 256 and 64 beyond keep padding to ~20% of the tokens on real queries
# with about a dozen compiled shapes.
DEFAULT_BUCKETS = (16, 32, 48, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320, 384, 448, 512)

TOKENIZER_FILES = (
    "tokenizer.json",
    "vocab.txt",
    "vocab.json",
    "spiece.model",
    "sentencepiece.bpe.model",
    "tokenizer.model",
)

SUPPORTED_MODEL_TYPES = {"bert": "bert", "mpnet": "mpnet"}

_ST_TRANSFORMER = "Transformer"
_ST_POOLING = "Pooling"
_ST_NORMALIZE = "Normalize"


def _read_json(path: Path) -> dict:
  with open(path, encoding="utf-8") as f:
    return json.load(f)


def _module_kind(type_name: str) -> str:
  """'sentence_transformers.models.Pooling' -> 'Pooling'."""
  return type_name.rsplit(".", 1)[-1]


def _pooling_modes(pool_cfg: dict) -> tuple[str, ...]:
  """Pooling modes in the order sentence-transformers concatenates them."""
  if isinstance(pool_cfg.get("pooling_mode"), str):  # compact form
    mode = pool_cfg["pooling_mode"]
    mode = {"mean_tokens": "mean", "cls_token": "cls", "max_tokens": "max"}.get(mode, mode)
    return (mode,)
  flags = [
      ("cls", "pooling_mode_cls_token"),
      ("max", "pooling_mode_max_tokens"),
      ("mean", "pooling_mode_mean_tokens"),
      ("mean_sqrt_len", "pooling_mode_mean_sqrt_len_tokens"),
      ("weightedmean", "pooling_mode_weightedmean_tokens"),
      ("lasttoken", "pooling_mode_lasttoken"),
  ]
  return tuple(mode for mode, key in flags if pool_cfg.get(key, False))


def _read_modules(model_dir: Path) -> list[dict] | None:
  """modules.json's entries in order (None when the folder has none)."""
  modules_file = model_dir / "modules.json"
  if not modules_file.is_file():
    return None
  modules = sorted(_read_json(modules_file), key=lambda m: m.get("idx", 0))
  kinds = [_module_kind(m.get("type", "")) for m in modules]
  if not kinds or kinds[0] != _ST_TRANSFORMER:
    raise EncoderError(
        f"{model_dir}: modules.json must start with a Transformer module, got {kinds}")
  return modules


def _transformer_dir(model_dir: Path, modules: list[dict] | None) -> Path:
  return model_dir / modules[0].get("path", "") if modules else model_dir


def _resolve_pipeline(model_dir: Path, modules: list[dict] | None) -> tuple[tuple[str, ...], bool]:
  """The pooling modes and whether to normalise, from modules.json."""
  if modules is None:
    log.warning("%s has no modules.json: using mean pooling, no normalisation", model_dir)
    return ("mean",), False
  kinds = [_module_kind(m.get("type", "")) for m in modules]
  unsupported = [k for k in kinds[1:] if k not in (_ST_POOLING, _ST_NORMALIZE)]
  if unsupported:
    raise EncoderError(
        f"{model_dir}: unsupported sentence-transformers modules {unsupported} in modules.json")
  pooling: tuple[str, ...] = ("mean",)
  normalize = False
  for module, kind in zip(modules[1:], kinds[1:]):
    if kind == _ST_POOLING:
      cfg_file = model_dir / module.get("path", "") / "config.json"
      if not cfg_file.is_file():
        raise EncoderError(f"{model_dir}: Pooling module declared but {cfg_file} is missing")
      pooling = _pooling_modes(_read_json(cfg_file))
      if not pooling:
        raise EncoderError(f"{cfg_file}: no pooling mode enabled")
    elif kind == _ST_NORMALIZE:
      normalize = True
  return pooling, normalize


def _check_files(model_dir: Path, transformer_dir: Path) -> list[Path]:
  """Fails with a clear EncoderError when weights, tokenizer or config are missing."""
  if not model_dir.is_dir():
    raise EncoderError(f"model folder {model_dir} does not exist")
  missing = []
  weight_files = sorted(transformer_dir.glob("*.safetensors"))
  if not weight_files:
    missing.append("model weights (*.safetensors; .bin / PyTorch checkpoints are not read)")
  if not any((transformer_dir / f).is_file() for f in TOKENIZER_FILES):
    missing.append("a tokenizer (one of " + ", ".join(TOKENIZER_FILES) + ")")
  if not (transformer_dir / "config.json").is_file():
    missing.append("config.json")
  if missing:
    raise EncoderError(f"model folder {model_dir} lacks " + " and ".join(missing))
  return weight_files


def _net_config(hf_cfg, model_dir: Path) -> networks.NetConfig:
  model_type = getattr(hf_cfg, "model_type", None)
  if model_type not in SUPPORTED_MODEL_TYPES:
    raise EncoderError(
        f"{model_dir}: model_type {model_type!r} is not supported (supported: {sorted(SUPPORTED_MODEL_TYPES)})"
    )
  act = getattr(hf_cfg, "hidden_act", "gelu")
  if act not in networks.ACTIVATIONS:
    raise EncoderError(f"{model_dir}: unsupported hidden_act {act!r}")
  if getattr(hf_cfg, "position_embedding_type", "absolute") not in (None, "absolute"):
    raise EncoderError(f"{model_dir}: only absolute position embeddings are supported for BERT")
  pad = hf_cfg.pad_token_id if hf_cfg.pad_token_id is not None else (
      1 if model_type == "mpnet" else 0)
  return networks.NetConfig(
      arch=SUPPORTED_MODEL_TYPES[model_type],
      hidden_size=int(hf_cfg.hidden_size),
      num_heads=int(hf_cfg.num_attention_heads),
      num_layers=int(hf_cfg.num_hidden_layers),
      layer_norm_eps=float(hf_cfg.layer_norm_eps),
      hidden_act=act,
      pad_token_id=int(pad),
      relative_buckets=int(getattr(hf_cfg, "relative_attention_num_buckets", 32) or 32),
  )


def _position_limit(cfg: networks.NetConfig, max_positions: int) -> int:
  """Longest sequence the position table covers (MPNet skips the first pad_id + 1 rows)."""
  if cfg.arch == "mpnet":
    return max_positions - cfg.pad_token_id - 1
  return max_positions


def _next_pow2(n: int) -> int:
  return 1 << max(0, (n - 1).bit_length())


def row_chunks(n: int, batch_size: int) -> list[tuple[int, int]]:
  """Splits a batch of ``n`` texts into (texts, padded rows) chunks whose rows are powers
  of two (or batch_size), wasting at most a fifth of a chunk on filler rows: 9 texts run
  as 8 + 1 rather than padded to 16 (7 rows of the longest length computed for nothing:
  on llmrouter prompts filler rows were 28% of MPNet's tokens). The shapes stay the few
  that padding to a power of two compiles."""
  chunks = []
  while n > 0:
    rows = min(batch_size, _next_pow2(n))
    if n >= rows or rows - n <= n // 4:
      take = min(n, rows)
    else:
      take = rows = _next_pow2(n) // 2  # the largest power of two below n
    chunks.append((take, rows))
    n -= take
  return chunks


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
    texts = _checked_texts(texts, batch_size)
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


def _checked_texts(texts: Sequence[str], batch_size: int) -> list[str]:
  """``texts`` as a list, refusing a bare string, non-strings and a batch size below 1."""
  if isinstance(texts, str):
    raise TypeError("encode() takes a sequence of strings, not a single string")
  texts = list(texts)
  if not all(isinstance(t, str) for t in texts):
    raise TypeError("encode() takes strings only")
  if batch_size < 1:
    raise ValueError("batch_size must be >= 1")
  return texts


def _load_hf(transformer_dir: Path, model_dir: Path):
  """(Hugging Face config, tokenizer) of the folder, each failure as an EncoderError."""
  from irt_jax.encoder import hf
  transformers = hf.transformers()
  AutoConfig, AutoTokenizer = transformers.AutoConfig, transformers.AutoTokenizer

  try:
    hf_cfg = AutoConfig.from_pretrained(str(transformer_dir), local_files_only=True)
  except Exception as e:
    raise EncoderError(f"{model_dir}: cannot read config.json: {e}") from e
  try:
    tokenizer = AutoTokenizer.from_pretrained(str(transformer_dir), local_files_only=True)
  except Exception as e:
    raise EncoderError(f"{model_dir}: cannot load the tokenizer: {e}") from e
  return hf_cfg, tokenizer


def _max_length(requested: int | None, st_cfg: dict, limit: int, tokenizer,
                model_dir: Path) -> int:
  """The token limit: the request, else sentence_bert_config's max_seq_length, else the
  tokenizer's; at least 2 and capped (with a warning) at the position table's ``limit``."""
  if requested is None:
    requested = st_cfg.get("max_seq_length") or min(
        limit, int(getattr(tokenizer, "model_max_length", limit)))
  max_length = int(requested)
  if max_length < 2:
    raise EncoderError(f"max_length must be at least 2, got {max_length}")
  if max_length > limit:
    log.warning("max_length %d exceeds the %d positions of %s; using %d", max_length, limit,
                model_dir, limit)
    max_length = limit
  return max_length


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
  modules = _read_modules(model_dir)
  transformer_dir = _transformer_dir(model_dir, modules)
  weight_files = _check_files(model_dir, transformer_dir)
  pooling, normalize = _resolve_pipeline(model_dir, modules)
  hf_cfg, tokenizer = _load_hf(transformer_dir, model_dir)
  net_cfg = _net_config(hf_cfg, model_dir)
  st_cfg_file = transformer_dir / "sentence_bert_config.json"
  st_cfg = _read_json(st_cfg_file) if st_cfg_file.is_file() else {}
  limit = _position_limit(net_cfg, int(hf_cfg.max_position_embeddings))
  max_length = _max_length(max_length, st_cfg, limit, tokenizer, model_dir)
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
