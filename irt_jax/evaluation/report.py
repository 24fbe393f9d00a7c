"""Report writing: report.json (stable keys), and text tables for the terminal."""

from __future__ import annotations

import os

import numpy as np

from irt_jax import utils
from irt_jax.evaluation import field_metrics
from irt_jax.evaluation import query_choice


def write(report: dict, output_dir: str) -> str:
  os.makedirs(output_dir, exist_ok=True)
  path = os.path.join(output_dir, "report.json")
  utils.write_json(path, report)
  return path


def _pct(x) -> str:
  return "   n/a" if x is None else f"{100 * x:6.2f}"


def format_report(report: dict) -> str:
  c, r = report["correctness"], report["routing"]
  lines = [f"{report['dataset']} / {report['split']}: {report['n_models']} models x "
           f"{report['n_queries']} queries ({report.get('kind', 'irtnet')}, checkpoint step "
           f"{report['checkpoint_step']})",
           f"  correctness  acc {c['accuracy']:.4f}  auc {c['auc']:.4f}  "
           f"log_loss {c['log_loss']:.4f}  brier {c['brier']:.4f}",
           f"  routing      {'':12s} micro   macro",
           f"    {'this run':22s} {_pct(r['micro'])}  {_pct(r['macro'])}"]
  for name, b in r["baselines"].items():
    label = field_metrics.baseline_label(name)
    lines.append(f"    {label:22s} {_pct(b['micro'])}  {_pct(b['macro'])}")
  lines += field_metrics.routing_lines(r)
  lines.append("  per benchmark (this run's routing): " + ", ".join(
      f"{k} {100 * v:.2f}" for k, v in r["per_benchmark"].items()))
  truth = report.get("synthetic_truth", {})
  if "difficulty_spearman" in truth:
    lines.append(f"  synthetic truth: Spearman(learned, true difficulty) = "
                 f"{truth['difficulty_spearman']:.4f}")
  cf = report.get("cost_frontier", {})
  if "aiq" in cf:
    match = cf["cost_to_match_best_single"]
    lines.append(f"  cost frontier ({cf['cost_source']}, {cf['cost_unit']}): AIQ {_pct(cf['aiq'])}  "
                 f"peak {_pct(cf['peak_accuracy'])}  cost to match best single "
                 f"{'never' if match is None else format(match, '.4g')}  APGR "
                 f"{'n/a' if cf['apgr'] is None else format(cf['apgr'], '.3f')}  CPT(50%) "
                 f"{_pct(cf['cpt50'])}")
    lines += field_metrics.cost_lines(cf)
  interp = report.get("interpretability", {})
  if "difficulty" in interp:
    d = interp["difficulty"]
    lines.append(f"  interpretability: Pearson(benchmark mean difficulty, mean accuracy) = "
                 f"{_num(d['benchmark_vs_accuracy']['pearson'], '.3f')} (identified "
                 f"{_num(d['identified_benchmark_vs_accuracy']['pearson'], '.3f')}); per query "
                 f"{_num(d['query_vs_fraction_correct']['pearson'], '.3f')}")
  elif "skipped" in interp:
    lines.append(f"  interpretability: skipped ({interp['skipped']})")
  cal = report.get("calibration", {})
  if "ece" in cal:
    t = cal.get("temperature", {})
    after = (f"; after temperature {t['value']:.3f} (fitted on val): {t['ece_after']:.4f}"
             if "value" in t else "")
    lines.append(f"  calibration: ECE (15 bins) {cal['ece']:.4f}{after}")
  return "\n".join(lines)


COMPARE_COLUMNS = (("accuracy", "correctness", "accuracy"), ("auc", "correctness", "auc"),
                   ("log_loss", "correctness", "log_loss"), ("brier", "correctness", "brier"))


def compare_rows(reports: dict[str, dict]) -> list[dict]:
  """One row per run (then oracle / best single / random from the first), flat."""
  rows = []
  for label, rep in reports.items():
    row = {"run": label, "kind": rep.get("kind")}
    for col, group, key in COMPARE_COLUMNS:
      row[col] = rep[group][key]
    row["routing_micro"], row["routing_macro"] = rep["routing"]["micro"], rep["routing"]["macro"]
    rows.append(row)
  first = next(iter(reports.values()))
  for name, b in first["routing"]["baselines"].items():
    rows.append({"run": name, "kind": None, "accuracy": None, "auc": None, "log_loss": None,
                 "brier": None, "routing_micro": b["micro"], "routing_macro": b["macro"]})
  return rows


def paired_lines(result: dict) -> list[str]:
  """Text lines: each run's paired difference from the reference run, with its
  interval; 'better' / 'worse' only where the interval excludes 0."""
  if not result.get("paired"):
    return []
  lines = [f"paired differences from {result['reference']} (95% bootstrap interval over "
           f"{result['split']} queries, {result['n_resamples']} resamples):"]
  for label, diffs in result["paired"].items():
    cells = []
    for col, scale, _, dfmt in PAIRED_COLUMNS:
      d = diffs[col]
      mark = {"win": " better", "loss": " worse", "tie": ""}[d["verdict"]]
      cells.append(f"{col} {scale * d['diff']:{dfmt}} [{scale * d['low']:{dfmt}}, "
                   f"{scale * d['high']:{dfmt}}]{mark}")
    lines.append(f"  {label}: " + "; ".join(cells))
  return lines


