"""Reading a sentence-transformers model folder: its modules (Transformer ->
Pooling [-> Normalize]), weight and tokenizer files, network shape and token
limit. Every failure is an EncoderError naming the folder and what is wrong.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from irt_jax.encoder import networks
from irt_jax.errors import UserError

log = logging.getLogger(__name__)


class EncoderError(UserError, ValueError):
  """A model folder cannot be used (missing weights / tokenizer / config, unsupported parts)."""


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


def read_json(path: Path) -> dict:
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


def read_modules(model_dir: Path) -> list[dict] | None:
  """modules.json's entries in order (None when the folder has none)."""
  modules_file = model_dir / "modules.json"
  if not modules_file.is_file():
    return None
  modules = sorted(read_json(modules_file), key=lambda m: m.get("idx", 0))
  kinds = [_module_kind(m.get("type", "")) for m in modules]
  if not kinds or kinds[0] != _ST_TRANSFORMER:
    raise EncoderError(
        f"{model_dir}: modules.json must start with a Transformer module, got {kinds}")
  return modules


def transformer_dir_of(model_dir: Path, modules: list[dict] | None) -> Path:
  return model_dir / modules[0].get("path", "") if modules else model_dir


def resolve_pipeline(model_dir: Path, modules: list[dict] | None) -> tuple[tuple[str, ...], bool]:
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
      pooling = _pooling_modes(read_json(cfg_file))
      if not pooling:
        raise EncoderError(f"{cfg_file}: no pooling mode enabled")
    elif kind == _ST_NORMALIZE:
      normalize = True
  return pooling, normalize


def check_files(model_dir: Path, transformer_dir: Path) -> list[Path]:
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


def net_config(hf_cfg, model_dir: Path) -> networks.NetConfig:
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


def position_limit(cfg: networks.NetConfig, max_positions: int) -> int:
  """Longest sequence the position table covers (MPNet skips the first pad_id + 1 rows)."""
  if cfg.arch == "mpnet":
    return max_positions - cfg.pad_token_id - 1
  return max_positions


def load_hf(transformer_dir: Path, model_dir: Path):
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


def max_length_for(requested: int | None, st_cfg: dict, limit: int, tokenizer,
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
