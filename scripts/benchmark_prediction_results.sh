#!/usr/bin/env bash
# Leave-one-benchmark-out benchmark-score prediction on each real dataset, then one
# summary table. Resumable: rerun the same command after an interruption.
# Usage: bash scripts/benchmark_prediction_results.sh [datasets...]
#        (default: llmrouter routerdc zeroeval; PROTOCOL=paper for IrtNet's protocol)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
PROTOCOL=${PROTOCOL:-ours}
DATASETS=${*:-llmrouter routerdc zeroeval}
for d in $DATASETS; do
  $PY -m irt_jax.benchmark_prediction --config=configs/bench_predict.py \
    --config.data.dir=../shared/data/$d --workdir=runs/bp_${PROTOCOL}_$d --protocol=$PROTOCOL
done
$PY - "$PROTOCOL" $DATASETS <<'PY'
import json, sys
from irt_jax.evaluation import report
protocol, names = sys.argv[1], sys.argv[2:]
print(report.benchmark_prediction_summary(
    [json.load(open(f"runs/bp_{protocol}_{d}/benchmark_prediction.json")) for d in names]))
PY