def format_compare(rows: list[dict], dataset: str, split: str) -> str:
  head = (f"{dataset} / {split}\n{'run':28s} {'kind':10s} {'acc':>7s} {'auc':>7s} "
          f"{'logloss':>8s} {'brier':>7s} {'route micro':>11s} {'macro':>7s}")
  lines = [head]
  f = lambda v, w, fmt: (" " * (w - 3) + "n/a") if v is None else format(v, fmt).rjust(w)
  for r in rows:
    lines.append(f"{r['run'][:28]:28s} {(r['kind'] or '-'):10s} {f(r['accuracy'], 7, '.4f')} "
                 f"{f(r['auc'], 7, '.4f')} {f(r['log_loss'], 8, '.4f')} "
                 f"{f(r['brier'], 7, '.4f')} "
                 f"{f(None if r['routing_micro'] is None else 100 * r['routing_micro'], 11, '.2f')} "
                 f"{f(None if r['routing_macro'] is None else 100 * r['routing_macro'], 7, '.2f')}")
  return "\n".join(lines)


# ----------------------------------------------------------------------------
# Benchmark-score prediction tables (text and markdown).

BP_COLUMNS = (("zero_shot", "model, k=0"), ("random", "random + model"),
              ("adaptive", "adaptive + model"), ("naive", "naive mean"))


def _bp_rows(mean: dict) -> list[tuple[str, str, dict]]:
  rows = [("0", "zero_shot", mean.get("0", {}).get("zero_shot")),
          ("0", "train_mean", mean.get("0", {}).get("train_mean"))]
  for k in sorted((k for k in mean if k != "0"), key=int):
    for sel in ("random", "adaptive", "naive", "naive_adaptive"):
      rows.append((k, sel, mean[k].get(sel)))
  return rows


def _num(x, fmt: str) -> str:
  return "n/a" if x is None else format(x, fmt)


def format_benchmark_prediction(result: dict) -> str:
  """The mean-over-benchmarks table for the terminal (MAE and bias in points)."""
  lines = [f"{result['dataset']}: leave-one-benchmark-out, {result['setup']['kind']} "
           f"({result['setup']['protocol']} protocol), mean over {len(result['per_benchmark'])} "
           f"benchmarks", f"{'k':>4s} {'selection':15s} {'MAE pts':>8s} {'bias pts':>9s} "
           f"{'Spearman':>9s} {'Kendall':>8s}"]
  for k, sel, m in _bp_rows(result["mean"]):
    if m is None:
      continue
    lines.append(f"{k:>4s} {sel:15s} {100 * m['mae']:8.2f} {100 * m['bias']:+9.2f} "
                 f"{_num(m.get('spearman'), '9.3f'):>9s} {_num(m.get('kendall'), '8.3f'):>8s}")
  return "\n".join(lines)


def benchmark_prediction_markdown(result: dict, plot_files: dict | None = None,
                                  relative_to: str | None = None) -> str:
  """Markdown: the mean table, the zero-shot table per benchmark, plot links."""
  mean = result["mean"]
  out = [f"### {result['dataset']}: benchmark-score prediction ({result['setup']['kind']}, "
         f"{result['setup']['protocol']} protocol)", "",
         "Mean over held-out benchmarks. MAE and bias in accuracy points (predicted - true); "
         "rank correlations over LLMs. `random`/`adaptive` = k labels chosen that way, "
         "combined with the model's refitted predictions for the rest; `naive` = mean of k "
         "random labels; `naive_adaptive` = mean of the k adaptive labels.", "",
         "| k | selection | MAE | bias | Spearman | Kendall |", "|---|---|---|---|---|---|"]
  for k, sel, m in _bp_rows(mean):
    if m is None:
      continue
    out.append(f"| {k} | {sel} | {100 * m['mae']:.2f} | {100 * m['bias']:+.2f} | "
               f"{_num(m.get('spearman'), '.3f')} | {_num(m.get('kendall'), '.3f')} |")
  out += ["", "Zero-shot per held-out benchmark:", "",
          "| benchmark | MAE | bias | Spearman | Kendall | cell accuracy |",
          "|---|---|---|---|---|---|"]
  for name, bench in result["per_benchmark"].items():
    m = bench["0"]["zero_shot"]
    if m is None:
      out.append(f"| {name} | n/a | n/a | n/a | n/a | n/a |")
      continue
    out.append(f"| {name} | {100 * m['mae']:.2f} | {100 * m['bias']:+.2f} | "
               f"{_num(m.get('spearman'), '.3f')} | {_num(m.get('kendall'), '.3f')} | "
               f"{_num(m.get('cell_accuracy'), '.4f')} |")
  if result.get("grid"):
    from irt_jax.evaluation import benchmark_grid
    out += ["", "#### The grid: label protocols x query choices x estimators", "",
            benchmark_grid_markdown(benchmark_grid.records(result))]
  out += _plot_links(plot_files, relative_to)
  return "\n".join(out) + "\n"


def _plot_links(plot_files: dict | None, relative_to: str | None) -> list[str]:
  if not plot_files:
    return []
  lines = [""]
  for title, path in plot_files.items():
    rel = os.path.relpath(path, relative_to) if relative_to else path
    lines.append(f"![{title}]({rel})")
  return lines


