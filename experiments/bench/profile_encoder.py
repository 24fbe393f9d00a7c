r"""Where the JAX sentence encoder's time goes, per shape and per op, against this CPU's roofline.

  PYTHONPATH=. nice -n 10 .venv/bin/python -m experiments.bench.profile_encoder \
      [--models=minilm,mpnet] [--rounds=5] [--out=docs/results/bench/profile_encoder.json]

In one process, interleaved round by round (the machine is shared: ratios inside a
round are what to read, absolute times drift with the other jobs):
  peak      float32 and bfloat16 (float32 accumulation) 2048^3 GEMMs: the roofline's peak;
  shapes    batch 1 (a short query, 16-token bucket), batch 64 of llmrouter prompts (as
            encode() plans them: length-sorted, bucketed) and 8 x 384 tokens; for each,
            FLOPs from XLA's cost analysis of the compiled programs, the measured time,
            and fraction_of_roofline = FLOPs / peak / time;
  variants  the same shapes with the layers run by lax.scan (the old stack) and unrolled
            (the default), and at bfloat16 / int8 matmul precision;
  ops       one layer split into its parts (QKV projection, attention core, output
            projection + LayerNorm, FFN in + GELU, FFN out + LayerNorm), each jitted and
            timed alone at the batch-64 shape: the per-op profile;
  tokenizer the share of encode() spent tokenising, transformers' call vs the Rust backend.
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

REPO = Path(__file__).resolve().parents[2]

from irt_jax.data.io import read_question_order  # noqa: E402
from irt_jax.encoder import load_encoder, networks  # noqa: E402
from irt_jax.encoder.sentence_encoder import SentenceEncoder  # noqa: E402

MODELS = {"minilm": REPO / ".models" / "all-MiniLM-L6-v2",
          "mpnet": REPO / ".models" / "all-mpnet-base-v2"}
PROMPTS = REPO.parent / "shared" / "data" / "llmrouter" / "question_order.csv"
SHORT = "What is the capital of France?"


def timed(fn) -> float:
  t = time.perf_counter()
  jax.block_until_ready(fn())
  return time.perf_counter() - t


def flops_of(enc: SentenceEncoder, texts: list[str], batch_size: int) -> float:
  """XLA's FLOP count of the programs encode() runs for ``texts`` (one per planned batch)."""
  total = 0.0
  for program in enc.lowered(texts, batch_size):
    cost = program.compile().cost_analysis()
    cost = cost[0] if isinstance(cost, (list, tuple)) else cost
    total += float(cost["flops"])
  return total


def variant(enc: SentenceEncoder, precision: str, unroll: bool) -> SentenceEncoder:
  """Another encoder over the same float32 weights, stacked as load_encoder builds them."""
  from irt_jax.encoder.weights import build_params, load_safetensors
  files = sorted(enc.model_dir.glob("*.safetensors"))
  params = build_params(enc.net_cfg.arch, load_safetensors(files), enc.net_cfg.num_layers)
  return SentenceEncoder(enc.name, enc.model_dir, enc.net_cfg, params, enc.tokenizer, enc.pooling,
                         enc.normalize, enc.max_length, enc.do_lower_case, enc.buckets,
                         precision=precision, unroll=unroll)


def layer_ops(enc: SentenceEncoder, rows: int, length: int) -> dict:
  """Jitted parts of one layer at [rows, length] (float32, layer 0's weights)."""
  cfg, p = enc.net_cfg, jax.tree.map(lambda a: a, enc.params["layers"][0])
  x = jax.random.normal(jax.random.PRNGKey(0), (rows, length, cfg.hidden_size))
  ctx = x
  mask_bias = jnp.zeros((rows, 1, 1, length))
  heads, hd = cfg.num_heads, cfg.head_dim
  qkv = networks.dense(x, p["qkv_w"], p["qkv_b"]).reshape(rows, length, 3, heads, hd)

  def core(qkv):
    q, k, v = qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2]
    w = jax.nn.softmax(jnp.einsum("bqhd,bkhd->bhqk", q, k) + mask_bias, axis=-1)
    return jnp.einsum("bhqk,bkhd->bqhd", w, v)

  ffn = networks.dense(x, p["ffn_in_w"], p["ffn_in_b"])
  act = networks.ACTIVATIONS[cfg.hidden_act]
  ln = functools.partial(networks.layer_norm, eps=cfg.layer_norm_eps)
  ops = {
      "qkv_projection": (jax.jit(lambda x: networks.dense(x, p["qkv_w"], p["qkv_b"])), x),
      "attention_core": (jax.jit(core), qkv),
      "out_projection_ln": (jax.jit(lambda c: ln(networks.dense(c, p["out_w"], p["out_b"]) + x,
                                                    p["attn_ln_scale"], p["attn_ln_bias"])), ctx),
      "ffn_in_gelu": (jax.jit(lambda x: act(networks.dense(x, p["ffn_in_w"], p["ffn_in_b"]))), x),
      "ffn_out_ln": (jax.jit(lambda h: ln(networks.dense(h, p["ffn_out_w"], p["ffn_out_b"]) + x,
                                             p["ffn_ln_scale"], p["ffn_ln_bias"])), ffn),
  }
  for fn, arg in ops.values():
    jax.block_until_ready(fn(arg))
  return ops


