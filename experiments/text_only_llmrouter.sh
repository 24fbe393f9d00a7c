#!/usr/bin/env bash
# End-to-end check: train from prompt text alone (no embeddings file) on
# llmrouter, encoding with the Flax all-mpnet-base-v2, and compare with training on
# the shipped embeddings. Both train the paper config on query blocks, the layout
# the README's table was made with (it predates the paper config's switch to pairs).
# Needs the weights: python -m irt_jax fetch-encoder --model=mpnet --out=.models
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
DATA=runs/llmrouter_text_only
mkdir -p "$DATA"
cp ../shared/data/llmrouter/{train,val,test,model_order,question_order}.csv "$DATA"/
rm -f "$DATA/question_embeddings.npy"
$PY train.py --config=configs/irtnet.py --config.train.batching=blocks \
    --config.data.dir=../shared/data/llmrouter --workdir=runs/blocks_llmrouter
$PY eval.py --workdir=runs/blocks_llmrouter
$PY train.py --config=configs/irtnet.py --config.train.batching=blocks --config.data.dir="$DATA" \
    --config.encoder.model_dir=.models/all-mpnet-base-v2 --workdir=runs/blocks_llmrouter_text
$PY eval.py --workdir=runs/blocks_llmrouter_text
$PY - <<'PY'
import json, numpy as np
a = json.load(open("runs/blocks_llmrouter/eval/report.json"))
b = json.load(open("runs/blocks_llmrouter_text/eval/report.json"))
shipped = np.load("../shared/data/llmrouter/question_embeddings.npy").astype(np.float32)
ours = np.load("runs/llmrouter_text_only/question_embeddings.npy")
print(f"embeddings: max |ours - shipped| = {np.abs(ours - shipped).max():.2e}")
for key in ("accuracy", "auc", "log_loss"):
  print(f"{key:10s} shipped {a['correctness'][key]:.4f}  text-only {b['correctness'][key]:.4f}")
for key in ("micro", "macro"):
  print(f"routing {key:5s} shipped {100 * a['routing'][key]:.2f}  text-only {100 * b['routing'][key]:.2f}")
PY