def write_benchmark_prediction_md(result: dict, plot_files: dict, workdir: str) -> str:
  path = os.path.join(workdir, "benchmark_prediction.md")
  with open(path, "w", encoding="utf-8") as f:
    f.write(benchmark_prediction_markdown(result, plot_files, workdir))
  return path


# ----------------------------------------------------------------------------
# report.md: one run's tables and plot links.

def _f(x, fmt=".4f") -> str:
  return "n/a" if x is None else format(x, fmt)


def _correctness_md(c: dict) -> list[str]:
  return ["## Correctness", "", "| accuracy | AUC | log loss | Brier |", "|---|---|---|---|",
          f"| {_f(c['accuracy'])} | {_f(c['auc'])} | {_f(c['log_loss'])} | "
          f"{_f(c['brier'])} |", ""]


def _routing_md(r: dict) -> list[str]:
  out = ["## Routing (% of queries answered correctly)", "", "| router | micro | macro |",
         "|---|---|---|", f"| this run | {100 * r['micro']:.2f} | {100 * r['macro']:.2f} |"]
  out += [f"| {field_metrics.baseline_label(n)} | {100 * b['micro']:.2f} | "
          f"{100 * b['macro']:.2f} |" for n, b in r["baselines"].items()]
  return out + ["", "Per benchmark: " + ", ".join(f"{k} {100 * v:.2f}"
                                                  for k, v in r["per_benchmark"].items()), ""]


def _gate_md(g: dict) -> list[str]:
  if "per_benchmark" not in g:
    return ["", f"Gate: {g.get('skipped')}"] if g else []
  out = ["", f"Gate over {g['n_experts']} experts: mean per-query entropy "
         f"{g['mean_entropy']:.3f} nats (uniform = {g['max_entropy']:.3f}).", "",
         "| benchmark | gate entropy | most used experts (mean weight) |", "|---|---|---|"]
  for name, v in g["per_benchmark"].items():
    top = sorted(enumerate(v["mean_weight"]), key=lambda t: -t[1])[:3]
    out.append(f"| {name} | {v['mean_entropy']:.3f} | " +
               ", ".join(f"e{e} ({w:.2f})" for e, w in top) + " |")
  return out


def _interpretability_md(i: dict) -> list[str]:
  out = ["## Interpretability", ""]
  if "skipped" in i:
    return out + [f"Skipped: {i['skipped']}", ""]
  d = i["difficulty"]
  out += ["| difficulty vs accuracy | Pearson | Spearman | n |", "|---|---|---|---|"]
  for key, label in (("benchmark_vs_accuracy", "benchmark mean b vs mean accuracy"),
                     ("identified_benchmark_vs_accuracy",
                      "benchmark mean identified difficulty vs mean accuracy"),
                     ("query_vs_fraction_correct", "query b vs fraction of LLMs correct"),
                     ("identified_query_vs_fraction_correct",
                      "query identified difficulty vs fraction correct")):
    v = d[key]
    out.append(f"| {label} | {_f(v['pearson'], '.3f')} | {_f(v['spearman'], '.3f')} | "
               f"{v['n']} |")
  out += ["", "Nearest neighbours by ability (cosine of centred theta):", ""]
  for model, nbrs in i["abilities"]["nearest_neighbours"].items():
    out.append(f"- {model}: " + ", ".join(f"{n['model']} ({n['cosine']:.2f})" for n in nbrs))
  return out + _gate_md(i.get("gate", {})) + [""]


def _calibration_md(cal: dict) -> list[str]:
  out = ["## Calibration", "", f"ECE (15 equal-width bins): {cal['ece']:.4f} over "
         f"{cal['n_cells']} cells."]
  t = cal.get("temperature", {})
  if "value" in t:
    out.append(f"Temperature fitted on val: T = {t['value']:.3f}; ECE {cal['ece']:.4f} -> "
               f"{t['ece_after']:.4f}; log loss {t['nll_before']:.4f} -> {t['nll_after']:.4f}.")
  return out + [""]


def _benchmark_prediction_md(bp: dict) -> list[str]:
  return ["## Benchmark-score prediction (leave one benchmark out)", "",
          benchmark_prediction_markdown(
              {"dataset": bp["dataset"], "setup": bp["setup"], "mean": bp["mean"],
               "per_benchmark": bp["per_benchmark"]})]


def markdown(report: dict, plot_files: dict | None = None,
             relative_to: str | None = None) -> str:
  """The report as markdown: correctness, routing, interpretability, calibration,
  benchmark prediction (each where present), then the plots."""
  out = [f"# {report['dataset']} / {report['split']}: {report.get('kind', '?')} "
         f"(checkpoint step {report['checkpoint_step']})", "",
         f"{report['n_models']} LLMs x {report['n_queries']} queries.", ""]
  for key, section in (("correctness", _correctness_md), ("routing", _routing_md),
                       ("interpretability", _interpretability_md),
                       ("calibration", _calibration_md)):
    if report.get(key):
      out += section(report[key])
  bp = report.get("benchmark_prediction")
  if bp and "mean" in bp:
    out += _benchmark_prediction_md(bp)
  out += _plot_links(plot_files, relative_to)
  return "\n".join(out) + "\n"