def profile_model(model_dir: Path, prompts: list[str], rounds: int, peaks: dict) -> dict:
  base = load_encoder(model_dir)
  rng = np.random.default_rng(0)
  batch64 = [prompts[i] for i in rng.choice(len(prompts), 64, replace=False)]
  long = [" ".join(["word"] * (2 * base.max_length))] * 8
  shapes = {"batch1_short": ([SHORT], 1), "batch64_llmrouter": (batch64, 64),
            f"batch8_len{base.max_length}": (long, 8)}
  encoders = {"unrolled_float32": base, "scan_float32": variant(base, "float32", False),
              "unrolled_bfloat16": variant(base, "bfloat16", True),
              "unrolled_int8": variant(base, "int8", True)}
  flops = {s: flops_of(base, texts, bs) for s, (texts, bs) in shapes.items()}
  for enc in encoders.values():  # compile every shape first
    for texts, bs in shapes.values():
      enc.encode(texts, batch_size=bs)
  ids64 = base.tokenize(batch64)
  ops = layer_ops(base, 64, base.bucket_for(int(np.median([len(x) for x in ids64]))))
  times = {f"{v}/{s}": [] for v in encoders for s in shapes}
  op_times = {k: [] for k in ops}
  tok = {"hf_call": [], "rust_backend": [], "encode_batch64": []}
  for _ in range(rounds):
    peaks["f32_times"].append(timed(peaks["f32"]))
    peaks["bf16_times"].append(timed(peaks["bf16"]))
    for v, enc in encoders.items():
      for s, (texts, bs) in shapes.items():
        times[f"{v}/{s}"].append(timed(lambda: enc.encode(texts, batch_size=bs)))
    for k, (fn, arg) in ops.items():
      op_times[k].append(timed(lambda: fn(arg)))
    tok["hf_call"].append(timed(lambda: base.tokenizer(batch64, truncation=True,
                                                       max_length=base.max_length)))
    tok["rust_backend"].append(timed(lambda: base.tokenize(batch64)))
    tok["encode_batch64"].append(times["unrolled_float32/batch64_llmrouter"][-1])
  return summarise(base, shapes, flops, times, op_times, tok, peaks)


def summarise(base, shapes, flops, times, op_times, tok, peaks) -> dict:
  med = lambda xs: float(np.median(xs))
  peak_f32 = 2 * 2048**3 / min(peaks["f32_times"]) / 1e9
  peak_bf16 = 2 * 2048**3 / min(peaks["bf16_times"]) / 1e9
  out = {"model": base.name, "layers": base.net_cfg.num_layers, "shapes": {}, "ops_ms": {},
         "peak_gflops": {"float32": peak_f32, "bfloat16": peak_bf16}}
  for s in shapes:
    row = {"flops": flops[s], "roofline_ms_float32": 1e3 * flops[s] / (peak_f32 * 1e9)}
    for key, ts in times.items():
      v, shape = key.split("/")
      if shape == s:
        row[f"{v}_ms"] = 1e3 * med(ts)
    row["fraction_of_roofline"] = row["roofline_ms_float32"] / row["unrolled_float32_ms"]
    out["shapes"][s] = row
  n = base.net_cfg.num_layers
  out["ops_ms"] = {k: 1e3 * med(v) for k, v in op_times.items()}
  out["ops_ms_times_layers_sum"] = n * sum(out["ops_ms"].values())
  out["tokenizer_ms"] = {k: 1e3 * med(v) for k, v in tok.items()}
  return out


def main() -> None:
  ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  ap.add_argument("--models", default="minilm,mpnet")
  ap.add_argument("--rounds", type=int, default=5)
  ap.add_argument("--out", default=str(REPO / "docs" / "results" / "bench" / "profile_encoder.json"))
  args = ap.parse_args()
  _, prompts, _ = read_question_order(str(PROMPTS))
  prompts = [p for p in prompts if p]
  a = jax.random.normal(jax.random.PRNGKey(0), (2048, 2048))
  a16 = a.astype(jnp.bfloat16)
  mm = jax.jit(lambda a, b: a @ b)
  mm16 = jax.jit(lambda a, b: jnp.matmul(a, b, preferred_element_type=jnp.float32))
  peaks = {"f32": lambda: mm(a, a), "bf16": lambda: mm16(a16, a16), "f32_times": [],
           "bf16_times": []}
  timed(peaks["f32"]), timed(peaks["bf16"])
  results = {"rounds": args.rounds, "command": " ".join(sys.argv), "models": {},
             "note": "shared 2-core machine: read ratios within a round, not absolute times"}
  for name in args.models.split(","):
    if not (MODELS[name] / "config.json").exists():
      results["models"][name] = None
      continue
    results["models"][name] = profile_model(MODELS[name], prompts, args.rounds, peaks)
    print(json.dumps(results["models"][name], indent=1), flush=True)
  with open(args.out, "w") as f:
    json.dump(results, f, indent=1)


if __name__ == "__main__":
  main()
