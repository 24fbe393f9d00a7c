#!/usr/bin/env bash
# The distilled static encoder against MPNet on the three shared datasets (docs/encoder.md,
# "A static encoder"): build it with the setting chosen on val (experiments/bench/static_encoder.py
# --stage=sweep), embed each dataset's prompts with it into runs/static_data/ (the shared
# folder is read-only and its MPNet embeddings stay as they are), train configs/logreg.py
# on static and on MPNet embeddings, then score both on test and time a routed query.
# Needs the MPNet weights: python -m irt_jax fetch-encoder --model=mpnet --out=.models
set -euo pipefail
cd "$(dirname "$0")/.."
PY="nice -n 10 ${PYTHON:-.venv/bin/python}"
export PYTHONPATH=.
DIM=${DIM:-256}
WEIGHTING=${WEIGHTING:-sif}
SHARED=../shared/data
$PY -m irt_jax distill --model_dir=.models/all-mpnet-base-v2 --out=.models/static-mpnet \
    --dim="$DIM" --weighting="$WEIGHTING" --weights_from=$SHARED/llmrouter,$SHARED/routerdc,$SHARED/zeroeval \
    --work_dir=runs/static/raw --overwrite
for d in llmrouter routerdc zeroeval; do
  mkdir -p runs/static_data/$d
  for f in "$SHARED/$d"/*.csv; do ln -sf "$(realpath "$f")" runs/static_data/$d/; done
  $PY -m irt_jax encode --data_dir=runs/static_data/$d --model_dir=.models/static-mpnet \
      --overwrite
  rm -rf runs/static_logreg_$d
  $PY train.py --config=configs/logreg.py --config.data.dir=runs/static_data/$d \
      --config.encoder.model_dir=.models/static-mpnet --workdir=runs/static_logreg_$d
  [ -d runs/logreg_$d/checkpoints ] || $PY train.py --config=configs/logreg.py \
      --config.data.dir=$SHARED/$d --workdir=runs/logreg_$d
done
$PY -m experiments.bench.static_encoder --stage=test
$PY -m experiments.bench.static_encoder --stage=latency
$PY -m experiments.bench.static_encoder --table