def write_markdown(report: dict, output_dir: str, plot_files: dict | None = None) -> str:
  path = os.path.join(output_dir, "report.md")
  with open(path, "w", encoding="utf-8") as f:
    f.write(markdown(report, plot_files, output_dir))
  return path


def compare_markdown(result: dict, plot_files: dict | None = None,
                     relative_to: str | None = None) -> str:
  rows = result["table"]
  out = [f"# {result['dataset']} / {result['split']}: compared runs", "",
         "| run | kind | accuracy | AUC | log loss | Brier | routing micro | macro |",
         "|---|---|---|---|---|---|---|---|"]
  pct = lambda v: "n/a" if v is None else f"{100 * v:.2f}"
  for r in rows:
    out.append(f"| {r['run']} | {r['kind'] or '-'} | {_f(r['accuracy'])} | {_f(r['auc'])} | "
               f"{_f(r['log_loss'])} | {_f(r['brier'])} | {pct(r['routing_micro'])} | "
               f"{pct(r['routing_macro'])} |")
  if result.get("paired"):
    out += ["", "```"] + paired_lines(result) + ["```"]
  out += _plot_links(plot_files, relative_to)
  return "\n".join(out) + "\n"


def benchmark_prediction_summary(results: list[dict]) -> str:
  """One markdown table for several datasets: per k, MAE / bias (points) / Spearman of
  each estimator, mean over held-out benchmarks."""
  cell = lambda m: "" if not m else (f"{100 * m['mae']:.1f} / {100 * m['bias']:+.1f} / "
                                     f"{_num(m.get('spearman'), '.2f')}")
  out = ["| dataset (kind) | k | model alone | LLM's accuracy on the other benchmarks | "
         "model + random k | model + adaptive k | naive: mean of k random | "
         "naive: mean of k adaptive |", "|---|---|---|---|---|---|---|---|"]
  for r in results:
    mean, label = r["mean"], f"{r['dataset']} ({r['setup']['kind']})"
    out.append(f"| {label} | 0 | {cell(mean['0'].get('zero_shot'))} | "
               f"{cell(mean['0'].get('train_mean'))} | | | | |")
    for k in sorted((k for k in mean if k != "0"), key=int):
      m = mean[k]
      out.append(f"| {label} | {k} | | | {cell(m.get('random'))} | {cell(m.get('adaptive'))} | "
                 f"{cell(m.get('naive'))} | {cell(m.get('naive_adaptive'))} |")
  return "\n".join(out) + "\n"


def benchmark_prediction_kinds_table(results: list[dict], ks=("10", "25", "100"),
                                     labels: list[str] | None = None) -> str:
  """Kinds side by side: one row per (dataset, kind), MAE / bias (points) /
  Spearman of the model alone (k = 0) and, per k, the model plus k random
  labels, plus k adaptive ones, and the naive mean of k random labels.
  `labels` (one per result) names the rows instead of the kind, e.g. when two
  configs of one kind are compared."""
  if labels is not None and len(labels) != len(results):
    raise ValueError(f"{len(labels)} labels for {len(results)} results")
  cell = lambda m: "" if not m else (f"{100 * m['mae']:.1f} / {100 * m['bias']:+.1f} / "
                                     f"{_num(m.get('spearman'), '.2f')}")
  head = ["dataset", "kind", "k = 0: model alone"]
  for k in ks:
    head += [f"k = {k}: + random", "+ adaptive", "naive mean"]
  out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
  for i, r in enumerate(results):
    mean = r["mean"]
    label = labels[i] if labels is not None else r["setup"]["kind"]
    row = [r["dataset"], label, cell(mean["0"].get("zero_shot"))]
    for k in ks:
      m = mean.get(k, {})
      row += [cell(m.get("random")), cell(m.get("adaptive")), cell(m.get("naive"))]
    out.append("| " + " | ".join(row) + " |")
  return "\n".join(out) + "\n"


# ----------------------------------------------------------------------------
# The README's kinds table: records of scripts/compare_kinds.py, over seeds.

KINDS_COLUMNS = (("accuracy", 100, ".2f"), ("auc", 1, ".4f"), ("routing_micro", 100, ".2f"),
                 ("routing_macro", 100, ".2f"))


def kinds_table(records: list[dict], datasets: list[str], kinds: list[str]) -> str:
  """Markdown: one row per (dataset, kind), mean +- std over the seeds recorded.

  The std is the population one (ddof 0) of the seeds that ran: with 3 seeds it reads
  sqrt(2/3) of the sample std. Rows are exactly `kinds`, in that order, each with a
  'not run' row when no record has it: one records file holds several comparisons
  (every kind; the paper config on blocks and pairs), and each table shows the one
  asked for. The oracle / best-single / random rows come from the dataset's first
  record: they depend on the test split only.
  """
  lines = ["| dataset | kind | seeds | test accuracy | test AUC | routing micro | routing macro |"
           " train s |", "|---|---|---|---|---|---|---|---|"]
  for dataset in datasets:
    rows = [r for r in records if r["dataset"] == dataset]
    for kind in kinds:
      rs = sorted((r for r in rows if r["kind"] == kind), key=lambda r: r["seed"])
      if not rs:
        lines.append(f"| {dataset} | {kind} | 0 | not run | | | | |")
        continue
      cells = []
      for col, scale, fmt in KINDS_COLUMNS:
        v = scale * np.array([r[col] for r in rs])
        cells.append(f"{v.mean():{fmt}} +- {v.std():{fmt}}" if len(v) > 1 else f"{v[0]:{fmt}}")
      seconds = np.mean([r["seconds"] for r in rs])
      lines.append(f"| {dataset} | {kind} | {len(rs)} | " + " | ".join(cells) + f" | {seconds:.0f} |")
    if rows:
      for name in ("oracle", "best_single", "max_expert", "random"):
        b = rows[0]["baselines"].get(name)  # max_expert: records since it was added
        if b is None:
          continue
        lines.append(f"| {dataset} | *{field_metrics.baseline_label(name)}* | | | | "
                     f"{100 * b['micro']:.2f} | "
                     f"{100 * b['macro']:.2f} | |")
  return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------
