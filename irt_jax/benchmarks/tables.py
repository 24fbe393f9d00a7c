"""Tables of a leave-one-benchmark-out result (benchmark_prediction.json): the
terminal table, its markdown (with the grid's tables when it has one), and the
tables that set several results side by side."""

from __future__ import annotations

import os

from irt_jax import plotting
from irt_jax.benchmarks import grid
from irt_jax.benchmarks import grid_tables


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
    out += ["", "#### The grid: label protocols x query choices x estimators", "",
            grid_tables.benchmark_grid_markdown(grid.records(result))]
  out += plotting.markdown_links(plot_files, relative_to)
  return "\n".join(out) + "\n"


def write_benchmark_prediction_md(result: dict, plot_files: dict, workdir: str) -> str:
  path = os.path.join(workdir, "benchmark_prediction.md")
  with open(path, "w", encoding="utf-8") as f:
    f.write(benchmark_prediction_markdown(result, plot_files, workdir))
  return path


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
