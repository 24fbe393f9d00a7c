#!/usr/bin/env bash
# Trains the paper config on each real dataset in ../shared/data and evaluates it.
# Usage: bash experiments/paper_results.sh [datasets...]   (default: routerdc llmrouter zeroeval)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
for ds in "${@:-routerdc llmrouter zeroeval}"; do
  for d in $ds; do
    $PY train.py --config=configs/irtnet.py --config.data.dir=../shared/data/$d --workdir=runs/paper_$d
    $PY eval.py --workdir=runs/paper_$d
  done
done