# Paired differences against the first kind (evaluation/paired.py).

PAIRED_COLUMNS = (("auc", 1, ".4f", "+.4f"), ("log_loss", 1, ".4f", "+.4f"),
                  ("routing_micro", 100, ".2f", "+.2f"), ("routing_macro", 100, ".2f", "+.2f"))


# Routers written by compare_kinds from the train split (routing only).
HINDSIGHT = ("best_single", "max_expert")


def _paired_cell(value: float, diff: dict | None, scale: float, fmt: str, dfmt: str) -> str:
  """'0.8300; +0.0100 [+0.0020, +0.0180] win' (no difference for the reference)."""
  if diff is None:
    return f"{scale * value:{fmt}}"
  mark = {"win": " **better**", "loss": " **worse**", "tie": ""}[diff["verdict"]]
  lo, hi = scale * diff["low"], scale * diff["high"]
  return f"{scale * value:{fmt}}; {scale * diff['diff']:{dfmt}} [{lo:{dfmt}}, {hi:{dfmt}}]{mark}"


def paired_table(datasets: list[str], kinds: list[str], preds_dir: str,
                 n_resamples: int = 2000, seed: int = 0) -> str:
  """Markdown: each kind's test figures (mean over its seeds' prediction files)
  and its paired difference from the first kind with a 95% bootstrap interval
  over test queries (evaluation/paired.py); 'better'/'worse' only where the
  interval excludes 0. `best_single` and `max_expert` (prediction files written
  by compare_kinds) are compared on routing only; kinds without files are listed."""
  from irt_jax.evaluation import paired
  head = ["dataset", "kind", "seeds"] + [c for c, *_ in PAIRED_COLUMNS]
  lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
  for dataset in datasets:
    ref_name = kinds[0]
    ref = [paired.load(p) for p in paired.files_for(preds_dir, dataset, ref_name)]
    for name in list(kinds) + list(HINDSIGHT):
      runs = [paired.load(p) for p in paired.files_for(preds_dir, dataset, name)]
      if not runs or not ref:
        lines.append(f"| {dataset} | {name} | 0 | no predictions" + " |" * len(PAIRED_COLUMNS))
        continue
      n = len(runs[0].success)
      own = {k: float(np.mean([paired.statistics(r, np.ones((1, n)))[k][0] for r in runs]))
             for k in paired.STATISTICS}
      diffs = None if name == ref_name else paired.compare(ref, runs, n_resamples, seed)
      cells = []
      for col, scale, fmt, dfmt in PAIRED_COLUMNS:
        if name in HINDSIGHT and not col.startswith("routing"):
          cells.append("")
          continue
        cells.append(_paired_cell(own[col], diffs and diffs[col], scale, fmt, dfmt))
      label = field_metrics.baseline_label(name)
      lines.append(f"| {dataset} | {label} | {len(runs)} | " + " | ".join(cells) + " |")
  note = (f"Each kind against `{kinds[0]}` on the same test queries: value; difference "
          f"[95% paired bootstrap interval, {n_resamples} resamples of queries, seed {seed}]; "
          "**better** / **worse** only where the interval excludes 0 (log loss: lower is "
          "better). Several seeds: the mean over seeds on each resample.")
  return note + "\n\n" + "\n".join(lines) + "\n"


# Benchmark-score prediction grid (records of protocols.leave_benchmark_out.write_records):
# protocol x query choice x estimator x k, mean +- std over draws.

GRID_REQUIRED = {"dataset", "protocol", "choice", "estimator", "k", "mae", "bias", "spearman",
                 "kendall"}
GRID_SCALE = {"mae": 100, "bias": 100, "spearman": 1, "kendall": 1}


def label_grid_runs(records: list[dict]) -> list[dict]:
  """Records whose `dataset` names the run: 'routerdc (knn)' where one file holds
  several kinds (the tables key rows by dataset); unchanged otherwise."""
  if len({r.get("kind") for r in records}) <= 1:
    return records
  return [{**r, "dataset": f"{r['dataset']} ({r.get('kind')})"} for r in records]


def _grid_cell(r: dict | None, metric: str) -> str:
  if r is None or r[metric]["mean"] is None:
    return "n/a"
  scale, m = GRID_SCALE[metric], r[metric]
  fmt = ".2f" if scale == 100 else ".3f"
  sign = "+" if metric == "bias" else ""
  sd = "" if m["std"] is None else f" ± {format(scale * m['std'], fmt)}"
  return f"{format(scale * m['mean'], sign + fmt)}{sd}"


