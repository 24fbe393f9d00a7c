r"""The distilled static encoder against MPNet: the setting chosen on val, test routing, latency.

  PYTHONPATH=. nice -n 10 .venv/bin/python -m experiments.bench.static_encoder --stage=sweep \
      [--dims=128,256,512] [--weightings=uniform,zipf,sif]
  PYTHONPATH=. nice -n 10 .venv/bin/python -m experiments.bench.static_encoder --stage=test \
      [--static_runs=runs/static_logreg_{dataset}] [--mpnet_runs=runs/logreg_{dataset}]
  PYTHONPATH=. nice -n 10 .venv/bin/python -m experiments.bench.static_encoder --stage=latency
  PYTHONPATH=. .venv/bin/python -m experiments.bench.static_encoder --table

sweep    builds one static encoder per (PCA width, weighting) from MPNet's raw token vectors
         (kept in runs/static/raw, computed once), embeds each shared dataset's prompts
         with it, fits the logistic regression of configs/logreg.py at C = 1 on train and
         scores it on **val** (routing micro / macro, AUC, log loss); MPNet's shipped
         embeddings get the same fit as the reference row. The setting with the best
         mean val routing micro over the three datasets is the one to build for the runs.
test     each dataset's static-encoder run against its MPNet run on the test split (read
         once, for the final table): both scored on the same queries, differences with
         paired bootstrap 95% intervals (evaluation.paired).
latency  Router.route([text]) for 50 short llmrouter val prompts (<= 32 MPNet tokens),
         static and MPNet alternating query by query in one process; p50 / p90.
Records are appended to --out (JSON lines); --table prints the docs' tables from them.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]

from irt_jax.data import distill  # noqa: E402
from irt_jax.data import io as data_lib  # noqa: E402
from irt_jax.evaluation import paired  # noqa: E402

SHARED = REPO.parent / "shared" / "data"
MPNET = REPO / ".models" / "all-mpnet-base-v2"
DATASETS = ("llmrouter", "routerdc", "zeroeval")
OUT = REPO / "docs" / "results" / "static_encoder.jsonl"


def append(path: Path, record: dict) -> None:
  print(json.dumps(record), flush=True)
  with open(path, "a") as f:
    f.write(json.dumps(record) + "\n")


def val_scores(data, embeddings: np.ndarray) -> dict:
  """configs/logreg.py's model at C = 1 fitted on train, its val statistics."""
  from irt_jax.models import logreg
  data = dataclasses.replace(data, embeddings=embeddings)
  spec = logreg.Spec(n_models=len(data.model_names), input_dim=embeddings.shape[1],
                     c_grid=(1.0,), max_iter=2000)
  params = logreg.fit(spec, data, None, None)
  val = data.split("val")
  logits = embeddings[val.queries] @ params["w"] + params["b"]
  s = paired.score(logits, val.labels, data.benchmark[val.queries])
  stats = paired.statistics(s, np.ones((1, len(s.success))))
  return {k: float(v[0]) * (100 if k.startswith("routing") else 1) for k, v in stats.items()}


def _has_reference(path: Path, dataset: str) -> bool:
  """Whether --out already holds MPNet's val row for ``dataset`` (a second sweep skips it)."""
  if not path.exists():
    return False
  return any(r.get("stage") == "val" and r["dataset"] == dataset and r["encoder"] == MPNET.name
             for r in map(json.loads, open(path)))


def sweep(args) -> None:
  datasets = {d: data_lib.load_dataset(str(SHARED / d), splits=("train", "val")) for d in DATASETS}
  for name, data in datasets.items():
    if _has_reference(args.out, name):
      continue
    t = time.perf_counter()
    scores = val_scores(data, np.asarray(data.embeddings, np.float32))
    append(args.out, {"stage": "val", "dataset": name, "encoder": MPNET.name,
                      "dim": 768, "weighting": None, "fit_s": time.perf_counter() - t, **scores})
  from irt_jax.encoder import load_encoder
  for dim in map(int, args.dims.split(",")):
    for weighting in args.weightings.split(","):
      folder = REPO / "runs" / "static" / f"d{dim}-{weighting}"
      distill.build(str(MPNET), str(folder), dim=dim, weighting=weighting,
                    weights_from=[str(SHARED / d) for d in DATASETS],
                    work_dir=str(REPO / "runs" / "static" / "raw"), overwrite=True)
      encoder = load_encoder(folder)
      for name, data in datasets.items():
        t = time.perf_counter()
        emb = encoder.encode(list(data.prompts))
        encode_s = time.perf_counter() - t
        scores = val_scores(data, emb)
        append(args.out, {"stage": "val", "dataset": name, "encoder": folder.name, "dim": dim,
                          "weighting": weighting, "encode_s": encode_s,
                          "fit_s": time.perf_counter() - t - encode_s, **scores})


def test_scores(workdir: str):
  """(Scored on the test split, the run's data name) of a run, read with its own data."""
  from irt_jax import predictors
  from irt_jax.data import resolve
  from irt_jax.evaluation import evaluators
  run = predictors.load(workdir)
  data = resolve.load_for_run(run.config, run.workdir, require=("train", "test"))
  pred = evaluators.predictions_for(run.predictor, data, "test")
  return paired.score(pred.logits, pred.labels, pred.benchmark), data