def _grid_index(records: list[dict]) -> dict:
  return {(r["dataset"], r["protocol"], r["choice"], r["estimator"], r["k"]): r for r in records}


def benchmark_grid_table(records: list[dict], dataset: str, metric: str = "mae") -> str:
  """Markdown: one row per (protocol, choice, estimator), one column per k,
  `metric` mean ± std over draws (MAE and bias in accuracy points)."""
  rows = [r for r in records if r["dataset"] == dataset]
  ks = sorted({r["k"] for r in rows})
  index = _grid_index(rows)
  seen = list(dict.fromkeys((r["protocol"], r["choice"], r["estimator"]) for r in rows))
  out = ["| protocol | choice | estimator | " + " | ".join(f"k = {k}" for k in ks) + " |",
         "|---|---|---|" + "---|" * len(ks)]
  for p, c, e in seen:
    out.append(f"| {p} | {c} | {e} | " + " | ".join(
        _grid_cell(index.get((dataset, p, c, e, k)), metric) for k in ks) + " |")
  return "\n".join(out) + "\n"


def _mae(r: dict) -> float:
  return r["mae"]["mean"]


def _paired_gap(naive: dict, model: dict) -> tuple[float, float] | None:
  """Mean and std over draws of naive MAE - model MAE, draw by draw: both rows
  come from the same labelled queries in each draw (one grid cell), so the
  pick's luck cancels and the spread left is the estimators' own."""
  pairs = [(a, b) for a, b in zip(naive["mae"]["per_draw"], model["mae"]["per_draw"])
           if a is not None and b is not None]
  if len(pairs) < 2:
    return None
  diff = np.array([a - b for a, b in pairs])
  return float(diff.mean()), float(diff.std(ddof=1))


def _read_paired(tried: str, against: str) -> bool:
  """Whether rows of choices `tried` and `against` can be compared draw by draw:
  the same picks (same choice), or picks drawn from the same random numbers as
  random picks (query_choice.COUPLED_WITH_RANDOM)."""
  return tried == against or (against == "random" and tried in query_choice.COUPLED_WITH_RANDOM)


def _vs_random(r: dict, rand: dict) -> str:
  """"choice/estimator: MAE vs random MAE (gain)", the gain read draw by draw
  (mean ± std) where the two choices share their random numbers."""
  gain = _mae(rand) - _mae(r)
  paired = _paired_gap(rand, r) if _read_paired(r["choice"], "random") else None
  tail = "" if paired is None else f" ± {100 * paired[1]:.2f} paired"
  return (f"{r['choice']}/{r['estimator']}: {100 * _mae(r):.2f} vs {100 * _mae(rand):.2f} "
          f"({100 * gain:+.2f}{tail})")


def _informed_vs_random(index: dict, model: list[dict], d: str, p: str, k: int) -> str:
  vs = []
  for r in model:
    rand = index.get((d, p, "random", r["estimator"], k))
    if r["choice"] != "random" and rand is not None:
      vs.append((_mae(rand) - _mae(r), r, rand))
  if not vs:
    return "n/a"
  _, r, rand = max(vs, key=lambda v: v[0])
  return _vs_random(r, rand)


def benchmark_grid_goals(records: list[dict]) -> str:
  """Markdown: the issue's three goals per dataset, label protocol and k.

  Per (dataset, protocol, k): the naive mean of k random labels; the best
  model-based row (lowest mean MAE over every choice and estimator but naive)
  and its gap to that naive mean; the paired gap to the naive mean of the same
  labelled queries (same choice, draw by draw), mean ± std over draws; `met`
  when the best row is below the naive random mean and, at k <= 25, its paired
  gap exceeds its std; the best informed choice against random picks with the
  same estimator; Spearman of the best row and of the naive mean."""
  index = _grid_index(records)
  out = ["| dataset | protocol | k | naive mean, random picks | best model row | its MAE | gap | "
         "paired gap, same picks | met | best informed vs random, same estimator | "
         "Spearman best / naive |", "|---|---|---|---|---|---|---|---|---|---|---|"]
  for d, p, k in sorted({(r["dataset"], r["protocol"], r["k"]) for r in records}):
    model = [r for r in records if (r["dataset"], r["protocol"], r["k"]) == (d, p, k)
             and r["estimator"] != "naive" and r["mae"]["mean"] is not None]
    naive = index.get((d, p, "random", "naive", k))
    if naive is None or not model:
      continue
    best = min(model, key=_mae)
    gap = _mae(naive) - _mae(best)
    same = index.get((d, p, best["choice"], "naive", k))
    paired = _paired_gap(same, best) if same else None
    met = gap > 0 and (k > 25 or (paired is not None and paired[0] > paired[1]))
    paired_cell = "n/a" if paired is None else f"{100 * paired[0]:+.2f} ± {100 * paired[1]:.2f}"
    out.append(f"| {d} | {p} | {k} | {_grid_cell(naive, 'mae')} | {best['choice']}/"
               f"{best['estimator']} | {_grid_cell(best, 'mae')} | {100 * gap:+.2f} | "
               f"{paired_cell} | {'yes' if met else 'no'} | "
               f"{_informed_vs_random(index, model, d, p, k)} | "
               f"{_grid_cell(best, 'spearman')} / {_grid_cell(naive, 'spearman')} |")
  return "\n".join(out) + "\n"


def _elsewhere(index: dict, others: list[str], p: str, c: str, e: str, k: int,
               score=_mae) -> float | None:
  """`score` of one grid row averaged over the `others` datasets; None unless
  every one of them ran it (a row seen on fewer would compete on easier ground),
  and None with no others: nothing to choose on."""
  rows = [index.get((o, p, c, e, k)) for o in others]
  if not rows or any(r is None or r["mae"]["mean"] is None for r in rows):
    return None
  return float(np.mean([score(r) for r in rows]))


def _heldout_informed(index: dict, d: str, others: list[str], p: str, k: int,
                      pool: list[tuple[str, str]]) -> tuple[str, str]:
  """Goal 2 on dataset `d`: the informed (choice, estimator) of `pool` whose MAE
  gain over random picks with the same estimator, averaged over `others`, is
  largest; its cell (MAE vs random here, gain) and whether it is met (k <= 25)."""
  gain = lambda r: _mae(index[(r["dataset"], p, "random", r["estimator"], k)]) - _mae(r)
  informed = {ce: _elsewhere(index, others, p, *ce, k, gain) for ce in pool
              if ce[0] != "random"
              and all((o, p, "random", ce[1], k) in index for o in [d] + others)}
  informed = {ce: v for ce, v in informed.items() if v is not None}
  if not informed:
    return "n/a", "n/a"
  c, e = max(informed, key=informed.get)
  here, rand = index[(d, p, c, e, k)], index[(d, p, "random", e, k)]
  met = ("yes" if gain(here) > 0 else "no") if k <= 25 else "-"
  return _vs_random(here, rand), met


def benchmark_grid_heldout_goals(records: list[dict]) -> str:
  """Markdown: the issue's three goals with every row chosen on the *other* datasets.

  Why: the best row of a dataset, picked on the figures it then reports, is a
  selection on test figures and flatters the model; a recipe must be fixed before
  the dataset it is judged on. So for each dataset D (among runs of one kind) and
  each (protocol, k): goal 1's row is the (choice, estimator) with the lowest MAE
  averaged over the other datasets; it is met when, on D, that row is below the
  naive mean of k random labels and, at k <= 25, its paired gap to the naive mean
  of the same picks exceeds the gap's std. Goal 2's row is the informed (non-random)
  choice and estimator whose MAE gain over random picks with the same estimator,
  averaged over the others, is largest; met (k <= 25) when its gain on D is
  positive (read draw by draw, mean ± std, for stratified picks, which share
  their random numbers with random picks; unpaired for anchors). Goal 3 (k = 10): goal 1's row ranks the LLMs on D at least
  as well (Spearman) as the naive mean."""
  index = _grid_index(records)
  runs = {(r.get("kind"), r["dataset"]) for r in records}
  out = ["| dataset | protocol | k | naive mean, random picks | chosen on the others | its MAE | "
         "paired gap, same picks | goal 1 | informed choice chosen on the others: MAE vs "
         "random | goal 2 | Spearman chosen / naive | goal 3 |", "|---" * 12 + "|"]
  for kind, d in sorted(runs, key=str):
    others = sorted(o for kd, o in runs if kd == kind and o != d)
    for p, k in sorted({(r["protocol"], r["k"]) for r in records if r["dataset"] == d}):
      naive = index.get((d, p, "random", "naive", k))
      pool = sorted({(r["choice"], r["estimator"]) for r in records
                     if (r["dataset"], r["protocol"], r["k"]) == (d, p, k)
                     and r["estimator"] != "naive" and r["mae"]["mean"] is not None})
      score = {ce: _elsewhere(index, others, p, *ce, k) for ce in pool}
      score = {ce: v for ce, v in score.items() if v is not None}
      if naive is None or not score:
        continue
      c, e = min(score, key=score.get)
      chosen = index[(d, p, c, e, k)]
      same = index.get((d, p, c, "naive", k))
      paired = _paired_gap(same, chosen) if same else None
      met1 = _mae(chosen) < _mae(naive) and (k > 25 or (paired is not None and paired[0] > paired[1]))
      cell2, met2 = _heldout_informed(index, d, others, p, k, list(score))
      rho = chosen["spearman"]["mean"], naive["spearman"]["mean"]
      met3 = "-" if k != 10 else "n/a" if None in rho else "yes" if rho[0] >= rho[1] else "no"
      paired_cell = "n/a" if paired is None else f"{100 * paired[0]:+.2f} ± {100 * paired[1]:.2f}"
      out.append(f"| {d} | {p} | {k} | {_grid_cell(naive, 'mae')} | {c}/{e} | "
                 f"{_grid_cell(chosen, 'mae')} | {paired_cell} | {'yes' if met1 else 'no'} | "
                 f"{cell2} | {met2} | {_grid_cell(chosen, 'spearman')} / "
                 f"{_grid_cell(naive, 'spearman')} | {met3} |")
  return "\n".join(out) + "\n"