def test(args) -> None:
  for name in DATASETS:
    mpnet_dir, static_dir = args.mpnet_runs.format(dataset=name), args.static_runs.format(
        dataset=name)
    (a, data_a), (b, data_b) = test_scores(mpnet_dir), test_scores(static_dir)
    if data_a.query_ids != data_b.query_ids:
      raise SystemExit(f"{mpnet_dir} and {static_dir} read different queries")
    ones = np.ones((1, len(a.success)))
    sa, sb = paired.statistics(a, ones), paired.statistics(b, ones)
    diff = paired.compare([a], [b])
    record = {"stage": "test", "dataset": name, "mpnet_run": mpnet_dir, "static_run": static_dir,
              "queries": len(a.success)}
    for k in paired.STATISTICS:
      scale = 100 if k.startswith("routing") else 1
      record[k] = {"mpnet": scale * float(sa[k][0]), "static": scale * float(sb[k][0]),
                   **{x: scale * diff[k][x] for x in ("diff", "low", "high")},
                   "verdict": diff[k]["verdict"]}
    append(args.out, record)


def short_queries(n: int = 50, max_tokens: int = 32) -> list[str]:
  """n llmrouter val prompts of at most max_tokens MPNet tokens, drawn with seed 0."""
  from irt_jax.encoder import load_encoder
  data = data_lib.load_dataset(str(SHARED / "llmrouter"), splits=("train", "val"))
  prompts = [data.prompts[q] for q in np.unique(data.split("val").queries)]
  lengths = [len(x) for x in load_encoder(MPNET).tokenize(prompts)]
  short = [p for p, k in zip(prompts, lengths) if k <= max_tokens]
  pick = np.random.default_rng(0).choice(len(short), size=min(n, len(short)), replace=False)
  return [short[i] for i in pick]


def latency(args) -> None:
  from irt_jax.routing.router import Router
  routers = {"static": Router.from_checkpoint(args.static_runs.format(dataset="llmrouter")),
             "mpnet": Router.from_checkpoint(args.mpnet_runs.format(dataset="llmrouter"),
                                             encoder_dir=str(MPNET))}
  queries = short_queries()
  for r in routers.values():  # warm-up: load, compile each shape once
    r.route(queries)
    for q in queries[:5]:
      r.route([q])
  times = {k: [] for k in routers}
  for q in queries:
    for k, r in routers.items():
      t = time.perf_counter()
      r.route([q])
      times[k].append(1000 * (time.perf_counter() - t))
  record = {"stage": "latency", "queries": len(queries), "run": "llmrouter logreg"}
  for k, v in times.items():
    record[k] = {"p50_ms": float(np.median(v)), "p90_ms": float(np.percentile(v, 90))}
  record["mpnet_over_static_p50"] = record["mpnet"]["p50_ms"] / record["static"]["p50_ms"]
  append(args.out, record)


def _fmt(d: dict, k: str) -> str:
  digits = 2 if k.startswith("routing") else 4
  return (f"{d['mpnet']:.{digits}f} / {d['static']:.{digits}f} ({d['diff']:+.{digits}f}, "
          f"[{d['low']:+.{digits}f}, {d['high']:+.{digits}f}])")


def table(path: Path) -> str:
  records = [json.loads(line) for line in open(path)]
  val = [r for r in records if r["stage"] == "val"]
  lines = ["| encoder | " + " | ".join(f"{d} micro / macro / AUC" for d in DATASETS) +
           " | mean micro |", "|---|---|---|---|---|"]
  for enc in dict.fromkeys(r["encoder"] for r in val):
    rows = {r["dataset"]: r for r in val if r["encoder"] == enc}
    cells = [f"{rows[d]['routing_micro']:.2f} / {rows[d]['routing_macro']:.2f} / "
             f"{rows[d]['auc']:.4f}" if d in rows else "" for d in DATASETS]
    mean = np.mean([rows[d]["routing_micro"] for d in rows])
    lines.append(f"| {enc} | " + " | ".join(cells) + f" | {mean:.2f} |")
  lines += ["", "| test | queries | routing micro, MPNet / static (diff, 95% CI) | macro | AUC |",
            "|---|---|---|---|---|"]
  for r in (r for r in records if r["stage"] == "test"):
    lines.append(f"| {r['dataset']} | {r['queries']} | " + " | ".join(
        _fmt(r[k], k) for k in ("routing_micro", "routing_macro", "auc")) + " |")
  for r in (r for r in records if r["stage"] == "latency"):
    lines += ["", f"route one short query ({r['queries']} llmrouter val prompts <= 32 tokens): "
              f"static p50 {r['static']['p50_ms']:.2f} ms (p90 {r['static']['p90_ms']:.2f}), "
              f"MPNet p50 {r['mpnet']['p50_ms']:.1f} ms (p90 {r['mpnet']['p90_ms']:.1f}): "
              f"{r['mpnet_over_static_p50']:.0f}x"]
  return "\n".join(lines)


def main() -> None:
  ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  ap.add_argument("--stage", choices=("sweep", "test", "latency"))
  ap.add_argument("--dims", default="128,256,512")
  ap.add_argument("--weightings", default="uniform,zipf,sif")
  ap.add_argument("--static_runs", default="runs/static_logreg_{dataset}")
  ap.add_argument("--mpnet_runs", default="runs/logreg_{dataset}")
  ap.add_argument("--out", type=Path, default=OUT)
  ap.add_argument("--table", action="store_true", help="print the docs' tables from --out")
  args = ap.parse_args()
  if args.table:
    print(table(args.out))
  elif args.stage:
    {"sweep": sweep, "test": test, "latency": latency}[args.stage](args)
  else:
    ap.error("pass --stage or --table")


if __name__ == "__main__":
  main()