# (label, protocol, (choice, estimator) tried, (choice, estimator) it is measured against):
# the rows issue 25 added, each beside what it was built to beat.
GRID_COMPARISONS = (
    ("diff vs naive, random picks", None, ("random", "diff"), ("random", "naive")),
    ("stratified vs random picks, naive", None, ("stratified", "naive"), ("random", "naive")),
    ("stratified vs random picks, diff", None, ("stratified", "diff"), ("random", "diff")),
    ("blend vs naive, random picks", None, ("random", "blend"), ("random", "naive")),
    ("kernel vs irt, random picks", None, ("random", "kernel"), ("random", "irt")),
    ("fluid vs random picks, offset", "per_llm", ("fluid", "offset"), ("random", "offset")),
    ("fluid vs adaptive picks, offset", "per_llm", ("fluid", "offset"), ("adaptive", "offset")))


def _comparison_cell(index: dict, d: str, p: str, k: int, tried, against) -> str:
  a, b = index.get((d, p, *tried, k)), index.get((d, p, *against, k))
  if a is None or b is None or a["mae"]["mean"] is None or b["mae"]["mean"] is None:
    return "n/a"
  cell = f"{100 * _mae(a):.2f} vs {100 * _mae(b):.2f}"
  if _read_paired(tried[0], against[0]):
    paired = _paired_gap(b, a)
    if paired is not None:
      return f"{cell} ({100 * paired[0]:+.2f} ± {100 * paired[1]:.2f})"
  return f"{cell} ({100 * (_mae(b) - _mae(a)):+.2f})"


def benchmark_grid_comparisons(records: list[dict]) -> str:
  """Markdown: per (dataset, protocol, k) each GRID_COMPARISONS pair's MAE
  (points), tried vs what it was built to beat, and the gain (positive: the
  tried row is lower); paired mean ± std over draws where both rows share their
  picks (same choice) or their random numbers (stratified vs random), unpaired
  otherwise."""
  index = _grid_index(records)
  out = ["| dataset | protocol | k | " + " | ".join(c[0] for c in GRID_COMPARISONS) + " |",
         "|---|---|---|" + "---|" * len(GRID_COMPARISONS)]
  for d, p, k in sorted({(r["dataset"], r["protocol"], r["k"]) for r in records}):
    cells = [_comparison_cell(index, d, p, k, tried, against) if only in (None, p) else "-"
             for _, only, tried, against in GRID_COMPARISONS]
    out.append(f"| {d} | {p} | {k} | " + " | ".join(cells) + " |")
  return "\n".join(out) + "\n"


def benchmark_grid_markdown(records: list[dict], metrics=("mae", "spearman", "bias",
                                                          "kendall")) -> str:
  """The goals with rows chosen on the other datasets, then the optimistic goals
  table (rows chosen on the figures it reports), then per dataset one grid table
  per metric."""
  names = {"mae": "MAE (points)", "bias": "bias (points, predicted - true)",
           "spearman": "Spearman over LLMs", "kendall": "Kendall tau-b over LLMs"}
  heldout = benchmark_grid_heldout_goals(records)
  if len(heldout.splitlines()) <= 2:
    heldout = "Needs the records of two or more datasets (of one kind): none here.\n"
  out = ["#### Goals, each row chosen on the other datasets", "", heldout,
         "#### Best row on the same figures (optimistic: chosen on the figures it reports; "
         "not a result)", "", benchmark_grid_goals(records),
         "#### The new rows beside what they were built to beat (MAE, points; gain in brackets, "
         "paired ± std where the picks are the same or coupled)", "", benchmark_grid_comparisons(records)]
  for d in sorted({r["dataset"] for r in records}):
    for metric in metrics:
      out += [f"#### {d}: {names[metric]}, mean ± std over draws", "",
              benchmark_grid_table(records, d, metric)]
  return "\n".join(out)


def prior_check_table(records: list[dict], defaults: tuple[float, float]) -> str:
  """Markdown for scripts/benchmark_prior_check.py: per dataset (`workdir`), the
  (per-LLM sd, scale sd) the *other* datasets choose (lowest MAE averaged over
  their k), its MAE and the `defaults`' MAE here, and the best here (not used).
  Only settings run on every dataset compete."""
  mae: dict = {}
  for r in records:
    mae.setdefault((r["workdir"], r["per_llm_sd"], r["scale_sd"]), []).append(r["mae"]["mean"])
  mean = {key: float(np.mean(v)) for key, v in mae.items()}
  names = sorted({key[0] for key in mean})
  sets = sorted(s for s in {key[1:] for key in mean} if all((n, *s) in mean for n in names))
  out = ["| dataset | chosen on the others (per-LLM sd, scale sd) | its MAE here | "
         "defaults' MAE here | best here (not used) |", "|---|---|---|---|---|"]
  for d in names:
    others = [n for n in names if n != d]
    chosen = min(sets, key=lambda s: np.mean([mean[(n, *s)] for n in others]))
    best = min(sets, key=lambda s: mean[(d, *s)])
    out.append(f"| {d} | {chosen} | {100 * mean[(d, *chosen)]:.2f} | "
               f"{100 * mean.get((d, *defaults), np.nan):.2f} | {best}: "
               f"{100 * mean[(d, *best)]:.2f} |")
  return "\n".join(out) + "\n"
